package storage_test

import (
	"testing"

	"switchboard/storage"
	"switchboard/storage/storagetest"
)

func TestMemoryConformance(t *testing.T) {
	storagetest.Run(t, storagetest.Harness{
		Open: func(t *testing.T, cfg storage.Config) storage.Store {
			s, err := storage.NewMemory(cfg)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Reopen: func(t *testing.T, s storage.Store, cfg storage.Config) storage.Store {
			s, err := storage.ReopenMemory(s, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		},
	})
}
