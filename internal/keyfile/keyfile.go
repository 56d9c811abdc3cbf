// Package keyfile reads and creates the secret key files of a server's
// data folder: the token keys (package token) and the Noise static keys
// (package noise). A file holds lines "<key id> <hex secret>", comments
// after "#"; it must be readable by its owner only, and it is created
// whole and durable or not at all.
package keyfile

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// ErrExposed means a keys file may be read by its group or others.
var ErrExposed = errors.New("keys file readable by group or others")

// Format is one kind of keys file.
type Format struct {
	Prefix         string // error prefix: the package, "token" or "noise"
	Header         string // the comment line Create writes first
	MinLen, MaxLen int    // bytes a secret may have
	MaxKeys        int    // keys a file may hold
}

// Load reads the keys file at path and returns its keys and the id of the
// newest (highest) one. It refuses a file that group or others may read
// (ErrExposed), a malformed line, an id that appears twice, a file with no
// key or more than MaxKeys; its errors name the file and, for a line, its
// number.
func (ff Format) Load(path string) (map[uint32][]byte, uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: reading keys: %w", ff.Prefix, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("%s: reading keys: %w", ff.Prefix, err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, 0, fmt.Errorf("%s: %w: %s has mode %v: chmod 600 it", ff.Prefix, ErrExposed, path, perm)
	}
	keys := map[uint32][]byte{}
	var newest uint32
	want := fmt.Sprintf("want \"<key id> <hex secret of %d bytes>\"", ff.MinLen)
	if ff.MaxLen > ff.MinLen {
		want = fmt.Sprintf("want \"<key id> <hex secret of %d to %d bytes>\"", ff.MinLen, ff.MaxLen)
	}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 2 {
			return nil, 0, fmt.Errorf("%s: %s:%d: %s", ff.Prefix, path, line, want)
		}
		id, err1 := strconv.ParseUint(fields[0], 10, 32)
		secret, err2 := hex.DecodeString(fields[1])
		if err1 != nil || err2 != nil || len(secret) < ff.MinLen || len(secret) > ff.MaxLen {
			return nil, 0, fmt.Errorf("%s: %s:%d: %s", ff.Prefix, path, line, want)
		}
		if _, dup := keys[uint32(id)]; dup {
			// Which of the two would a user mean? Refuse rather than guess.
			return nil, 0, fmt.Errorf("%s: %s:%d: key id %d appears twice", ff.Prefix, path, line, id)
		}
		if len(keys) == ff.MaxKeys {
			return nil, 0, fmt.Errorf("%s: %s:%d: more than %d keys", ff.Prefix, path, line, ff.MaxKeys)
		}
		keys[uint32(id)] = secret
		newest = max(newest, uint32(id))
	}
	if err := sc.Err(); err != nil {
		return nil, 0, fmt.Errorf("%s: reading %s: %w", ff.Prefix, path, err)
	}
	if len(keys) == 0 {
		return nil, 0, fmt.Errorf("%s: %s holds no key", ff.Prefix, path)
	}
	return keys, newest, nil
}

// LoadOrCreate is Load, creating the file with Create and a secret from
// fresh first if it does not exist.
func (ff Format) LoadOrCreate(path string, fresh func() ([]byte, error)) (map[uint32][]byte, uint32, error) {
	keys, newest, err := ff.Load(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return keys, newest, err
	}
	secret, err := fresh()
	if err != nil {
		return nil, 0, err
	}
	if err := ff.Create(path, secret); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, 0, err
	}
	// Created, by us or by another process meanwhile.
	return ff.Load(path)
}

// Create makes the keys file at path, and its folder, holding secret with
// id 1, readable by its owner only. The file is written under a temporary
// name, synced, then linked into place and the folder synced, so a crash
// leaves either no keys file (the next start makes one) or a complete,
// durable one: never an empty or half-written file that would stop the
// server, nor a key that was handed out and a power loss took back. It
// fails with an error wrapping fs.ErrExist if path exists.
func (ff Format) Create(path string, secret []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("%s: creating %s: %w", ff.Prefix, dir, err)
	}
	body := ff.Header + "\n1 " + hex.EncodeToString(secret) + "\n"
	// Link, unlike rename, fails if another process created the file
	// meanwhile.
	return ff.place(path, body, os.Link, "creating")
}

// Rewrite replaces the keys file at path with keys, whole and durable or
// not at all: written under a temporary name, synced, renamed over the old
// one and the folder synced. The file keeps mode 0600.
func (ff Format) Rewrite(path string, keys map[uint32][]byte) error {
	if len(keys) == 0 || len(keys) > ff.MaxKeys {
		return fmt.Errorf("%s: %d keys for %s: want 1 to %d", ff.Prefix, len(keys), path, ff.MaxKeys)
	}
	ids := make([]uint32, 0, len(keys))
	for id := range keys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var b strings.Builder
	b.WriteString(ff.Header + "\n")
	for _, id := range ids {
		fmt.Fprintf(&b, "%d %s\n", id, hex.EncodeToString(keys[id]))
	}
	return ff.place(path, b.String(), os.Rename, "replacing")
}

// place writes body to a temporary file beside path (mode 0600), syncs it,
// puts it at path with put (os.Link to create, os.Rename to replace) and
// syncs the folder: a crash leaves the old file or the new one, whole.
// Written by root, the file keeps the owner of the file it replaces, or
// takes the folder's: a key rotated with sudo stays readable by the
// service user, who owns the data folder.
func (ff Format) place(path, body string, put func(oldname, newname string) error, doing string) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".new-*") // mode 0600: owner only
	if err != nil {
		return fmt.Errorf("%s: %s %s: %w", ff.Prefix, doing, path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // once placed, only the temporary name goes
	if err := keepOwner(f, path, dir); err != nil {
		f.Close()
		return fmt.Errorf("%s: %s %s: %w", ff.Prefix, doing, path, err)
	}
	if _, err := f.WriteString(body); err != nil {
		f.Close()
		return fmt.Errorf("%s: writing %s: %w", ff.Prefix, path, err)
	}
	if err := syncFile(f); err != nil {
		f.Close()
		return fmt.Errorf("%s: syncing %s: %w", ff.Prefix, path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s: writing %s: %w", ff.Prefix, path, err)
	}
	if err := put(tmp, path); err != nil {
		return fmt.Errorf("%s: %s %s: %w", ff.Prefix, doing, path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("%s: syncing %s: %w", ff.Prefix, dir, err)
	}
	return nil
}

// keepOwner gives f, when this process runs as root, the owner of the file
// at path, or of the folder dir when there is none yet.
func keepOwner(f *os.File, path, dir string) error {
	if os.Geteuid() != 0 {
		return nil // only root can give a file away; others own what they write
	}
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		fi, err = os.Stat(dir)
	}
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || (st.Uid == 0 && st.Gid == 0) {
		return nil
	}
	return f.Chown(int(st.Uid), int(st.Gid))
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
