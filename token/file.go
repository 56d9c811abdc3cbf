package token

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
var ErrKeysExposed = errors.New("token: keys file readable by group or others")

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
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("token: reading keys: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("token: reading keys: %w", err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, 0, fmt.Errorf("%w: %s has mode %v: chmod 600 it", ErrKeysExposed, path, perm)
	}
	keys := Keys{}
	var newest uint32
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 2 {
			return nil, 0, fmt.Errorf("token: %s:%d: want \"<key id> <hex secret of at least %d bytes>\"", path, line, MinSecretLen)
		}
		id, err1 := strconv.ParseUint(fields[0], 10, 32)
		secret, err2 := hex.DecodeString(fields[1])
		if err1 != nil || err2 != nil || len(secret) < MinSecretLen {
			return nil, 0, fmt.Errorf("token: %s:%d: want \"<key id> <hex secret of at least %d bytes>\"", path, line, MinSecretLen)
		}
		if _, dup := keys[uint32(id)]; dup {
			// Which of the two would a minter use? Refuse rather than guess.
			return nil, 0, fmt.Errorf("token: %s:%d: key id %d appears twice", path, line, id)
		}
		if len(keys) == MaxKeys {
			return nil, 0, fmt.Errorf("token: %s:%d: more than %d keys", path, line, MaxKeys)
		}
		keys[uint32(id)] = secret
		newest = max(newest, uint32(id))
	}
	if err := sc.Err(); err != nil {
		return nil, 0, fmt.Errorf("token: reading %s: %w", path, err)
	}
	if len(keys) == 0 {
		return nil, 0, fmt.Errorf("token: %s holds no key", path)
	}
	return keys, newest, nil
}

// LoadOrCreate is Load, creating the file with Create first if it does
// not exist.
func LoadOrCreate(path string) (Keys, uint32, error) {
	keys, newest, err := Load(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return keys, newest, err
	}
	if err := Create(path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, 0, err
	}
	// Created, by us or by another process meanwhile.
	return Load(path)
}

// Create makes the keys file at path, and its folder, holding one fresh
// key with id 1, readable by its owner only. The file is written under a
// temporary name, synced, then linked into place and the folder synced, so
// a crash leaves either no keys file (the next start makes one) or a
// complete, durable one: never an empty or half-written file that would
// stop the server, nor a key that tokens were minted with and a power loss
// took back. It fails with an error wrapping fs.ErrExist if path exists.
func Create(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("token: creating %s: %w", dir, err)
	}
	secret, err := NewSecret()
	if err != nil {
		return err
	}
	body := "# Switchboard token keys: <key id> <hex secret>. Keep private.\n1 " + hex.EncodeToString(secret) + "\n"
	f, err := os.CreateTemp(dir, filepath.Base(path)+".new-*") // mode 0600: owner only
	if err != nil {
		return fmt.Errorf("token: creating %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the link, only the temporary name goes
	if _, err := f.WriteString(body); err != nil {
		f.Close()
		return fmt.Errorf("token: writing %s: %w", path, err)
	}
	if err := syncFile(f); err != nil {
		f.Close()
		return fmt.Errorf("token: syncing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("token: writing %s: %w", path, err)
	}
	// Link, unlike rename, fails if another process created the file
	// meanwhile.
	if err := os.Link(tmp, path); err != nil {
		return fmt.Errorf("token: creating %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("token: syncing %s: %w", dir, err)
	}
	return nil
}

// syncFile makes f's contents durable. A variable so a test can see what
// is synced, and when.
var syncFile = (*os.File).Sync

// syncDir makes dir's entries (a file just linked into it) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return syncFile(d)
}
