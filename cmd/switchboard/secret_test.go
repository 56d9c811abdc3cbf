package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"switchboard/token"
)

// TestLoadKeys: serve (create) makes the keys file in its data folder; the
// token command (no create) reads it and never makes one.
func TestLoadKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if _, _, err := loadKeys(dir, false); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("loadKeys without create = %v, want ErrNotExist", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("loadKeys without create made %s (%v)", dir, err)
	}
	keys, newest, err := loadKeys(dir, true)
	if err != nil || newest != 1 || len(keys[1]) != token.SecretLen {
		t.Fatalf("loadKeys with create = %v, newest %d, %v", keys, newest, err)
	}
	again, newest, err := loadKeys(dir, false)
	if err != nil || newest != 1 || !bytes.Equal(again[1], keys[1]) {
		t.Fatalf("reading it back = %v, newest %d, %v; want the key made", again, newest, err)
	}
}

// TestTokenCommand: `switchboard token` prints, in hex, a token of the
// newest key that verifies with the keys file, and refuses flags that
// would mint a token no server accepts.
func TestTokenCommand(t *testing.T) {
	dir := t.TempDir()
	old, cur := strings.Repeat("11", 32), strings.Repeat("22", 32)
	if err := os.WriteFile(filepath.Join(dir, token.FileName), []byte("1 "+old+"\n2 "+cur+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := captureStdout(t, func() error {
		return tokenCmd([]string{"-data", dir, "-user", "7654321", "-device", "3", "-ttl", "1h"})
	})
	tok, err := hex.DecodeString(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	keys, _, err := token.Load(filepath.Join(dir, token.FileName))
	if err != nil {
		t.Fatal(err)
	}
	c, err := keys.Verify(tok, time.Now())
	if err != nil || c.KeyID != 2 || c.User != 7654321 || c.Device != 3 || time.Until(c.Expiry) > time.Hour {
		t.Fatalf("printed token verifies as %+v, %v; want key 2, user 7654321, device 3, an hour", c, err)
	}
	// -ttl takes days, as the server's settings do.
	out = captureStdout(t, func() error {
		return tokenCmd([]string{"-data", dir, "-user", "5", "-ttl", "30d"})
	})
	if tok, err = hex.DecodeString(strings.TrimSpace(out)); err != nil {
		t.Fatal(err)
	}
	if c, err := keys.Verify(tok, time.Now()); err != nil || time.Until(c.Expiry) < 29*24*time.Hour || time.Until(c.Expiry) > 30*24*time.Hour {
		t.Fatalf("-ttl 30d: claims %+v, %v; want 30 days", c, err)
	}
	for _, args := range [][]string{
		{"-data", dir},
		{"-data", dir, "-user", "1", "extra"},
		{"-data", dir, "-user", "1", "-ttl", "30x"},
		{"-data", dir, "-user", "1", "-device", "4294967296"},
		{"-data", dir, "-user", "1", "-ttl", "-1h"},
		{"-data", t.TempDir(), "-user", "1"}, // no keys file
	} {
		if err := tokenCmd(args); err == nil {
			t.Errorf("token %q succeeded", args)
		}
	}
}

// captureStdout runs f with os.Stdout going to a pipe and returns what it
// printed; f's error fails the test.
func captureStdout(t *testing.T, f func() error) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	orig := os.Stdout
	os.Stdout = w
	ferr := f()
	os.Stdout = orig
	w.Close()
	out, _ := io.ReadAll(r)
	r.Close()
	if ferr != nil {
		t.Fatal(ferr)
	}
	return string(out)
}
