package bench

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"switchboard/protocol"
)

func TestOverloadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // a fragment of the error; "": valid
	}{
		{"defaults probe the capacity", Config{}, ""},
		{"a given capacity", Config{Capacity: 20000}, ""},
		{"a given capacity needs no rising rates", Config{Capacity: 20000, Rates: []float64{10, 5}}, ""},
		{"negative capacity", Config{Capacity: -1}, "--capacity -1 must not be negative"},
		{"twice the capacity over the frame cap", Config{Capacity: 100000, Pairs: 100}, "twice --capacity, 200000 over 200 senders"},
		{"probe rates must rise", Config{Rates: []float64{5000, 5000}}, "the rates must rise"},
		{"twice the highest probe rate over the frame cap", Config{Rates: []float64{1000, 60000}, Pairs: 100}, "twice the highest of --rates"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cfg
			c.Scenario = "overload"
			c.setDefaults()
			err := c.validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("validate: %v, want valid", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("validate: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	c := Config{Scenario: "overload"}
	c.setDefaults()
	if c.Pairs != 1000 || !slices.Equal(c.Rates, defaultProbeRates) || c.Duration != 10*time.Second {
		t.Fatalf("overload defaults: %d pairs, rates %v, duration %v; want 1000, %v, 10s", c.Pairs, c.Rates, c.Duration, defaultProbeRates)
	}
}

func TestOverloadProbeStep(t *testing.T) {
	res := func(retryLater uint64, p99us int64, failed bool) *Result {
		r := newResult()
		r.RetryLater = retryLater
		for i := 0; i < 100; i++ {
			r.SendToDeliver.RecordValue(p99us)
		}
		if failed {
			r.Failures = []string{"lost"}
		}
		return r
	}
	for _, tc := range []struct {
		name     string
		inWindow uint64
		res      *Result
		kept     bool
		rate     float64
	}{
		{"all delivered, fast", 20000, res(0, 20_000, false), true, 10000},
		{"90% delivered within the step", 18000, res(0, 20_000, false), true, 9000},
		{"under 90% delivered within the step", 17999, res(0, 20_000, false), false, 8999.5},
		{"one busy refusal", 20000, res(1, 20_000, false), false, 10000},
		{"p99 at the bound", 20000, res(0, probeP99.Microseconds(), false), false, 10000},
		{"a correctness failure", 20000, res(0, 20_000, true), false, 10000},
	} {
		s := newProbeStep(10000, 2*time.Second, tc.inWindow, tc.res)
		if s.KeptUp != tc.kept || s.DeliveredPerSec != tc.rate {
			t.Errorf("%s: kept up %v at %v/s, want %v at %v/s", tc.name, s.KeptUp, s.DeliveredPerSec, tc.kept, tc.rate)
		}
	}
}

func TestCapacityOf(t *testing.T) {
	step := func(delivered float64, kept bool) ProbeStep {
		return ProbeStep{DeliveredPerSec: delivered, KeptUp: kept, Passed: true}
	}
	for _, tc := range []struct {
		name  string
		steps []ProbeStep
		want  float64
	}{
		{"none", nil, 0},
		{"the lowest missed", []ProbeStep{step(4000, false), step(9000, true)}, 0},
		{"the highest kept up before the first miss", []ProbeStep{step(4990, true), step(9980, true), step(14200, false)}, 9980},
		{"kept up again above a miss: noise", []ProbeStep{step(5000, true), step(9000, false), step(15000, true)}, 5000},
		{"every rate kept up", []ProbeStep{step(5000, true), step(10000, true)}, 10000},
	} {
		if got := capacityOf(tc.steps); got != tc.want {
			t.Errorf("%s: capacity %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestOverloadJudge(t *testing.T) {
	for _, tc := range []struct {
		name      string
		capacity  float64
		delivered uint64
		held      bool
		goodput   float64
	}{
		{"at capacity", 20000, 200000, true, 20000},
		{"exactly 90%", 20000, 180000, true, 18000},
		{"just below 90%", 20000, 179999, false, 17999.9},
		{"collapsed, as a fixed retry_after did", 20000, 73500, false, 7350},
		{"no capacity", 0, 100, false, 10},
	} {
		o := &Overload{Capacity: tc.capacity, Offered: 2 * tc.capacity, Factor: 2, MinShare: minGoodputShare,
			Duration: 10 * time.Second, DeliveredInWindow: tc.delivered, CapacityFrom: "probe"}
		f := o.judge()
		if o.Held != tc.held || o.Goodput != tc.goodput || (f == "") != tc.held {
			t.Errorf("%s: held %v, goodput %v, failure %q; want held %v, goodput %v", tc.name, o.Held, o.Goodput, f, tc.held, tc.goodput)
		}
		if v := overloadVerdict(o); tc.held == strings.Contains(v, "NOT held") {
			t.Errorf("%s: verdict %q", tc.name, v)
		}
	}
}

// TestWakeQueueOrder: sessions' send wake-ups come due in order of time,
// not of their refusals: each retry_after is drawn at random.
func TestWakeQueueOrder(t *testing.T) {
	var q wakeQueue
	rng := rand.New(rand.NewPCG(1, 2))
	var ats []int64
	for i := 0; i < 500; i++ {
		at := rng.Int64N(1_000_000)
		ats = append(ats, at)
		q.push(wake{at: at})
		if i%7 == 0 { // interleave pops with pushes
			next, _ := q.next()
			got := q.pop()
			if got.at != next || got.at != slices.Min(ats) {
				t.Fatalf("pop after %d pushes: at %d, want the earliest, %d", i+1, got.at, slices.Min(ats))
			}
			ats = slices.DeleteFunc(ats, func(x int64) bool { return x == got.at })
		}
	}
	var prev int64 = -1
	for len(q) > 0 {
		w := q.pop()
		if w.at < prev {
			t.Fatalf("at %d popped after %d", w.at, prev)
		}
		prev = w.at
	}
	if _, ok := q.next(); ok {
		t.Fatal("next on an empty queue reports a wake")
	}
}

// testLoop is a loop with n pairs, every user logged in, no sockets: what
// it sends stays in each connection's obuf.
func testLoop(n int) *loop {
	e := &engine{spec: Spec{RunID: 7, Size: bodyHeaderLen, ConnFrameCap: 500, Weight: 1}}
	l := &loop{e: e, users: map[uint64]*conn{}, res: newResult(), body: make([]byte, bodyHeaderLen)}
	e.loops = []*loop{l}
	for u := 0; u < n; u++ {
		un := &unit{}
		for m := 0; m < 2; m++ {
			c := &conn{l: l, idx: int32(len(l.conns)), user: uint64(100 + len(l.conns)), unit: un, fd: -1, outBase: 1000}
			loggedIn(c)
			l.conns = append(l.conns, c)
			l.users[c.user] = c
			un.conns = append(un.conns, c)
		}
		e.units = append(e.units, un)
	}
	return l
}

// sends returns the SENDs in c's obuf, and clears it.
func sends(t *testing.T, c *conn) []protocol.Send {
	t.Helper()
	var out []protocol.Send
	b := c.obuf
	for len(b) > 0 {
		f, n, err := protocol.ReadFrame(b, protocol.MaxFrame)
		if err != nil {
			t.Fatal(err)
		}
		var s protocol.Send
		if err := s.Decode(f); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
		b = b[n:]
	}
	c.obuf = c.obuf[:0]
	return out
}

// TestOverloadClientBacksOff: a connection refused RETRY_LATER sends
// nothing new until its retry_after has passed, then resends the refused
// message (flag B) before anything new; the others take the schedule
// meanwhile; when every sender is held the loop sleeps until the first
// hold ends instead of spinning; what was never sent is counted unsent.
func TestOverloadClientBacksOff(t *testing.T) {
	l := testLoop(1)
	a, b := l.conns[0], l.conns[1]
	ms := int64(time.Millisecond)
	l.now = 0
	l.start(Step{Kind: "traffic", Rate: 1000, Duration: time.Second}, func(error) {})
	if len(l.traffic.senders) != 2 {
		t.Fatalf("traffic: %d senders, want 2", len(l.traffic.senders))
	}
	l.timers() // the first message, at 0
	first := append(sends(t, a), sends(t, b)...)
	if len(first) != 1 || first[0].Retry {
		t.Fatalf("at 0 ms: %d SENDs, want one first transmission", len(first))
	}
	refused := a
	if len(l.conns[1].out) == 1 {
		refused = b
	}
	other := a
	if refused == a {
		other = b
	}
	id := first[0].MsgID
	refused.refused(&protocol.Refuse{MsgID: id, Code: protocol.CodeRetryLater, RetryAfter: 300})
	if end, _ := refused.sess.SendDue(0); !refused.sess.Held(299*time.Millisecond) || refused.sess.Held(300*time.Millisecond) || end != 300*time.Millisecond {
		t.Fatalf("the session holds until %v, want 300ms", end)
	}
	if l.res.RetryLater != 1 || l.res.RetryAfter.TotalCount() != 1 || l.res.RetryAfter.Max() < 299_000 {
		t.Fatalf("RETRY_LATER %d, retry_after samples %d (max %d µs); want 1, 1, 300 ms", l.res.RetryLater, l.res.RetryAfter.TotalCount(), l.res.RetryAfter.Max())
	}
	// Until 150 ms every scheduled message goes through the other.
	for now := int64(1); now < 150; now++ {
		l.now = now * ms
		l.timers()
	}
	if s := sends(t, refused); len(s) != 0 {
		t.Fatalf("the refused connection wrote %d SENDs while held", len(s))
	}
	if s := sends(t, other); len(s) != 149 {
		t.Fatalf("the other connection wrote %d SENDs in 1–149 ms, want 149", len(s))
	}
	// At 150 ms the other is refused too, for longer: both held, the
	// messages due wait, and the loop sleeps until the first hold ends.
	l.now = 150 * ms
	other.refused(&protocol.Refuse{MsgID: other.outBase + uint64(len(other.out)) - 1, Code: protocol.CodeRetryLater, RetryAfter: 500})
	for now := int64(150); now < 300; now += 10 {
		l.now = now * ms
		l.timers()
	}
	if n := len(sends(t, refused)) + len(sends(t, other)); n != 0 {
		t.Fatalf("%d SENDs written while both connections were held", n)
	}
	if got := l.traffic.blockedUntil; got != 300*ms {
		t.Fatalf("both held: blocked until %d ns, want %d (the first hold's end)", got, 300*ms)
	}
	if next := l.next(l.now + int64(housekeeping)); next != 300*ms {
		t.Fatalf("both held: the loop wakes at %d ns, want %d", next, 300*ms)
	}
	// At 300 ms: the refused message goes again, with flag B, then the
	// schedule's messages owed since 150 ms, timed from their slots.
	l.now = 300 * ms
	l.timers()
	s := sends(t, refused)
	if len(s) != 152 || s[0].MsgID != id || !s[0].Retry || s[1].Retry {
		t.Fatalf("at 300 ms the refused connection wrote %d SENDs (first %+v); want the refused msg %d again with flag B, then the 151 owed since 150 ms", len(s), s[0], id)
	}
	if l.res.Resent != 1 {
		t.Fatalf("resent %d, want 1", l.res.Resent)
	}
	// Slots before the deadline that were never reached count as unsent.
	l.traffic.k -= 5 // as if five slots before the deadline were still waiting
	if unsent := l.traffic.unsent(); unsent != 5+uint64(1000-301) {
		t.Fatalf("unsent %d, want %d", unsent, 5+1000-301)
	}
}

// TestClosedLoopHoldsAfterRetryLater: a closed-loop sender refused
// RETRY_LATER writes nothing new until the retry_after has passed, though
// its window has room; then the refused message goes first, with flag B,
// and the window fills again. An earlier wake-up of the same session makes
// the later entry stale.
func TestClosedLoopHoldsAfterRetryLater(t *testing.T) {
	l := testLoop(1)
	ms := time.Millisecond
	l.start(Step{Kind: "traffic", Window: 4, Count: 10}, func(error) {})
	a := l.conns[0]
	if s := sends(t, a); len(s) != 4 {
		t.Fatalf("the window opened with %d SENDs, want 4", len(s))
	}
	a.refused(&protocol.Refuse{MsgID: 1001, Code: protocol.CodeRetryLater, RetryAfter: 300})
	a.accepted(&protocol.Accept{MsgID: 1000})
	body := make([]byte, bodyHeaderLen)
	putBE64(body, l.e.spec.RunID)
	putBE64(body[8:], 1)
	l.conns[1].deliver(&protocol.Deliver{Seq: 1, From: a.user, MsgID: 1000, Body: body})
	if len(a.out) != 5 || a.inflight != 4 {
		t.Fatalf("after a delivery: %d messages tracked, %d in flight; want 5, 4 (the window took one more)", len(a.out), a.inflight)
	}
	if s := sends(t, a); len(s) != 0 {
		t.Fatalf("%d SENDs written while held: %+v", len(s), s)
	}
	if at, ok := l.wakes.next(); !ok || at != int64(300*ms) || a.wakeAt != int64(300*ms) {
		t.Fatalf("wake at %d (%v), conn's %d; want %d", at, ok, a.wakeAt, 300*ms)
	}
	l.now = int64(299 * ms)
	l.timers()
	if s := sends(t, a); len(s) != 0 {
		t.Fatalf("%d SENDs written at 299 ms", len(s))
	}
	l.now = int64(300 * ms)
	l.timers()
	s := sends(t, a)
	if len(s) != 2 || s[0].MsgID != 1001 || !s[0].Retry || s[1].MsgID != 1004 || s[1].Retry {
		t.Fatalf("at 300 ms: %+v; want msg 1001 again with flag B, then the new 1004", s)
	}
	if a.wakeAt != 0 || len(l.wakes) != 0 {
		t.Fatalf("after the wake: conn's wakeAt %d, %d wakes queued; want none", a.wakeAt, len(l.wakes))
	}
}
