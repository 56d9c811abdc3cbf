package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"switchboard/protocol"
)

// TestClusterQuickRestartOrder: a SEND forwarded to a home node that dies
// before storing it is lost in transit. When the home is back before the
// peer timeout (5 s), the sender's next SEND to it, sent with no refusal in
// hand as PROTOCOL.md 8.5 allows, must not be stored before the lost one:
// both are refused RETRY_LATER (the forward carries the home's instance,
// and the sender's node refuses what an earlier instance had in hand), so
// the sender sends them again in order and the recipient reads 1, 2, 3.
// Before that, it read 1, 3, 2.
func TestClusterQuickRestartOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills server processes")
	}
	cp := newClusterProcs(t, nil)
	sender, rcpt := cp.userOn(1, 1000), cp.userOn(2, 2000)
	ctx := ctxTimeout(t, 60*time.Second)
	sc, err := cp.node(1).dial(sender, protocol.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.SendID(1, rcpt, []byte("one"), false); err != nil {
		t.Fatal(err)
	}
	if _, err := sc.WaitAccept(ctx, 1); err != nil {
		t.Fatal(err)
	}

	down := cp.logCount(1, peerLine("down", 2))
	up := cp.logCount(1, peerLine("up", 2))
	cp.node(2).kill()
	if err := sc.SendID(2, rcpt, []byte("two"), false); err != nil { // node 1 still sees node 2 up: forwarded, lost
		t.Fatal(err)
	}
	cp.start(2)
	if cp.logCount(1, peerLine("down", 2)) > down { // node 1 saw it down meanwhile: wait until it is up again
		cp.waitLog(1, peerLine("up", 2), up, 10*time.Second)
	}
	if err := sc.SendID(3, rcpt, []byte("three"), false); err != nil {
		t.Fatal(err)
	}
	accepted := map[uint64]bool{}
	for !accepted[2] || !accepted[3] {
		ev, err := sc.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		switch ev := ev.(type) {
		case *protocol.Accept:
			for id := ev.MsgID; id <= ev.MsgID+ev.More; id++ {
				accepted[id] = true
			}
		case *protocol.Refuse:
			if ev.Code != protocol.CodeRetryLater {
				t.Fatalf("msg %d refused %v: %s", ev.MsgID, ev.Code, ev.Reason)
			}
			retry := time.NewTimer(time.Duration(ev.RetryAfter) * time.Millisecond)
			select { // the server's retry_after: resend no sooner
			case <-retry.C:
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			}
			body := map[uint64]string{2: "two", 3: "three"}[ev.MsgID]
			if err := sc.Resend(ev.MsgID, rcpt, []byte(body), false); err != nil {
				t.Fatal(err)
			}
		}
	}

	rc, err := cp.node(2).dial(rcpt, protocol.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for len(got) < 3 {
		d, err := rc.RecvDeliver(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("recipient got msgs %v, want 1, 2, 3", got)
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, d.MsgID)
	}
	if got[0] != 1 || got[1] != 2 || got[2] != 3 {
		t.Fatalf("recipient's mailbox holds msgs %v in seq order, want 1, 2, 3: the one lost in transit was stored after a later one", got)
	}
}
