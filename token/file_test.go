package token

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCreateDurably: the keys file Create makes holds one whole key, is
// readable by its owner only, and was synced with all its bytes before its
// folder entry was; nothing else is left in the folder.
func TestCreateDurably(t *testing.T) {
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
	path := filepath.Join(dir, FileName)
	keys, newest, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || newest != 1 || len(keys[1]) != SecretLen {
		t.Fatalf("keys %v, newest %d: want one %d-byte key with id 1", keys, newest, SecretLen)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	if len(syncs) != 2 || syncs[0].dir || syncs[0].size != st.Size() || !syncs[1].dir {
		t.Fatalf("syncs %+v, want the file with all its %d bytes, then the folder", syncs, st.Size())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("folder holds %d entries, want the keys file only", len(entries))
	}

	// A second start reads the same key and creates nothing.
	again, _, err := LoadOrCreate(path)
	if err != nil || string(again[1]) != string(keys[1]) || len(syncs) != 2 {
		t.Fatalf("second load: %v, same key %v, syncs %d", err, string(again[1]) == string(keys[1]), len(syncs))
	}
	// Create refuses to replace it.
	if err := Create(path); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Create over an existing file = %v, want ErrExist", err)
	}
}

// TestCreateSyncFails: a failed sync is an error and leaves no keys file,
// so no token is minted with a key a power loss could take back.
func TestCreateSyncFails(t *testing.T) {
	orig := syncFile
	syncFile = func(*os.File) error { return errors.New("disk gone") }
	t.Cleanup(func() { syncFile = orig })
	dir := t.TempDir()
	if err := Create(filepath.Join(dir, FileName)); err == nil || !strings.Contains(err.Error(), "disk gone") {
		t.Fatalf("Create = %v, want the sync's error", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("folder holds %d entries after a failed create, want none", len(entries))
	}
}

// TestLoad: the keys file's lines, and each way a file is refused.
func TestLoad(t *testing.T) {
	k1, k2 := strings.Repeat("ab", 16), strings.Repeat("cd", 32)
	tests := []struct {
		name    string
		body    string
		mode    os.FileMode
		want    error  // errors.Is
		errHas  string // the error must contain this
		newest  uint32
		numKeys int
	}{
		{name: "rotation: newest is the highest id", body: "# comment\n\n7 " + k2 + "\n  3\t" + k1 + "  \n", mode: 0o600, newest: 7, numKeys: 2},
		{name: "owner read-only", body: "1 " + k1 + "\n", mode: 0o400, newest: 1, numKeys: 1},
		{name: "group may read", body: "1 " + k1 + "\n", mode: 0o640, want: ErrKeysExposed, errHas: "chmod 600"},
		{name: "others may read", body: "1 " + k1 + "\n", mode: 0o604, want: ErrKeysExposed, errHas: "-rw----r--"},
		{name: "secret too short", body: "1 " + strings.Repeat("ab", 15) + "\n", mode: 0o600, errHas: ":1: want"},
		{name: "secret not hex", body: "# c\n1 " + strings.Repeat("zz", 16) + "\n", mode: 0o600, errHas: ":2: want"},
		{name: "id over 32 bits", body: "4294967296 " + k1 + "\n", mode: 0o600, errHas: ":1: want"},
		{name: "no secret", body: "1\n", mode: 0o600, errHas: ":1: want"},
		{name: "three fields", body: "1 " + k1 + " x\n", mode: 0o600, errHas: ":1: want"},
		{name: "id twice", body: "2 " + k1 + "\n2 " + k2 + "\n", mode: 0o600, errHas: ":2: key id 2 appears twice"},
		{name: "at most MaxKeys", body: manyKeys(MaxKeys), mode: 0o600, newest: MaxKeys, numKeys: MaxKeys},
		{name: "over MaxKeys", body: manyKeys(MaxKeys + 1), mode: 0o600, errHas: fmt.Sprintf(":%d: more than %d keys", MaxKeys+1, MaxKeys)},
		{name: "no key", body: "# only a comment\n", mode: 0o600, errHas: "holds no key"},
		{name: "missing", want: fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FileName)
			if tt.body != "" {
				if err := os.WriteFile(path, []byte(tt.body), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tt.mode); err != nil { // not filtered by the umask
					t.Fatal(err)
				}
			}
			keys, newest, err := Load(path)
			if tt.want == nil && tt.errHas == "" {
				if err != nil || newest != tt.newest || len(keys) != tt.numKeys {
					t.Fatalf("Load = %d keys, newest %d, %v; want %d keys, newest %d", len(keys), newest, err, tt.numKeys, tt.newest)
				}
				return
			}
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("Load = %v, want %v containing %q", err, tt.want, tt.errHas)
			}
			if keys != nil {
				t.Fatalf("Load refused the file but returned keys %v", keys)
			}
		})
	}
}

// TestLoadOrCreateRefusesExposed: an existing file others may read is
// refused, not replaced.
func TestLoadOrCreateRefusesExposed(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	body := []byte("1 " + strings.Repeat("ab", 32) + "\n")
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreate(path); !errors.Is(err, ErrKeysExposed) {
		t.Fatalf("LoadOrCreate = %v, want ErrKeysExposed", err)
	}
	if got, _ := os.ReadFile(path); string(got) != string(body) {
		t.Fatalf("file changed to %q", got)
	}
}

// manyKeys returns a keys file's body with keys 1 to n.
func manyKeys(n int) string {
	var b strings.Builder
	for id := 1; id <= n; id++ {
		fmt.Fprintf(&b, "%d %s\n", id, strings.Repeat("ab", 16))
	}
	return b.String()
}
