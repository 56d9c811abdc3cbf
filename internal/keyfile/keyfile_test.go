package keyfile

import (
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

var testFormat = Format{Prefix: "test", Header: "# test keys", MinLen: 32, MaxLen: 32, MaxKeys: 4}

func fresh() ([]byte, error) {
	b := make([]byte, 32)
	_, err := rand.Read(b)
	return b, err
}

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
	path := filepath.Join(dir, "keys")
	keys, newest, err := testFormat.LoadOrCreate(path, fresh)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || newest != 1 || len(keys[1]) != 32 {
		t.Fatalf("keys %v, newest %d: want one 32-byte key with id 1", keys, newest)
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
	again, _, err := testFormat.LoadOrCreate(path, fresh)
	if err != nil || string(again[1]) != string(keys[1]) || len(syncs) != 2 {
		t.Fatalf("second load: %v, same key %v, syncs %d", err, string(again[1]) == string(keys[1]), len(syncs))
	}
	// Create refuses to replace it.
	if err := testFormat.Create(path, make([]byte, 32)); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Create over an existing file = %v, want ErrExist", err)
	}
}

// TestCreateSyncFails: a failed sync is an error and leaves no keys file,
// so no key is handed out that a power loss could take back.
func TestCreateSyncFails(t *testing.T) {
	orig := syncFile
	syncFile = func(*os.File) error { return errors.New("disk gone") }
	t.Cleanup(func() { syncFile = orig })
	dir := t.TempDir()
	if err := testFormat.Create(filepath.Join(dir, "keys"), make([]byte, 32)); err == nil || !strings.Contains(err.Error(), "disk gone") {
		t.Fatalf("Create = %v, want the sync's error", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("folder holds %d entries after a failed create, want none", len(entries))
	}
}

// FuzzLoad: any file content either loads or is refused with an error,
// never a panic; what loads holds one to MaxKeys keys, each of MinLen to
// MaxLen bytes, and newest is the highest id.
func FuzzLoad(f *testing.F) {
	ff := Format{Prefix: "test", Header: "# test keys", MinLen: 16, MaxLen: 32, MaxKeys: 4}
	f.Add("# test keys\n1 000102030405060708090a0b0c0d0e0f\n")
	f.Add("1 00\n")
	f.Add("7 " + strings.Repeat("ab", 32) + "\n2 " + strings.Repeat("cd", 16) + "\n")
	f.Add("1 x\n1 y z\n")
	f.Fuzz(func(t *testing.T, content string) {
		path := filepath.Join(t.TempDir(), "keys")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		keys, newest, err := ff.Load(path)
		if err != nil {
			return
		}
		if len(keys) < 1 || len(keys) > ff.MaxKeys {
			t.Fatalf("%d keys loaded, want 1 to %d", len(keys), ff.MaxKeys)
		}
		for id, k := range keys {
			if len(k) < ff.MinLen || len(k) > ff.MaxLen || id > newest {
				t.Fatalf("key %d of %d bytes, newest %d", id, len(k), newest)
			}
		}
		if _, ok := keys[newest]; !ok {
			t.Fatalf("newest %d is not a key", newest)
		}
	})
}

// TestRootKeepsTheOwner: run as root (as `sudo switchboard noise-key
// --rotate` is), a rewritten keys file keeps its old owner, and a new one
// takes its folder's, so that the service user who owns the data folder
// can still read it; the mode stays 0600.
func TestRootKeepsTheOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: only root can give a file to another user")
	}
	const uid, gid = 65534, 65534 // nobody, nogroup
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	owner := func(path string) (int, int, fs.FileMode) {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		return int(st.Uid), int(st.Gid), fi.Mode().Perm()
	}
	path := filepath.Join(dir, "keys")
	secret := make([]byte, 32)
	rand.Read(secret)
	if err := testFormat.Create(path, secret); err != nil {
		t.Fatal(err)
	}
	if u, g, m := owner(path); u != uid || g != gid || m != 0o600 {
		t.Fatalf("created by root in a folder of %d:%d: owner %d:%d, mode %v", uid, gid, u, g, m)
	}
	if err := testFormat.Rewrite(path, map[uint32][]byte{1: secret, 2: secret}); err != nil {
		t.Fatal(err)
	}
	if u, g, m := owner(path); u != uid || g != gid || m != 0o600 {
		t.Fatalf("rewritten by root: owner %d:%d, mode %v; want %d:%d, 0600", u, g, m, uid, gid)
	}
	// A file root owns stays root's.
	if err := os.Chown(path, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := testFormat.Rewrite(path, map[uint32][]byte{2: secret}); err != nil {
		t.Fatal(err)
	}
	if u, g, _ := owner(path); u != 0 || g != 0 {
		t.Fatalf("root's file rewritten: owner %d:%d, want 0:0", u, g)
	}
}
