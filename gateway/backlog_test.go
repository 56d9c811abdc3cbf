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
