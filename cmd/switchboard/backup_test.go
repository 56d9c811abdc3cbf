package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"switchboard/internal/testutil"
	"switchboard/node"
	"switchboard/protocol"
	"switchboard/storage"
	"switchboard/token"
)

// startNode runs a node on data, as serve does (keys from the data
// folder, /metrics on the admin listener), on 127.0.0.1:0.
func startNode(t *testing.T, data string) *node.Node {
	t.Helper()
	keys, _, err := loadKeys(data, true)
	if err != nil {
		t.Fatal(err)
	}
	return startConfig(t, nodeConfig(data, keys))
}

// nodeConfig is a node on data verifying tokens with keys, as serve builds
// it (/metrics on the admin listener), on 127.0.0.1:0, small: one loop, two
// shards.
func nodeConfig(data string, keys token.Keys) node.Config {
	cfg := node.Default()
	cfg.Data = data
	cfg.Metrics = "127.0.0.1:0"
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Gateway.Addr = "127.0.0.1:0"
	cfg.Gateway.Loops = 1
	cfg.Gateway.Keys = keys
	cfg.Delivery.Shards = 2
	cfg.AdminRoutes = func(n *node.Node, mux *http.ServeMux) { mux.Handle("/metrics", metricsHandler(n)) }
	return cfg
}

// startConfig starts a node with cfg and stops it when the test ends.
func startConfig(t *testing.T, cfg node.Config) *node.Node {
	t.Helper()
	n, err := node.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop(context.Background()) })
	return n
}

// dialNode logs user in to n with a token from the keys file in data.
func dialNode(t *testing.T, n *node.Node, data string, user uint64) *protocol.Client {
	t.Helper()
	return dialNodeAck(t, n, data, user, 0)
}

// dialNodeAck is dialNode resuming after seq ack (LOGIN.ack).
func dialNodeAck(t *testing.T, n *node.Node, data string, user, ack uint64) *protocol.Client {
	t.Helper()
	keys, id, err := loadKeys(data, false)
	if err != nil {
		t.Fatal(err)
	}
	tok := token.Mint(keys[id], token.Claims{KeyID: id, User: user, Device: 1, Expiry: time.Now().Add(time.Hour)})
	cl, err := protocol.Dial(ctxTimeout(t, 10*time.Second), n.Addr().String(), protocol.ClientOptions{Token: tok, Ack: ack})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// TestBackupRestoreServer: messages wait for an offline user; `switchboard
// backup` fetches a backup from the running server; a message sent after
// it is not in it. The server stops, `switchboard restore` loads the
// backup into a new data folder (the keys file copied beside it, as the
// procedure says), a server starts there, and the user logs in with a
// token of the same key and receives exactly the messages of the backup,
// bytes and order. Another user, who received an entry stored after the
// backup, logs in with that resume point (it falls in the restore's seq
// gap), is not sent what he had, and receives a new message after it.
func TestBackupRestoreServer(t *testing.T) {
	const alice, bob, carol = 11, 22, 33
	dataA := filepath.Join(t.TempDir(), "a")
	a := startNode(t, dataA)
	al := dialNode(t, a, dataA, alice)
	bodies := []string{"first, before the backup", "second \x00\xff binary", "third"}
	for _, b := range bodies {
		id, err := al.Send(bob, []byte(b))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := al.WaitAccept(ctxTimeout(t, 10*time.Second), id); err != nil {
			t.Fatal(err)
		}
	}

	send := func(cl *protocol.Client, to uint64, body string) {
		t.Helper()
		id, err := cl.Send(to, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.WaitAccept(ctxTimeout(t, 10*time.Second), id); err != nil {
			t.Fatal(err)
		}
	}
	send(al, carol, "carol's first, in the backup")

	out := filepath.Join(t.TempDir(), "switchboard.backup")
	if err := backup([]string{"--admin", a.AdminAddr().String(), "--out", out}, io.Discard); err != nil {
		t.Fatalf("backup: %v", err)
	}
	send(al, bob, "after the backup")
	send(al, carol, "carol's second, after the backup")
	// Carol reads both and acknowledges: her resume point is 2, a seq the
	// backup never saw.
	ca := dialNode(t, a, dataA, carol)
	for seq := uint64(1); seq <= 2; seq++ {
		d, err := ca.RecvDeliver(ctxTimeout(t, 10*time.Second))
		if err != nil || d.Seq != seq {
			t.Fatalf("carol on the first server: %v, %v; want seq %d", d, err, seq)
		}
	}
	if err := ca.AckAll(); err != nil {
		t.Fatal(err)
	}
	carolResume := ca.Seq()
	// Refuses to replace a file, unless told to.
	before, _ := os.ReadFile(out)
	err := backup([]string{"--admin", a.AdminAddr().String(), "--out", out}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("backup over an existing file: %v, want a refusal naming --force", err)
	}
	if after, _ := os.ReadFile(out); string(after) != string(before) {
		t.Error("a refused backup changed the existing file")
	}
	forced := filepath.Join(t.TempDir(), "forced.backup")
	os.WriteFile(forced, []byte("an old file"), 0o600)
	if err := backup([]string{"--admin", a.AdminAddr().String(), "--out", forced, "--force"}, io.Discard); err != nil {
		t.Fatalf("backup --force over an existing file: %v", err)
	}
	got, err := os.ReadFile(forced)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := storage.CheckBackup(bytes.NewReader(got)); err != nil {
		t.Errorf("backup --force left %v", err)
	}
	if err := a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}

	dataB := filepath.Join(t.TempDir(), "b")
	var said strings.Builder
	if err := restore([]string{"--data", dataB, "--in", out}, &said); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if !strings.Contains(said.String(), "no keys file at "+filepath.Join(dataB, token.FileName)) {
		t.Errorf("restore into a folder without a keys file did not say so:\n%s", said.String())
	}
	keys, err := os.ReadFile(filepath.Join(dataA, token.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataB, token.FileName), keys, 0o600); err != nil {
		t.Fatal(err)
	}
	b := startNode(t, dataB)
	if got := b.Store().Stats().StoredMessages; got != uint64(len(bodies))+1 {
		t.Errorf("restored store holds %d messages, want %d (bob's and carol's first)", got, len(bodies)+1)
	}
	bo := dialNode(t, b, dataB, bob)
	// The restore raised bob's seq counter past his entries; WELCOME.last
	// names his newest entry, which he can reach.
	if w := bo.Welcome(); w.Last != uint64(len(bodies)) {
		t.Errorf("bob's WELCOME.last after the restore = %d, want %d, his newest entry", w.Last, len(bodies))
	}
	for i, want := range bodies {
		d, err := bo.RecvDeliver(ctxTimeout(t, 10*time.Second))
		if err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
		if d.Seq != uint64(i+1) || d.From != alice || string(d.Body) != want {
			t.Errorf("message %d: seq %d from %d %q, want seq %d from %d %q", i+1, d.Seq, d.From, d.Body, i+1, alice, want)
		}
	}
	if err := bo.AckAll(); err != nil {
		t.Fatal(err)
	}

	// Carol resumes after seq 2. Without the restore's seq gap her
	// mailbox's mark would be 1 and the login an ERROR BAD_ACK; with it,
	// her ack deletes the entry she had, and a new message comes after 2.
	cb := dialNodeAck(t, b, dataB, carol, carolResume)
	if w := cb.Welcome(); w.Last != carolResume {
		t.Errorf("carol's WELCOME.last after the restore = %d, want %d: nothing waits past her resume", w.Last, carolResume)
	}
	alB := dialNode(t, b, dataB, alice)
	send(alB, carol, "carol's third, after the restore")
	d, err := cb.RecvDeliver(ctxTimeout(t, 10*time.Second))
	if err != nil {
		t.Fatalf("carol after the restore: %v", err)
	}
	if want := uint64(1 + storage.DefaultRestoreSeqGap + 1); d.Seq != want || string(d.Body) != "carol's third, after the restore" {
		t.Errorf("carol after the restore got seq %d %q, want seq %d \"carol's third, after the restore\"", d.Seq, d.Body, want)
	}
	if err := cb.AckAll(); err != nil {
		t.Fatal(err)
	}
	// Bob's three and Carol's entries were all their mailboxes held:
	// acking what they received empties them.
	waiting := func(user uint64) int {
		es, _, err := b.Store().Read(user, 0, 100, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		return len(es)
	}
	testutil.Eventually(t, 10*time.Second, "bob's and carol's acked mailboxes to empty", func() bool { return waiting(bob) == 0 && waiting(carol) == 0 })

	// A second restore into the same folder is refused.
	err = restore([]string{"--data", dataB, "--in", out}, io.Discard)
	if !errors.Is(err, storage.ErrRestoreNotEmpty) {
		t.Errorf("restore into a used data folder: %v, want ErrRestoreNotEmpty", err)
	}
}

// TestRestoreTruncatedFile: a backup file cut short is refused with an
// error that says so, and leaves no data folder where there was none.
func TestRestoreTruncatedFile(t *testing.T) {
	data := filepath.Join(t.TempDir(), "a")
	n := startNode(t, data)
	e := storage.Entry{Recipient: 5, Seq: 1, Kind: storage.KindMessage, Sender: 6, MsgID: 1, Value: []byte("waiting")}
	if err := storage.AppendWait(n.Store(), e); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "whole.backup")
	if err := backup([]string{"--admin", n.AdminAddr().String(), "--out", out}, io.Discard); err != nil {
		t.Fatal(err)
	}
	whole, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(t.TempDir(), "cut.backup")
	if err := os.WriteFile(cut, whole[:len(whole)-10], 0o600); err != nil {
		t.Fatal(err)
	}
	dataB := filepath.Join(t.TempDir(), "b")
	err = restore([]string{"--data", dataB, "--in", cut}, io.Discard)
	if !errors.Is(err, storage.ErrBackupTruncated) || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("restore of a cut file: %v, want ErrBackupTruncated", err)
	}
	if _, err := os.Stat(dataB); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused restore left the data folder it made (%v)", err)
	}
}

// TestBackupNoServerSaysWhy: a backup with no server at --admin fails with
// the network's reason, for the log of the job that ran it.
func TestBackupNoServerSaysWhy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	err = backup([]string{"--admin", addr, "--out", filepath.Join(t.TempDir(), "x.backup")}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "%!") {
		t.Fatalf("backup with no server: %v, want the refused connection named", err)
	}
}

// backupOf returns a whole backup of a store holding one message.
func backupOf(t *testing.T) []byte {
	t.Helper()
	s := openStoreOf(t, t.TempDir())
	defer s.Close()
	if err := storage.AppendWait(s, storage.Entry{Recipient: 5, Seq: 1, Kind: storage.KindMessage, Sender: 6, MsgID: 1, Value: []byte("waiting")}); err != nil {
		t.Fatal(err)
	}
	b, ok := s.(interface {
		Backup(context.Context, io.Writer) (uint64, error)
	})
	if !ok {
		t.Fatal("the store has no Backup")
	}
	var buf bytes.Buffer
	if _, err := b.Backup(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestBackupRefusesBadResponses: `switchboard backup` writes nothing, and
// leaves no temporary file, when the server answers with an error status
// (named in the error), sends a backup that is not whole with a 200, or
// cuts the response off (said so).
func TestBackupRefusesBadResponses(t *testing.T) {
	whole := backupOf(t)
	half := whole[:len(whole)/2]
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		want    string
	}{
		{"409", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, storage.ErrBackupBusy.Error(), http.StatusConflict)
		}, "409 Conflict: " + storage.ErrBackupBusy.Error()},
		{"200, half a backup", func(w http.ResponseWriter, _ *http.Request) { w.Write(half) }, "not whole"},
		{"cut off", func(w http.ResponseWriter, _ *http.Request) {
			w.Write(half)
			http.NewResponseController(w).Flush()
			panic(http.ErrAbortHandler)
		}, "cut off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			dir := t.TempDir()
			out := filepath.Join(dir, "switchboard.backup")
			err := backup([]string{"--admin", srv.URL, "--out", out}, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("backup: %v, want an error saying %q", err, tc.want)
			}
			if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
				t.Errorf("the folder of --out after a failed backup holds %d entries (%v), want none", len(ents), err)
			}
		})
	}
}

// TestBackupRestoreUsage: a stray argument or a missing required flag is a
// usage error that names it, before anything is fetched or opened.
func TestBackupRestoreUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func([]string, io.Writer) error
		args []string
		want string
	}{
		{"backup with an argument", backup, []string{"--out", "x", "more"}, `unexpected argument "more"`},
		{"backup without --out", backup, nil, "--out is required"},
		{"restore with an argument", restore, []string{"--data", "d", "--in", "x", "more"}, `unexpected argument "more"`},
		{"restore without --data", restore, []string{"--in", "x"}, "--data is required"},
		{"restore without --in", restore, []string{"--data", "d"}, "--in is required"},
	} {
		err := tc.run(tc.args, io.Discard)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a usage error saying %q", tc.name, err, tc.want)
		}
	}
}

// TestBackupOutInWorkingDir: --out given as a bare file name writes it in
// the working directory, through a temporary file beside it.
func TestBackupOutInWorkingDir(t *testing.T) {
	whole := backupOf(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(whole) }))
	defer srv.Close()
	dir := t.TempDir()
	t.Chdir(dir)
	if err := backup([]string{"--admin", srv.URL, "--out", "switchboard.backup"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "switchboard.backup"))
	if err != nil || !bytes.Equal(got, whole) {
		t.Fatalf("the backup file: %d bytes (%v), want the %d the server sent", len(got), err, len(whole))
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("the working directory holds %d entries, want the backup only", len(ents))
	}
}
