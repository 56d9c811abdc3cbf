package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"switchboard/protocol"
	"switchboard/token"
)

// TestTakeover: a second node with Takeover takes the first one's
// connections: the clients' sockets stay open, a message accepted before
// is delivered after, in order, with its receipt, and new messages flow
// both ways through the same sockets. The old node ends on its own.
func TestTakeover(t *testing.T) {
	cfg, secret := testConfig(t)
	old, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { old.Stop(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dial := func(user uint64) *protocol.Client {
		tok := token.Mint(secret, token.Claims{KeyID: 1, User: user, Device: 1, Expiry: time.Now().Add(time.Hour)})
		c, err := protocol.Dial(ctx, old.Addr().String(), protocol.ClientOptions{Token: tok, AutoAck: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	a, b := dial(1), dial(2)
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

	next := cfg
	next.Takeover = true
	nn, err := Start(next)
	if err != nil {
		t.Fatalf("takeover: %v", err)
	}
	t.Cleanup(func() { nn.Stop(context.Background()) })
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
