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
