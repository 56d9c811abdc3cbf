package node

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"testing"

	"switchboard/storage"
)

// TestBackupEndpoint: GET /backup on the admin listener streams a backup
// of the running node's store as application/octet-stream, which
// storage.Restore loads into a new folder with the mailbox as it was;
// another method is refused.
func TestBackupEndpoint(t *testing.T) {
	cfg, _ := testConfig(t)
	n, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop(context.Background()) })
	for i, body := range []string{"first", "second"} {
		e := storage.Entry{Recipient: 42, Seq: uint64(i + 1), Kind: storage.KindMessage, Sender: 5, MsgID: uint64(i + 1), Value: []byte(body)}
		if err := storage.AppendWait(n.Store(), e); err != nil {
			t.Fatal(err)
		}
	}
	admin := "http://" + n.AdminAddr().String()
	resp, err := http.Get(admin + "/backup")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("GET /backup: %d %q, want 200 application/octet-stream", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	dir := filepath.Join(t.TempDir(), "mailboxes")
	if _, err := storage.Restore(storage.Config{Dir: dir}, bytes.NewReader(b), storage.DefaultRestoreSeqGap); err != nil {
		t.Fatalf("restoring what /backup served: %v", err)
	}
	s, err := storage.Open(storage.Config{Dir: dir, HousekeepingInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	es, _, err := s.Read(42, 0, 10, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, string(e.Value))
	}
	if len(got) != 2 || got[0] != "first" || got[1] != "second" {
		t.Errorf("restored mailbox holds %q, want [first second]", got)
	}

	resp, err = http.Post(admin+"/backup", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /backup: %d, want 405", resp.StatusCode)
	}
}
