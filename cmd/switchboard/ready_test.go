package main

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"switchboard/delivery"
	"switchboard/storage"
)

// TestReadyz: /readyz answers 200 while the router's workers run.
func TestReadyz(t *testing.T) {
	store, err := storage.NewMemory(storage.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	r, err := delivery.New(delivery.Config{Shards: 1, Logger: slog.New(slog.DiscardHandler)}, store)
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	defer r.Stop()
	rec := httptest.NewRecorder()
	readyHandler(r, store).ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/readyz %d %q, want 200", rec.Code, rec.Body)
	}
}
