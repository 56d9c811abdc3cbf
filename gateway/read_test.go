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
