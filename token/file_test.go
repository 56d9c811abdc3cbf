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
		{name: "longest secret", body: "1 " + strings.Repeat("ab", 1<<10) + "\n", mode: 0o600, newest: 1, numKeys: 1},
		{name: "secret too long", body: "1 " + strings.Repeat("ab", 1<<10+1) + "\n", mode: 0o600, errHas: ":1: want"},
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
