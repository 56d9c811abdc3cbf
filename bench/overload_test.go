package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard/delivery"
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

// tableRow matches one row of a summary table: its cells in order,
// separated by the columns' padding.
func tableRow(cells ...string) *regexp.Regexp {
	for i, c := range cells {
		cells[i] = regexp.QuoteMeta(c)
	}
	return regexp.MustCompile(`(?m)^  ` + strings.Join(cells, ` +`) + `$`)
}

// overloadReport returns the summary and report.md of res.
func overloadReport(t *testing.T, res *Result) (summary, md string) {
	t.Helper()
	var out, m bytes.Buffer
	PrintSummary(&out, res)
	if err := writeMarkdown(&m, buildReport(res), nil); err != nil {
		t.Fatal(err)
	}
	return out.String(), m.String()
}

// TestOverload runs the overload scenario against an idle server, with the
// capacity given and with the capacity probed, and through a proxy that
// makes every answer 300 ms late: every scheduled message is sent once
// and delivered, nothing is refused or held back, the goodput is the
// messages delivered while the load was offered (not those delivered
// after it) over its time, and the summary, report.md and result.json say
// so.
func TestOverload(t *testing.T) {
	tests := []struct {
		name     string
		capacity float64 // --capacity; 0: probed at rates
		rates    []float64
		late     time.Duration // the proxy's delay of every server frame; 0: no proxy
		// The progress lines the probe writes; nil without a probe.
		progress []string
	}{
		{name: "given capacity", capacity: 100},
		{name: "late answers", capacity: 100, late: 300 * time.Millisecond},
		{name: "probed", rates: []float64{100}, progress: []string{
			"bench: capacity probe 1 of at most 1: 100 msg/s offered for 2s\n",
			"bench: probe 100 msg/s offered: ",
			" delivered within the step, 0 RETRY_LATER, p99 ",
			": kept up yes\n",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, delivery.Config{})
			cfg := srv.config("overload")
			var out bytes.Buffer
			cfg.Out = &out
			cfg.Pairs, cfg.Capacity, cfg.Rates, cfg.Duration = 5, tt.capacity, tt.rates, time.Second
			if tt.late > 0 {
				cfg.Addr = startLateProxy(t, srv.addr, tt.late).addr()
			}
			res := runOK(t, cfg)
			ov := res.Overload
			if ov == nil {
				t.Fatal("no overload in the result")
			}
			from := "--capacity"
			if tt.capacity == 0 {
				from = "probe"
				if len(ov.Probe) != 1 {
					t.Fatalf("probe steps %+v, want one", ov.Probe)
				}
				st := ov.Probe[0]
				// The probe's answer is what the step delivered within its two
				// seconds: at most the 200 messages it offered.
				if st.Offered != 100 || !st.Passed || !st.KeptUp || st.RetryLater != 0 ||
					st.DeliveredInWindow < 180 || st.DeliveredInWindow > 200 || st.P99 <= 0 {
					t.Errorf("probe step %+v: want 100 msg/s offered, kept up, 180–200 delivered within the step", st)
				}
				if ov.Capacity != st.DeliveredPerSec {
					t.Errorf("capacity %v, want the step's delivered rate %v", ov.Capacity, st.DeliveredPerSec)
				}
				for _, w := range tt.progress {
					if !strings.Contains(out.String(), w) {
						t.Errorf("progress output lacks %q:\n%s", w, out.String())
					}
				}
				note := "the server kept up with every probe rate up to 100 msg/s: the capacity may be higher; add higher --rates"
				if !slices.Contains(res.Notes, note) {
					t.Errorf("notes %q lack %q", res.Notes, note)
				}
			} else if ov.Capacity != tt.capacity || len(ov.Probe) != 0 {
				t.Errorf("capacity %v with %d probe steps, want %v and no probe", ov.Capacity, len(ov.Probe), tt.capacity)
			}
			if ov.CapacityFrom != from || ov.Factor != 2 || ov.Offered != 2*ov.Capacity || ov.MinShare != 0.9 {
				t.Errorf("capacity from %q, factor %v, offered %v for a capacity of %v; want from %q, twice the capacity, 90%% required",
					ov.CapacityFrom, ov.Factor, ov.Offered, ov.Capacity, from)
			}
			// Open loop at the offered rate for a second: every slot's message
			// goes out once, none is held back, refused or resent.
			scheduled := uint64(math.Ceil(ov.Offered)) // the slots of one second, the first at 0
			if ov.Sent+ov.Unsent != scheduled || ov.Unsent != 0 || ov.Sent != res.Sent {
				t.Errorf("first sends %d (result %d), held back %d; want all %d scheduled sent", ov.Sent, res.Sent, ov.Unsent, scheduled)
			}
			if ov.RetryLater != 0 || ov.Resent != 0 || ov.RetryAfter.Count != 0 {
				t.Errorf("busy refusals %d, resends %d, retry_after samples %d from an idle server", ov.RetryLater, ov.Resent, ov.RetryAfter.Count)
			}
			checkAllDelivered(t, res, ov.Sent)
			checkAllReceipted(t, res)
			// What is sent in the last moments is delivered after the load:
			// with late answers, at least what the last 200 ms sent.
			inWindow := [2]uint64{res.Delivered * 9 / 10, res.Delivered}
			if tt.late > 0 {
				inWindow = [2]uint64{res.Delivered / 2, res.Delivered - uint64(ov.Offered/5)}
			}
			if ov.DeliveredInWindow < inWindow[0] || ov.DeliveredInWindow > inWindow[1] {
				t.Errorf("delivered while offered %d of %d delivered, want %d–%d", ov.DeliveredInWindow, res.Delivered, inWindow[0], inWindow[1])
			}
			if ov.Duration != res.Duration || ov.Duration < time.Second || ov.Duration > 2*time.Second {
				t.Errorf("overload duration %v (result %v), want about the second asked for", ov.Duration, res.Duration)
			}
			if want := float64(ov.DeliveredInWindow) / ov.Duration.Seconds(); ov.Goodput != want || !ov.Held {
				t.Errorf("goodput %v, held %v; want %v, held", ov.Goodput, ov.Held, want)
			}
			if res.Figures["goodput_per_s"] != ov.Goodput || res.Figures["capacity_per_s"] != ov.Capacity {
				t.Errorf("figures %v: want goodput_per_s %v and capacity_per_s %v", res.Figures, ov.Goodput, ov.Capacity)
			}
			if res.Conns != 10 {
				t.Errorf("conns %d, want 10", res.Conns)
			}
			if got := srv.srv.Stats().Logins.Load(); got != 10 {
				t.Errorf("%d logins, want 10: the probe and the overload share the connections", got)
			}
			note := "overload: open loop at " + formatRate(ov.Offered) + " for 1s; a client refused RETRY_LATER resends"
			if !slices.ContainsFunc(res.Notes, func(n string) bool { return strings.HasPrefix(n, note) }) {
				t.Errorf("no note %q… in %q", note, res.Notes)
			}

			summary, md := overloadReport(t, res)
			verdict := overloadVerdict(ov)
			for _, re := range []*regexp.Regexp{
				tableRow("capacity ("+from+")", formatRate(ov.Capacity)),
				tableRow("offered, open loop", formatRate(ov.Offered)),
				tableRow("first sends", formatMsgs(ov.Sent)),
				tableRow("held back by the clients, never sent", "0 msg"),
				tableRow("busy refusals (REFUSE RETRY_LATER)", "0 msg"),
				tableRow("retry_after p50 / p90 / p99 / max", "— / — / — / —"),
				regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(verdict) + `$`),
			} {
				if !re.MatchString(summary) {
					t.Errorf("summary lacks %s:\n%s", re, summary)
				}
			}
			if !strings.Contains(verdict, ", from "+from+"): ") || !strings.Contains(verdict, "% of capacity, held (≥ 90% required)") {
				t.Errorf("verdict %q", verdict)
			}
			hasProbe := strings.Contains(summary, "probe: offered")
			if hasProbe != (tt.capacity == 0) || strings.Contains(md, "| probe: offered |") != hasProbe {
				t.Errorf("probe table in the summary %v, in report.md %v; want it only when probed", hasProbe, !hasProbe)
			}
			for _, w := range []string{"## Overload\n", "**" + mdText(verdict) + "**", "| first sends | " + formatMsgs(ov.Sent) + " |"} {
				if !strings.Contains(md, w) {
					t.Errorf("report.md lacks %q", w)
				}
			}
			var js bytes.Buffer
			if err := WriteJSON(&js, res); err != nil {
				t.Fatal(err)
			}
			var got struct {
				Overload struct {
					Capacity float64 `json:"capacity_per_s"`
					From     string  `json:"capacity_from"`
					Sent     uint64  `json:"sent"`
					Goodput  float64 `json:"goodput_per_s"`
					Held     bool    `json:"held"`
				} `json:"overload"`
			}
			if err := json.Unmarshal(js.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if o := got.Overload; o.Capacity != ov.Capacity || o.From != from || o.Sent != ov.Sent || o.Goodput != ov.Goodput || !o.Held {
				t.Errorf("result.json overload %+v", o)
			}
		})
	}
}

// TestOverloadRendering checks the overload's rows, the probe's rows and
// progress line, and the verdict, as the terminal and report.md show them.
func TestOverloadRendering(t *testing.T) {
	ov := &Overload{Capacity: 20000, CapacityFrom: "probe", Factor: 2, Offered: 40000, Duration: 10 * time.Second, MinShare: 0.9,
		Sent: 385000, Unsent: 15000, RetryLater: 154010, Resent: 150000, DeliveredInWindow: 190990,
		RetryAfter: HistSummary{Count: 154010, P50: 4_630_000, P90: 5_900_000, P99: 6_300_000, Max: 6_400_000},
		Probe: []ProbeStep{
			{Offered: 10000, DeliveredPerSec: 9990, P99: 117_000, Passed: true, KeptUp: true},
			{Offered: 20000, DeliveredPerSec: 17481, RetryLater: 1234, P99: 618_000, Passed: true},
			{Offered: 25000},
		}}
	if f := ov.judge(); f != "" {
		t.Fatalf("judge: %q, want held", f)
	}
	rows := []string{
		"capacity (probe)|20,000 msg/s",
		"offered, open loop|40,000 msg/s",
		"goodput: distinct messages delivered per second while offered|19,099 msg/s",
		"goodput ÷ capacity|95% (≥ 90%)",
		"first sends|385,000 msg",
		"held back by the clients, never sent|15,000 msg",
		"busy refusals (REFUSE RETRY_LATER)|154,010 msg",
		"resends (flag B)|150,000 msg",
		"retry_after p50 / p90 / p99 / max|4.63 s / 5.90 s / 6.30 s / 6.40 s",
	}
	got := overloadRows(ov)
	if len(got) != len(rows) {
		t.Fatalf("%d rows, want %d: %q", len(got), len(rows), got)
	}
	for i, row := range got {
		if s := strings.Join(row, "|"); s != rows[i] {
			t.Errorf("row %d:\n got %s\nwant %s", i, s, rows[i])
		}
	}
	probeRows := []string{
		"10,000 msg/s|9,990 msg/s|0|117 ms|yes",
		"20,000 msg/s|17,481 msg/s|1,234|618 ms|no",
		"25,000 msg/s|0.0 msg/s|0|—|FAIL",
	}
	for i, s := range ov.Probe {
		if got := strings.Join(probeRow(s), "|"); got != probeRows[i] {
			t.Errorf("probe row %d:\n got %s\nwant %s", i, got, probeRows[i])
		}
	}
	if got, want := probeLine(ov.Probe[1]), "probe 20,000 msg/s offered: 17,481 msg/s delivered within the step, 1,234 RETRY_LATER, p99 618 ms: kept up no"; got != want {
		t.Errorf("probe line\n got %s\nwant %s", got, want)
	}
	verdict := "goodput 19,099 msg/s at 40,000 msg/s offered (2 × the capacity 20,000 msg/s, from probe): 95% of capacity, held (≥ 90% required)"
	if got := overloadVerdict(ov); got != verdict {
		t.Errorf("verdict\n got %s\nwant %s", got, verdict)
	}

	r := newResult()
	r.Scenario, r.Overload = "overload", ov
	summary, md := overloadReport(t, r)
	for _, re := range []*regexp.Regexp{
		tableRow("retry_after p50 / p90 / p99 / max", "4.63 s / 5.90 s / 6.30 s / 6.40 s"),
		tableRow("20,000 msg/s", "17,481 msg/s", "1,234", "618 ms", "no"),
		regexp.MustCompile(`(?m)^probe: offered +delivered in step +RETRY_LATER +p99 +kept up$`),
		regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(verdict) + `$`),
	} {
		if !re.MatchString(summary) {
			t.Errorf("summary lacks %s:\n%s", re, summary)
		}
	}
	for _, w := range []string{
		"**" + mdText(verdict) + "**\n",
		"| busy refusals (REFUSE RETRY\\_LATER) | 154,010 msg |\n",
		"| probe: offered | delivered in step | RETRY_LATER | p99 | kept up |\n|--:|--:|--:|--:|--:|\n",
		"| 25,000 msg/s | 0.0 msg/s | 0 | — | FAIL |\n",
		"The capacity probe offers each rate open loop for 2s, then drains",
	} {
		if !strings.Contains(md, w) {
			t.Errorf("report.md lacks %q:\n%s", w, md)
		}
	}
}

// TestOverloadProbeFindsNoCapacity: a server whose every frame comes 600
// ms late keeps up with no probe rate (its p99 is over the probe's 500 ms
// bound): the run fails saying so, offers no overload, and says it held
// its connections.
func TestOverloadProbeFindsNoCapacity(t *testing.T) {
	srv := startServer(t, delivery.Config{})
	p := startLateProxy(t, srv.addr, 600*time.Millisecond)
	cfg := srv.config("overload")
	cfg.Addr, cfg.Pairs, cfg.Rates, cfg.Duration = p.addr(), 5, []float64{100}, time.Second
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("overload: %v", err)
	}
	ov := res.Overload
	if ov == nil || len(ov.Probe) != 1 {
		t.Fatalf("overload %+v, want one probe step", ov)
	}
	if st := ov.Probe[0]; st.KeptUp || !st.Passed || st.P99 < 600_000 {
		t.Errorf("probe step %+v: want passed, p99 over 600 ms, not kept up", st)
	}
	want := []string{"the capacity probe found no rate the server kept up with: give --capacity, or lower --rates"}
	if !slices.Equal(res.Failures, want) {
		t.Errorf("failures %q, want %q", res.Failures, want)
	}
	if ov.Capacity != 0 || ov.Offered != 0 || ov.Sent != 0 || res.Sent != 0 || ov.Held {
		t.Errorf("capacity %v, offered %v, sent %d (result %d), held %v: want no overload offered", ov.Capacity, ov.Offered, ov.Sent, res.Sent, ov.Held)
	}
	if res.Conns != 10 {
		t.Errorf("conns %d, want the 10 the probe held", res.Conns)
	}
	summary, md := overloadReport(t, res)
	verdict := "no overload offered: the capacity probe ended without a capacity (see the failures)"
	for _, w := range []string{"load    10 conns at peak", "\n" + verdict + "\n", "\n  100 msg/s "} {
		if !strings.Contains(summary, w) {
			t.Errorf("summary lacks %q:\n%s", w, summary)
		}
	}
	if strings.Contains(summary, "offered, open loop") || strings.Contains(md, "offered, open loop") {
		t.Errorf("the summary or report.md show an overload table though none was offered:\n%s", summary)
	}
	if !strings.Contains(md, "**"+mdText(verdict)+"**") {
		t.Errorf("report.md lacks the verdict %q", verdict)
	}
}

// TestOverloadClientsHoldBack runs the overload through a proxy that turns
// the first ACCEPT of every message into a REFUSE RETRY_LATER of 1.5 s:
// every sender is held after its first refusal, longer than the load
// lasts, so the rest of the schedule is held back and never sent, and
// counted so. The goodput falls below the capacity and the run fails
// saying so, with the refusals and their retry_after in its table. (The
// server stored what the proxy refused: each message is delivered once.)
func TestOverloadClientsHoldBack(t *testing.T) {
	srv := startServer(t, delivery.Config{})
	var mu sync.Mutex
	refused := map[uint64]bool{} // guarded by mu: msg ids refused once
	p := startProxy(t, srv.addr, 0, func(f protocol.Frame, raw []byte) ([]byte, bool) {
		var a protocol.Accept
		if f.Type != protocol.TypeAccept || a.Decode(f) != nil || a.More != 0 {
			return raw, false
		}
		mu.Lock()
		defer mu.Unlock()
		if refused[a.MsgID] {
			return raw, false
		}
		refused[a.MsgID] = true
		return (&protocol.Refuse{MsgID: a.MsgID, Code: protocol.CodeRetryLater, RetryAfter: 1500}).Append(nil), false
	})
	cfg := srv.config("overload")
	cfg.Addr, cfg.Pairs, cfg.Capacity, cfg.Duration = p.addr(), 5, 100, time.Second
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("overload: %v", err)
	}
	ov := res.Overload
	mu.Lock()
	nRefused := uint64(len(refused))
	mu.Unlock()
	// One message per sender at least before all are held; the schedule's
	// 200 messages are sent or held back.
	if ov.Sent < 10 || ov.Sent > 100 || ov.Sent+ov.Unsent != 200 {
		t.Errorf("first sends %d, held back %d; want 10–100 sent and the rest of the 200 held back", ov.Sent, ov.Unsent)
	}
	if nRefused < 10 || ov.RetryLater != nRefused || ov.RetryLater != res.RetryLater || ov.Resent != res.Resent ||
		ov.RetryAfter.Count != int64(nRefused) || ov.RetryAfter.P50 < 1_490_000 || ov.RetryAfter.Max > 1_510_000 {
		t.Errorf("busy refusals %d (result %d), retry_after %+v; want the proxy's %d refusals of 1.5 s, one a sender at least",
			ov.RetryLater, res.RetryLater, ov.RetryAfter, nRefused)
	}
	if res.Delivered != ov.Sent || res.Lost+res.Duplicates+res.Reordered != 0 {
		t.Errorf("sent %d, delivered %d, lost %d, duplicates %d, reordered %d; want each delivered once", ov.Sent, res.Delivered, res.Lost, res.Duplicates, res.Reordered)
	}
	if want := float64(ov.DeliveredInWindow) / ov.Duration.Seconds(); ov.Held || ov.Goodput != want || ov.Goodput >= 90 {
		t.Errorf("goodput %v, held %v: want %v, under 90%% of the capacity", ov.Goodput, ov.Held, want)
	}
	want := "goodput " + formatRate(ov.Goodput) + " under 200 msg/s offered is "
	if len(res.Failures) != 1 || !strings.HasPrefix(res.Failures[0], want) || !strings.HasSuffix(res.Failures[0], "% of the capacity 100 msg/s, below the 90% required") {
		t.Errorf("failures %q, want the goodput's", res.Failures)
	}
	summary, _ := overloadReport(t, res)
	for _, re := range []*regexp.Regexp{
		tableRow("held back by the clients, never sent", formatMsgs(ov.Unsent)),
		tableRow("busy refusals (REFUSE RETRY_LATER)", formatMsgs(nRefused)),
		tableRow("resends (flag B)", formatMsgs(ov.Resent)),
		tableRow("retry_after p50 / p90 / p99 / max", "1.50 s / 1.50 s / 1.50 s / 1.50 s"),
		regexp.MustCompile(`(?m)^goodput .*: \d+% of capacity, NOT held \(≥ 90% required\)$`),
	} {
		if !re.MatchString(summary) {
			t.Errorf("summary lacks %s:\n%s", re, summary)
		}
	}
}
