package node

import (
	"bytes"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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
	ch, err := handover.Dial(cfg.handoverPath())
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	ch.SetDeadline(time.Now().Add(10 * time.Second))
	ch.Send(&handover.Message{Kind: handover.KindHello, Version: handover.Version, PID: 1})
	for {
		m, err := ch.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, fd := range m.FDs {
			unix.Close(fd)
		}
		if m.Kind == handover.KindClosed {
			break
		}
	}
	s, err := storage.Open(old.Config().Storage) // as a successor that opened it
	if err != nil {
		t.Fatal(err)
	}
	ch.Send(&handover.Message{Kind: handover.KindRefuse, Reason: "the test lets go of the store shortly"})
	// The successor exits a moment after its refusal: the old node's first
	// tries find the store still held.
	time.AfterFunc(300*time.Millisecond, func() { s.Close() })

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
