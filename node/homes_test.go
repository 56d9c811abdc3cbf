package node

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"switchboard/cluster"
	"switchboard/storage"
)

// homesConfig is a node of cfg's kind on data, with defaults: alone when
// self is 0, else node self of the given ids.
func homesConfig(data string, self uint32, ids ...uint32) Config {
	cfg := Default()
	cfg.Data = data
	if self != 0 {
		cfg.Cluster.Name = "c"
		cfg.Cluster.Self = self
		for _, id := range ids {
			cfg.Cluster.Nodes = append(cfg.Cluster.Nodes, cluster.NodeAddr{ID: id})
		}
	}
	return cfg.WithDefaults()
}

// storeEntry stores a message for user 7 in cfg's store, as a server
// that served the folder would have.
func storeEntry(t *testing.T, cfg Config) {
	t.Helper()
	s, err := storage.Open(cfg.Storage)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := storage.AppendWait(s, storage.Entry{Recipient: 7, Seq: 1, Kind: storage.KindMessage, Sender: 9, MsgID: 1, Value: []byte("waiting")}); err != nil {
		t.Fatal(err)
	}
}

// TestHomesRecorded: a data folder is recorded as the homes it is served
// as, and once it holds anything it is refused as any other: another node
// of the same ids (a swapped --data or --cluster-node), other ids without
// a move, a cluster's folder served alone and the other way round. Each
// refusal says what to check, and the record stays. A folder that holds
// nothing (a server started alone once, to make the keys files) may be
// served as anything.
func TestHomesRecorded(t *testing.T) {
	data := t.TempDir()
	node2 := homesConfig(data, 2, 3, 1, 2)
	if err := checkHomes(node2); err != nil {
		t.Fatalf("a new folder: %v", err)
	}
	if err := recordHomes(node2); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(data, HomesFileName))
	if err != nil || recordedHomes(b) != "node 2 of 1,2,3" {
		t.Fatalf("recorded %q (%v), want node 2 of 1,2,3", b, err)
	}
	if err := checkHomes(homesConfig(data, 1, 1, 2, 3)); err != nil {
		t.Fatalf("a folder that holds nothing, as another node: %v", err)
	}
	storeEntry(t, node2)
	if err := checkHomes(homesConfig(data, 2, 1, 2, 3)); err != nil {
		t.Fatalf("the same homes again: %v", err)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		hint string
	}{
		{"another node", homesConfig(data, 1, 1, 2, 3), "check --data and --cluster-node"},
		{"a node added without a move", homesConfig(data, 2, 1, 2, 3, 4), "run `switchboard move`"},
		{"served alone", homesConfig(data, 0), "run `switchboard move`"},
	} {
		err := checkHomes(tc.cfg)
		if !errors.Is(err, ErrHomes) || !strings.Contains(err.Error(), tc.hint) || !strings.Contains(err.Error(), `"node 2 of 1,2,3"`) {
			t.Errorf("%s: %v, want ErrHomes naming the record and saying %q", tc.name, err, tc.hint)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(data, HomesFileName)); recordedHomes(b) != "node 2 of 1,2,3" {
		t.Errorf("a refusal changed the record to %q", b)
	}

	keysOnly := t.TempDir() // served alone once, to make the keys files
	alone := homesConfig(keysOnly, 0)
	if err := recordHomes(alone); err != nil {
		t.Fatal(err)
	}
	s, err := storage.Open(alone.Storage) // the store it opened, empty
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	node1 := homesConfig(keysOnly, 1, 1, 2)
	if err := checkHomes(node1); err != nil {
		t.Fatalf("a lone server's empty folder as node 1 of 1,2: %v", err)
	}
	if err := recordHomes(node1); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(keysOnly, HomesFileName)); recordedHomes(b) != "node 1 of 1,2" {
		t.Errorf("recorded %q, want node 1 of 1,2", b)
	}

	served := t.TempDir()
	alone = homesConfig(served, 0)
	if err := recordHomes(alone); err != nil {
		t.Fatal(err)
	}
	storeEntry(t, alone)
	if err := checkHomes(homesConfig(served, 1, 1, 2)); !errors.Is(err, ErrHomes) || !strings.Contains(err.Error(), `"alone"`) {
		t.Errorf("a lone server's folder that holds a message, as node 1 of 1,2: %v, want ErrHomes", err)
	}
}

// TestStartRefusesOtherHomes: Start refuses a folder recorded as other
// homes that holds a message, before it serves anything, and leaves the
// store closed, so that the right configuration starts on it at once.
func TestStartRefusesOtherHomes(t *testing.T) {
	cfg, _ := testConfig(t)
	data := cfg.Data
	if err := WriteHomes(data, "node 2 of 1,2"); err != nil {
		t.Fatal(err)
	}
	storeEntry(t, cfg.WithDefaults())
	if n, err := Start(cfg); !errors.Is(err, ErrHomes) {
		if n != nil {
			n.Stop(t.Context())
		}
		t.Fatalf("a folder of node 2 of 1,2 started alone: %v, want ErrHomes", err)
	}
	if err := os.Remove(filepath.Join(data, HomesFileName)); err != nil {
		t.Fatal(err)
	}
	n, err := Start(cfg)
	if err != nil {
		t.Fatalf("after the record was removed: %v", err)
	}
	n.Stop(t.Context())
	if b, _ := os.ReadFile(filepath.Join(data, HomesFileName)); recordedHomes(b) != "alone" {
		t.Errorf("recorded %q after serving alone, want alone", b)
	}
}
