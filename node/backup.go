package node

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"switchboard/storage"
)

// backupWriteTimeout is how long one write of a backup to its HTTP client
// may take: a reader that takes nothing for this long is dropped, so that
// a stalled client cannot hold the one backup slot (and, after a failed
// commit, the store's reopen) for longer. A backup is a few hundred KiB a
// write; a client that reads at all reads that in well under a second.
const backupWriteTimeout = 30 * time.Second

// backuper is what /backup needs of the store: the Badger store has it,
// the in-memory one answers that it keeps nothing to back up.
type backuper interface {
	Backup(ctx context.Context, w io.Writer) (since uint64, err error)
}

// serveBackup streams a backup of the store (storage's Backup: one
// consistent snapshot, read while the server goes on serving) as
// application/octet-stream. A backup already running answers 409 (one
// whose client has gone is waited for first; storage's Backup); a store
// without backups 501. An error after the first byte cannot change the
// status: the response is cut off, and the file lacks the end record that
// storage.Restore requires, so it is never taken for a whole backup.
func (n *Node) serveBackup(w http.ResponseWriter, r *http.Request) {
	b, ok := n.Store().(backuper)
	if !ok {
		http.Error(w, storage.ErrBackupUnsupported.Error(), http.StatusNotImplemented)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="switchboard.backup"`)
	bw := &backupWriter{w: w, rc: http.NewResponseController(w)}
	start := time.Now()
	since, err := b.Backup(r.Context(), bw)
	switch {
	case err == nil:
		n.log.Info("node: backup served", "bytes", bw.n, "since", strconv.FormatUint(since, 10), "took", time.Since(start).Round(time.Millisecond), "client", r.RemoteAddr)
	case bw.n == 0 && errors.Is(err, storage.ErrBackupBusy):
		w.Header().Del("Content-Disposition")
		http.Error(w, err.Error(), http.StatusConflict)
	case bw.n == 0:
		w.Header().Del("Content-Disposition")
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	default:
		n.log.Warn("node: backup cut off", "bytes", bw.n, "err", err, "client", r.RemoteAddr)
		panic(http.ErrAbortHandler) // the client sees a broken response, not an end
	}
}

// backupWriter writes a backup to its client under a deadline per write
// and counts the bytes.
type backupWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
	n  int64
}

func (b *backupWriter) Write(p []byte) (int, error) {
	// An error here means the server does not support deadlines; the
	// write goes on without one.
	_ = b.rc.SetWriteDeadline(time.Now().Add(backupWriteTimeout))
	n, err := b.w.Write(p)
	b.n += int64(n)
	return n, err
}
