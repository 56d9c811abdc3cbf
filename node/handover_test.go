package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"switchboard/handover"
	"switchboard/internal/testutil"
	"switchboard/noise"
	"switchboard/protocol"
	"switchboard/storage"
	"switchboard/token"
)

// TestTakeover: a second node with Takeover takes the first one's
// connections: the clients' sockets stay open, a message accepted before
// is delivered after, in order, with its receipt, and new messages flow
// both ways through the same sockets. The old node ends on its own.
func TestTakeover(t *testing.T) {
	cfg, _ := testConfig(t)
	old, ctx, a, b := serving(t, cfg, 20*time.Second)
	// a's events, read in one place: accepts and receipts by msg id.
	accepted, receipted := map[uint64]bool{}, map[uint64]bool{}
	readA := func(until func() bool) {
		t.Helper()
		for !until() {
			ev, err := a.Recv(ctx)
			if err != nil {
				t.Fatalf("a: %v (accepted %v, receipts %v)", err, accepted, receipted)
			}
			switch ev := ev.(type) {
			case *protocol.Accept:
				for i := range ev.More + 1 {
					accepted[ev.MsgID+i] = true
				}
			case *protocol.Receipt:
				for i := range ev.More + 1 {
					receipted[ev.MsgID+i] = true
				}
			}
		}
	}
	send := func(body string) uint64 {
		t.Helper()
		id, err := a.Send(2, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		readA(func() bool { return accepted[id] })
		return id
	}
	send("before 1")
	send("before 2") // b reads neither yet

	nn := startSuccessor(t, cfg)
	select {
	case <-old.Done():
	case <-ctx.Done():
		t.Fatal("the old node did not stop after handing over")
	}
	if err := old.Err(); err != nil {
		t.Errorf("old node: %v", err)
	}
	if nn.Addr().String() != old.Addr().String() {
		t.Errorf("new node on %s, old on %s", nn.Addr(), old.Addr())
	}
	if got := nn.Gateway().Stats().Adopted.Load(); got != 2 {
		t.Errorf("adopted %d connections, want 2", got)
	}
	send("after 1")
	var got []string
	for len(got) < 3 {
		d, err := b.RecvDeliver(ctx)
		if err != nil {
			t.Fatalf("b after %q: %v", got, err)
		}
		got = append(got, string(d.Body))
	}
	if fmt.Sprint(got) != "[before 1 before 2 after 1]" {
		t.Errorf("b got %q", got)
	}
	readA(func() bool { return len(receipted) == 3 })
	for id := range receipted {
		if !accepted[id] {
			t.Errorf("a receipt for msg %d, never accepted", id)
		}
	}
	// And the other way, through the same sockets.
	id, err := b.Send(1, []byte("reply"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitAccept(ctx, id); err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := a.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := ev.(*protocol.Deliver); ok {
			if string(d.Body) != "reply" {
				t.Fatalf("a got %q", d.Body)
			}
			break
		}
	}
}

// TestTakeoverFailsBeforeCommit: a successor that takes everything and then
// goes away without READY, one that says REFUSE, and one that answers with
// anything but READY, leave the old node
// serving the same connections: it opens the store again and adopts them
// back, and messages, including one written while it was paused, carry on
// through the same sockets.
func TestTakeoverFailsBeforeCommit(t *testing.T) {
	for _, how := range []string{"dies", "refuses", "answers HELLO"} {
		t.Run(how, func(t *testing.T) {
			cfg, _ := testConfig(t)
			cfg.HandoverTimeout = 5 * time.Second
			old, ctx, a, b := serving(t, cfg, 20*time.Second)

			ch, err := handover.Dial(filepath.Join(cfg.Data, HandoverSocket))
			if err != nil {
				t.Fatal(err)
			}
			defer ch.Close()
			if err := ch.Send(&handover.Message{Kind: handover.KindHello, Version: handover.Version, PID: 1}); err != nil {
				t.Fatal(err)
			}
			conns := 0
			for {
				m, err := ch.Recv()
				if err != nil {
					t.Fatal(err)
				}
				if m.Kind == handover.KindBatch {
					if conns == 0 {
						// Paused and detached by now: this SEND waits in the
						// kernel until the old node reads again.
						if _, err := a.Send(2, []byte("while paused")); err != nil {
							t.Fatal(err)
						}
					}
					conns += len(m.FDs)
					for _, fd := range m.FDs {
						unix.Close(fd)
					}
				}
				if m.Kind == handover.KindClosed {
					break
				}
			}
			if conns != 2 {
				t.Fatalf("got %d connections, want 2", conns)
			}
			switch how {
			case "refuses":
				ch.Send(&handover.Message{Kind: handover.KindRefuse, Reason: "the test says no"})
			case "answers HELLO":
				ch.Send(&handover.Message{Kind: handover.KindHello, Version: handover.Version, PID: 1})
			}
			ch.Close()

			d, err := b.RecvDeliver(ctx)
			if err != nil || string(d.Body) != "while paused" {
				t.Fatalf("b got %v, %v", d, err)
			}
			exchange(t, ctx, b, 1, a, "after")
			if got := old.Gateway().Stats().Adopted.Load(); got != 2 {
				t.Errorf("adopted back %d, want 2", got)
			}
			select {
			case <-old.Done():
				t.Fatal("the old node stopped")
			default:
			}
			if err := old.Ready(); err != nil {
				t.Errorf("not ready after taking back: %v", err)
			}
		})
	}
}

// TestRepeatedTakeovers: five takeovers in a row, each by a new node of
// the same data folder, with two clients connected throughout. After each
// the process holds no more descriptors than before it, the store's files
// aside (the old node's sockets, pollers and channel are all closed), its
// heap has not grown past a bound, and the clients still exchange
// messages.
func TestRepeatedTakeovers(t *testing.T) {
	cfg, _ := testConfig(t)
	n, ctx, a, b := serving(t, cfg, 60*time.Second)
	round := func(i int) {
		t.Helper()
		body := fmt.Sprintf("round %d", i)
		if _, err := a.Send(2, []byte(body)); err != nil {
			t.Fatal(err)
		}
		if d, err := b.RecvDeliver(ctx); err != nil || string(d.Body) != body {
			t.Fatalf("%s: got %v, %v", body, d, err)
		}
	}
	round(0)
	base := openFiles(t, cfg.Data)
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	baseHeap := heap()
	for i := 1; i <= 5; i++ {
		next := cfg
		next.Takeover = true
		nn, err := Start(next)
		if err != nil {
			t.Fatalf("takeover %d: %v", i, err)
		}
		<-n.Done()
		n = nn
		round(i)
		// The old node's last descriptors (its channel to this one) close
		// as its handover goroutine returns: wait for that, a leak never
		// comes down.
		got := openFiles(t, cfg.Data)
		for deadline := time.Now().Add(5 * time.Second); got > base && time.Now().Before(deadline); got = openFiles(t, cfg.Data) {
			time.Sleep(10 * time.Millisecond)
		}
		if got > base {
			t.Errorf("after takeover %d: %d descriptors open besides the store's files, %d before the first", i, got, base)
		}
		// One node's worth at most: the old node's store and engine are
		// garbage.
		if h := heap(); h > baseHeap+baseHeap/2 {
			t.Errorf("after takeover %d: heap %d MiB, %d MiB before the first", i, h>>20, baseHeap>>20)
		}
		t.Logf("takeover %d: heap %d KiB (before the first: %d KiB)", i, heap()>>10, baseHeap>>10)
	}
	n.Stop(context.Background())
}

// openFiles counts this process's descriptors but the files under data
// (the store's grow with what it holds: a memtable flushed at each close
// becomes one more table).
func openFiles(t *testing.T, data string) int {
	t.Helper()
	n := 0
	for _, target := range testutil.OpenFiles(t) {
		if !strings.HasPrefix(target, data) {
			n++
		}
	}
	return n
}

// serving starts a node of cfg (stopped when the test ends) with users 1
// and 2 logged in to it, acknowledging what they read, and a context that
// ends after d.
func serving(t *testing.T, cfg Config, d time.Duration) (*Node, context.Context, *protocol.Client, *protocol.Client) {
	t.Helper()
	n, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	secret := cfg.Gateway.Keys[1]
	dial := func(user uint64) *protocol.Client {
		t.Helper()
		tok := token.Mint(secret, token.Claims{KeyID: 1, User: user, Device: 1, Expiry: time.Now().Add(time.Hour)})
		c, err := protocol.Dial(ctx, n.Addr().String(), protocol.ClientOptions{Token: tok, AutoAck: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	return n, ctx, dial(1), dial(2)
}

// TestFailedHandoverStopIsAnError: a node that stops itself because a
// handover failed past taking its connections back (stopFailed) reports
// why from Err, where a plain Stop reports nothing, so that serve exits
// with an error and systemd's Restart=on-failure starts it again.
func TestFailedHandoverStopIsAnError(t *testing.T) {
	cfg, _ := testConfig(t)
	n, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	why := errors.New("the successor went away at the commit")
	n.life.Lock() // as the handover holds it
	n.stopFailed(why)
	n.life.Unlock()
	<-n.Done()
	if err := n.Err(); !errors.Is(err, why) {
		t.Errorf("Err after a failed handover's stop: %v, want %v", err, why)
	}

	cfg2, _ := testConfig(t)
	m, err := Start(cfg2)
	if err != nil {
		t.Fatal(err)
	}
	m.Stop(context.Background())
	<-m.Done()
	if err := m.Err(); err != nil {
		t.Errorf("Err after Stop: %v, want nil", err)
	}
}

// TestUnfitSuccessorPausesNothing: a successor whose --listen is
// not the running server's, or that cannot read the Noise keys file, is
// refused before the running server pauses: its clients never stop, no
// connection is detached, and it serves on.
func TestUnfitSuccessorPausesNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		// spoil makes next, the successor's configuration, one that
		// cannot take over from the server serving on its folder.
		spoil func(t *testing.T, next *Config)
		want  string // what the successor's Start error says
	}{
		{"another address", func(t *testing.T, next *Config) {
			next.Gateway.Addr = "127.0.0.1:1" // not the running server's
		}, "differs from the running server's"},
		{"unreadable Noise keys", func(t *testing.T, next *Config) {
			if err := os.WriteFile(filepath.Join(next.Data, noise.KeysFileName), []byte("not a key\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, noise.KeysFileName},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _ := testConfig(t)
			old, ctx, a, b := serving(t, cfg, 20*time.Second)

			next := cfg
			next.Takeover = true
			tc.spoil(t, &next)
			if _, err := Start(next); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("takeover with %s: %v, want refused saying %q", tc.name, err, tc.want)
			}
			// Wait for the running server's side of the handover to end: it
			// holds life throughout. The successor's error can come before
			// it does.
			old.life.Lock()
			stopping := old.health.stopping.Load()
			old.life.Unlock()
			if stopping {
				t.Fatal("the running server is stopping")
			}
			st := old.Gateway().Stats()
			if got := st.Adopted.Load(); got != 0 {
				t.Errorf("the running server took back %d connections: it paused and detached them", got)
			}
			select {
			case <-old.Done():
				t.Fatal("the running server stopped")
			default:
			}
			exchange(t, ctx, a, 2, b, "after the refusal")
		})
	}
}

// startSuccessor starts a node that takes over from the one serving cfg's
// data folder; it stops when the test ends.
func startSuccessor(t *testing.T, cfg Config) *Node {
	t.Helper()
	cfg.Takeover = true
	nn, err := Start(cfg)
	if err != nil {
		t.Fatalf("takeover: %v", err)
	}
	t.Cleanup(func() { nn.Stop(context.Background()) })
	return nn
}

// exchange sends body from from to user to, waits for its ACCEPT, and for
// rcv, that user's client, to get it.
func exchange(t *testing.T, ctx context.Context, from *protocol.Client, to uint64, rcv *protocol.Client, body string) {
	t.Helper()
	id, err := from.Send(to, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := from.WaitAccept(ctx, id); err != nil {
		t.Fatal(err)
	}
	if d, err := rcv.RecvDeliver(ctx); err != nil || string(d.Body) != body {
		t.Fatalf("user %d got %v, %v; want %q", to, d, err, body)
	}
}

// TestTakeoverKeepsWhatWasNotAcked: entries the old process wrote to a
// client that did not acknowledge them stay in the mailbox across the
// takeover. A client that dies before storing them gets them again when it
// logs in from its last ack; and their senders get no receipt for them.
func TestTakeoverKeepsWhatWasNotAcked(t *testing.T) {
	cfg, secret := testConfig(t)
	old, ctx, a, _ := serving(t, cfg, 20*time.Second)
	dialB := func(ack uint64) *protocol.Client {
		t.Helper()
		tok := token.Mint(secret, token.Claims{KeyID: 1, User: 3, Device: 1, Expiry: time.Now().Add(time.Hour)})
		c, err := protocol.Dial(ctx, old.Addr().String(), protocol.ClientOptions{Token: tok, Ack: ack})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// a's receipts for what b acknowledged, by msg id.
	receipted := map[uint64]bool{}
	receipt := func(id uint64) {
		t.Helper()
		for !receipted[id] {
			ev, err := a.Recv(ctx)
			if err != nil {
				t.Fatalf("a waiting for the receipt of %d: %v (receipts %v)", id, err, receipted)
			}
			if r, ok := ev.(*protocol.Receipt); ok {
				for i := range r.More + 1 {
					receipted[r.MsgID+i] = true
				}
			}
		}
	}
	b := dialB(0)
	var ids []uint64
	for i := range 3 {
		id, err := a.Send(3, []byte(fmt.Sprint("entry ", i+1)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.WaitAccept(ctx, id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for seq := uint64(1); seq <= 3; seq++ {
		if d, err := b.RecvDeliver(ctx); err != nil || d.Seq != seq {
			t.Fatalf("b's delivery %d: %+v, %v", seq, d, err)
		}
	}
	if err := b.Ack(1); err != nil { // 2 and 3 read, not stored
		t.Fatal(err)
	}
	receipt(ids[0]) // the ack has reached storage

	startSuccessor(t, cfg)
	<-old.Done()

	// b dies before storing 2 and 3, and logs in again from its ack.
	b.Close()
	b = dialB(1)
	for seq := uint64(2); seq <= 3; seq++ {
		if d, err := b.RecvDeliver(ctx); err != nil || d.Seq != seq {
			t.Fatalf("b after the takeover and a new login from 1: delivery %+v, %v; want seq %d again", d, err, seq)
		}
	}
	if err := b.Ack(3); err != nil {
		t.Fatal(err)
	}
	if receipted[ids[1]] || receipted[ids[2]] {
		t.Fatalf("messages receipted before b acknowledged them: %v", receipted)
	}
	receipt(ids[2])
	receipt(ids[1])
}

// TestTakeoverRefusedBeforeThePause: a successor that speaks another
// handover format is refused and told why; one that says no HELLO, that
// goes away after BEGIN, or that answers BEGIN with anything but a
// refusal is dropped. None of them pauses the running server: it detaches
// nothing, serves the same clients on, and hands over to the next
// successor that asks.
func TestTakeoverRefusedBeforeThePause(t *testing.T) {
	for _, tc := range []struct {
		name string
		// talk plays the successor on ch; it returns once the running
		// server has ended the exchange.
		talk func(t *testing.T, old *Node, ch *handover.Channel)
	}{
		{"another format", func(t *testing.T, _ *Node, ch *handover.Channel) {
			ch.Send(&handover.Message{Kind: handover.KindHello, Version: handover.Version + 1, PID: 1})
			want := fmt.Sprintf("handover format %d, this process speaks %d: restart the service instead (its clients reconnect once)", handover.Version+1, handover.Version)
			if m, err := ch.Recv(); err != nil || m.Kind != handover.KindRefuse || m.Reason != want {
				t.Errorf("answer to HELLO of another format: %v %q, %v; want REFUSE %q", m.Kind, m.Reason, err, want)
			}
		}},
		{"no HELLO", func(t *testing.T, _ *Node, ch *handover.Channel) {
			ch.Send(&handover.Message{Kind: handover.KindReady})
			if m, err := ch.Recv(); err == nil {
				t.Errorf("answer to READY first: %v, want the channel closed", m.Kind)
			}
		}},
		{"gone after BEGIN", func(t *testing.T, old *Node, ch *handover.Channel) {
			ch.Send(&handover.Message{Kind: handover.KindHello, Version: handover.Version, PID: 1})
			if m, err := ch.Recv(); err != nil || m.Kind != handover.KindBegin || m.Addr != old.Addr().String() || m.PID != os.Getpid() {
				t.Fatalf("answer to HELLO: %+v, %v; want BEGIN with the address and pid", m, err)
			}
			ch.Close()
		}},
		{"READY before the pause", func(t *testing.T, _ *Node, ch *handover.Channel) {
			ch.Send(&handover.Message{Kind: handover.KindHello, Version: handover.Version, PID: 1})
			if m, err := ch.Recv(); err != nil || m.Kind != handover.KindBegin {
				t.Fatalf("answer to HELLO: %v, %v; want BEGIN", m.Kind, err)
			}
			ch.Send(&handover.Message{Kind: handover.KindReady})
			if m, err := ch.Recv(); err == nil {
				t.Errorf("answer to READY before the pause: %v, want the channel closed", m.Kind)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _ := testConfig(t)
			old, ctx, a, b := serving(t, cfg, 20*time.Second)
			ch, err := handover.Dial(cfg.handoverPath())
			if err != nil {
				t.Fatal(err)
			}
			defer ch.Close()
			ch.SetDeadline(time.Now().Add(5 * time.Second))
			tc.talk(t, old, ch)
			// The running server's side holds life from BEGIN to its end.
			testutil.Eventually(t, 10*time.Second, "the running server's side of the handover to end", func() bool {
				if !old.life.TryLock() {
					return false
				}
				old.life.Unlock()
				return true
			})
			if got := old.Gateway().Stats().Adopted.Load(); got != 0 {
				t.Errorf("the running server took back %d connections: it paused and detached them", got)
			}
			select {
			case <-old.Done():
				t.Fatal("the running server stopped")
			default:
			}
			if err := old.Ready(); err != nil {
				t.Errorf("the running server is not ready: %v", err)
			}
			exchange(t, ctx, a, 2, b, "after "+tc.name)
			nn := startSuccessor(t, cfg)
			<-old.Done()
			if got := nn.Gateway().Stats().Adopted.Load(); got != 2 {
				t.Errorf("the next successor adopted %d connections, want 2", got)
			}
		})
	}
}

// TestTakeoverFromAFailingServer: the successor's side, against a running
// server (played by the test) that goes away or refuses at once, sends
// something other than BEGIN, goes away or gives up while sending the
// connections, miscounts them, or, after READY, refuses or goes away while
// its process lives on (it takes its connections back). Start fails saying
// so and leaves the store's lock and the client address free. A server
// that goes away after READY because its process died is not waited for:
// the successor serves on its address.
func TestTakeoverFromAFailingServer(t *testing.T) {
	const deadPID = 1 << 30 // above any pid_max: no such process
	for _, tc := range []struct {
		name string
		pid  int // the running server's, in BEGIN
		// script plays the running server after BEGIN (none: nothing
		// sent, when pid is 0), or from HELLO on.
		script func(t *testing.T, ch *handover.Channel)
		want   string // what Start's error says; "": it serves
	}{
		{"goes away at once", 0, func(t *testing.T, ch *handover.Channel) {},
			"node: takeover: waiting for the running server: "},
		{"goes away after BEGIN", os.Getpid(), func(t *testing.T, ch *handover.Channel) {},
			"node: takeover: receiving connections: "},
		{"refuses at once", 0, func(t *testing.T, ch *handover.Channel) {
			ch.Send(&handover.Message{Kind: handover.KindRefuse, Reason: "this process is stopping"})
		}, "takeover refused by the running server, which serves on: this process is stopping"},
		{"not BEGIN", 0, func(t *testing.T, ch *handover.Channel) {
			ch.Send(&handover.Message{Kind: handover.KindClosed})
		}, "the running server sent CLOSED, not BEGIN"},
		{"gives up", os.Getpid(), func(t *testing.T, ch *handover.Channel) {
			ch.Send(&handover.Message{Kind: handover.KindRefuse, Reason: "taking the connections back: the test says no"})
		}, "the running server gave up: taking the connections back: the test says no"},
		{"miscounts", os.Getpid(), func(t *testing.T, ch *handover.Channel) {
			ch.Send(&handover.Message{Kind: handover.KindClosed, Total: 3})
		}, "got CLOSED (total 3) after 0 connections"},
		{"refuses after READY", os.Getpid(), func(t *testing.T, ch *handover.Channel) {
			closedThenReady(t, ch)
			ch.Send(&handover.Message{Kind: handover.KindRefuse, Reason: "too slow"})
		}, fmt.Sprintf("no commit from the running server (pid %d), which takes its connections back and serves on: the running server sent REFUSE: too slow", os.Getpid())},
		{"goes away after READY", os.Getpid(), func(t *testing.T, ch *handover.Channel) {
			closedThenReady(t, ch)
		}, fmt.Sprintf("no commit from the running server (pid %d), which takes its connections back", os.Getpid())},
		{"dies after READY", deadPID, func(t *testing.T, ch *handover.Channel) {
			closedThenReady(t, ch)
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _ := testConfig(t)
			cfg.Takeover = true
			addr := testutil.FreeAddrs(t, 1)[0]
			playOldServer(t, cfg, func(ch *handover.Channel) {
				if tc.pid != 0 {
					ch.Send(&handover.Message{Kind: handover.KindBegin, Addr: addr, PID: tc.pid})
				}
				tc.script(t, ch)
			})
			n, err := Start(cfg)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("takeover from a server that died after READY: %v", err)
				}
				defer n.Stop(context.Background())
				if n.Addr().String() != addr {
					t.Errorf("serving on %s, want the dead server's %s", n.Addr(), addr)
				}
				return
			}
			if err == nil {
				n.Stop(context.Background())
				t.Fatalf("takeover: started, want an error saying %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("takeover: %v, want an error saying %q", err, tc.want)
			}
			s, err := storage.Open(cfg.WithDefaults().Storage)
			if err != nil {
				t.Fatalf("the store after the failed takeover: %v", err)
			}
			s.Close()
			listenOn(t, addr)()
		})
	}
}

// SuccessorUntilClosed plays a successor of the node serving folder data
// up to the running server's CLOSED: it says HELLO, closes the sockets it
// is sent, and returns the channel, to answer CLOSED on, and how many
// connections it was handed. The channel closes when the test ends.
func SuccessorUntilClosed(t *testing.T, data string) (*handover.Channel, int) {
	t.Helper()
	ch, _, conns := successorUntilClosed(t, data)
	return ch, conns
}

// successorUntilClosed is SuccessorUntilClosed, and returns the channel's
// socket too.
func successorUntilClosed(t *testing.T, data string) (*handover.Channel, *net.UnixConn, int) {
	t.Helper()
	path := filepath.Join(data, HandoverSocket)
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	ch := handover.NewChannel(c)
	t.Cleanup(func() { ch.Close() })
	ch.SetDeadline(time.Now().Add(20 * time.Second))
	ch.Send(&handover.Message{Kind: handover.KindHello, Version: handover.Version, PID: 1})
	conns := 0
	for {
		m, err := ch.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, fd := range m.FDs {
			unix.Close(fd) // the node keeps its own copies until the commit
		}
		conns += len(m.Conns)
		if m.Kind == handover.KindClosed {
			return ch, c, conns
		}
	}
}

// closedThenReady sends CLOSED for no connections and waits for READY, as
// a running server does before its commit.
func closedThenReady(t *testing.T, ch *handover.Channel) {
	ch.Send(&handover.Message{Kind: handover.KindClosed})
	if m, err := ch.Recv(); err != nil || m.Kind != handover.KindReady {
		t.Errorf("the successor's answer to CLOSED: %v, %v; want READY", m.Kind, err)
	}
}

// playOldServer listens on cfg's handover socket as a running server does
// and plays script with the first successor, once it said HELLO; the test
// waits for script when it ends.
func playOldServer(t *testing.T, cfg Config, script func(ch *handover.Channel)) {
	t.Helper()
	ln, err := handover.Listen(cfg.handoverPath())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		ch := handover.NewChannel(c)
		defer ch.Close()
		ch.SetDeadline(time.Now().Add(10 * time.Second))
		if m, err := ch.Recv(); err != nil || m.Kind != handover.KindHello || m.Version != handover.Version || m.PID != os.Getpid() {
			t.Errorf("the successor's first message: %+v, %v; want HELLO of format %d from this process", m, err, handover.Version)
			return
		}
		script(ch)
	}()
}

// TestTakeBackFailsStops: when the handover fails before its commit and
// the store does not open again within the handover timeout (the
// successor still holds it), the old node stops itself, and Err says it
// could not take its connections back, so that the process exits with an
// error and is started again.
func TestTakeBackFailsStops(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.HandoverTimeout = 300 * time.Millisecond
	old, _, _, _ := serving(t, cfg, 20*time.Second)
	ch, _ := SuccessorUntilClosed(t, cfg.Data)
	s, err := storage.Open(old.Config().Storage) // as a successor that opened it
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ch.Send(&handover.Message{Kind: handover.KindRefuse, Reason: "the test holds the store"})
	select {
	case <-old.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the old node serves on without its store")
	}
	if err := old.Err(); err == nil || !strings.Contains(err.Error(), "handover: taking the connections back: opening the store again") {
		t.Errorf("Err: %v, want it to say the store did not open again", err)
	}
	if old.HandedOver() {
		t.Error("the old node says it handed over")
	}
}

// TestSuccessorGoneAtTheCommit: a successor that says READY and is gone
// before the running server's COMMIT reaches it leaves the running server
// with nothing to serve (its connections handed over, its store closed):
// it stops itself, and Err says the successor went away at the commit, so
// that the process exits with an error and is started again.
func TestSuccessorGoneAtTheCommit(t *testing.T) {
	cfg, _ := testConfig(t)
	old, _, _, _ := serving(t, cfg, 20*time.Second)
	ch, c, _ := successorUntilClosed(t, cfg.Data)
	if err := c.CloseRead(); err != nil { // the COMMIT finds no one to read it
		t.Fatal(err)
	}
	if err := ch.Send(&handover.Message{Kind: handover.KindReady}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-old.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the running server serves on after its successor went away at the commit")
	}
	if err := old.Err(); err == nil || !strings.HasPrefix(err.Error(), "handover: the successor went away at the commit: ") {
		t.Errorf("Err: %v, want it to say the successor went away at the commit", err)
	}
	if old.HandedOver() {
		t.Error("the running server says it handed over")
	}
}
