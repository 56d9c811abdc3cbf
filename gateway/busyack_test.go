package gateway_test

import (
	"sync/atomic"
	"testing"
	"time"

	"switchboard/delivery"
	"switchboard/gateway"
	"switchboard/protocol"
)

// busyAcks is the router as the gateway sees it, too busy to take the next
// refuse ACKs.
type busyAcks struct {
	gateway.Delivery
	refuse  atomic.Int32
	offered atomic.Int32
}

func (b *busyAcks) Ack(s delivery.Session, to delivery.Addressee, seq uint64) bool {
	b.offered.Add(1)
	if b.refuse.Add(-1) >= 0 {
		return false
	}
	return b.Delivery.Ack(s, to, seq)
}

// TestBusyAckOfferedAgain: an ACK the router was too busy to take is
// offered again within a second, not at the connection's next check (up to
// 1.5 × ping later), and its receipt then reaches the sender.
func TestBusyAckOfferedAgain(t *testing.T) {
	clock := newFakeClock()
	busy := &busyAcks{}
	ts := startServer(t, serverOptions{
		gw:       func(c *gateway.Config) { c.Now = clock.Now },
		delivery: func(d gateway.Delivery) gateway.Delivery { busy.Delivery = d; return busy },
	})
	sender := ts.Dial(1, protocol.ClientOptions{})
	rcpt := ts.Dial(2, protocol.ClientOptions{})
	id, err := sender.Send(2, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	d := recvDelivers(t, rcpt, 1, 10*time.Second)[0]
	// The router refuses the ACK when it arrives and when the loop tries
	// again after writing; then it takes it.
	busy.refuse.Store(2)
	if err := rcpt.Ack(d.Seq); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the ACK offered to the router twice", func() bool { return busy.offered.Load() == 2 })
	for i := 0; i < 2 && busy.offered.Load() < 3; i++ {
		clock.Advance(time.Second)
		ts.Srv.Tick()
	}
	if n := busy.offered.Load(); n != 3 {
		t.Fatalf("the busy ACK was offered %d times after two seconds, want 3", n)
	}
	x := recvKind[*protocol.Receipt](t, sender)
	if x.MsgID != id || x.Read {
		t.Fatalf("receipt %+v, want delivered of %d", x, id)
	}
}

// TestLoginBusyRefused: a LOGIN whose shard is too busy to take it is
// answered with GOAWAY RETRY_LATER after busyLoginRetry (1 s) and closed
// without an ERROR; the close is counted under RETRY_LATER, never as a
// login, and the connection is never logged out of a router that did not
// take it.
func TestLoginBusyRefused(t *testing.T) {
	busy := &refusingLogins{}
	ts := startServer(t, serverOptions{delivery: func(d gateway.Delivery) gateway.Delivery { busy.Delivery = d; return busy }})
	r := ts.raw()
	r.write((&protocol.Login{Token: ts.Token(1)}).Append(protocol.AppendPreface(nil, protocol.Version, protocol.TransportPlain)))
	var g protocol.GoAway
	if f := r.next(5 * time.Second); f.Type != protocol.TypeGoAway || g.Decode(f) != nil || g.Code != protocol.CodeRetryLater || g.After != 1000 {
		t.Fatalf("got %v %+v, want GOAWAY RETRY_LATER after 1000 ms", f.Type, g)
	}
	if code := r.expectClose(5 * time.Second); code != 0 {
		t.Errorf("after the GOAWAY: ERROR %v, want a close", code)
	}
	eventually(t, 5*time.Second, "the connection counted out under RETRY_LATER", func() bool {
		return ts.Srv.Conns() == 0 && ts.Srv.Gauges() == gateway.Gauges{} && ts.Srv.Stats().Closes[protocol.CodeRetryLater].Load() == 1
	})
	if n := ts.Srv.Stats().Logins.Load(); n != 0 {
		t.Errorf("%d logins counted, want 0", n)
	}
	if n := busy.logouts.Load(); n != 0 {
		t.Errorf("%d logouts of a connection the router never took", n)
	}
}

// busyGroups is the router as the gateway sees it, too busy to take any
// GROUP request, asking for a retry after 250 ms.
type busyGroups struct{ gateway.Delivery }

func (busyGroups) GroupOp(delivery.Session, delivery.Addressee, *protocol.Group) bool { return false }
func (busyGroups) BusyRetryAfter() uint32                                             { return 250 }

// TestGroupBusyRefused: a GROUP request the router is too busy to take is
// refused with RETRY_LATER and the router's retry_after, and the
// connection stays open.
func TestGroupBusyRefused(t *testing.T) {
	ts := startServer(t, serverOptions{delivery: func(d gateway.Delivery) gateway.Delivery { return busyGroups{d} }})
	r := ts.rawLogin(1)
	r.write((&protocol.Group{MsgID: 7, Op: protocol.GroupCreate, Members: []uint64{2}}).Append(nil))
	_, refused := r.answers(1)
	if len(refused) != 1 || refused[0].MsgID != 7 || refused[0].Code != protocol.CodeRetryLater || refused[0].RetryAfter != 250 {
		t.Fatalf("refused %+v, want msg 7 RETRY_LATER after 250 ms", refused)
	}
	r.write(protocol.AppendPing(nil))
	if f := r.next(5 * time.Second); f.Type != protocol.TypePong {
		t.Fatalf("after the refusal: got %v, want PONG", f.Type)
	}
}
