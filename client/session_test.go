package client

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"switchboard/protocol"
)

const ms = time.Millisecond

// sent is one SEND a session asked for: its id and whether flag B was set.
type sent struct {
	id    uint64
	retry bool
}

// drain returns every SEND s lets go at now.
func drain(s *Session, now time.Duration) []sent {
	var out []sent
	for {
		id, retry, ok := s.NextSend(now)
		if !ok {
			return out
		}
		out = append(out, sent{id, retry})
	}
}

// login takes s through LOGIN and WELCOME (window 256) at now.
func login(t *testing.T, s *Session, now time.Duration) {
	t.Helper()
	s.AppendLogin(nil, protocol.Login{})
	s.Welcome(&protocol.Welcome{Version: 1, User: 7, Window: 256}, now)
}

func equalSent(a, b []sent) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestSessionResendsWithFlagBAfterReconnect: what a lost connection left
// unaccepted goes again on the next, in msg_id order and with flag B, before
// anything new; a message never written goes without B.
func TestSessionResendsWithFlagBAfterReconnect(t *testing.T) {
	s := NewSession(Config{NextMsgID: 10, Rand: func(int64) int64 { return 0 }})
	login(t, s, 0)
	for range 3 {
		s.Queue()
	}
	if got, want := drain(s, 0), []sent{{10, false}, {11, false}, {12, false}}; !equalSent(got, want) {
		t.Fatalf("first connection wrote %v, want %v", got, want)
	}
	if n := s.Accepted(&protocol.Accept{MsgID: 11}); n != 1 {
		t.Fatalf("ACCEPT 11 confirmed %d messages, want 1", n)
	}
	s.Closed(0, 1*ms)
	s.Queue() // 13, queued while offline: never written
	if got := drain(s, 2*ms); got != nil {
		t.Fatalf("wrote %v while not logged in", got)
	}
	login(t, s, 3*ms)
	if got, want := drain(s, 3*ms), []sent{{10, true}, {12, true}, {13, false}}; !equalSent(got, want) {
		t.Fatalf("after reconnect wrote %v, want %v", got, want)
	}
	s.Accepted(&protocol.Accept{MsgID: 10, More: 3})
	if n := s.Pending(); n != 0 {
		t.Fatalf("outbox holds %d after ACCEPT 10…13, want 0", n)
	}
	if s.NextMsgID() != 14 {
		t.Fatalf("NextMsgID = %d, want 14", s.NextMsgID())
	}
}

// TestSessionRestoredOutboxGoesWithFlagB: an outbox restored after a restart
// may have been written, so its messages carry B from their first write.
func TestSessionRestoredOutboxGoesWithFlagB(t *testing.T) {
	s := NewSession(Config{NextMsgID: 5})
	if err := s.Add(3, true); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(3, true); err != ErrMsgIDOrder {
		t.Fatalf("Add of an id already in the outbox: %v, want ErrMsgIDOrder", err)
	}
	login(t, s, 0)
	s.Queue()
	if got, want := drain(s, 0), []sent{{3, true}, {5, false}}; !equalSent(got, want) {
		t.Fatalf("wrote %v, want %v", got, want)
	}
}

// TestSessionHoldsNewSendsDuringRetryLater: after REFUSE RETRY_LATER, nothing
// goes on the connection until retry_after has passed; then the refused
// message first (flag B), then what was queued meanwhile.
func TestSessionHoldsNewSendsDuringRetryLater(t *testing.T) {
	s := NewSession(Config{})
	login(t, s, 0)
	s.Queue() // 1
	s.Queue() // 2
	drain(s, 0)
	if !s.Refused(&protocol.Refuse{MsgID: 1, Code: protocol.CodeRetryLater, RetryAfter: 500}, 100*ms) {
		t.Fatal("a RETRY_LATER with retry_after did not keep the message")
	}
	s.Queue() // 3
	for _, now := range []time.Duration{100 * ms, 300 * ms, 599 * ms} {
		if !s.Held(now) {
			t.Errorf("not held at %v, retry_after ends at 600ms", now)
		}
		if got := drain(s, now); got != nil {
			t.Fatalf("wrote %v at %v, during the RETRY_LATER delay", got, now)
		}
	}
	if at, ok := s.NextWake(200 * ms); !ok || at != 600*ms {
		t.Fatalf("NextWake = %v, %v; want 600ms", at, ok)
	}
	if at, ok := s.SendDue(200 * ms); !ok || at != 600*ms {
		t.Fatalf("SendDue = %v, %v; want 600ms", at, ok)
	}
	if got, want := drain(s, 600*ms), []sent{{1, true}, {3, false}}; !equalSent(got, want) {
		t.Fatalf("at 600ms wrote %v, want %v", got, want)
	}
	if at, ok := s.SendDue(600 * ms); ok {
		t.Fatalf("SendDue = %v after everything went; want none", at)
	}
}

// TestSessionSendDueLeavesAcksOut: SendDue is NextWake without the ACK: a
// driver that schedules ACKs itself wakes only for sends, and not while
// the connection is down.
func TestSessionSendDueLeavesAcksOut(t *testing.T) {
	s := NewSession(Config{AckDelay: 5 * ms})
	login(t, s, 0)
	s.Entry(1)
	s.Processed(1, 10, 0)
	if at, ok := s.NextWake(0); !ok || at != 5*ms {
		t.Fatalf("NextWake = %v, %v; want the ACK at 5ms", at, ok)
	}
	if at, ok := s.SendDue(0); ok {
		t.Fatalf("SendDue = %v with only an ACK owed; want none", at)
	}
	s.Queue()
	drain(s, 0)
	s.Refused(&protocol.Refuse{MsgID: 1, Code: protocol.CodeStorage, RetryAfter: 40}, 0)
	if at, ok := s.SendDue(0); !ok || at != 40*ms {
		t.Fatalf("SendDue = %v, %v; want the retry_after's end, 40ms", at, ok)
	}
	s.Closed(0, 10*ms)
	if at, ok := s.SendDue(10 * ms); ok {
		t.Fatalf("SendDue = %v while down; want none (WELCOME makes messages due)", at)
	}
}

// TestSessionNeverResendsBeforeRetryAfter: a refusal other than RETRY_LATER
// delays only its own message, by exactly retry_after; a second refusal
// with a longer delay is honoured too; retry_after 0 drops the message.
func TestSessionNeverResendsBeforeRetryAfter(t *testing.T) {
	s := NewSession(Config{})
	login(t, s, 0)
	s.Queue() // 1
	s.Queue() // 2
	drain(s, 0)
	s.Refused(&protocol.Refuse{MsgID: 1, Code: protocol.CodeMailboxFull, RetryAfter: 5000}, 10*ms)
	if s.Refused(&protocol.Refuse{MsgID: 2, Code: protocol.CodeBadRecipient}, 10*ms) {
		t.Fatal("BAD_RECIPIENT (retry_after 0) kept the message")
	}
	s.Queue() // 3: not held by MAILBOX_FULL
	if got, want := drain(s, 10*ms), []sent{{3, false}}; !equalSent(got, want) {
		t.Fatalf("at 10ms wrote %v, want %v", got, want)
	}
	if got := drain(s, 5009*ms); got != nil {
		t.Fatalf("wrote %v 1ms before retry_after", got)
	}
	if at, ok := s.NextWake(20 * ms); !ok || at != 5010*ms {
		t.Fatalf("NextWake = %v, %v; want 5.01s", at, ok)
	}
	if got, want := drain(s, 5010*ms), []sent{{1, true}}; !equalSent(got, want) {
		t.Fatalf("at 5.01s wrote %v, want %v", got, want)
	}
	// Refused again, longer: the new delay counts.
	s.Refused(&protocol.Refuse{MsgID: 1, Code: protocol.CodeQuota, RetryAfter: 60000}, 5100*ms)
	if got := drain(s, 65099*ms); got != nil {
		t.Fatalf("wrote %v before the second retry_after", got)
	}
	if got, want := drain(s, 65100*ms), []sent{{1, true}}; !equalSent(got, want) {
		t.Fatalf("wrote %v, want %v", got, want)
	}
	var ids []uint64
	s.Outbox(func(id uint64) bool { ids = append(ids, id); return true })
	if len(ids) != 2 || ids[0] != 1 || ids[1] != 3 {
		t.Fatalf("outbox %v, want [1 3] (2 failed for good)", ids)
	}
}

// TestSessionReconnectDelays checks the delays of PROTOCOL.md 8.9 and 8.10
// at the ends of their ranges (the random source returns its bound minus
// one, or 0) and with a real random source.
func TestSessionReconnectDelays(t *testing.T) {
	top := func(n int64) int64 { return n - 1 }
	s := NewSession(Config{Rand: top})
	// Dials that fail: the ceiling doubles from 1s and stops at 60s.
	var got []time.Duration
	for range 8 {
		d, ok := s.Closed(0, 0)
		if !ok {
			t.Fatal("a failed dial gave up")
		}
		got = append(got, d+1)
	}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("ceilings %v, want %v seconds", got, want)
		}
	}
	// A connection that lasted past StableAfter resets the ceiling; one that
	// did not doubles it again.
	login(t, s, 0)
	if d, _ := s.Closed(0, 10*time.Second); d != time.Second-1 {
		t.Fatalf("after a stable connection: %v, want under 1s", d)
	}
	login(t, s, 20*time.Second)
	if d, _ := s.Closed(0, 21*time.Second); d != 2*time.Second-1 {
		t.Fatalf("after a connection of 1s: %v, want under 2s", d)
	}

	// GOAWAY (TestSessionGoAwayFullJitter); TOKEN_EXPIRED with no delay:
	// at once.
	login(t, s, 0)
	s.GoAway(&protocol.GoAway{Code: protocol.CodeTokenExpired})
	if d, ok := s.Closed(0, time.Second); !ok || d != 0 {
		t.Errorf("GOAWAY TOKEN_EXPIRED: %v, %v; want 0, true", d, ok)
	}
	// REPLACED and BAD_TOKEN: no automatic reconnect.
	for _, code := range []protocol.Code{protocol.CodeReplaced, protocol.CodeBadToken} {
		login(t, s, 0)
		if _, ok := s.Closed(code, time.Second); ok {
			t.Errorf("ERROR %v reconnects", code)
		}
	}

	// Full jitter with a real source: every delay under its ceiling, not
	// all the same, and never the ceiling itself.
	r := NewSession(Config{})
	seen := map[time.Duration]bool{}
	for i := range 200 {
		r.attempts = i % 3 // ceilings 1s, 2s, 4s
		d, _ := r.Closed(0, 0)
		if ceiling := time.Second << (i % 3); d < 0 || d >= ceiling {
			t.Fatalf("delay %v outside [0, %v)", d, ceiling)
		}
		seen[d] = true
	}
	if len(seen) < 150 {
		t.Fatalf("only %d distinct delays in 200: not jittered", len(seen))
	}
}

// TestSessionGoAwayFullJitter checks the delay after a GOAWAY SHUTTING_DOWN,
// RETRY_LATER or with no code (PROTOCOL.md 8.10): full jitter over its
// window, exactly the draw of Config.Rand in [0, after] (both ends
// included), so a stopping server's clients come back spread evenly over
// the window rather than all after it; the backoff ceiling does not grow.
func TestSessionGoAwayFullJitter(t *testing.T) {
	const after = 5000 // ms
	window := after * time.Millisecond
	for _, code := range []protocol.Code{protocol.CodeShuttingDown, protocol.CodeRetryLater, 0} {
		for _, tc := range []struct {
			name string
			draw func(n int64) int64
			want time.Duration
		}{
			{"shortest", func(int64) int64 { return 0 }, 0},
			{"a third", func(n int64) int64 { return n / 3 }, (window + 1) / 3},
			{"longest", func(n int64) int64 { return n - 1 }, window},
		} {
			var asked []int64
			s := NewSession(Config{Rand: func(n int64) int64 { asked = append(asked, n); return tc.draw(n) }})
			login(t, s, 0)
			s.GoAway(&protocol.GoAway{After: after, Code: code})
			d, ok := s.Closed(0, time.Second)
			if !ok || d != tc.want {
				t.Errorf("GOAWAY %v after %d ms, %s draw: %v, %v; want %v, true", code, after, tc.name, d, ok, tc.want)
			}
			if len(asked) != 1 || asked[0] != int64(window)+1 {
				t.Errorf("GOAWAY %v: drew %v from the source, want one draw in [0, %d]", code, asked, int64(window))
			}
			// The attempts in a row did not grow: a failed dial next has
			// the first ceiling.
			if d, _ := s.Closed(0, 2*time.Second); d != time.Duration(tc.draw(int64(time.Second))) {
				t.Errorf("GOAWAY %v, %s: the failed dial after it waited %v, want the 1 s ceiling's draw", code, tc.name, d)
			}
		}
	}

	// A real source: every delay in [0, after], and the early half of the
	// window as used as the late one.
	r := NewSession(Config{})
	early := 0
	for range 400 {
		r.GoAway(&protocol.GoAway{After: after, Code: protocol.CodeShuttingDown})
		d, _ := r.Closed(0, 0)
		if d < 0 || d > window {
			t.Fatalf("delay %v outside [0, %v]", d, window)
		}
		if d < window/2 {
			early++
		}
	}
	if early < 120 || early > 280 {
		t.Fatalf("%d of 400 delays in the window's first half, want about 200", early)
	}
}

// TestSessionAckCoalescing checks the three triggers of an ACK: window/2
// entries, 64 KiB, and the delay; and that the ACK names the last entry
// processed.
func TestSessionAckCoalescing(t *testing.T) {
	s := NewSession(Config{})
	login(t, s, 0) // window 256: every 128 entries
	for seq := uint64(1); seq <= 127; seq++ {
		s.Entry(seq)
		if s.Processed(seq, 100, time.Duration(seq)*ms) {
			t.Fatalf("ACK due at once after %d entries, want 128", seq)
		}
	}
	if at, ok := s.AckDue(); !ok || at != ms+DefaultAckDelay {
		t.Fatalf("AckDue = %v, %v; want the first entry's time + %v", at, ok, DefaultAckDelay)
	}
	s.Entry(128)
	if !s.Processed(128, 100, 200*ms) {
		t.Fatal("no ACK at once after 128 entries")
	}
	if got, want := s.AppendAck(nil), (&protocol.Ack{Seq: 128}).Append(nil); !bytes.Equal(got, want) {
		t.Fatalf("ACK % x, want % x", got, want)
	}
	if got := s.AppendAck(nil); len(got) != 0 {
		t.Fatalf("a second ACK with nothing new: % x", got)
	}
	// Bytes: two entries of 40,000 bytes reach 64 KiB.
	s.Entry(200)
	if s.Processed(200, 40000, 300*ms) {
		t.Fatal("ACK due at 40,000 bytes")
	}
	s.Entry(205) // seqs may skip
	if !s.Processed(205, 40000, 300*ms) {
		t.Fatal("no ACK at 80,000 bytes")
	}
	if got, want := s.AppendAck(nil), (&protocol.Ack{Seq: 205}).Append(nil); !bytes.Equal(got, want) {
		t.Fatalf("ACK % x, want % x", got, want)
	}
	if _, ok := s.AckDue(); ok {
		t.Fatal("an ACK still owed after AppendAck")
	}
	// A configured AckEvery wins over the window.
	c := NewSession(Config{AckEvery: 2})
	login(t, c, 0)
	c.Entry(1)
	c.Entry(2)
	if c.Processed(1, 10, 0) || !c.Processed(2, 10, 0) {
		t.Fatal("AckEvery 2 did not trigger at the second entry")
	}
}

// TestSessionResumeOnlyForProcessedEntries: entries received but not
// processed by the application are neither acknowledged nor in the resume
// point; after a reconnect they are new again, and those processed are
// duplicates. Received and Window describe the current connection: the
// highest seq received (the resume point once it closed) and WELCOME's
// window (0 while closed).
func TestSessionResumeOnlyForProcessedEntries(t *testing.T) {
	s := NewSession(Config{Ack: 4})
	login(t, s, 0)
	if s.Entry(4) {
		t.Fatal("seq 4, at the resume point, is new")
	}
	for seq := uint64(5); seq <= 10; seq++ {
		if !s.Entry(seq) {
			t.Fatalf("seq %d is not new", seq)
		}
	}
	if r, w := s.Received(), s.Window(); r != 10 || w != 256 {
		t.Fatalf("Received %d, Window %d, want 10 and 256", r, w)
	}
	s.Processed(7, 10, 0)
	s.Processed(12, 10, 0) // never received: ignored
	if r := s.Resume(); r != 7 {
		t.Fatalf("Resume = %d, want 7: the last processed", r)
	}
	if got, want := s.AppendAck(nil), (&protocol.Ack{Seq: 7}).Append(nil); !bytes.Equal(got, want) {
		t.Fatalf("ACK % x, want % x (not the 10 received)", got, want)
	}
	s.Closed(0, ms)
	if r, w := s.Received(), s.Window(); r != 7 || w != 0 {
		t.Fatalf("closed: Received %d, Window %d, want 7 and 0", r, w)
	}
	var l protocol.Login
	f, _, err := protocol.ReadFrame(s.AppendLogin(nil, protocol.Login{Token: []byte{1}})[protocol.PrefaceLen:], protocol.MaxLoginFrame)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Decode(f); err != nil || l.Ack != 7 {
		t.Fatalf("LOGIN ack = %d (%v), want 7", l.Ack, err)
	}
	s.Welcome(&protocol.Welcome{Version: 1, User: 7, Window: 256}, 2*ms)
	if s.Entry(7) || !s.Entry(8) {
		t.Fatal("after the reconnect, 7 must be a duplicate and 8 new")
	}
}

// TestSessionHotPathAllocs holds the steady state of a connection to zero
// allocations: an entry received, processed and acknowledged; a message
// queued, written and accepted.
func TestSessionHotPathAllocs(t *testing.T) {
	s := NewSession(Config{})
	login(t, s, 0)
	buf := make([]byte, 0, 64)
	var seq uint64
	now := time.Duration(0)
	if n := testing.AllocsPerRun(1000, func() {
		seq++
		now += ms
		s.Entry(seq)
		if s.Processed(seq, 120, now) {
			buf = s.AppendAck(buf[:0])
		}
	}); n != 0 {
		t.Errorf("receiving: %v allocations per entry, want 0", n)
	}
	for range 8 { // let the outbox's array reach its size
		s.Queue()
	}
	drain(s, now)
	if n := testing.AllocsPerRun(1000, func() {
		id := s.Queue()
		s.NextSend(now)
		s.Accepted(&protocol.Accept{MsgID: id - 4})
	}); n != 0 {
		t.Errorf("sending: %v allocations per message, want 0", n)
	}
}

// BenchmarkSessionEntry measures one received entry: Entry, Processed and,
// every window/2 entries, an ACK.
//
//	go test -run X -bench Session -benchmem ./client/
func BenchmarkSessionEntry(b *testing.B) {
	s := NewSession(Config{})
	s.AppendLogin(nil, protocol.Login{})
	s.Welcome(&protocol.Welcome{Version: 1, User: 7, Window: 256}, 0)
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	var seq uint64
	for b.Loop() {
		seq++
		s.Entry(seq)
		if s.Processed(seq, 120, time.Duration(seq)) {
			buf = s.AppendAck(buf[:0])
		}
	}
}

// BenchmarkSessionSend measures one message through the outbox with 32 in
// flight: Queue, NextSend, and the ACCEPT of the oldest.
func BenchmarkSessionSend(b *testing.B) {
	s := NewSession(Config{})
	s.AppendLogin(nil, protocol.Login{})
	s.Welcome(&protocol.Welcome{Version: 1, User: 7, Window: 256}, 0)
	for range 32 {
		s.Queue()
	}
	drain(s, 0)
	b.ReportAllocs()
	for b.Loop() {
		id := s.Queue()
		s.NextSend(0)
		s.Accepted(&protocol.Accept{MsgID: id - 32})
	}
}

// TestSessionProcessesAnEntryOfTheLastConnection: an entry received just
// before the connection dropped, and stored by the application after the
// reconnect, moves the resume point and is acknowledged on the new
// connection; its redelivered copy is then dropped. The ACK never names a
// seq above WELCOME.last or what the connection received.
func TestSessionProcessesAnEntryOfTheLastConnection(t *testing.T) {
	s := NewSession(Config{})
	login(t, s, 0)
	for seq := uint64(1); seq <= 3; seq++ {
		if !s.Entry(seq) {
			t.Fatalf("entry %d not new", seq)
		}
	}
	s.Processed(1, 10, 0)
	s.Closed(0, ms)
	s.AppendLogin(nil, protocol.Login{})
	s.Welcome(&protocol.Welcome{Version: 1, User: 7, Window: 256, Last: 2}, 2*ms)
	s.Processed(3, 10, 3*ms) // stored after the reconnect
	if got := s.Resume(); got != 3 {
		t.Fatalf("resume point %d after processing seq 3 of the last connection, want 3", got)
	}
	var a protocol.Ack
	if f, _, err := protocol.ReadFrame(s.AppendAck(nil), protocol.MaxFrame); err != nil || a.Decode(f) != nil || a.Seq != 2 {
		t.Fatalf("ACK %d (%v), want 2: WELCOME.last, no further until seq 3 arrives here", a.Seq, err)
	}
	if s.Entry(2) || s.Entry(3) {
		t.Fatal("a redelivered entry the application stored is new again")
	}
	if at, ok := s.AckDue(); !ok || at != 0 {
		t.Fatalf("ACK due %v (%v) after the redelivery of seq 3; want at once", at, ok)
	}
	if f, _, err := protocol.ReadFrame(s.AppendAck(nil), protocol.MaxFrame); err != nil || a.Decode(f) != nil || a.Seq != 3 {
		t.Fatalf("ACK %d (%v), want 3 once seq 3 came on this connection", a.Seq, err)
	}
}

// TestSessionRedirect checks GOAWAY MOVED (PROTOCOL.md 8.10): a delay in
// [0, after] that neither grows the backoff nor counts as a failure, the
// address once from Redirect, at most MaxRedirects in a row before the next
// counts as a failure (and gives no address), and a WELCOME that starts the
// count again.
func TestSessionRedirect(t *testing.T) {
	top := func(n int64) int64 { return n - 1 }
	s := NewSession(Config{Rand: top})
	moved := &protocol.GoAway{After: 100, Code: protocol.CodeMoved, Addr: "10.0.2.7:7000"}
	// Two failed dials first: the ceiling is at 4 s.
	for range 2 {
		s.Closed(0, 0)
	}
	// A GOAWAY MOVED in answer to LOGIN: Conn reports its code with the
	// refusal, and the longest delay is after itself, not twice it.
	for i := range MaxRedirects {
		s.AppendLogin(nil, protocol.Login{})
		s.GoAway(moved)
		d, ok := s.Closed(protocol.CodeMoved, time.Second)
		if !ok || d != 100*ms {
			t.Fatalf("redirect %d: %v, %v; want 100ms, true", i+1, d, ok)
		}
		if addr, ok := s.Redirect(); !ok || addr != moved.Addr {
			t.Fatalf("redirect %d: Redirect() = %q, %v", i+1, addr, ok)
		}
		if addr, ok := s.Redirect(); ok {
			t.Fatalf("redirect %d: a second Redirect() gave %q", i+1, addr)
		}
	}
	// The fourth in a row is a failure: the ceiling the two failures left
	// (4 s), no address, and the ceiling grows after it.
	s.AppendLogin(nil, protocol.Login{})
	s.GoAway(moved)
	if d, ok := s.Closed(protocol.CodeMoved, time.Second); !ok || d != 4*time.Second-1 {
		t.Fatalf("fourth redirect: %v, %v; want 4s-1ns, true", d, ok)
	}
	if addr, ok := s.Redirect(); ok {
		t.Fatalf("fourth redirect gave %q", addr)
	}
	if d, _ := s.Closed(0, time.Second); d != 8*time.Second-1 {
		t.Fatalf("after the fourth redirect a failed dial waits %v, want 8s-1ns", d)
	}
	// The count started again: three more are followed.
	s.GoAway(moved)
	if _, ok := s.Redirect(); ok {
		t.Fatal("Redirect before Closed gave an address")
	}
	for i := range MaxRedirects {
		s.GoAway(moved)
		if d, _ := s.Closed(0, time.Second); d != 100*ms {
			t.Fatalf("redirect %d of the second round: %v", i+1, d)
		}
		if _, ok := s.Redirect(); !ok {
			t.Fatalf("redirect %d of the second round: no address", i+1)
		}
	}
	// A WELCOME resets the count: after it, MaxRedirects more are followed.
	login(t, s, 0)
	for i := range MaxRedirects {
		s.GoAway(moved)
		if d, _ := s.Closed(0, time.Second); d != 100*ms {
			t.Fatalf("redirect %d after a WELCOME: %v", i+1, d)
		}
		if _, ok := s.Redirect(); !ok {
			t.Fatalf("redirect %d after a WELCOME: no address", i+1)
		}
	}

	// The shortest delay is 0; an unread address is dropped by the next
	// Closed; an ERROR MOVED (no address) is a failure.
	z := NewSession(Config{Rand: func(int64) int64 { return 0 }})
	z.GoAway(moved)
	if d, _ := z.Closed(protocol.CodeMoved, 0); d != 0 {
		t.Fatalf("shortest redirect delay %v, want 0", d)
	}
	if d, _ := z.Closed(0, 0); d != 0 {
		t.Fatalf("failed dial: %v", d)
	}
	if addr, ok := z.Redirect(); ok {
		t.Fatalf("a failed dial left the address %q", addr)
	}
	top2 := NewSession(Config{Rand: top})
	if d, _ := top2.Closed(protocol.CodeMoved, 0); d != time.Second-1 {
		t.Fatalf("ERROR MOVED without an address: %v, want the backoff (1s-1ns)", d)
	}
	if _, ok := top2.Redirect(); ok {
		t.Fatal("ERROR MOVED gave an address")
	}
}

// TestSessionAddMovesTheCounterPastTheID: after Add(id), as a restored
// outbox does, the counter is past id, so no new message reuses it.
func TestSessionAddMovesTheCounterPastTheID(t *testing.T) {
	s := NewSession(Config{})
	if err := s.Add(7, false); err != nil {
		t.Fatalf("Add(7): %v", err)
	}
	if got := s.NextMsgID(); got != 8 {
		t.Errorf("NextMsgID = %d after Add(7), want 8", got)
	}
	if got := s.NewMsgID(); got != 8 {
		t.Errorf("NewMsgID = %d after Add(7), want 8: 7 is taken", got)
	}
	if got := s.Queue(); got != 9 {
		t.Errorf("Queue = %d, want 9", got)
	}
}

// TestSessionProcessesPastARedeliveryAfterReconnect: entries 1…10 were
// handed over on the last connection and the application processed 1…5;
// after the reconnect the server redelivers 6, and the application then
// stores up to 10, all of which it was handed: the resume point is 10.
func TestSessionProcessesPastARedeliveryAfterReconnect(t *testing.T) {
	s := NewSession(Config{})
	login(t, s, 0)
	for seq := uint64(1); seq <= 10; seq++ {
		if !s.Entry(seq) {
			t.Fatalf("entry %d not new", seq)
		}
	}
	s.Processed(5, 10, 0)
	s.Closed(0, ms)
	s.AppendLogin(nil, protocol.Login{})
	s.Welcome(&protocol.Welcome{Version: 1, User: 7, Window: 256, Last: 10}, 2*ms)
	if !s.Entry(6) {
		t.Fatal("redelivered entry 6, not yet processed, is not new")
	}
	s.Processed(10, 10, 3*ms)
	if got := s.Resume(); got != 10 {
		t.Fatalf("resume point %d after processing seq 10, handed on the last connection; want 10", got)
	}
}

// TestSessionOutboxStopsWhenTold: Outbox yields the waiting ids in order
// and stops at the first false.
func TestSessionOutboxStopsWhenTold(t *testing.T) {
	s := NewSession(Config{})
	for _, id := range []uint64{3, 5, 9} {
		if err := s.Add(id, false); err != nil {
			t.Fatal(err)
		}
	}
	var all, first []uint64
	s.Outbox(func(id uint64) bool { all = append(all, id); return true })
	s.Outbox(func(id uint64) bool { first = append(first, id); return false })
	if !slices.Equal(all, []uint64{3, 5, 9}) || !slices.Equal(first, []uint64{3}) {
		t.Fatalf("outbox %v, then %v after a false; want [3 5 9] and [3]", all, first)
	}
}

// TestSessionConfiguredThresholds: a configured AckBytes makes the ACK go
// at that many bytes rather than 64 KiB, and a configured StableAfter is
// the time a connection must last past WELCOME, to the nanosecond, for the
// reconnect ceiling to fall back to MinBackoff.
func TestSessionConfiguredThresholds(t *testing.T) {
	s := NewSession(Config{AckBytes: 1000})
	login(t, s, 0)
	s.Entry(1)
	s.Entry(2)
	if s.Processed(1, 600, 0) || !s.Processed(2, 400, 0) {
		t.Fatal("AckBytes 1000 did not trigger at the entry that reached 1,000 bytes")
	}

	top := func(n int64) int64 { return n - 1 }
	const stable = 2 * time.Second
	for _, tc := range []struct {
		name    string
		lasted  time.Duration
		ceiling time.Duration // of the delay after the connection ends
	}{
		{"just short of StableAfter", stable - 1, 4 * time.Second},
		{"exactly StableAfter", stable, time.Second},
	} {
		s := NewSession(Config{StableAfter: stable, Rand: top})
		s.Closed(0, 0) // two failed dials: the ceiling is 4 s
		s.Closed(0, 0)
		login(t, s, time.Minute)
		if d, _ := s.Closed(0, time.Minute+tc.lasted); d != tc.ceiling-1 {
			t.Errorf("%s: delay %v, want the %v ceiling's top", tc.name, d, tc.ceiling)
		}
	}
}

// TestSessionFailedDialsAfterAStableConnectionBackOff: after a connection
// that lasted past StableAfter, the dials that fail (the server stays down)
// grow the ceiling again from MinBackoff: only a WELCOME long ago does
// not make a failed attempt count as stable.
func TestSessionFailedDialsAfterAStableConnectionBackOff(t *testing.T) {
	s := NewSession(Config{Rand: func(n int64) int64 { return n - 1 }})
	login(t, s, 0)
	var got []time.Duration
	now := time.Minute // the connection lasted a minute
	for range 4 {
		d, _ := s.Closed(0, now)
		got = append(got, d+1)
		now += time.Minute
		s.AppendLogin(nil, protocol.Login{}) // the next attempt's LOGIN, refused
	}
	if want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}; !slices.Equal(got, want) {
		t.Fatalf("ceilings %v after a stable connection, want %v", got, want)
	}
}

// TestSessionWritesAfterAnAcceptOfTheFront: an ACCEPT that frees the front
// of the outbox but not all of it leaves a message queued next due at once,
// not held until the next reconnect.
func TestSessionWritesAfterAnAcceptOfTheFront(t *testing.T) {
	s := NewSession(Config{})
	login(t, s, 0)
	s.Queue() // 1
	s.Queue() // 2
	drain(s, 0)
	s.Accepted(&protocol.Accept{MsgID: 1})
	s.Queue() // 3
	if got, want := drain(s, 0), []sent{{3, false}}; !equalSent(got, want) {
		t.Fatalf("after ACCEPT 1 of 1…2 wrote %v, want %v", got, want)
	}
}

// TestSessionStaleRefuseChangesNothing: a REFUSE of a msg_id already
// accepted (still in the outbox behind an older message, or trimmed from
// it) neither holds the connection nor fails another message.
func TestSessionStaleRefuseChangesNothing(t *testing.T) {
	s := NewSession(Config{})
	login(t, s, 0)
	for range 3 {
		s.Queue() // 1, 2, 3
	}
	drain(s, 0)
	s.Accepted(&protocol.Accept{MsgID: 2}) // stays behind 1
	if s.Refused(&protocol.Refuse{MsgID: 2, Code: protocol.CodeRetryLater, RetryAfter: 500}, 0) {
		t.Fatal("a REFUSE of accepted msg 2 kept it in the outbox")
	}
	if s.Held(0) {
		t.Fatal("a REFUSE RETRY_LATER of accepted msg 2 holds the connection")
	}
	s.Accepted(&protocol.Accept{MsgID: 1}) // 1 and 2 leave the outbox
	if s.Refused(&protocol.Refuse{MsgID: 1, Code: protocol.CodeBadRecipient}, 0) {
		t.Fatal("a REFUSE of msg 1, gone from the outbox, kept a message")
	}
	var ids []uint64
	s.Outbox(func(id uint64) bool { ids = append(ids, id); return true })
	if !slices.Equal(ids, []uint64{3}) {
		t.Fatalf("outbox %v after stale REFUSEs of 1 and 2, want [3]", ids)
	}
}

// TestSessionHoldLastsUntilTheLatestRetryLater: a second RETRY_LATER with a
// shorter retry_after does not shorten the hold of the first (PROTOCOL.md
// 8.5: never shorten it), and SendDue names the hold's end, not the
// earlier retry_after, so a driver does not wake in between for nothing.
func TestSessionHoldLastsUntilTheLatestRetryLater(t *testing.T) {
	s := NewSession(Config{})
	login(t, s, 0)
	s.Queue() // 1
	s.Queue() // 2
	drain(s, 0)
	s.Refused(&protocol.Refuse{MsgID: 1, Code: protocol.CodeRetryLater, RetryAfter: 500}, 100*ms) // held to 600ms
	s.Refused(&protocol.Refuse{MsgID: 2, Code: protocol.CodeRetryLater, RetryAfter: 100}, 110*ms) // 2 due at 210ms
	s.Queue()                                                                                     // 3
	if got := drain(s, 300*ms); got != nil {
		t.Fatalf("wrote %v at 300ms, during the first RETRY_LATER's hold (to 600ms)", got)
	}
	if at, ok := s.SendDue(300 * ms); !ok || at != 600*ms {
		t.Fatalf("SendDue = %v, %v during the hold; want 600ms", at, ok)
	}
	if got, want := drain(s, 600*ms), []sent{{1, true}, {2, true}, {3, false}}; !equalSent(got, want) {
		t.Fatalf("at 600ms wrote %v, want %v", got, want)
	}
}

// TestSessionRetryAfterOutlivesAReconnect: a message refused with a
// retry_after waits it out even when the connection changed meanwhile:
// the WELCOME of a reconnect 1 ms before its end does not let it go early.
func TestSessionRetryAfterOutlivesAReconnect(t *testing.T) {
	s := NewSession(Config{Rand: func(int64) int64 { return 0 }})
	login(t, s, 0)
	s.Queue() // 1
	drain(s, 0)
	s.Refused(&protocol.Refuse{MsgID: 1, Code: protocol.CodeStorage, RetryAfter: 5000}, 10*ms) // due 5.01s
	s.Closed(0, 20*ms)
	login(t, s, 5009*ms)
	if got := drain(s, 5009*ms); got != nil {
		t.Fatalf("wrote %v at 5.009s, before the retry_after of the last connection's REFUSE", got)
	}
	if got, want := drain(s, 5010*ms), []sent{{1, true}}; !equalSent(got, want) {
		t.Fatalf("at 5.01s wrote %v, want %v", got, want)
	}
}

// TestSessionGoAwayWithoutDelayBacksOff: a GOAWAY with after 0 (a LOGIN
// answered with RETRY_LATER by a server that sets no window) is a failed
// attempt: the backoff of PROTOCOL.md 8.9, its ceiling growing, never a
// tight loop of reconnects.
func TestSessionGoAwayWithoutDelayBacksOff(t *testing.T) {
	s := NewSession(Config{Rand: func(n int64) int64 { return n - 1 }})
	for _, ceiling := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		s.AppendLogin(nil, protocol.Login{})
		s.GoAway(&protocol.GoAway{Code: protocol.CodeRetryLater})
		if d, ok := s.Closed(0, 0); !ok || d != ceiling-1 {
			t.Fatalf("GOAWAY RETRY_LATER after 0: %v, %v; want %v, the top of the %v ceiling", d, ok, ceiling-1, ceiling)
		}
	}
}

// TestSessionCeilingHoldsAfterManyFailures: however long the server stays
// down, the ceiling stays at MaxBackoff: it never overflows into a delay
// of 0, a tight loop.
func TestSessionCeilingHoldsAfterManyFailures(t *testing.T) {
	s := NewSession(Config{Rand: func(n int64) int64 { return n - 1 }})
	for i := range 100 {
		d, ok := s.Closed(0, 0)
		if i >= 6 && (!ok || d != DefaultMaxBackoff-1) {
			t.Fatalf("failed dial %d: %v, %v; want the top of the %v ceiling", i+1, d, ok, DefaultMaxBackoff)
		}
	}
}
