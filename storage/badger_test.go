package storage_test

import (
	"testing"

	"switchboard/storage"
	"switchboard/storage/storagetest"
)

// badgerHarness opens each store in its own t.TempDir and reopens it there.
func badgerHarness() storagetest.Harness {
	dirs := map[storage.Store]string{} // only touched by the test goroutine
	open := func(t *testing.T, cfg storage.Config, dir string) storage.Store {
		cfg.Dir = dir
		s, err := storage.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		dirs[s] = dir
		return s
	}
	return storagetest.Harness{
		Open: func(t *testing.T, cfg storage.Config) storage.Store {
			return open(t, cfg, t.TempDir())
		},
		Reopen: func(t *testing.T, s storage.Store, cfg storage.Config) storage.Store {
			if err := s.Close(); err != nil {
				t.Fatalf("close before reopen: %v", err)
			}
			return open(t, cfg, dirs[s])
		},
	}
}

func TestBadgerConformance(t *testing.T) {
	storagetest.Run(t, badgerHarness())
}
