package bench

import (
	"testing"

	"switchboard/protocol"
)

// settled marks every conn of l logged in with everything it processed
// acknowledged, as a drain leaves them, and the drain as having waited.
func settled(l *loop) {
	for _, c := range l.conns {
		c.state = stateReady
		c.ackedSeq = max(c.ackedSeq, c.lastSeq)
	}
	l.receiptsDue = true
}

// receiptTo hands a the delivered RECEIPT seq for its ids id…id+more.
func receiptTo(a *conn, seq, id, more uint64) {
	a.receipt(&protocol.Receipt{Seq: seq, MsgID: id, More: more})
}

// TestReceipts feeds a 1:1 sender its receipts: a run with more, the same
// entry again after a reconnect, a repeat under a new seq, and one missing;
// then the missing one.
func TestReceipts(t *testing.T) {
	l, a, b := checkerFixture(5)
	for i := uint64(0); i < 5; i++ {
		deliverTo(b, i+1, 1000+i, i+1)
	}
	receiptTo(a, 1, 1000, 2) // 1000…1002
	receiptTo(a, 1, 1000, 2) // the same entry after a reconnect
	receiptTo(a, 2, 1001, 0) // 1001 again, stored twice
	receiptTo(a, 3, 1004, 0) // 1003 has none
	receiptTo(a, 4, 1004, 0) // 1004 again, still kept behind 1003
	settled(l)
	lr := l.res
	unchecked := l.checkReceipts(lr)
	if lr.Receipts != 4 || lr.ReceiptsRedelivered != 5 || lr.ReceiptsMissing != 1 || unchecked != 0 || l.unreceipted != 1 {
		t.Errorf("receipts %d, again %d, missing %d, unchecked %d, awaited %d; want 4, 5 (3 + 1 + 1), 1, 0, 1",
			lr.Receipts, lr.ReceiptsRedelivered, lr.ReceiptsMissing, unchecked, l.unreceipted)
	}
	if lr.Passed() || !hasFailure(l, "1 delivered and acknowledged messages got no delivered receipt") {
		t.Errorf("a missing receipt must fail the run: failures %v", lr.Failures)
	}
	if a.outBase != 1003 || len(a.out) != 2 {
		t.Errorf("a keeps ids %d…+%d, want 1003 and 1004 (1003 awaits its receipt)", a.outBase, len(a.out))
	}

	l.res = newResult()
	receiptTo(a, 5, 1003, 0)
	settled(l)
	if l.checkReceipts(l.res); l.res.Receipts != 1 || l.res.ReceiptsMissing != 0 || !l.res.Passed() {
		t.Errorf("receipts %d missing %d failures %v", l.res.Receipts, l.res.ReceiptsMissing, l.res.Failures)
	}
	if len(a.out) != 0 || l.unreceipted != 0 {
		t.Errorf("%d messages kept, %d copies awaiting receipts, after every receipt came", len(a.out), l.unreceipted)
	}
	receiptTo(a, 6, 1000, 4) // all five again, after they were trimmed
	if l.res.ReceiptsRedelivered != 5 || !l.res.Passed() {
		t.Errorf("again %d, failures %v: want 5 and none", l.res.ReceiptsRedelivered, l.res.Failures)
	}
}

// TestReceiptsUnchecked: copies whose receipt could not have come are not
// missing, and a count with no drain before it counts none missing.
func TestReceiptsUnchecked(t *testing.T) {
	tests := []struct {
		name  string
		setup func(l *loop, a, b *conn)
	}{
		{"receiver holds unacknowledged entries", func(l *loop, a, b *conn) { b.ackedSeq = b.lastSeq - 1 }},
		{"sender logged out", func(l *loop, a, b *conn) { a.state = stateClosed }},
		{"no drain waited", func(l *loop, a, b *conn) { l.receiptsDue = false }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, a, b := checkerFixture(2)
			deliverTo(b, 1, 1000, 1)
			deliverTo(b, 2, 1001, 2)
			settled(l)
			tt.setup(l, a, b)
			if unchecked := l.checkReceipts(l.res); unchecked != 2 || l.res.ReceiptsMissing != 0 || !l.res.Passed() {
				t.Errorf("unchecked %d missing %d failures %v; want 2, 0, none", unchecked, l.res.ReceiptsMissing, l.res.Failures)
			}
			if l.receiptsDue {
				t.Error("a count must end the drain's wait: the next count needs a drain of its own")
			}
		})
	}
}

func TestReceiptsBad(t *testing.T) {
	tests := []struct {
		name    string
		receipt protocol.Receipt
		failure string
	}{
		{"never sent", protocol.Receipt{Seq: 10, MsgID: 1001, More: 5}, "msg 1002, which it never sent"},
		{"never delivered", protocol.Receipt{Seq: 10, MsgID: 1001}, "msg 1001, which no recipient has received"},
		{"names a member in a 1:1", protocol.Receipt{Seq: 10, MsgID: 1000, By: 11}, "1:1 msg 1000 by user 11"},
		{"range wraps", protocol.Receipt{Seq: 10, MsgID: 1000, More: 1<<64 - 1}, "past the largest id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, a, b := checkerFixture(2)
			deliverTo(b, 1, 1000, 1)
			a.receipt(&tt.receipt)
			if !hasFailure(l, tt.failure) {
				t.Errorf("failures %v, want one with %q", l.res.Failures, tt.failure)
			}
		})
	}
}

// TestReceiptsReadAndStale: a read receipt and a receipt for an earlier
// run's message are neither counted nor failures.
func TestReceiptsReadAndStale(t *testing.T) {
	l, a, b := checkerFixture(1)
	l.e.firstID = 1000
	deliverTo(b, 1, 1000, 1)
	a.receipt(&protocol.Receipt{Seq: 1, MsgID: 1000, Read: true})
	a.receipt(&protocol.Receipt{Seq: 1, MsgID: 1000, Read: true}) // again after a reconnect
	receiptTo(a, 2, 5, 3)
	if l.readReceipts != 1 || l.stale != 1 || l.res.Receipts != 0 || l.res.ReceiptsRedelivered != 0 || len(l.res.Failures) != 0 {
		t.Errorf("read %d stale %d receipts %d again %d failures %v; want 1, 1, 0, 0, none",
			l.readReceipts, l.stale, l.res.Receipts, l.res.ReceiptsRedelivered, l.res.Failures)
	}
	receiptTo(a, 3, 1000, 0)
	if l.res.Receipts != 1 || len(a.out) != 0 {
		t.Errorf("receipts %d, kept %d: the delivered receipt after a read one must count", l.res.Receipts, len(a.out))
	}
}

// TestReceiptsGroup: a group message has one receipt per member, each
// naming it; one from outside the group fails, one beyond the copies
// delivered is a repeat.
func TestReceiptsGroup(t *testing.T) {
	e := &engine{spec: Spec{RunID: 0xfeed, Size: 64}}
	l := &loop{e: e, users: map[uint64]*conn{}, res: newResult()}
	u := &unit{group: 77}
	for i := uint64(0); i < 4; i++ {
		c := &conn{l: l, member: int32(i), user: 10 + i, unit: u, fd: -1, outBase: 1000}
		u.conns = append(u.conns, c)
		l.conns = append(l.conns, c)
		l.users[c.user] = c
	}
	a := u.conns[0]
	a.out = []msgState{{sent: 1, accepted: true}, {sent: 1, accepted: true}}
	l.pending = 2
	for i, m := range u.conns[1:] {
		body := make([]byte, bodyHeaderLen)
		putBE64(body, e.spec.RunID)
		for id := uint64(0); id < 2; id++ {
			putBE64(body[8:], id+1)
			m.deliver(&protocol.Deliver{Seq: id + 1, From: 10, MsgID: 1000 + id, Group: 77, Body: body})
		}
		if i < 2 { // the third member's receipts never come
			a.receipt(&protocol.Receipt{Seq: uint64(i + 1), MsgID: 1000, More: 1, By: m.user})
		}
	}
	a.receipt(&protocol.Receipt{Seq: 3, MsgID: 1000, By: 10}) // by the sender itself
	a.receipt(&protocol.Receipt{Seq: 4, MsgID: 1000, By: 99}) // by a stranger
	if l.res.Receipts != 4 || l.unreceipted != 2 || !hasFailure(l, "by user 10, not another member") || !hasFailure(l, "by user 99, not another member") {
		t.Errorf("receipts %d awaited %d failures %v", l.res.Receipts, l.unreceipted, l.res.Failures)
	}
	a.receipt(&protocol.Receipt{Seq: 5, MsgID: 1000, More: 1, By: 13})
	a.receipt(&protocol.Receipt{Seq: 6, MsgID: 1001, By: 13}) // 13's again, after the message was settled
	settled(l)
	l.res.Failures = nil
	if l.checkReceipts(l.res); l.res.Receipts != 6 || l.res.ReceiptsRedelivered != 1 || l.res.ReceiptsMissing != 0 || !l.res.Passed() {
		t.Errorf("receipts %d again %d missing %d failures %v; want 6, 1, 0, none", l.res.Receipts, l.res.ReceiptsRedelivered, l.res.ReceiptsMissing, l.res.Failures)
	}
	if len(a.out) != 0 {
		t.Errorf("%d group messages kept after every member's receipt", len(a.out))
	}
}

// TestReceiptAllocs: a sender checks its receipts, alone or in a BATCH,
// without allocating.
func TestReceiptAllocs(t *testing.T) {
	const n = 1000
	l, a, b := checkerFixture(n)
	for i := uint64(0); i < n; i++ {
		deliverTo(b, i+1, 1000+i, i+1)
	}
	var buf []byte
	var w protocol.BatchWriter
	seq, id := uint64(0), uint64(1000)
	allocs := testing.AllocsPerRun(100, func() {
		seq++
		x := protocol.Receipt{Seq: seq, MsgID: id, More: 1}
		buf = x.Append(buf[:0])
		seq++
		w.Reset(seq)
		w.Receipt(&protocol.Receipt{Seq: seq, MsgID: id + 2, More: 1})
		buf = w.Append(buf)
		id += 4
		for off := 0; off < len(buf); {
			f, used, err := protocol.ReadFrame(buf[off:], protocol.MaxServerFrame)
			if err == nil {
				err = a.frame(f)
			}
			if err != nil {
				t.Fatal(err)
			}
			off += used
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per RECEIPT and BATCH", allocs)
	}
	// 101 runs (one to warm up) of 4 ids each.
	if l.res.Receipts != 404 || len(l.res.Failures) != 0 {
		t.Errorf("receipts %d, want 404; failures %v", l.res.Receipts, l.res.Failures)
	}
}
