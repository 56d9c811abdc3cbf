package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"switchboard/node"
	"switchboard/storage"
	"switchboard/token"
)

// backupCmd fetches a backup from a running server's admin listener
// (GET /backup) into a file: written under a temporary name beside it,
// checked (storage.CheckBackup), synced, then renamed into place and the
// folder synced, so the file named --out is either absent or a whole,
// durable backup.
func backupCmd(args []string) error { return backup(args, os.Stdout) }

// backup is backupCmd reporting to w.
func backup(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	admin := fs.String("admin", "127.0.0.1:9070", "the server's admin listener (serve's --metrics)")
	out := fs.String("out", "", "the file to write (required)")
	force := fs.Bool("force", false, "replace --out if it exists")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: switchboard backup --out FILE [--admin HOST:PORT] [--force]

Writes a consistent backup of a running server's mailboxes to FILE, while it
serves. The token keys file is not in it: back it up on its own, as a secret
(docs/OPERATIONS.md). Restore with 'switchboard restore'.

`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	switch {
	case fs.NArg() > 0:
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	case *out == "":
		return usageError{errors.New("--out is required")}
	}
	if _, err := os.Stat(*out); err == nil && !*force {
		return fmt.Errorf("%s exists: choose another name, or --force to replace it", *out)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	since, n, err := fetchBackup(ctx, *admin, *out)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "wrote %s: %d bytes of data, Badger version %d\n", *out, n, since)
	return nil
}

// fetchBackup does backupCmd's work.
func fetchBackup(ctx context.Context, admin, out string) (since, n uint64, err error) {
	url := admin
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	url = strings.TrimSuffix(url, "/") + "/backup"
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, usageError{fmt.Errorf("--admin %q: %w", admin, err)}
	}
	idle := time.AfterFunc(backupIdleTimeout, func() { cancel(errBackupIdle) })
	defer idle.Stop()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil {
			err = cause // cut off by the idle timer or the caller: say which
		}
		return 0, 0, fmt.Errorf("fetching the backup: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return 0, 0, fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(msg)))
	}

	dir, base := filepath.Split(out)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*") // mode 0600
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	body := readFunc(func(p []byte) (int, error) {
		n, err := resp.Body.Read(p)
		if n > 0 {
			idle.Reset(backupIdleTimeout)
		}
		return n, err
	})
	if _, err := io.Copy(tmp, body); err != nil {
		if cause := context.Cause(ctx); cause != nil {
			err = cause
		}
		return 0, 0, fmt.Errorf("fetching the backup (cut off; %s not written): %w", out, err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return 0, 0, err
	}
	if since, n, err = storage.CheckBackup(tmp); err != nil {
		return 0, 0, fmt.Errorf("the backup received is not whole (%s not written): %w", out, err)
	}
	if err := tmp.Sync(); err != nil {
		return 0, 0, err
	}
	if err := tmp.Close(); err != nil {
		return 0, 0, err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return 0, 0, err
	}
	return since, n, syncDir(dir)
}

// backupIdleTimeout is how long the backup command waits for the server's
// next byte: the server streams as it reads its snapshot and drops a
// reader that stalls for 30 s, so a minute of silence is a server that
// hangs, not a slow one.
const backupIdleTimeout = time.Minute

var errBackupIdle = fmt.Errorf("no bytes from the server for %v", backupIdleTimeout)

// readFunc is an io.Reader made of a function.
type readFunc func(p []byte) (int, error)

func (f readFunc) Read(p []byte) (int, error) { return f(p) }

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// restoreCmd loads a backup into a data folder whose mailboxes folder is
// empty or absent, with no server running on it.
func restoreCmd(args []string) error { return restore(args, os.Stdout) }

// restore is restoreCmd reporting to w.
func restore(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	data := fs.String("data", "", "the data folder to restore into (required); its mailboxes folder must be empty or absent")
	in := fs.String("in", "", "the backup file, from 'switchboard backup' (required)")
	gap := fs.Uint64("seq-gap", storage.DefaultRestoreSeqGap, "raise every mailbox's next seq this far above the backup's, so no seq a client saw after the backup is given again; 0 only for a backup taken after the server stopped taking messages")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: switchboard restore --data DIR --in FILE [--seq-gap N]

Loads a backup into DIR/mailboxes, with no server running on DIR. It refuses a
mailboxes folder that holds anything, and a backup that is cut short or
damaged (and then leaves DIR as it was). Every mailbox's next seq is raised
by --seq-gap, so that clients that saw entries stored after the backup can log
in with their resume point. The keys file is not in a backup: copy it into DIR
yourself before serving (docs/OPERATIONS.md).

`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	switch {
	case fs.NArg() > 0:
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	case *data == "":
		return usageError{errors.New("--data is required")}
	case *in == "":
		return usageError{errors.New("--in is required")}
	}
	f, err := os.Open(*in)
	if err != nil {
		return err
	}
	defer f.Close()
	cfg := node.Default()
	cfg.Data = *data
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg = cfg.WithDefaults()
	res, err := storage.Restore(cfg.Storage, f, *gap)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "restored %s into %s (Badger version %d); %d mailboxes' next seq raised by %d\n", *in, cfg.Storage.Dir, res.Since, res.Mailboxes, *gap)
	keys := filepath.Join(*data, token.FileName)
	if _, err := os.Stat(keys); errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(w, "no keys file at %s: copy the server's keys file there before 'switchboard serve', or serve makes a new key and every token in use stops working\n", keys)
	}
	return nil
}
