package gateway_test

import (
	"testing"
	"time"

	"switchboard/delivery"
	"switchboard/protocol"
)

// TestReadOverTheBound: a READ that covers more than delivery.MaxReadRun
// msg ids is closed with ERROR PROTOCOL; one at the bound is taken, and its
// RECEIPT names the reader even without flag A.
func TestReadOverTheBound(t *testing.T) {
	ts := startServer(t, serverOptions{})
	const sender, reader = 11, 12
	s := ts.rawLogin(sender)
	rd := ts.rawLogin(reader)

	rd.write((&protocol.Read{To: sender, MsgID: 500, More: delivery.MaxReadRun - 1}).Append(nil))
	f := s.next(5 * time.Second)
	var x protocol.Receipt
	if f.Type != protocol.TypeReceipt || x.Decode(f) != nil {
		t.Fatalf("sender got %v, want a RECEIPT", f.Type)
	}
	if !x.Read || x.MsgID != 500 || x.More != delivery.MaxReadRun-1 || x.By != reader {
		t.Fatalf("receipt %+v, want read 500+%d by %d", x, delivery.MaxReadRun-1, reader)
	}

	rd.write((&protocol.Read{To: sender, MsgID: 500, More: delivery.MaxReadRun}).Append(nil))
	if code := rd.expectClose(5 * time.Second); code != protocol.CodeProtocol {
		t.Fatalf("close code %v, want PROTOCOL", code)
	}
}

// TestPrefaceSplit: a preface that arrives in two reads is taken once
// whole, and the LOGIN behind it is answered with WELCOME.
func TestPrefaceSplit(t *testing.T) {
	ts := startServer(t, serverOptions{})
	r := ts.raw()
	hello := (&protocol.Login{Token: ts.Token(1)}).Append(protocol.AppendPreface(nil, protocol.Version, protocol.TransportPlain))
	r.write(hello[:2])
	eventually(t, 5*time.Second, "the first half of the preface to arrive", func() bool { return ts.Srv.Buffered(0) == 2 })
	r.write(hello[2:])
	if f := r.next(5 * time.Second); f.Type != protocol.TypeWelcome {
		t.Fatalf("got %v, want WELCOME", f.Type)
	}
}
