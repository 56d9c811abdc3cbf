package node

import (
	"bytes"
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"switchboard/handover"
	"switchboard/internal/testutil"
	"switchboard/protocol"
	"switchboard/storage"
	"switchboard/token"
)

// TestTakeoverPastASlowReader: a client that reads nothing, with more
// queued for it than the kernel takes, holds the running server's Flush
// until its deadline; the handover still detaches the other connections
// (it lets that one go), and their clients carry on with the successor.
func TestTakeoverPastASlowReader(t *testing.T) {
	cfg, secret := testConfig(t)
	cfg.Gateway.ShutdownTimeout = time.Second // the handover's budget
	cfg.Gateway.OutboundCap = 32 << 20
	cfg.Delivery.WindowBytes = 16 << 20
	old, ctx, a, b := serving(t, cfg, 30*time.Second)

	nc, err := net.DialTimeout("tcp", old.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	tok := token.Mint(secret, token.Claims{KeyID: 1, User: 3, Device: 1, Expiry: time.Now().Add(time.Hour)})
	if _, err := nc.Write((&protocol.Login{Token: tok}).Append(protocol.AppendPreface(nil, protocol.Version, protocol.TransportPlain))); err != nil {
		t.Fatal(err)
	}
	// 8 MiB for user 3, who never reads: more than the kernel's buffers
	// (tcp_wmem's largest is 4 MiB here) take.
	body := bytes.Repeat([]byte("x"), 60<<10)
	for range 140 {
		id, err := a.Send(3, body)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.WaitAccept(ctx, id); err != nil {
			t.Fatal(err)
		}
	}

	nn := startSuccessor(t, cfg)
	<-old.Done()
	if got := nn.Gateway().Stats().Adopted.Load(); got != 2 {
		t.Errorf("the successor adopted %d connections, want 2 (the slow reader let go)", got)
	}
	exchange(t, ctx, a, 2, b, "after the takeover")
	exchange(t, ctx, b, 1, a, "and back")
}

// TestTakeBackAfterTheSuccessorLetsGo: a successor that opened the store
// and refuses after CLOSED lets go of the store a moment later, as a
// process does when it exits; the old node, retrying the store, takes its
// connections back, serves them, answers on its admin listener again, and
// hands over to the next successor.
func TestTakeBackAfterTheSuccessorLetsGo(t *testing.T) {
	cfg, _ := testConfig(t)
	old, ctx, a, b := serving(t, cfg, 30*time.Second)
	ch, _ := SuccessorUntilClosed(t, cfg.Data)
	s, err := storage.Open(old.Config().Storage) // as a successor that opened it
	if err != nil {
		t.Fatal(err)
	}
	ch.Send(&handover.Message{Kind: handover.KindRefuse, Reason: "the test lets go of the store shortly"})
	// The successor exits a moment after its refusal: the old node's first
	// tries find the store still held.
	time.AfterFunc(300*time.Millisecond, func() { s.Close() })
	// Someone asks for the admin address while the node listens again.
	asking := make(chan struct{})
	asked := make(chan struct{})
	go func() {
		defer close(asked)
		for {
			select {
			case <-asking:
				return
			default:
				_ = old.AdminAddr()
			}
		}
	}()

	exchange(t, ctx, a, 2, b, "after taking back")
	if got := old.Gateway().Stats().Adopted.Load(); got != 2 {
		t.Errorf("adopted back %d connections, want 2", got)
	}
	// The running server's side holds life until it serves again.
	testutil.Eventually(t, 10*time.Second, "the old node's side of the handover to end", func() bool {
		if !old.life.TryLock() {
			return false
		}
		old.life.Unlock()
		return true
	})
	close(asking)
	<-asked
	if code, body := get(t, "http://"+old.AdminAddr().String()+"/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("/readyz after taking back: %d %q, want 200 ready", code, body)
	}
	nn := startSuccessor(t, cfg)
	<-old.Done()
	if got := nn.Gateway().Stats().Adopted.Load(); got != 2 {
		t.Errorf("the next successor adopted %d connections, want 2", got)
	}
	exchange(t, ctx, b, 1, a, "after the next takeover")
}

// TestTakeoverRefusedWhileStopping: a successor whose HELLO reached the
// running server as it began to stop (its side of the handover waiting
// for the stop to end) is refused, and its Start says why: the node has
// stopped, and has no connections or store left to hand over.
func TestTakeoverRefusedWhileStopping(t *testing.T) {
	cfg, _ := testConfig(t)
	old, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { old.Stop(context.Background()) })
	old.life.Lock() // as Stop holds it while it stops
	locked := true
	defer func() {
		if locked {
			old.life.Unlock()
		}
	}()
	started := startInBackground(t, cfg)
	testutil.Eventually(t, 10*time.Second, "the successor's HELLO read, its handover waiting for the stop", handOverWaits)
	old.stopOnce.Do(func() { old.stopErr = old.stop(context.Background()) }) // Stop's work, under life
	old.life.Unlock()
	locked = false
	select {
	case r := <-started:
		if r.err == nil {
			t.Fatal("a successor took over from a node that stopped, want it refused")
		}
		if want := "takeover refused by the running server"; !strings.Contains(r.err.Error(), want) || !strings.Contains(r.err.Error(), "this process is stopping") {
			t.Errorf("takeover from a stopping node: %v, want %q saying it is stopping", r.err, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the successor's Start did not return")
	}
	if old.HandedOver() {
		t.Error("the stopped node says it handed over")
	}
}

// started is what Start returned.
type started struct {
	n   *Node
	err error
}

// startInBackground starts a successor of cfg's node on another goroutine;
// a node it started stops when the test ends.
func startInBackground(t *testing.T, cfg Config) <-chan started {
	cfg.Takeover = true
	ch, stop := make(chan started, 1), make(chan *Node, 1)
	t.Cleanup(func() {
		if n := <-stop; n != nil {
			n.Stop(context.Background())
		}
	})
	go func() {
		n, err := Start(cfg)
		stop <- n
		ch <- started{n, err}
	}()
	return ch
}

// handOverWaits reports whether a handover's running side waits for the
// node's life lock (which Stop holds, or the test).
func handOverWaits() bool {
	for _, g := range strings.Split(goroutineDump(), "\n\n") {
		if strings.Contains(g, "node.(*Node).handOver(") && strings.Contains(g, "(*Mutex).Lock") {
			return true
		}
	}
	return false
}

// TestTakeoverAnswersWhatWasInFlight: a client that keeps 64 SENDs in
// flight through a takeover gets an answer to every one, on the same
// connection: the running server answers those it had read when it
// paused before it lets the connection go (its router finishes them, and
// it reads nothing more), and the successor the rest. The router takes
// one request at a time (MaxInFlight 1), so at the pause most of the
// window waits in its queues.
func TestTakeoverAnswersWhatWasInFlight(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.Delivery.MaxInFlight = 1
	cfg.Gateway.RateLimit = 1 << 20 // the client sends as fast as it is answered
	_, ctx, a, _ := serving(t, cfg, 60*time.Second)
	next := startInBackground(t, cfg)
	const window = 64
	unanswered := map[uint64]bool{}
	sent, after := 0, -1 // after: SENDs since the successor serves; -1 before
	for after < window || len(unanswered) > 0 {
		for len(unanswered) < window && after < window {
			id, err := a.Send(3, []byte("in flight"))
			if err != nil {
				t.Fatal(err)
			}
			unanswered[id] = true
			sent++
			if after >= 0 {
				after++
			}
		}
		if after < 0 {
			select {
			case r := <-next:
				if r.err != nil {
					t.Fatalf("takeover: %v", r.err)
				}
				after = 0
			default:
			}
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ev, err := a.Recv(rctx)
		cancel()
		if err != nil {
			t.Fatalf("%d SENDs, %d of them not answered: %v", sent, len(unanswered), err)
		}
		switch ev := ev.(type) {
		case *protocol.Accept:
			for i := range ev.More + 1 {
				delete(unanswered, ev.MsgID+i)
			}
		case *protocol.Refuse:
			delete(unanswered, ev.MsgID) // the client resends it
		}
	}
	t.Logf("%d SENDs across the takeover, every one answered", sent)
}

// TestTakeoverWithNothingToTakeOver: a takeover of a node in memory, or of
// a data folder no process serves, fails saying why, and leaves the data
// folder as it was: no Noise keys made, no store opened.
func TestTakeoverWithNothingToTakeOver(t *testing.T) {
	for _, tc := range []struct {
		name   string
		memory bool
		want   string
	}{
		{"in memory", true, "node: a takeover needs a data folder (not --memory)"},
		{"no server", false, "handover: no server to take over from at "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _ := testConfig(t)
			cfg.Takeover = true
			if tc.memory {
				cfg.Data, cfg.Memory, cfg.Metrics = "", true, ""
			}
			n, err := Start(cfg)
			if err == nil {
				n.Stop(context.Background())
				t.Fatalf("takeover with nothing to take over: started, want an error saying %q", tc.want)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("takeover with nothing to take over: %v, want %q", err, tc.want)
			}
			if tc.memory {
				return
			}
			if es, err := os.ReadDir(cfg.Data); err != nil || len(es) != 0 {
				t.Errorf("the data folder after the failed takeover holds %d files (%v), want none", len(es), err)
			}
		})
	}
}
