package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"switchboard/bench"
	"switchboard/client"
	"switchboard/noise"
	"switchboard/protocol"
	"switchboard/token"
)

// sentWatch is the bench's progress output, watched for how many messages
// were sent: it closes reached once that passes at.
type sentWatch struct {
	at      uint64
	once    sync.Once
	reached chan struct{}
}

var sentRE = regexp.MustCompile(`sent (\d+)`)

func (w *sentWatch) Write(p []byte) (int, error) {
	for _, m := range sentRE.FindAllSubmatch(p, -1) {
		if n, _ := strconv.ParseUint(string(m[1]), 10, 64); n >= w.at {
			w.once.Do(func() { close(w.reached) })
		}
	}
	return len(p), nil
}

// TestTakeoverUnderLoad: a phone-regime run (2,000 connections, 1,000 in
// the Noise IK run; one message in flight per sender) against one `serve`;
// part way through, a second process takes over with --takeover. The old
// one exits 0, and the bench sees what a client must: no connection
// closed, nothing accepted lost, duplicated or reordered, every delivered
// message's receipt delivered. The same when the successor is killed
// (SIGKILL) half way: the old process takes its connections back and
// serves on.
func TestTakeoverUnderLoad(t *testing.T) {
	for _, tc := range []struct {
		name, noise string
		pairs       int  // half the connections for Noise: under -race its logins' Diffie-Hellman, both sides on two cores, is most of the test's time
		kill        bool // the successor is killed half way: the old process takes back
	}{{"plain", "", 1000, false}, {"noise", bench.NoiseIK, 500, false}, {"successor killed", "", 1000, true}} {
		t.Run(tc.name, func(t *testing.T) {
			data := t.TempDir()
			old := startChild(t, data, 0)
			watch := &sentWatch{at: 600, reached: make(chan struct{})}
			cfg := bench.Config{
				Scenario: "phone", Addr: old.addr, Keys: filepath.Join(data, token.FileName), Noise: tc.noise,
				Pairs: tc.pairs, Rate: 300, Duration: 6 * time.Second, ConnectRate: 2000, Drain: 30 * time.Second,
				Out: watch,
			}
			ctx := ctxTimeout(t, 2*time.Minute)
			done := runBench(ctx, cfg)
			select {
			case <-watch.reached:
			case o := <-done:
				t.Fatalf("the run ended before the takeover: %v", o.err)
			}
			serving := old
			if tc.kill {
				next := spawnChild(t, data, 0, "--takeover")
				// Killed once the old process paused: it takes back.
				waitLog(t, old, "handover: 1/5 pausing")
				next.kill()
				waitLog(t, old, "handover: serving again")
			} else {
				next := startChild(t, data, 0, "--takeover")
				if next.addr != old.addr {
					t.Errorf("the successor serves %s, the old process %s", next.addr, old.addr)
				}
				handedOver(t, old)
				serving = next
			}
			res := (<-done).ok(t)
			t.Logf("sent %d accepted %d delivered %d receipts %d; closes %v; send→deliver max %v",
				res.Sent, res.Accepted, res.Delivered, res.Receipts, res.Closes, time.Duration(res.SendToDeliver.Max())*time.Microsecond)
			checkUnnoticed(t, res, 1500)
			if !serving.alive() {
				t.Fatalf("the serving process exited\n%s", serving.log())
			}
			serving.terminate(t)
		})
	}
}

// TestUpgradeSignal: SIGUSR2 makes a serving process start its successor
// from the same binary, which takes the connections over: the old process
// exits 0, and a client connected before exchanges messages through the
// same socket after. The successor reads the token keys file afresh, so a
// key added before the signal, whose tokens the old process refused, logs
// users in after it: a key rotation needs no reconnect (OPERATIONS.md).
func TestUpgradeSignal(t *testing.T) {
	data := t.TempDir()
	old := startChild(t, data, 0)
	a, err := old.dial(1, protocol.ClientOptions{AutoAck: true})
	if err != nil {
		t.Fatal(err)
	}
	b, err := old.dial(2, protocol.ClientOptions{AutoAck: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxTimeout(t, 30*time.Second)
	exchange := func(body string) {
		t.Helper()
		id, err := a.Send(2, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.WaitAccept(ctx, id); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if d, err := b.RecvDeliver(ctx); err != nil || string(d.Body) != body {
			t.Fatalf("%s: got %v, %v", body, d, err)
		}
	}
	exchange("before")
	// Key 2 added as OPERATIONS.md's rotation does; child.token now mints
	// with it, and the old process, which read the file at its start,
	// refuses that token.
	keysPath := filepath.Join(data, "keys")
	keys, err := os.ReadFile(keysPath)
	if err != nil {
		t.Fatal(err)
	}
	keys = fmt.Appendf(keys, "2 %x\n", bytes.Repeat([]byte{0x5a}, 32))
	if err := os.WriteFile(keysPath, keys, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := old.dial(3, protocol.ClientOptions{}); !badToken(err) {
		t.Fatalf("a key-2 token before the upgrade: %v, want BAD_TOKEN", err)
	}
	upgrade(t, old)
	exchange("after")
	if _, err := old.dial(3, protocol.ClientOptions{}); err != nil {
		t.Fatalf("a key-2 token after the upgrade: %v", err)
	}
}

// upgrade sends old SIGUSR2 and waits until it has handed over to the
// successor it started from its own binary and exited; the successor is
// stopped when the test ends.
func upgrade(t *testing.T, old *child) {
	t.Helper()
	if err := old.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	handedOver(t, old)
	// The old process's last lines may still be in the pipe.
	log := old.log()
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(log, "handed over; exiting") && time.Now().Before(deadline); log = old.log() {
		time.Sleep(10 * time.Millisecond)
	}
	m := regexp.MustCompile(`upgrade: successor started.* pid=(\d+)`).FindStringSubmatch(log)
	if m == nil || !strings.Contains(log, "handed over; exiting") {
		t.Fatalf("no successor in the log:\n%s", log)
	}
	pid, _ := strconv.Atoi(m[1])
	t.Cleanup(func() {
		if p, err := os.FindProcess(pid); err == nil {
			p.Signal(syscall.SIGTERM)
			for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline) && syscall.Kill(pid, 0) == nil; {
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
}

// TestNoiseKeyRotationByReload: a Noise key added with noise-key --rotate
// (noise.RotateKeys) becomes the key XX proves after SIGUSR2, as
// OPERATIONS.md's rotation says a reload does: before it, the running
// process proves the old key; after it, the successor proves the new one.
func TestNoiseKeyRotationByReload(t *testing.T) {
	data := t.TempDir()
	old := startChild(t, data, 0)
	path := filepath.Join(data, "noise-keys")
	keys, err := noise.LoadKeys(path, false)
	if err != nil {
		t.Fatal(err)
	}
	first := keys[0].Public
	next, err := noise.RotateKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	device, err := noise.NewKeypair(nil)
	if err != nil {
		t.Fatal(err)
	}
	secrets, id, err := loadKeys(data, false)
	if err != nil {
		t.Fatal(err)
	}
	// proved logs user 7 in over Noise XX (no key pinned) and returns the
	// server key the handshake proved.
	proved := func() []byte {
		t.Helper()
		ctx := ctxTimeout(t, 10*time.Second)
		conn, err := client.Dial(ctx, old.addr, client.Options{
			Token: func(context.Context) ([]byte, error) {
				return token.MintBound(secrets[id], token.Claims{KeyID: id, User: 7, Device: 1, Expiry: time.Now().Add(time.Hour)}, device.Public[:]), nil
			},
			Noise: &client.NoiseOptions{Static: device},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ServerKey()
	}
	if got := proved(); !bytes.Equal(got, first[:]) {
		t.Fatalf("before the reload the server proved %x, want the first key %x", got, first)
	}
	upgrade(t, old)
	if got := proved(); !bytes.Equal(got, next.Public[:]) {
		t.Fatalf("after the reload the server proved %x, want the rotated key %x", got, next.Public)
	}
}

// badToken reports whether err is the server's ERROR BAD_TOKEN.
func badToken(err error) bool {
	var e *protocol.Error
	return errors.As(err, &e) && e.Code == protocol.CodeBadToken
}

// benchOutcome is what a bench run ended with.
type benchOutcome struct {
	res *bench.Result
	err error
}

// ok returns the result, failing the test if the run failed.
func (o benchOutcome) ok(t *testing.T) *bench.Result {
	t.Helper()
	if o.err != nil {
		t.Fatalf("bench: %v", o.err)
	}
	return o.res
}

// runBench runs the bench on a goroutine of its own.
func runBench(ctx context.Context, cfg bench.Config) <-chan benchOutcome {
	done := make(chan benchOutcome, 1)
	go func() {
		res, err := bench.Run(ctx, cfg)
		done <- benchOutcome{res, err}
	}()
	return done
}

// checkUnnoticed checks what a takeover must leave a bench run with: no
// connection closed; nothing lost, duplicated, reordered or sent again;
// every accepted message delivered (at least least of them) with its
// receipt.
func checkUnnoticed(t *testing.T, res *bench.Result, least uint64) {
	t.Helper()
	if len(res.Closes) != 0 {
		t.Errorf("connections closed across the takeover: %v", res.Closes)
	}
	if res.Lost != 0 || res.Duplicates != 0 || res.Reordered != 0 || res.Redelivered != 0 {
		t.Errorf("lost %d, duplicates %d, reordered %d, redelivered %d", res.Lost, res.Duplicates, res.Reordered, res.Redelivered)
	}
	if res.Accepted < least || res.Delivered != res.Accepted {
		t.Errorf("accepted %d, delivered %d", res.Accepted, res.Delivered)
	}
	if res.ReceiptsMissing != 0 || res.Receipts != res.Delivered {
		t.Errorf("receipts %d of %d, missing %d", res.Receipts, res.Delivered, res.ReceiptsMissing)
	}
}

// handedOver waits for old, which a successor took over from, to exit 0.
func handedOver(t *testing.T, old *child) {
	t.Helper()
	select {
	case <-old.done:
		if old.err != nil {
			t.Fatalf("the old process: %v\n%s", old.err, old.log())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the old process did not hand over and exit\n%s", old.log())
	}
}

// waitLog waits until c has logged a line containing want.
func waitLog(t *testing.T, c *child, want string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(c.log(), want); {
		if time.Now().After(deadline) || !c.alive() {
			t.Fatalf("no %q in the log:\n%s", want, c.log())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTakeoverAtFileLimit: under `ulimit -n 400`, a server holds as many
// connections as its cap allows, and a successor under the same limit
// takes every one of them: the sockets it receives count as connections
// from its start, and adopting them never needs more descriptors than the
// reserve (it failed with EMFILE on 28 of 246 before). They all carry on.
func TestTakeoverAtFileLimit(t *testing.T) {
	const limit = 400
	data := t.TempDir()
	maddr := freeAddr(t)
	old := startChild(t, data, limit, "--metrics", maddr, "--loops", "2")
	m := newScraper(t, maddr)
	var capNow int
	m.waitFor("a connection cap", func() bool { capNow = int(m.get("switchboard_connection_cap")); return capNow > 0 })
	var held []*protocol.Client
	for u := uint64(1); len(held) < capNow-5; u++ {
		c, err := old.dial(u, protocol.ClientOptions{AutoAck: true})
		if err != nil {
			t.Fatalf("login %d of %d: %v", len(held)+1, capNow-5, err)
		}
		held = append(held, c)
	}
	next := startChild(t, data, limit, "--takeover", "--loops", "2")
	handedOver(t, old)
	waitLog(t, next, "handover: adopted the connections")
	if log := next.log(); strings.Contains(log, "too many open files") || !strings.Contains(log, fmt.Sprintf("conns=%d adopted_in", len(held))) {
		t.Fatalf("the successor did not adopt all %d:\n%s", len(held), log)
	}
	ctx := ctxTimeout(t, 20*time.Second)
	from, to := held[0], held[len(held)-1]
	id, err := from.Send(uint64(len(held)), []byte("at the limit"))
	if err != nil {
		t.Fatal(err)
	}
	if d, err := to.RecvDeliver(ctx); err != nil || d.MsgID != id {
		t.Fatalf("got %v, %v", d, err)
	}
}

// TestTakeoverWithNoServerMakesNothing: `serve --takeover` where no server
// runs fails, saying so, and leaves the data folder as it found it: no
// folder made where there was none, and no Noise key made in a folder that
// a plain server left behind.
func TestTakeoverWithNoServerMakesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	missing := filepath.Join(t.TempDir(), "data")
	code, stderr := runServe(t, 4096, "--takeover", "--data", missing, "--listen", "127.0.0.1:0", "--metrics=")
	if code != 1 || !strings.Contains(stderr, "no server to take over from") {
		t.Errorf("takeover into a missing folder: exit %d, want 1 saying there is no server:\n%s", code, stderr)
	}
	if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the takeover made the data folder (%v)", err)
	}

	left := t.TempDir() // what a stopped server that had only token keys leaves
	if _, _, err := token.LoadOrCreate(filepath.Join(left, token.FileName)); err != nil {
		t.Fatal(err)
	}
	code, stderr = runServe(t, 4096, "--takeover", "--data", left, "--listen", "127.0.0.1:0", "--metrics=", "--transport", "noise")
	if code != 1 || !strings.Contains(stderr, "no server to take over from") {
		t.Errorf("takeover with no server running: exit %d, want 1 saying there is no server:\n%s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(left, noise.KeysFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the takeover made a Noise key (%v)", err)
	}
}
