//go:build soak

package storage_test

// The soak crash test (make soak): many kills, deeper logs between them.
const (
	crashRounds   = 60
	crashMaxLines = 40000
)
