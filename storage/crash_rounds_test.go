//go:build !soak

package storage_test

// The short crash test for make test: a few kills, a few seconds.
const (
	crashRounds   = 5
	crashMaxLines = 4000
)
