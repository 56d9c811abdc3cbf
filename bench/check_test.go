package bench

import (
	"strings"
	"testing"

	"switchboard/client"
	"switchboard/protocol"
)

// checkerFixture is one loop with a pair: a sends, b receives. No sockets:
// the checks run on frames handed to b directly.
func checkerFixture(sent int) (l *loop, a, b *conn) {
	e := &engine{spec: Spec{RunID: 0xfeed, Size: 64, ConnFrameCap: 500}}
	l = &loop{e: e, users: map[uint64]*conn{}, res: newResult()}
	u := &unit{}
	a = &conn{l: l, user: 10, unit: u, fd: -1, outBase: 1000}
	b = &conn{l: l, user: 11, unit: u, fd: -1, outBase: 2000}
	u.conns = []*conn{a, b}
	l.conns = []*conn{a, b}
	l.users[a.user], l.users[b.user] = a, b
	for i := 0; i < sent; i++ {
		a.out = append(a.out, msgState{sent: 1, accepted: true})
		l.pending++
	}
	loggedIn(a)
	loggedIn(b)
	return l, a, b
}

// loggedIn gives c a session logged in at time 0 whose next msg id follows
// the messages c already tracks.
func loggedIn(c *conn) {
	c.sess = *client.NewSession(client.Config{NextMsgID: c.outBase + uint64(len(c.out))})
	c.sess.AppendLogin(nil, protocol.Login{})
	c.sess.Welcome(&protocol.Welcome{Version: 1, User: c.user, Window: 256}, 0)
	c.state = stateReady
}

// deliverTo hands b the DELIVER of a's message id with the given body counter.
func deliverTo(b *conn, seq, id, counter uint64) {
	body := make([]byte, bodyHeaderLen)
	putBE64(body, b.l.e.spec.RunID)
	putBE64(body[8:], counter)
	b.deliver(&protocol.Deliver{Seq: seq, From: 10, MsgID: id, Body: body})
}

func TestCheckerClean(t *testing.T) {
	l, a, b := checkerFixture(3)
	for i := uint64(0); i < 3; i++ {
		deliverTo(b, i+1, 1000+i, i+1)
	}
	if lost, _, _, _ := l.losses(); lost != 0 || len(l.res.Failures) != 0 || l.res.Delivered != 3 {
		t.Fatalf("lost %d, delivered %d, failures %v", lost, l.res.Delivered, l.res.Failures)
	}
	if len(a.out) != 3 {
		t.Errorf("%d messages tracked, want 3: their delivered receipts have not come", len(a.out))
	}
	a.receipt(&protocol.Receipt{Seq: 1, MsgID: 1000, More: 2})
	if len(a.out) != 0 {
		t.Errorf("%d messages still tracked after all were accepted, delivered and receipted", len(a.out))
	}
}

func TestCheckerDuplicate(t *testing.T) {
	l, _, b := checkerFixture(3)
	deliverTo(b, 1, 1000, 1)
	deliverTo(b, 2, 1001, 2)
	deliverTo(b, 3, 1001, 2) // the same message under a new seq: stored twice
	deliverTo(b, 4, 1000, 1) // an already-settled message again
	deliverTo(b, 5, 1002, 3)
	if l.res.Duplicates != 2 {
		t.Errorf("duplicates %d, want 2 (failures %v)", l.res.Duplicates, l.res.Failures)
	}
	if l.res.Delivered != 3 {
		t.Errorf("delivered %d, want 3 distinct", l.res.Delivered)
	}
	if !hasFailure(l, "duplicate") {
		t.Errorf("failures %v", l.res.Failures)
	}
}

// TestCheckerDuplicateOfAResend: a message resent with flag B (after a
// lost ACCEPT, or a RETRY_LATER) carries a new body counter, since every
// write does; stored twice, its second copy comes in order by counter. It
// is a copy more than the message was sent to, so a duplicate.
func TestCheckerDuplicateOfAResend(t *testing.T) {
	l, _, b := checkerFixture(2)
	deliverTo(b, 1, 1000, 1)
	deliverTo(b, 2, 1000, 2) // the resend's write, stored again
	deliverTo(b, 3, 1001, 3)
	if l.res.Duplicates != 1 || !hasFailure(l, "duplicate") || l.res.Delivered != 2 {
		t.Errorf("duplicates %d, delivered %d, failures %v; want the resend's copy a duplicate", l.res.Duplicates, l.res.Delivered, l.res.Failures)
	}
}

// TestCheckerMisrouted: a message delivered to a user of another pair is a
// failure, not a delivery that hides its recipient's loss.
func TestCheckerMisrouted(t *testing.T) {
	l, _, _ := checkerFixture(1)
	other := &conn{l: l, user: 12, unit: &unit{}, fd: -1, outBase: 3000}
	other.unit.conns = []*conn{other}
	l.conns = append(l.conns, other)
	l.users[other.user] = other
	loggedIn(other)
	deliverTo(other, 1, 1000, 1)
	if !hasFailure(l, "misrouted") || l.res.Delivered != 0 {
		t.Errorf("delivered %d, failures %v; want the copy to user 12 refused as misrouted", l.res.Delivered, l.res.Failures)
	}
	if lost, _, _, _ := l.losses(); lost != 1 {
		t.Errorf("lost %d, want 1: user 11 never got it", lost)
	}
}

func TestCheckerRedeliveryIsNotDuplicate(t *testing.T) {
	l, _, b := checkerFixture(2)
	deliverTo(b, 1, 1000, 1)
	deliverTo(b, 1, 1000, 1) // the same seq after a reconnect: at least once
	deliverTo(b, 2, 1001, 2)
	if l.res.Redelivered != 1 || l.res.Duplicates != 0 || len(l.res.Failures) != 0 {
		t.Errorf("redelivered %d duplicates %d failures %v", l.res.Redelivered, l.res.Duplicates, l.res.Failures)
	}
}

func TestCheckerReorder(t *testing.T) {
	l, _, b := checkerFixture(3)
	deliverTo(b, 1, 1000, 1)
	deliverTo(b, 2, 1002, 3)
	deliverTo(b, 3, 1001, 2) // sent before the one delivered ahead of it
	if l.res.Reordered != 1 || !hasFailure(l, "reorder") {
		t.Errorf("reordered %d, failures %v", l.res.Reordered, l.res.Failures)
	}
	if lost, _, _, _ := l.losses(); lost != 0 {
		t.Errorf("lost %d: the reordered message did arrive", lost)
	}
}

func TestCheckerLoss(t *testing.T) {
	l, a, b := checkerFixture(3)
	a.out = append(a.out, msgState{sent: 1}) // sent, never accepted nor delivered
	deliverTo(b, 1, 1000, 1)
	deliverTo(b, 2, 1002, 3) // 1001 never comes
	lost, _, unanswered, refused := l.losses()
	if lost != 1 || unanswered != 1 || refused != 0 {
		t.Errorf("lost %d unanswered %d refused %d, want 1, 1 and 0", lost, unanswered, refused)
	}
}

// TestCheckerRecipientGaveUp: accepted messages not delivered to a
// recipient that could not log in are unchecked, not lost, and the run
// fails saying so; with the recipient logged in they are lost.
func TestCheckerRecipientGaveUp(t *testing.T) {
	l, a, b := checkerFixture(3)
	deliverTo(b, 1, 1000, 1)
	if lost, unchecked, _, _ := l.losses(); lost != 2 || unchecked != 0 {
		t.Fatalf("recipient logged in: lost %d unchecked %d, want 2 and 0", lost, unchecked)
	}
	b.gaveUpWait()
	a.gaveUpWait() // the sender's own failure does not make its messages unchecked
	if lost, unchecked, _, _ := l.losses(); lost != 0 || unchecked != 2 {
		t.Fatalf("recipient gave up: lost %d unchecked %d, want 0 and 2", lost, unchecked)
	}
	var r Result
	l.countLosses(&r)
	if r.Lost != 0 || r.Unchecked != 2 || len(r.Failures) != 1 || !strings.Contains(r.Failures[0], "2 accepted messages were not delivered to a recipient that could not log in: not checked") {
		t.Errorf("result lost %d unchecked %d failures %q", r.Lost, r.Unchecked, r.Failures)
	}
}

func TestCheckerStaleAndForeign(t *testing.T) {
	l, _, b := checkerFixture(1)
	b.deliver(&protocol.Deliver{Seq: 1, From: 10, MsgID: 5, Body: make([]byte, bodyHeaderLen)}) // another run's
	if l.stale != 1 || len(l.res.Failures) != 0 {
		t.Errorf("stale %d failures %v", l.stale, l.res.Failures)
	}
	body := make([]byte, bodyHeaderLen)
	putBE64(body, l.e.spec.RunID)
	putBE64(body[8:], 1)
	b.deliver(&protocol.Deliver{Seq: 2, From: 99, MsgID: 5, Body: body})
	if !hasFailure(l, "not in this run") {
		t.Errorf("failures %v", l.res.Failures)
	}
	deliverTo(b, 3, 5000, 2) // an id a never sent
	if !hasFailure(l, "never sent") {
		t.Errorf("failures %v", l.res.Failures)
	}
}

func hasFailure(l *loop, sub string) bool {
	for _, f := range l.res.Failures {
		if strings.Contains(f, sub) {
			return true
		}
	}
	return false
}

func TestCheckerSeqBackwardsInOneSession(t *testing.T) {
	l, _, b := checkerFixture(0)
	b.entry(5, 0)
	b.entry(6, 0)
	b.entry(6, 0) // the same seq twice on one connection
	if l.res.Reordered != 1 || !hasFailure(l, "mailbox seq 6 after seq 6") {
		t.Errorf("reordered %d, failures %v", l.res.Reordered, l.res.Failures)
	}
}

// TestUnansweredFailsTheRun: a SEND the server never answers (no ACCEPT,
// no REFUSE, never delivered) is not lost, but fails the run; one accepted
// and delivered does not.
func TestUnansweredFailsTheRun(t *testing.T) {
	l, a, b := checkerFixture(2)
	a.out[1].accepted = false // written, never answered
	deliverTo(b, 1, 1000, 1)
	lr := newResult()
	l.countLosses(lr)
	if lr.Lost != 0 || len(lr.Failures) != 1 || !strings.Contains(lr.Failures[0], "1 messages were never answered") {
		t.Errorf("lost %d, failures %v; want none lost and one failure for the unanswered SEND", lr.Lost, lr.Failures)
	}
	// Refused with RETRY_LATER and not yet accepted when the run ended:
	// answered, so a note, not a failure.
	a.out[1].refused = true // as conn.refused marks a REFUSE to be sent again
	refusedOnly := newResult()
	l.countLosses(refusedOnly)
	if !refusedOnly.Passed() || len(refusedOnly.Notes) != 1 {
		t.Errorf("failures %v, notes %v; want the refused message a note", refusedOnly.Failures, refusedOnly.Notes)
	}
	a.out[1].accepted = true
	deliverTo(b, 2, 1001, 2)
	clean := newResult()
	l.countLosses(clean)
	if !clean.Passed() {
		t.Errorf("failures %v once every message was accepted and delivered", clean.Failures)
	}
}

// TestBaselineFailureFailsTheRun: slow's first phase, the baseline, is
// checked like any traffic; a duplicate there fails the whole run.
func TestBaselineFailureFailsTheRun(t *testing.T) {
	res, base := newResult(), newResult()
	base.Failures = []string{"duplicate: user 11 got msg 1000 of user 10 again (seq 2)"}
	withBaseline(res, base)
	if res.Passed() || res.Baseline != base || !strings.HasPrefix(res.Failures[0], "baseline: duplicate") {
		t.Errorf("passed %v, failures %v: want the baseline's duplicate to fail the run", res.Passed(), res.Failures)
	}
	clean := newResult()
	withBaseline(clean, newResult())
	if !clean.Passed() {
		t.Errorf("a clean baseline failed the run: %v", clean.Failures)
	}
}

// TestCheckerGroupDuplicateHidesNoLoss: in a group of three, one member
// gets a message twice (a resend stored twice, so a new seq and counter)
// and the other never: the copies add up to the members, but the second
// is a duplicate and the message is lost for the other member.
func TestCheckerGroupDuplicateHidesNoLoss(t *testing.T) {
	e := &engine{spec: Spec{RunID: 0xfeed, Size: 64, ConnFrameCap: 500}}
	l := &loop{e: e, users: map[uint64]*conn{}, res: newResult()}
	u := &unit{group: 77}
	for i := range 3 {
		c := &conn{l: l, member: int32(i), user: uint64(10 + i), unit: u, fd: -1, outBase: 1000}
		u.conns = append(u.conns, c)
		l.conns = append(l.conns, c)
		l.users[c.user] = c
		loggedIn(c)
	}
	a, b := u.conns[0], u.conns[1]
	a.out = append(a.out, msgState{sent: 1, accepted: true})
	l.pending++
	for i, counter := range []uint64{1, 2} {
		body := make([]byte, bodyHeaderLen)
		putBE64(body, e.spec.RunID)
		putBE64(body[8:], counter)
		b.deliver(&protocol.Deliver{Seq: uint64(i + 1), From: a.user, MsgID: 1000, Group: 77, Body: body})
	}
	if l.res.Duplicates != 1 || !hasFailure(l, "second copy of a group message") {
		t.Errorf("duplicates %d, failures %v; want the second copy a duplicate", l.res.Duplicates, l.res.Failures)
	}
	if lost, _, _, _ := l.losses(); lost != 1 {
		t.Errorf("lost %d, want 1: user 12 never got the message", lost)
	}
}

// TestCountLossesOneLost: a run that loses exactly one accepted message
// fails: one is enough.
func TestCountLossesOneLost(t *testing.T) {
	l, _, b := checkerFixture(2)
	deliverTo(b, 1, 1000, 1) // 1001 accepted, never delivered
	var lr Result
	l.countLosses(&lr)
	if lr.Lost != 1 {
		t.Errorf("lost %d, want 1: msg 1001 was accepted and never delivered", lr.Lost)
	}
	if len(lr.Failures) != 1 || !strings.Contains(lr.Failures[0], "1 accepted messages were not delivered to every recipient") {
		t.Errorf("failures %v, want one naming the 1 accepted message not delivered", lr.Failures)
	}
	if lr.Passed() {
		t.Error("a run that lost one accepted message passed")
	}
}

// TestCheckerOneOfEachFailureFailsTheRun: each failure class the checker
// knows, with exactly one instance, fails the run as collect counts it;
// the same run without it passes.
func TestCheckerOneOfEachFailureFailsTheRun(t *testing.T) {
	tests := []struct {
		name  string
		run   func(l *loop, a, b *conn) // two messages, 1000 and 1001
		want  string                    // the one failure
		count func(r *Result) uint64    // its count, if the result keeps one
	}{
		{"clean", func(l *loop, a, b *conn) {
			deliverTo(b, 1, 1000, 1)
			deliverTo(b, 2, 1001, 2)
			receiptTo(a, 1, 1000, 1)
		}, "", nil},
		{"one lost", func(l *loop, a, b *conn) {
			deliverTo(b, 1, 1000, 1) // 1001 accepted, never delivered
			receiptTo(a, 1, 1000, 0)
		}, "1 accepted messages were not delivered to every recipient", func(r *Result) uint64 { return r.Lost }},
		{"one duplicate", func(l *loop, a, b *conn) {
			deliverTo(b, 1, 1000, 1)
			deliverTo(b, 2, 1001, 2)
			deliverTo(b, 3, 1001, 2) // stored twice
			receiptTo(a, 1, 1000, 1)
		}, "duplicate: user 11 got msg 1001 of user 10 again (seq 3)", func(r *Result) uint64 { return r.Duplicates }},
		{"one reordered", func(l *loop, a, b *conn) {
			deliverTo(b, 1, 1001, 2)
			deliverTo(b, 2, 1000, 1) // sent before the one delivered ahead of it
			receiptTo(a, 1, 1000, 1)
		}, "reorder: user 11 got msg 1000 of user 10 (counter 1) after counter 2", func(r *Result) uint64 { return r.Reordered }},
		{"one unanswered", func(l *loop, a, b *conn) {
			a.out[1].accepted = false // written, never answered
			deliverTo(b, 1, 1000, 1)
			receiptTo(a, 1, 1000, 0)
		}, "1 messages were never answered", nil},
		{"one receipt missing", func(l *loop, a, b *conn) {
			deliverTo(b, 1, 1000, 1)
			deliverTo(b, 2, 1001, 2)
			receiptTo(a, 1, 1000, 0) // 1001's never comes
		}, "1 delivered and acknowledged messages got no delivered receipt", func(r *Result) uint64 { return r.ReceiptsMissing }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, a, b := checkerFixture(2)
			tt.run(l, a, b)
			settled(l)
			lr := l.res // as collect counts it
			l.countLosses(lr)
			l.checkReceipts(lr)
			if tt.want == "" {
				if !lr.Passed() {
					t.Fatalf("failures %v in a clean run", lr.Failures)
				}
				return
			}
			if lr.Passed() {
				t.Fatalf("the run passed with %s", tt.name)
			}
			if len(lr.Failures) != 1 || !strings.Contains(lr.Failures[0], tt.want) {
				t.Errorf("failures %v, want exactly one containing %q", lr.Failures, tt.want)
			}
			if tt.count != nil {
				if n := tt.count(lr); n != 1 {
					t.Errorf("count %d, want 1", n)
				}
			}
		})
	}
}

// TestCheckerDuplicateOfASettledMessage: a message delivered again after
// its receipt came back, so after its sender let go of it, is a duplicate
// and fails the run.
func TestCheckerDuplicateOfASettledMessage(t *testing.T) {
	l, a, b := checkerFixture(2)
	deliverTo(b, 1, 1000, 1)
	a.receipt(&protocol.Receipt{Seq: 1, MsgID: 1000})
	if a.outBase != 1001 {
		t.Fatalf("sender keeps ids from %d, want 1001: msg 1000 was accepted, delivered and receipted", a.outBase)
	}
	if len(l.res.Failures) != 0 {
		t.Fatalf("failures %v before the duplicate", l.res.Failures)
	}
	deliverTo(b, 2, 1000, 1) // stored twice, delivered under a new seq
	if l.res.Duplicates != 1 {
		t.Errorf("duplicates %d, want 1", l.res.Duplicates)
	}
	if !hasFailure(l, "duplicate: user 11 got msg 1000 of user 10 again (seq 2)") || l.res.Passed() {
		t.Errorf("failures %v, want the settled message's second copy a duplicate that fails the run", l.res.Failures)
	}
	if l.res.Delivered != 1 {
		t.Errorf("delivered %d, want 1", l.res.Delivered)
	}
}

// TestRefusedForGood: a SEND refused with a code the client does not retry
// fails the run naming the message and the code, and is settled: not
// pending, not unanswered, not lost, its place in the window free. A
// refused GROUP request, or BAD_RECIPIENT in a group, means the server
// does not do groups: the run stops with that error.
func TestRefusedForGood(t *testing.T) {
	tests := []struct {
		name    string
		group   bool // a's unit is a group, its GROUP create msg 1000
		code    protocol.Code
		failure string // the run's one failure; "": none
		fatal   string // the run's stopping error; "": none
	}{
		{name: "a bad recipient", code: protocol.CodeBadRecipient, failure: "user 10: msg 1000 refused: BAD_RECIPIENT"},
		{name: "not a member", code: protocol.CodeNotMember, failure: "user 10: msg 1000 refused: NOT_MEMBER"},
		{name: "a GROUP create", group: true, code: protocol.CodeQuota, fatal: "server refused group operations: QUOTA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, a, _ := checkerFixture(0)
			l.e.failed = make(chan struct{})
			l.body = make([]byte, l.e.spec.Size)
			if tt.group {
				a.unit.groupReq = 1000
			}
			a.send(1)
			if l.pending != 1 || l.unaccepted != 1 || a.inflight != 1 {
				t.Fatalf("after a send: pending %d, unaccepted %d, in flight %d; want 1 each", l.pending, l.unaccepted, a.inflight)
			}
			a.refused(&protocol.Refuse{MsgID: 1000, Code: tt.code})
			if l.res.Refused != 1 || l.res.RetryLater != 0 {
				t.Errorf("refused %d, RETRY_LATER %d; want 1, 0", l.res.Refused, l.res.RetryLater)
			}
			if tt.fatal != "" {
				if l.e.fatalErr == nil || l.e.fatalErr.Error() != tt.fatal {
					t.Errorf("the run stopped with %v, want %q", l.e.fatalErr, tt.fatal)
				}
				return
			}
			if l.e.fatalErr != nil {
				t.Errorf("the run stopped: %v", l.e.fatalErr)
			}
			if len(l.res.Failures) != 1 || l.res.Failures[0] != tt.failure {
				t.Errorf("failures %q, want %q", l.res.Failures, tt.failure)
			}
			if l.pending != 0 || l.unaccepted != 0 || a.inflight != 0 || len(a.out) != 0 || a.outBase != 1001 {
				t.Errorf("pending %d, unaccepted %d, in flight %d, %d tracked from %d; want the message settled and let go",
					l.pending, l.unaccepted, a.inflight, len(a.out), a.outBase)
			}
			lr := newResult()
			l.countLosses(lr)
			if lr.Lost != 0 || len(lr.Failures) != 0 {
				t.Errorf("lost %d, failures %q: a message refused for good is neither lost nor unanswered", lr.Lost, lr.Failures)
			}
		})
	}
}
