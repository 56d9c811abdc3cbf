package node

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"switchboard/storage"
)

// HomesFileName is the file in a data folder that records whose mailboxes
// the folder holds: "alone" for a node alone, or "node N of I,J,K" for
// node N of a cluster whose node ids are I,J,K. A mailbox's home depends
// on the node ids only (home.Of), so a folder served as another node, or
// under other ids without `switchboard move`, would serve its users empty
// mailboxes while their entries wait in some folder no node serves.
const HomesFileName = "homes"

// Homes returns what HomesFileName records for a node of cfg.
func Homes(cfg Config) string {
	if !cfg.clustered() {
		return "alone"
	}
	ids := make([]uint32, 0, len(cfg.Cluster.Nodes))
	for _, n := range cfg.Cluster.Nodes {
		ids = append(ids, n.ID)
	}
	return HomesOf(cfg.Cluster.Self, ids)
}

// HomesOf is what HomesFileName records for node self among ids.
func HomesOf(self uint32, ids []uint32) string {
	ids = slices.Sorted(slices.Values(ids))
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(uint64(id), 10)
	}
	return "node " + strconv.FormatUint(uint64(self), 10) + " of " + strings.Join(s, ",")
}

// ErrHomes means a data folder holds the mailboxes of another node, or of
// other node ids, than the configuration would serve it as.
var ErrHomes = errors.New("node: the data folder holds other homes' mailboxes")

// checkHomes compares the data folder's record with cfg, before the store
// opens: a folder without one (new, or last served by a version that kept
// none) or with cfg's passes; so does one recorded as other homes that
// holds nothing (a server started alone once, to make the keys files),
// which recordHomes then records anew. A folder recorded as other homes
// that holds anything is refused.
func checkHomes(cfg Config) error {
	if cfg.Memory || cfg.Data == "" {
		return nil
	}
	path := filepath.Join(cfg.Data, HomesFileName)
	want := Homes(cfg)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	got := recordedHomes(b)
	if got == want {
		return nil
	}
	switch holds, err := holdsAny(cfg); {
	case err != nil:
		return err
	case !holds:
		return nil
	}
	var hint string
	gotSelf, gotIDs, _ := strings.Cut(strings.TrimPrefix(got, "node "), " of ")
	wantSelf, wantIDs, _ := strings.Cut(strings.TrimPrefix(want, "node "), " of ")
	switch {
	case got != "alone" && want != "alone" && gotIDs == wantIDs && gotSelf != wantSelf:
		hint = "check --data and --cluster-node: one of them names another node"
	default:
		hint = "run `switchboard move` from the node list it was served under to this one first (docs/CLUSTER.md, \"Changing the node list\"), which records the new homes"
	}
	return fmt.Errorf("%w: %s holds the mailboxes of %q (%s), and this process would serve it as %q: %s; if its mailboxes were moved another way, remove %s",
		ErrHomes, cfg.Data, got, path, want, hint, path)
}

// holdsAny reports whether cfg's store holds anything an id owns, opening
// it offline (an absent store holds nothing).
func holdsAny(cfg Config) (bool, error) {
	f, err := storage.OpenFolder(cfg.Storage, false)
	if errors.Is(err, storage.ErrNoStore) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	return f.HoldsAny()
}

// recordHomes records cfg's homes in its data folder unless it holds that
// record already; Start calls it once the store is open, so that the
// folder is this process's.
func recordHomes(cfg Config) error {
	if cfg.Memory || cfg.Data == "" {
		return nil
	}
	want := Homes(cfg)
	if b, err := os.ReadFile(filepath.Join(cfg.Data, HomesFileName)); err == nil && recordedHomes(b) == want {
		return nil
	}
	return WriteHomes(cfg.Data, want)
}

// recordedHomes is the record in a homes file's bytes: its first line that
// is not a comment.
func recordedHomes(b []byte) string {
	for line := range strings.Lines(string(b)) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			return line
		}
	}
	return ""
}

// WriteHomes records homes in the data folder dir, durably (a temporary
// file synced, renamed over the old one, the folder synced).
func WriteHomes(dir, homes string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("node: recording homes: %w", err)
	}
	text := "# Whose mailboxes this folder holds; serve refuses to serve it as other homes.\n" +
		"# `switchboard move` rewrites it (docs/CLUSTER.md).\n" + homes + "\n"
	path := filepath.Join(dir, HomesFileName)
	tmp := path + ".tmp"
	err := writeSynced(tmp, []byte(text))
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("node: recording homes: %w", err)
	}
	return nil
}

func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
