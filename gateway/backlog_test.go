package gateway_test

import (
	"bytes"
	"testing"
	"time"

	"switchboard/gateway"
	"switchboard/protocol"
)

// TestBacklogOfLargeMessages: a backlog whose window holds more bytes than
// the outbound cap (300 messages of 4 KiB; 256 of them are 1 MiB) drains
// to a client that reads and acks as fast as it can, with no
// SLOW_CONSUMER.
func TestBacklogOfLargeMessages(t *testing.T) {
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) { c.RateLimit = 100_000 }})
	a := ts.Dial(2, protocol.ClientOptions{FirstMsgID: 1})
	msg := bytes.Repeat([]byte("large message, "), 4096/15)
	var ids []uint64
	for range 300 {
		id, err := a.Send(1, msg)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	waitAccepted(t, a, ids, 30*time.Second)
	t.Logf("300 accepted")
	b := ts.Dial(1, protocol.ClientOptions{AutoAck: true})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("closes: SLOW_CONSUMER %d, by the peer %d; router slow consumers %d",
				ts.Srv.Stats().Closes[protocol.CodeSlowConsumer].Load(), ts.Srv.Stats().Closes[0].Load(), ts.Router.Stats().SlowConsumers.Load())
		}
	})
	for i, d := range recvDelivers(t, b, 300, 20*time.Second) {
		if d.Seq != uint64(i+1) || !bytes.Equal(d.Body, msg) {
			t.Fatalf("entry %d: seq %d, %d bytes", i, d.Seq, len(d.Body))
		}
	}
	t.Logf("300 delivered")
	if got := ts.Srv.Stats().Closes[protocol.CodeSlowConsumer].Load(); got != 0 {
		t.Fatalf("%d SLOW_CONSUMER closes", got)
	}
}

// TestLargestBody: a body of exactly MaxBody (its frame larger than one
// read of the loop's buffer) goes through whole; one byte more is refused.
func TestLargestBody(t *testing.T) {
	ts := startServer(t, serverOptions{})
	a := ts.Dial(1, protocol.ClientOptions{})
	b := ts.Dial(2, protocol.ClientOptions{AutoAck: true}) // two such entries fill WindowBytes
	msg := make([]byte, protocol.MaxBody)
	for i := range msg {
		msg[i] = byte(i * 31)
	}
	for range 3 {
		id, err := a.Send(2, msg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.WaitAccept(ctxFor(t, 10*time.Second), id); err != nil {
			t.Fatal(err)
		}
		if d := recvDelivers(t, b, 1, 10*time.Second)[0]; d.MsgID != id || !bytes.Equal(d.Body, msg) {
			t.Fatalf("delivered %d bytes of msg %d", len(d.Body), d.MsgID)
		}
	}
	if _, err := a.Send(2, append(msg, 1)); err != nil {
		t.Fatal(err)
	}
	if code := expectError(t, a, 10*time.Second); code != protocol.CodeBodyTooLarge {
		t.Fatalf("a body of MaxBody+1 ended with %v, want BODY_TOO_LARGE", code)
	}
}

// TestCompressedBacklog: a client that negotiates dictionary 1 gets a
// plaintext backlog in compressed BATCHes (fewer bytes than the bodies
// alone) and reads every body back exactly, in order.
func TestCompressedBacklog(t *testing.T) {
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) { c.RateLimit = 100_000 }})
	a := ts.Dial(1, protocol.ClientOptions{FirstMsgID: 1})
	var ids []uint64
	total := 0
	for i := range 600 {
		id, err := a.Send(2, body(1, i))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		total += len(body(1, i))
	}
	waitAccepted(t, a, ids, 30*time.Second)
	before := ts.Srv.Stats().BytesOut.Load()
	b := ts.Dial(2, protocol.ClientOptions{Dict: protocol.DictV1, AutoAck: true})
	if w := b.Welcome(); w.Dict != protocol.DictV1 {
		t.Fatalf("WELCOME.Dict = %d, want %d", w.Dict, protocol.DictV1)
	}
	for i, d := range recvDelivers(t, b, 600, 20*time.Second) {
		if d.Seq != uint64(i+1) || !bytes.Equal(d.Body, body(1, i)) {
			t.Fatalf("entry %d: seq %d body %q", i, d.Seq, d.Body)
		}
	}
	// The PONG is written after the entries: once it is here, their bytes
	// are counted.
	if err := b.Ping(); err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := b.Recv(ctxFor(t, 5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := ev.(protocol.Pong); ok {
			break
		}
	}
	sent := ts.Srv.Stats().BytesOut.Load() - before
	t.Logf("600 entries, %d body bytes, %d bytes sent to the recipient", total, sent)
	if sent >= uint64(total) {
		t.Fatalf("sent %d bytes for %d bytes of bodies: the backlog was not compressed", sent, total)
	}
}
