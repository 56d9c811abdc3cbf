package token

import (
	"crypto/rand"
	"fmt"

	"switchboard/internal/keyfile"
)

const (
	// FileName is the keys file's name in a server's data folder.
	FileName = "keys"
	// SecretLen is the length of a secret Create and NewSecret make: 256
	// bits, the size of HMAC-SHA256's output, more than any guessing needs.
	SecretLen = 32
	// MinSecretLen is the shortest secret the keys file may hold: 128 bits,
	// as strong as the MAC cut to 16 bytes.
	MinSecretLen = 16
	// MaxKeys bounds the keys a file may hold: rotation needs two or three
	// at a time, and each key costs every event loop an HMAC of about 400
	// bytes, so 100 is room enough and still small.
	MaxKeys = 100
)

// ErrKeysExposed means a keys file may be read by its group or others.
var ErrKeysExposed = keyfile.ErrExposed

// format is the token keys file.
var format = keyfile.Format{
	Prefix:  "token",
	Header:  "# Switchboard token keys: <key id> <hex secret>. Keep private.",
	MinLen:  MinSecretLen,
	MaxLen:  1 << 10,
	MaxKeys: MaxKeys,
}

// NewSecret returns a fresh random secret of SecretLen bytes.
func NewSecret() ([]byte, error) {
	b := make([]byte, SecretLen)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("token: making a secret: %w", err)
	}
	return b, nil
}

// Load reads the keys file at path and returns its keys and the id of the
// newest (highest) one, the key tokens are minted with. It refuses a file
// that group or others may read (ErrKeysExposed), a malformed line, an id
// that appears twice, a file with no key or more than MaxKeys; its errors
// name the file and, for a line, its number.
func Load(path string) (Keys, uint32, error) {
	keys, newest, err := format.Load(path)
	return keys, newest, err
}

// LoadOrCreate is Load, creating the file with Create first if it does
// not exist.
func LoadOrCreate(path string) (Keys, uint32, error) {
	keys, newest, err := format.LoadOrCreate(path, NewSecret)
	return keys, newest, err
}

// Create makes the keys file at path, and its folder, holding one fresh
// key with id 1, readable by its owner only, whole and durable or not at
// all (keyfile.Format.Create). It fails with an error wrapping
// fs.ErrExist if path exists.
func Create(path string) error {
	secret, err := NewSecret()
	if err != nil {
		return err
	}
	return format.Create(path, secret)
}
