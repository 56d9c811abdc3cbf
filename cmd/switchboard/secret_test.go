package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestKeysFileCreatedDurably: the keys file serve creates holds one whole
// key, is readable by its owner only, and was synced with all its bytes
// before its directory entry was; nothing else is left in the folder.
func TestKeysFileCreatedDurably(t *testing.T) {
	type synced struct {
		dir  bool
		size int64
	}
	var syncs []synced
	orig := syncFile
	syncFile = func(f *os.File) error {
		st, err := f.Stat()
		if err != nil {
			return err
		}
		syncs = append(syncs, synced{dir: st.IsDir(), size: st.Size()})
		return orig(f)
	}
	t.Cleanup(func() { syncFile = orig })

	dir := filepath.Join(t.TempDir(), "data")
	keys, newest, err := loadKeys(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || newest != 1 || len(keys[1]) != 32 {
		t.Fatalf("keys %v, newest %d: want one 32-byte key with id 1", keys, newest)
	}
	path := filepath.Join(dir, keysFile)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	if len(syncs) != 2 || syncs[0].dir || syncs[0].size != st.Size() || !syncs[1].dir {
		t.Fatalf("syncs %+v, want the file with all its %d bytes, then the directory", syncs, st.Size())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("folder holds %d entries, want the keys file only", len(entries))
	}

	// A second start reads the same key and creates nothing.
	again, _, err := loadKeys(dir, true)
	if err != nil || string(again[1]) != string(keys[1]) || len(syncs) != 2 {
		t.Fatalf("second load: %v, same key %v, syncs %d", err, string(again[1]) == string(keys[1]), len(syncs))
	}
}
