package main

import (
	"encoding/hex"
	"flag"
	"fmt"
	"time"

	"switchboard/gateway"
)

func token(args []string) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	data := fs.String("data", "data", "the server's data folder (holds the keys file)")
	user := fs.Uint64("user", 0, "user id the token logs in as (required, > 0)")
	device := fs.Uint("device", 1, "device id")
	ttl := fs.Duration("ttl", 30*24*time.Hour, "how long the token is valid")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *user == 0 {
		return usageError{fmt.Errorf("-user is required")}
	}
	keys, id, err := loadKeys(*data, false)
	if err != nil {
		return err
	}
	tok := gateway.MintToken(keys[id], gateway.Claims{KeyID: id, User: *user, Device: uint32(*device), Expiry: time.Now().Add(*ttl)})
	fmt.Println(hex.EncodeToString(tok))
	return nil
}
