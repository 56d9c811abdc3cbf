package node

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"switchboard/cluster"
)

// homesConfig is a node of cfg's kind on data: alone when self is 0, else
// node self of the given ids.
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
	return cfg
}

// TestHomesRecorded: a data folder is recorded as the homes it is first
// served as, and is refused as any other: another node of the same ids
// (a swapped --data or --cluster-node), other ids without a move, a
// cluster's folder served alone and the other way round. Each refusal
// says what to check, and nothing is written over the record.
func TestHomesRecorded(t *testing.T) {
	data := t.TempDir()
	if err := checkHomes(homesConfig(data, 2, 3, 1, 2)); err != nil {
		t.Fatalf("a new folder: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(data, HomesFileName))
	if err != nil || recordedHomes(b) != "node 2 of 1,2,3" {
		t.Fatalf("recorded %q (%v), want node 2 of 1,2,3", b, err)
	}
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

	alone := t.TempDir()
	if err := checkHomes(homesConfig(alone, 0)); err != nil {
		t.Fatal(err)
	}
	if err := checkHomes(homesConfig(alone, 1, 1, 2)); !errors.Is(err, ErrHomes) || !strings.Contains(err.Error(), `"alone"`) {
		t.Errorf("a lone server's folder as node 1 of 1,2: %v, want ErrHomes", err)
	}
}

// TestStartRefusesOtherHomes: Start refuses a folder recorded as other
// homes before it serves anything, and leaves the store closed, so that
// the right configuration starts on it at once.
func TestStartRefusesOtherHomes(t *testing.T) {
	cfg, _ := testConfig(t)
	data := cfg.Data
	if err := WriteHomes(data, "node 2 of 1,2"); err != nil {
		t.Fatal(err)
	}
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
