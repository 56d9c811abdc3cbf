package keyfile

import (
	"bytes"
	"errors"
	"fmt"
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

// TestLoadRefusesExposed: a keys file its group or others may read is
// refused with ErrExposed, whichever of the two it is; one its owner alone
// may read loads.
func TestLoadRefusesExposed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	if err := testFormat.Create(path, bytes.Repeat([]byte{1}, 32)); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o620, 0o602} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if keys, _, err := testFormat.Load(path); !errors.Is(err, ErrExposed) {
			t.Errorf("mode %v: %d keys, %v; want ErrExposed", mode, len(keys), err)
		}
	}
	if err := os.Chmod(path, 0o400); err != nil {
		t.Fatal(err)
	}
	if keys, _, err := testFormat.Load(path); err != nil || len(keys) != 1 {
		t.Fatalf("mode 0400: %d keys, %v; want the one key", len(keys), err)
	}
}

// TestLoadRefusesMalformed: a line that is not "<id> <secret>", a secret
// shorter than MinLen, an id given twice, more than MaxKeys keys, or no key
// at all is refused, naming the line where there is one; MaxKeys keys load.
func TestLoadRefusesMalformed(t *testing.T) {
	key := func(id int) string { return fmt.Sprintf("%d %s\n", id, strings.Repeat("ab", 32)) }
	var maxKeys string
	for id := range testFormat.MaxKeys {
		maxKeys += key(id + 1)
	}
	for _, tc := range []struct {
		name, body, want string // want: in the error; "" to load
	}{
		{"MaxKeys keys", maxKeys, ""},
		{"MaxKeys+1 keys", maxKeys + key(9), fmt.Sprintf(":%d: more than %d keys", testFormat.MaxKeys+1, testFormat.MaxKeys)},
		{"an id twice", key(1) + key(2) + key(1), ":3: key id 1 appears twice"},
		{"a short secret", key(1) + "2 " + strings.Repeat("ab", testFormat.MinLen-1) + "\n", ":2: want"},
		{"a third field", strings.TrimSuffix(key(1), "\n") + " 3\n", ":1: want"},
		{"comments only", "# test keys\n\n", "holds no key"},
	} {
		path := filepath.Join(t.TempDir(), "keys")
		if err := os.WriteFile(path, []byte(tc.body), 0o600); err != nil {
			t.Fatal(err)
		}
		keys, _, err := testFormat.Load(path)
		if tc.want == "" {
			if err != nil || len(keys) != testFormat.MaxKeys {
				t.Errorf("%s: %d keys, %v", tc.name, len(keys), err)
			}
		} else if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %d keys, %v; want an error saying %q", tc.name, len(keys), err, tc.want)
		}
	}
}

// TestLoadOrCreateFreshFails: when no secret can be made, LoadOrCreate
// returns that error and writes no file, so the next start makes one.
func TestLoadOrCreateFreshFails(t *testing.T) {
	dir := t.TempDir()
	failing := func() ([]byte, error) { return nil, errors.New("no entropy") }
	if _, _, err := testFormat.LoadOrCreate(filepath.Join(dir, "keys"), failing); err == nil || !strings.Contains(err.Error(), "no entropy") {
		t.Fatalf("LoadOrCreate = %v, want the secret's error", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("folder holds %d entries, want none", len(entries))
	}
}

// TestCreateFolderSyncFails: a failed sync of the folder, after the file is
// linked in, is an error too: the key is not handed out as durable.
func TestCreateFolderSyncFails(t *testing.T) {
	orig := syncFile
	syncFile = func(f *os.File) error {
		if st, err := f.Stat(); err == nil && st.IsDir() {
			return errors.New("folder not synced")
		}
		return orig(f)
	}
	t.Cleanup(func() { syncFile = orig })
	if err := testFormat.Create(filepath.Join(t.TempDir(), "keys"), make([]byte, 32)); err == nil || !strings.Contains(err.Error(), "folder not synced") {
		t.Fatalf("Create = %v, want the folder sync's error", err)
	}
}
