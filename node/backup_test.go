package node

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
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

// backupStore is a store whose Backup is backup.
type backupStore struct {
	storage.Store
	backup func(ctx context.Context, w io.Writer) (uint64, error)
}

func (s backupStore) Backup(ctx context.Context, w io.Writer) (uint64, error) {
	return s.backup(ctx, w)
}

// TestBackupEndpointStatuses: /backup answers 409 while another backup
// runs, 503 when the backup fails before its first byte, 501 for a store
// without backups; a backup that fails after its first byte is cut off, so
// the client never reads a response that ends as a whole one does.
func TestBackupEndpointStatuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store storage.Store
		code  int // 0: the response must not end cleanly
	}{
		{"busy", backupStore{backup: func(context.Context, io.Writer) (uint64, error) { return 0, storage.ErrBackupBusy }}, http.StatusConflict},
		{"recovering", backupStore{backup: func(context.Context, io.Writer) (uint64, error) { return 0, storage.ErrRecovering }}, http.StatusServiceUnavailable},
		{"memory", struct{ storage.Store }{}, http.StatusNotImplemented},
		{"aborted after bytes", backupStore{backup: func(_ context.Context, w io.Writer) (uint64, error) {
			if _, err := w.Write([]byte("SWBACKUP\x00\x00\x00\x01 the start of a stream")); err != nil {
				return 0, err
			}
			return 0, storage.ErrBackupAborted
		}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &Node{log: slog.New(slog.DiscardHandler)}
			n.parts.Store(&parts{store: tc.store})
			srv := httptest.NewServer(http.HandlerFunc(n.serveBackup))
			defer srv.Close()
			resp, err := http.Get(srv.URL)
			if err != nil {
				if tc.code == 0 {
					return // cut off before the headers: as good
				}
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if tc.code == 0 {
				if err == nil {
					t.Errorf("a backup that failed after its first byte ended cleanly: %d, %q", resp.StatusCode, body)
				}
				return
			}
			if err != nil || resp.StatusCode != tc.code {
				t.Errorf("GET /backup: %d %q, %v; want %d", resp.StatusCode, body, err, tc.code)
			}
		})
	}
}
