package storage_test

import (
	"slices"
	"testing"

	"switchboard/storage"
	"switchboard/storage/storagetest"
)

// TestLeaveUnfinishedMove: the marker storagetest.LeaveUnfinishedMove
// writes is the one Move leaves: Holdings reads it as an unfinished move of
// that id from that source, its copy whole.
func TestLeaveUnfinishedMove(t *testing.T) {
	dir := t.TempDir()
	cfg := storage.Config{Dir: dir, HousekeepingInterval: -1, RelaxedDelay: -1, MinFreeBytes: -1}
	f, err := storage.OpenFolder(cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	storagetest.LeaveUnfinishedMove(t, dir, 42, "node 1")
	f, err = storage.OpenFolder(cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := f.Holdings()
	if err != nil {
		t.Fatal(err)
	}
	if want := []storage.Unfinished{{ID: 42, From: "node 1", Copied: true}}; !slices.Equal(h.Unfinished, want) {
		t.Fatalf("Holdings' unfinished moves %+v, want %+v", h.Unfinished, want)
	}
}
