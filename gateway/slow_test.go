package gateway_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"switchboard/delivery"
	"switchboard/gateway"
	"switchboard/protocol"
)

// TestSlowConsumerWindow: a client that stops reading (its event channel is
// full) and so never acks keeps its window full; after SlowAfter it is closed
// with SLOW_CONSUMER, while another pair's messages keep flowing, and what it
// missed waits in storage for its next login.
func TestSlowConsumerWindow(t *testing.T) {
	ts := startServer(t, serverOptions{router: func(c *delivery.Config) {
		c.Window = 16
		c.SlowAfter = time.Second
	}})
	slow := ts.Dial(1, protocol.ClientOptions{Events: 4})
	a := ts.Dial(2, protocol.ClientOptions{FirstMsgID: 1})
	c := ts.Dial(3, protocol.ClientOptions{})
	d := ts.Dial(4, protocol.ClientOptions{AutoAck: true})
	var ids []uint64
	for i := range 40 {
		id, err := a.Send(1, body(2, i))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	waitAccepted(t, a, ids, 10*time.Second)

	// The other pair, while the slow one is stuck and after it is closed.
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ts.Router.Stats().SlowConsumers.Load() == 0 || i < 5; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("no slow consumer closed within 10 s")
		}
		id, err := c.Send(4, body(3, i))
		if err != nil {
			t.Fatal(err)
		}
		got := recvDelivers(t, d, 1, 5*time.Second)[0]
		if got.MsgID != id || !bytes.Equal(got.Body, body(3, i)) {
			t.Fatalf("other pair got %+v", got)
		}
		time.Sleep(100 * time.Millisecond) // a message every 100 ms while we wait
	}
	eventually(t, 5*time.Second, "SLOW_CONSUMER close counted", func() bool {
		return ts.Srv.Stats().Closes[protocol.CodeSlowConsumer].Load() == 1
	})
	// The slow client got what fits in its window, then the ERROR.
	n := 0
	ctx := ctxFor(t, 10*time.Second)
	for {
		ev, err := slow.Recv(ctx)
		if err != nil {
			var e *protocol.Error
			if !errors.As(err, &e) || e.Code != protocol.CodeSlowConsumer {
				t.Fatalf("slow client ended with %v, want ERROR SLOW_CONSUMER", err)
			}
			if !strings.HasPrefix(e.Reason, "window: ") {
				t.Fatalf("SLOW_CONSUMER reason %q does not name its cause, window", e.Reason)
			}
			break
		}
		if _, ok := ev.(*protocol.Deliver); ok {
			n++
		}
	}
	if n != 16 {
		t.Fatalf("slow client received %d entries, want the window of 16", n)
	}
	if got := ts.Srv.SlowConsumers(); got != (gateway.SlowConsumers{}) {
		t.Fatalf("gateway counted slow consumers %+v; only the router's window closed one", got)
	}
	// Nothing was lost: all 40 arrive at the next login.
	again := ts.Dial(1, protocol.ClientOptions{AutoAck: true})
	for i, dv := range recvDelivers(t, again, 40, 10*time.Second) {
		if dv.Seq != uint64(i+1) || !bytes.Equal(dv.Body, body(2, i)) {
			t.Fatalf("after reconnect entry %d: %+v", i, dv)
		}
	}
}

// TestSlowConsumerOutbound: a connection that logs in and never reads fills
// the kernel's buffers, then gnet's, past OutboundCap: it is closed with
// SLOW_CONSUMER (the gateway's check, not the window's), and the server
// keeps serving others. The router's window is opened wide for it: with
// the default WindowBytes (128 KiB) a reader that never acks gets no more
// than the kernel buffers hold, and only SlowAfter can close it.
func TestSlowConsumerOutbound(t *testing.T) {
	ts := startServer(t, serverOptions{
		byHand: true, // an outbound cap below the window, which node refuses: the gateway's own defence
		gw:     func(c *gateway.Config) { c.OutboundCap = 64 << 10; c.RateLimit = 100_000 },
		// Only the outbound cap can fire: the window lets through far more
		// than the kernel's socket buffers hold, and never times out.
		router: func(c *delivery.Config) { c.SlowAfter = time.Hour; c.Window = 4096; c.WindowBytes = 64 << 20 },
	})
	r := ts.rawLoginPing(t, 1, 0) // never reads again
	a := ts.Dial(2, protocol.ClientOptions{})
	big := bytes.Repeat([]byte("0123456789abcdef"), 60<<10/16)
	deadline := time.Now().Add(20 * time.Second)
	for ts.Srv.Stats().Closes[protocol.CodeSlowConsumer].Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("never closed as a slow consumer (router slow consumers %d)", ts.Router.Stats().SlowConsumers.Load())
		}
		id, err := a.Send(1, big)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.WaitAccept(ctxFor(t, 10*time.Second), id); err != nil {
			t.Fatal(err)
		}
	}
	if got := ts.Router.Stats().SlowConsumers.Load(); got != 0 {
		t.Fatalf("router closed %d slow consumers; the outbound cap should have", got)
	}
	// Almost always the bytes gnet could not write (write_buffer); the
	// queue (outbound_cap) only if the loop fell a whole entry behind.
	if got := ts.Srv.SlowConsumers(); got.OutboundCap+got.WriteBuffer != 1 {
		t.Fatalf("gateway slow consumers %+v, want one, of either cause", got)
	}
	// The ERROR cannot pass a pipe that is full (gnet drops what the socket
	// does not take at close); the connection must end either way.
	if got := r.expectClose(20 * time.Second); got != protocol.CodeSlowConsumer && got != 0 {
		t.Fatalf("closed with %v, want SLOW_CONSUMER or no ERROR", got)
	}
	ts.roundTrip(t, 10, 11)
}

// TestSlowConsumerOutboundCap: entries pushed while the connection's loop
// is hung fill its queue past OutboundCap: once the loop runs it writes
// what was queued, then ERROR SLOW_CONSUMER whose reason names the cause,
// outbound_cap, counted apart from the other two.
func TestSlowConsumerOutboundCap(t *testing.T) {
	ts := startServer(t, serverOptions{
		byHand: true, // sessions of its own on the router, and a cap below the window
		gw:     func(c *gateway.Config) { c.Loops = 1; c.OutboundCap = 8 << 10 },
		router: func(c *delivery.Config) { c.SlowAfter = time.Hour; c.WindowBytes = 1 << 20 },
	})
	reader := ts.Dial(1, protocol.ClientOptions{})
	release := ts.hangLoop()
	sender := &nullConn{}
	for i := range 3 { // 3 × 3 KiB: the third does not fit the 8 KiB queue
		d := protocol.Deliver{MsgID: uint64(i + 1), From: 9, Body: bytes.Repeat([]byte{'x'}, 3<<10)}
		if !ts.Router.Send(ts.session(sender), delivery.Message{From: delivery.To(9), To: 1, MsgID: uint64(i + 1), Record: d.AppendRecord(nil)}) {
			t.Fatal("router busy")
		}
	}
	eventually(t, 5*time.Second, "the queue over the cap", func() bool { return ts.Srv.Gauges().Closing == 1 })
	release()
	n := 0
	ctx := ctxFor(t, 10*time.Second)
	for {
		ev, err := reader.Recv(ctx)
		if err != nil {
			var e *protocol.Error
			if !errors.As(err, &e) || e.Code != protocol.CodeSlowConsumer || !strings.HasPrefix(e.Reason, "outbound_cap: ") {
				t.Fatalf("reader ended with %v, want ERROR SLOW_CONSUMER naming outbound_cap", err)
			}
			break
		}
		if _, ok := ev.(*protocol.Deliver); ok {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("reader received %d entries before the close, want the 2 that fit", n)
	}
	if got := ts.Srv.SlowConsumers(); got != (gateway.SlowConsumers{OutboundCap: 1}) {
		t.Fatalf("gateway slow consumers %+v, want one over the outbound cap", got)
	}
	if got := ts.Router.Stats().SlowConsumers.Load(); got != 0 {
		t.Fatalf("router counted %d slow consumers, want 0", got)
	}
}

// TestSlowConsumerOutboundCapExact: entries that fill the outbound queue
// to exactly Config.OutboundCap are all taken and written; the cap closes
// a connection only past it.
func TestSlowConsumerOutboundCapExact(t *testing.T) {
	const outCap = 8 << 10
	ts := startServer(t, serverOptions{
		byHand: true, // sessions of its own on the router, and a cap below the window
		gw:     func(c *gateway.Config) { c.Loops = 1; c.OutboundCap = outCap },
		router: func(c *delivery.Config) { c.SlowAfter = time.Hour; c.WindowBytes = 1 << 20 },
	})
	// Two records of half the cap each, as Push charges them.
	record := func(id uint64) []byte {
		d := protocol.Deliver{MsgID: id, From: 9, Body: bytes.Repeat([]byte{'x'}, outCap/2)}
		over := len(d.AppendRecord(nil)) + 16 - outCap/2
		d.Body = d.Body[:len(d.Body)-over]
		r := d.AppendRecord(nil)
		if len(r)+16 != outCap/2 {
			t.Fatalf("record of %d bytes, want %d", len(r), outCap/2-16)
		}
		return r
	}
	reader := ts.Dial(1, protocol.ClientOptions{})
	release := ts.hangLoop()
	sender := &nullConn{}
	for id := range uint64(2) {
		if !ts.Router.Send(ts.session(sender), delivery.Message{From: delivery.To(9), To: 1, MsgID: id + 1, Record: record(id + 1)}) {
			t.Fatal("router busy")
		}
	}
	eventually(t, 5*time.Second, "the queue full to the cap", func() bool {
		return ts.Srv.Gauges() == gateway.Gauges{LoggedIn: 1, OutboundBytes: outCap}
	})
	release()
	recvDelivers(t, reader, 2, 10*time.Second)
	if got := ts.Srv.SlowConsumers(); got != (gateway.SlowConsumers{}) {
		t.Fatalf("slow consumers %+v, want none", got)
	}
	eventually(t, 5*time.Second, "the queue written", func() bool {
		return ts.Srv.Gauges() == gateway.Gauges{LoggedIn: 1}
	})
}
