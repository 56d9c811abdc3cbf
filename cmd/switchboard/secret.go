package main

import (
	"path/filepath"

	"switchboard/token"
)

// loadKeys reads the keys file in the data folder dir (package token
// describes it), creating it with one fresh key if create is set and it
// does not exist. It returns the keys and the id of the newest one.
func loadKeys(dir string, create bool) (token.Keys, uint32, error) {
	path := filepath.Join(dir, token.FileName)
	if create {
		return token.LoadOrCreate(path)
	}
	return token.Load(path)
}
