package bench

import (
	"fmt"
	"time"

	"switchboard/token"
)

// Key is the key a run's tokens for one server are minted with: the
// newest of the server's keys file. It travels to worker processes in
// their Spec.
type Key struct {
	ID     uint32
	Secret []byte
}

// ReadKeys reads a keys file with token.Load (so it refuses one that group
// or others may read, as the server does) and returns its newest (highest
// id) key, the one `switchboard token` signs with.
func ReadKeys(path string) (Key, error) {
	keys, newest, err := token.Load(path)
	if err != nil {
		return Key{}, fmt.Errorf("bench: %w (the server's data folder holds the keys file; see --keys)", err)
	}
	return Key{ID: newest, Secret: keys[newest]}, nil
}

// mintToken appends to dst a login token for user, device 1, valid until
// expiry, and returns the extended slice.
func mintToken(dst []byte, k Key, user uint64, expiry time.Time) []byte {
	return token.Append(dst, k.Secret, token.Claims{KeyID: k.ID, User: user, Device: 1, Expiry: expiry})
}
