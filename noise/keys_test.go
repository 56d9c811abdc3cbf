package noise_test

import (
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"switchboard/internal/keyfile"
	"switchboard/noise"
)

// TestLoadKeys: the first start creates one key, owner-only; a second
// start reads the same; a rotation's file (two keys) gives the highest id
// first; a file others may read, or a key of the wrong size, is refused.
func TestLoadKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), noise.KeysFileName)
	if _, err := noise.LoadKeys(path, false); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a missing file without create: %v", err)
	}
	keys, err := noise.LoadKeys(path, true)
	if err != nil || len(keys) != 1 {
		t.Fatalf("created %d keys (%v), want 1", len(keys), err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	again, err := noise.LoadKeys(path, true)
	if err != nil || again[0] != keys[0] {
		t.Fatalf("the second start read another key (%v)", err)
	}

	newer := keypair(t)
	body := "1 " + hex.EncodeToString(keys[0].Private[:]) + "\n2 " + hex.EncodeToString(newer.Private[:]) + "\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	rotated, err := noise.LoadKeys(path, false)
	if err != nil || len(rotated) != 2 || rotated[0] != newer || rotated[1] != keys[0] {
		t.Fatalf("rotated keys %v (%v), want key 2 then key 1", rotated, err)
	}

	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := noise.LoadKeys(path, true); !errors.Is(err, keyfile.ErrExposed) {
		t.Fatalf("a group-readable file: %v, want ErrExposed", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("1 0011\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := noise.LoadKeys(path, false); err == nil || errors.Is(err, keyfile.ErrExposed) {
		t.Fatalf("a 2-byte key: %v, want it refused for its size", err)
	}
}

// TestRotateKeys: a rotation adds a current key and keeps the old one for
// IK; retiring leaves only the current one; a full file refuses another
// rotation.
func TestRotateKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), noise.KeysFileName)
	first, err := noise.LoadKeys(path, true)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := noise.RotateKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := noise.LoadKeys(path, false)
	if err != nil || len(keys) != 2 || keys[0] != k2 || keys[1] != first[0] {
		t.Fatalf("after a rotation: %d keys (%v), want the new one then the first", len(keys), err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v after a rotation, want 0600", st.Mode().Perm())
	}
	for range noise.MaxKeys - 2 {
		if _, err := noise.RotateKeys(path); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := noise.RotateKeys(path); err == nil {
		t.Fatalf("a rotation past %d keys was taken", noise.MaxKeys)
	}
	keys, _ = noise.LoadKeys(path, false)
	if err := noise.RetireKeys(path); err != nil {
		t.Fatal(err)
	}
	left, err := noise.LoadKeys(path, false)
	if err != nil || len(left) != 1 || left[0] != keys[0] {
		t.Fatalf("after retiring: %d keys (%v), want the current one only", len(left), err)
	}
}
