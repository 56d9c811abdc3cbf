package main

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"switchboard/gateway"
)

// The keys file holds the token secrets, one per line: "<key id> <hex secret>".
// serve creates it on first run with one fresh key, readable by its owner only.
const keysFile = "keys"

// loadKeys reads the keys file in dir, creating it if create is set and it
// does not exist. It returns the keys and the id of the newest (highest) one.
func loadKeys(dir string, create bool) (gateway.Keys, uint32, error) {
	path := filepath.Join(dir, keysFile)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && create {
		if err := writeNewKeys(dir, path); err != nil {
			return nil, 0, err
		}
		f, err = os.Open(path)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading token keys: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, 0, fmt.Errorf("%s is readable by others (mode %v): chmod 600 it", path, st.Mode().Perm())
	}
	keys := gateway.Keys{}
	var newest uint32
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		idText, secretHex, ok := strings.Cut(text, " ")
		id, err1 := strconv.ParseUint(idText, 10, 32)
		secret, err2 := hex.DecodeString(strings.TrimSpace(secretHex))
		if !ok || err1 != nil || err2 != nil || len(secret) < 16 {
			return nil, 0, fmt.Errorf("%s:%d: want \"<key id> <hex secret of at least 16 bytes>\"", path, line)
		}
		keys[uint32(id)] = secret
		newest = max(newest, uint32(id))
	}
	if err := sc.Err(); err != nil {
		return nil, 0, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(keys) == 0 {
		return nil, 0, fmt.Errorf("%s holds no key", path)
	}
	return keys, newest, nil
}

// writeNewKeys creates the keys file at path, in dir, with one fresh key.
// The file is written under a temporary name, synced, then linked into
// place and the directory synced, so a crash leaves either no keys file
// (the next start makes one) or a complete, durable one: never an empty or
// half-written file that would stop the server, nor a key that tokens were
// minted with and a power loss took back. Linking fails if another process
// created the file meanwhile, as the O_EXCL create before did.
func writeNewKeys(dir, path string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	secret, err := gateway.NewSecret()
	if err != nil {
		return err
	}
	body := "# Switchboard token keys: <key id> <hex secret>. Keep private.\n1 " + hex.EncodeToString(secret) + "\n"
	f, err := os.CreateTemp(dir, keysFile+".new-*") // mode 0600: owner only
	if err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the link, only the temporary name goes
	if _, err := f.WriteString(body); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := syncFile(f); err != nil {
		f.Close()
		return fmt.Errorf("syncing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Link(tmp, path); err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
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
