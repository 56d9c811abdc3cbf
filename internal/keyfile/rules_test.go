package keyfile

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Rules of the package doc and of Load, Create, Rewrite and LoadOrCreate,
// each a test of its own.

// TestLoadRefusesLongSecret: a secret over MaxLen bytes is refused with the
// line's number.
func TestLoadRefusesLongSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	body := "1 " + strings.Repeat("ab", testFormat.MaxLen+1) + "\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if keys, _, err := testFormat.Load(path); err == nil || !strings.Contains(err.Error(), ":1: want") {
		t.Fatalf("Load = %v, %v; want line 1 refused", keys, err)
	}
}

// TestLoadRefusesUnreadableRest: a file whose reading fails part way (a
// line too long to scan) is refused, not loaded with the keys before it.
func TestLoadRefusesUnreadableRest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	body := "1 " + strings.Repeat("ab", 32) + "\n# " + strings.Repeat("x", 70_000) + "\n2 " + strings.Repeat("cd", 32) + "\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if keys, newest, err := testFormat.Load(path); err == nil || keys != nil {
		t.Fatalf("Load = %d keys, newest %d, %v; want an error", len(keys), newest, err)
	}
}

// TestCreateMakesAPrivateFolder: the folder Create makes for the keys file
// is its owner's only, as the file is.
func TestCreateMakesAPrivateFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := testFormat.Create(filepath.Join(dir, "keys"), make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm()&0o077 != 0 {
		t.Fatalf("folder mode %v, %v; want owner-only", st.Mode().Perm(), err)
	}
}

// TestRewriteRefusesKeyCounts: Rewrite does not write a file Load would
// refuse, one with no key or more than MaxKeys; the old file stays.
func TestRewriteRefusesKeyCounts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	if err := testFormat.Create(path, bytes.Repeat([]byte{1}, 32)); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tooMany := map[uint32][]byte{}
	for id := range uint32(testFormat.MaxKeys + 1) {
		tooMany[id+1] = bytes.Repeat([]byte{2}, 32)
	}
	for name, keys := range map[string]map[uint32][]byte{"no key": {}, "MaxKeys+1": tooMany} {
		if err := testFormat.Rewrite(path, keys); err == nil {
			t.Errorf("Rewrite with %s succeeded", name)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
			t.Fatalf("Rewrite with %s changed the file to %q", name, after)
		}
	}
}

// TestLoadOrCreateLosesTheRace: when another process creates the file
// between the failed Load and Create, LoadOrCreate loads that file's key.
func TestLoadOrCreateLosesTheRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	theirs := bytes.Repeat([]byte{7}, 32)
	raced := func() ([]byte, error) {
		if err := testFormat.Create(path, theirs); err != nil { // the other process
			return nil, err
		}
		return bytes.Repeat([]byte{8}, 32), nil
	}
	keys, newest, err := testFormat.LoadOrCreate(path, raced)
	if err != nil || newest != 1 || !bytes.Equal(keys[1], theirs) {
		t.Fatalf("LoadOrCreate = %x, newest %d, %v; want the other process's key", keys[1], newest, err)
	}
}
