package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"switchboard/delivery"
	"switchboard/protocol"
)

func TestValidatePhoneSweep(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		wantErr   []string // substrings of the error; nil: valid
		wantPairs int      // after setDefaults; 0: not checked
	}{
		{name: "phone defaults to 1000 pairs", cfg: Config{Scenario: "phone", Rate: 2000}, wantPairs: 1000},
		{name: "chat keeps 100 pairs", cfg: Config{Scenario: "chat", Rate: 2000}, wantPairs: 100},
		{name: "sweep defaults", cfg: Config{Scenario: "sweep"}, wantPairs: 1000},
		{name: "phone needs a rate", cfg: Config{Scenario: "phone"}, wantErr: []string{"--rate 0: phone is open loop"}},
		{name: "phone over the frame cap", cfg: Config{Scenario: "phone", Pairs: 1, Rate: 1000}, wantErr: []string{"--rate 1000 over 2 senders", "--conn-frame-cap"}},
		{name: "sweep rates must rise", cfg: Config{Scenario: "sweep", Rates: []float64{1000, 500}}, wantErr: []string{"--rates: 500 after 1000"}},
		{name: "sweep rates above 0", cfg: Config{Scenario: "sweep", Rates: []float64{0, 100}}, wantErr: []string{"--rates: 0 must be above 0"}},
		{name: "sweep without rates", cfg: Config{Scenario: "sweep", Rates: []float64{}}, wantErr: []string{"--rates names no rate"}},
		{name: "sweep target", cfg: Config{Scenario: "sweep", P99: -time.Millisecond}, wantErr: []string{"--p99 must be positive"}},
		{name: "sweep's highest rate over the frame cap", cfg: Config{Scenario: "sweep", Pairs: 2, Rates: []float64{100, 2000}}, wantErr: []string{"the highest of --rates, 2000 over 4 senders"}},
		{name: "phone with poisson arrivals", cfg: Config{Scenario: "phone", Rate: 2000, Arrivals: "poisson"}, wantPairs: 1000},
		{name: "arrivals of an unknown kind", cfg: Config{Scenario: "phone", Rate: 2000, Arrivals: "bursty"}, wantErr: []string{`--arrivals "bursty": want even or poisson`}},
		{name: "arrivals outside the phone regime", cfg: Config{Scenario: "chat", Rate: 2000, Arrivals: "poisson"}, wantErr: []string{"only phone and sweep"}},
		{name: "phone with a warm-up", cfg: Config{Scenario: "phone", Rate: 2000, Warmup: 15 * time.Second}, wantPairs: 1000},
		{name: "a negative warm-up", cfg: Config{Scenario: "chat", Warmup: -time.Second}, wantErr: []string{"--warmup must not be negative"}},
		{name: "a warm-up outside chat, phone, group and sweep", cfg: Config{Scenario: "connect", Warmup: time.Second}, wantErr: []string{"--warmup: connect has no warm-up"}},
		{name: "every error at once", cfg: Config{Scenario: "sweep", Rates: []float64{-1, -2}, P99: -1}, wantErr: []string{"-1 must be above 0", "-2 after -1", "--p99"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cfg
			c.setDefaults()
			err := c.validate()
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("validate: %v", err)
			case tt.wantErr != nil && err == nil:
				t.Fatalf("validate accepted %+v", tt.cfg)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if tt.wantPairs != 0 && c.Pairs != tt.wantPairs {
				t.Errorf("pairs %d, want %d", c.Pairs, tt.wantPairs)
			}
		})
	}
}

func TestHighestHeld(t *testing.T) {
	steps := func(held ...bool) []SweepStep {
		rates := []float64{300, 1000, 2000, 5000, 10000}
		var s []SweepStep
		for i, h := range held {
			s = append(s, SweepStep{Offered: rates[i], Held: h})
		}
		return s
	}
	tests := []struct {
		name      string
		steps     []SweepStep
		want      float64
		wantAbove []float64
	}{
		{name: "no steps", steps: nil, want: 0},
		{name: "none holds", steps: steps(false, false, false), want: 0},
		{name: "all hold", steps: steps(true, true, true, true, true), want: 10000},
		{name: "knee", steps: steps(true, true, false, false), want: 1000},
		{name: "only the lowest", steps: steps(true, false), want: 300},
		{name: "non-monotonic: a hold above a miss is noise", steps: steps(true, false, true, false, true), want: 300, wantAbove: []float64{2000, 10000}},
		{name: "the lowest misses, a higher one holds", steps: steps(false, true), want: 0, wantAbove: []float64{1000}},
		{name: "any order", steps: []SweepStep{{Offered: 5000}, {Offered: 300, Held: true}, {Offered: 1000, Held: true}}, want: 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, above := highestHeld(tt.steps)
			if got != tt.want || !slices.Equal(above, tt.wantAbove) {
				t.Errorf("highestHeld = %v, %v; want %v, %v", got, above, tt.want, tt.wantAbove)
			}
		})
	}
}

func TestNewSweepStepHeld(t *testing.T) {
	hist := func(us int64) *Result {
		r := newResult()
		for range 1000 {
			r.SendToDeliver.RecordValue(us)
			r.SendToAck.RecordValue(us)
		}
		r.Sent, r.Delivered, r.Duration = 1000, 1000, time.Second
		return r
	}
	// 2 ms: below 2,048 µs the histogram holds every microsecond exactly.
	target := 2 * time.Millisecond
	tests := []struct {
		name string
		res  func() *Result
		held bool
	}{
		{name: "under the target", res: func() *Result { return hist(1999) }, held: true},
		{name: "at the target is not under it", res: func() *Result { return hist(2000) }, held: false},
		{name: "unsent messages", res: func() *Result { r := hist(100); r.Unsent = 1; return r }, held: false},
		{name: "a failure", res: func() *Result { r := hist(100); r.Failures = []string{"lost"}; return r }, held: false},
		{name: "nothing delivered", res: func() *Result { r := newResult(); r.Duration = time.Second; return r }, held: false},
		{name: "delivered, no latency measured (the warm-up took the whole step)", res: func() *Result {
			r := newResult()
			r.Sent, r.Delivered, r.Duration = 1000, 1000, time.Second
			return r
		}, held: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s := newSweepStep(1000, tt.res(), target, time.Second); s.Held != tt.held {
				t.Errorf("held %v, want %v (step %+v)", s.Held, tt.held, s)
			}
		})
	}
}

func TestParseMetricsSyncs(t *testing.T) {
	tests := []struct {
		name  string
		text  string
		want  float64
		found bool
	}{
		{name: "absent", text: "process_cpu_seconds_total 1.5\n", found: false},
		{name: "zero is measured", text: "switchboard_store_syncs_total 0\n", want: 0, found: true},
		{name: "one series", text: "# TYPE switchboard_store_syncs_total counter\nswitchboard_store_syncs_total 1.2345e+06\n", want: 1234500, found: true},
		{name: "labelled series add up", text: "switchboard_store_syncs_total{store=\"a\"} 10\nswitchboard_store_syncs_total{store=\"b\"} 5\n", want: 15, found: true},
		{name: "a similar name is not it", text: "switchboard_store_syncs_seconds_total 9\n", found: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := parseMetrics(strings.NewReader(tt.text))
			if err != nil {
				t.Fatal(err)
			}
			if m.Syncs != tt.want || m.HasSyncs != tt.found {
				t.Errorf("syncs %v (found %v), want %v (found %v)", m.Syncs, m.HasSyncs, tt.want, tt.found)
			}
		})
	}
}

// TestScrapeSyncsOverServers sums the syncs of several servers, and counts
// them unmeasured when one server lacks the counter: a sum short of a
// server would pass for all of them.
func TestScrapeSyncsOverServers(t *testing.T) {
	serve := func(body string) string {
		h := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, body) }))
		t.Cleanup(h.Close)
		return h.URL + "/metrics"
	}
	with1 := serve("process_cpu_seconds_total 1\nswitchboard_store_syncs_total 100\n")
	with2 := serve("process_cpu_seconds_total 2\nswitchboard_store_syncs_total 50\n")
	without := serve("process_cpu_seconds_total 4\n")
	tests := []struct {
		name  string
		urls  []string
		want  float64
		found bool
	}{
		{name: "both export it", urls: []string{with1, with2}, want: 150, found: true},
		{name: "one does not", urls: []string{with1, without}, found: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ts []target
			for i, u := range tt.urls {
				ts = append(ts, target{addr: fmt.Sprint("server", i), metrics: u})
			}
			m, _, err := newScrapers(ts).scrape(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if m.HasSyncs != tt.found || (tt.found && m.Syncs != tt.want) {
				t.Errorf("syncs %v (found %v), want %v (found %v)", m.Syncs, m.HasSyncs, tt.want, tt.found)
			}
		})
	}
}

func TestServerCostSyncs(t *testing.T) {
	tests := []struct {
		name     string
		from, to serverMetrics
		want     *uint64 // nil: not measured
		perMsg   string  // in the summary's store table
	}{
		{name: "measured", from: serverMetrics{CPU: 1, Syncs: 100, HasSyncs: true}, to: serverMetrics{CPU: 2, Syncs: 350, HasSyncs: true}, want: ptrU64(250), perMsg: "0.25"},
		{name: "absent", from: serverMetrics{CPU: 1}, to: serverMetrics{CPU: 2}, perMsg: "n/a"},
		{name: "no metrics at all", perMsg: "n/a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &run{cfg: &Config{}}
			res := newResult()
			res.Delivered, res.Duration = 1000, time.Second
			r.serverCost(res, tt.from, tt.to)
			switch {
			case tt.want == nil && res.ServerSyncs != nil:
				t.Errorf("syncs %d, want not measured", *res.ServerSyncs)
			case tt.want != nil && (res.ServerSyncs == nil || *res.ServerSyncs != *tt.want):
				t.Errorf("syncs %v, want %d", res.ServerSyncs, *tt.want)
			}
			var out bytes.Buffer
			PrintSummary(&out, res)
			if !regexp.MustCompile(`server store syncs +\S+ +` + regexp.QuoteMeta(tt.perMsg) + `\n`).MatchString(out.String()) {
				t.Errorf("summary lacks syncs per message %s:\n%s", tt.perMsg, out.String())
			}
			var js bytes.Buffer
			if err := WriteJSON(&js, res); err != nil {
				t.Fatal(err)
			}
			var got struct {
				Derived map[string]any `json:"derived"`
			}
			json.Unmarshal(js.Bytes(), &got)
			v, ok := got.Derived["syncs_per_msg"]
			if !ok {
				t.Fatalf("result.json has no derived.syncs_per_msg")
			}
			if (tt.want == nil) != (v == nil) {
				t.Errorf("derived.syncs_per_msg = %v", v)
			}
		})
	}
}

func ptrU64(v uint64) *uint64 { return &v }

// TestServerCostProcs: the server's Go processors at the start and the end
// of the measured phase are figures of the run when the server exports
// them, and absent when it does not.
func TestServerCostProcs(t *testing.T) {
	r := &run{cfg: &Config{}}
	res := newResult()
	res.Delivered, res.Duration = 1000, time.Second
	r.serverCost(res, serverMetrics{CPU: 1, Procs: 2}, serverMetrics{CPU: 2, Procs: 1})
	if res.Figures["server_procs_at_start"] != 2 || res.Figures["server_procs_at_end"] != 1 {
		t.Errorf("figures %v, want the server's processors 2 at the start and 1 at the end", res.Figures)
	}
	changed := func() (n int) {
		for _, nt := range r.notes {
			if strings.HasPrefix(nt, "the server's Go processors went from 2 to 1 while measured") {
				n++
			}
		}
		return n
	}
	if changed() != 1 {
		t.Errorf("notes %q, want one saying the processors changed", r.notes)
	}
	r.serverCost(newResult(), serverMetrics{CPU: 2, Procs: 1}, serverMetrics{CPU: 3, Procs: 2})
	r.serverCost(newResult(), serverMetrics{CPU: 3, Procs: 2}, serverMetrics{CPU: 4, Procs: 2})
	if n := len(r.notes); n != 2 || changed() != 1 {
		t.Errorf("notes %q, want the change noted once a run (beside the syncs' note)", r.notes)
	}
	res = newResult()
	r.serverCost(res, serverMetrics{CPU: 1}, serverMetrics{CPU: 2})
	if _, ok := res.Figures["server_procs_at_end"]; ok {
		t.Errorf("figures %v from a server that exports no processors", res.Figures)
	}
	sw := &run{cfg: &Config{Scenario: "sweep"}}
	sw.serverCost(newResult(), serverMetrics{CPU: 1, Procs: 2, HasSyncs: true}, serverMetrics{CPU: 2, Procs: 1, HasSyncs: true})
	if len(sw.notes) != 1 || !strings.Contains(sw.notes[0], "changed while steps were measured (the sweep table's server procs column shows which)") ||
		strings.Contains(sw.notes[0], "from 2 to 1") {
		t.Errorf("a sweep's notes %q, want the change pointing at the table's column, naming no one step's counts", sw.notes)
	}
}

// TestServerCostRestarted: a server whose CPU counter went back between
// the scrapes was restarted (a node killed and started again while
// measured): no server CPU nor syncs are reported, and a note names it,
// instead of a negative CPU. With several servers the one restarted is
// named.
func TestServerCostRestarted(t *testing.T) {
	r := &run{cfg: &Config{}}
	res := newResult()
	res.Delivered, res.Duration = 1000, time.Second
	r.serverCost(res, serverMetrics{CPU: 5, Syncs: 100, HasSyncs: true}, serverMetrics{CPU: 1, Syncs: 10, HasSyncs: true})
	if res.ServerCPU != 0 || res.ServerSyncs != nil || len(r.notes) != 1 || !strings.HasPrefix(r.notes[0], "the server restarted while measured") {
		t.Errorf("server CPU %v, syncs %v, notes %q; want neither measured and the restart noted", res.ServerCPU, res.ServerSyncs, r.notes)
	}
	r = &run{cfg: &Config{ClusterNodes: 2}, scr: scrapers{addrs: []string{"127.0.0.1:9071", "127.0.0.1:9072"}}}
	res = newResult()
	from := serverMetrics{CPU: 7, Each: []serverMetrics{{CPU: 3}, {CPU: 4}}}
	to := serverMetrics{CPU: 6, Each: []serverMetrics{{CPU: 5}, {CPU: 1}}}
	r.serverCost(res, from, to)
	if res.ServerCPU != 0 || len(r.notes) != 1 || !strings.HasPrefix(r.notes[0], "node 2 (127.0.0.1:9072) restarted while measured") {
		t.Errorf("server CPU %v, notes %q; want node 2 named as restarted", res.ServerCPU, r.notes)
	}
}

// TestPhoneSchedule drives the phone regime on one loop without sockets:
// a sender whose ACCEPT is late owes its next message, sends it when the
// ACCEPT comes, timed from its slot; it never has two unaccepted; what is
// still owed when the catch-up time ends is unsent.
func TestPhoneSchedule(t *testing.T) {
	l, a, b := checkerFixture(0)
	l.body = make([]byte, l.e.spec.Size)
	a.state, b.state = stateReady, stateReady
	l.e.spec.ConnFrameCap = 500
	t0 := int64(time.Second)
	l.now = t0
	l.traffic = traffic{active: true, start: t0, deadline: t0 + int64(time.Second)}
	for _, c := range []*conn{a, b} {
		c.sending = true
		l.traffic.senders = append(l.traffic.senders, c)
	}
	tr := &l.traffic
	tr.startPhone(5, time.Second, false, 0, 0) // two senders at 5/s: a slot every 100 ms, a's at 0, 200, 400… ms
	if tr.interval != float64(100*time.Millisecond) {
		t.Fatalf("slot interval %v ns, want 100 ms", tr.interval)
	}
	accept := func(c *conn) {
		for i := range c.out {
			if !c.out[i].accepted {
				c.accepted(&protocol.Accept{MsgID: c.outBase + uint64(i)})
			}
		}
	}
	at := func(ms int64) {
		l.now = t0 + ms*int64(time.Millisecond)
		tr.tick(l)
		if n := a.unaccepted(); n > 1 {
			t.Fatalf("at %d ms a has %d messages unaccepted", ms, n)
		}
	}
	at(0)
	if len(a.out) != 1 || a.out[0].sent != t0 {
		t.Fatalf("a sent %d messages, want its first, timed at the start", len(a.out))
	}
	at(100) // b's first slot
	if len(b.out) != 1 || b.out[0].sent != t0+int64(100*time.Millisecond) {
		t.Fatalf("b's first message %+v, want one timed at 100 ms", b.out)
	}
	at(250) // a's second slot (200 ms) passed; its first is not accepted
	if len(a.out) != 1 || tr.owed != 1 {
		t.Fatalf("a sent %d, owed %d: want 1 sent and 1 owed while its first waits for its ACCEPT", len(a.out), tr.owed)
	}
	accept(a)
	if len(a.out) != 2 || a.out[1].sent != t0+int64(200*time.Millisecond) {
		t.Fatalf("after the ACCEPT a has %d messages; want its second, timed from its slot at 200 ms", len(a.out))
	}
	at(450) // a's slot at 400 ms: owed again
	at(650) // and 600 ms; b's at 300 and 500 ms too
	if a.slotsDue-a.slotsSent != 2 || tr.owed != 4 {
		t.Fatalf("a owes %d, all %d: want 2 and 4", a.slotsDue-a.slotsSent, tr.owed)
	}
	accept(a)
	if got := a.out[len(a.out)-1].sent; got != t0+int64(400*time.Millisecond) {
		t.Errorf("the oldest owed message went first? sent timed %d ms", (got-t0)/1e6)
	}
	accept(b)
	at(1000) // the deadline: no slot at or after it
	if tr.phoneDone(l.now) {
		t.Error("done with a message still owed, before the catch-up ran out")
	}
	l.now = tr.deadline + tr.catchUp
	if !tr.phoneDone(l.now) {
		t.Error("not done once the catch-up ran out")
	}
	// Slots of a: 0…800 ms (5), sent 3 (0, 200, 400 ms); of b: 100…900 ms
	// (5), sent 2 (100, 300 ms).
	if got := tr.unsent(); got != 5 {
		t.Errorf("unsent %d, want the 5 owed", got)
	}
	if sent := len(a.out) + len(b.out); uint64(sent)+tr.unsent() != 10 {
		t.Errorf("sent %d + unsent %d, want the 10 slots", sent, tr.unsent())
	}
}

// TestPhonePoisson: with Poisson arrivals the loop's slots come at random,
// gaps of mean interval and a spread as large as the mean (an even
// schedule has none); each message is timed from its own slot, an owed one
// too, and the slots still go to the senders in turn.
func TestPhonePoisson(t *testing.T) {
	l, a, b := checkerFixture(0)
	l.body = make([]byte, l.e.spec.Size)
	a.state, b.state = stateReady, stateReady
	l.e.spec.ConnFrameCap = 1 << 20
	t0 := int64(time.Second)
	l.now = t0
	l.traffic = traffic{active: true, start: t0, deadline: t0 + int64(4*time.Second)}
	for _, c := range []*conn{a, b} {
		c.sending = true
		l.traffic.senders = append(l.traffic.senders, c)
	}
	tr := &l.traffic
	tr.startPhone(250, 4*time.Second, true, 7, 1) // 500 slots a second: 2 ms apart on average
	accept := func(c *conn) {
		for i := range c.out {
			if !c.out[i].accepted {
				c.accepted(&protocol.Accept{MsgID: c.outBase + uint64(i)})
			}
		}
	}
	var held []int64 // a's slots passed while its ACCEPT was held back
	for now := t0; now < tr.deadline; now += int64(50 * time.Microsecond) {
		l.now = now
		before := len(a.slotAt)
		tr.tick(l)
		if now < t0+int64(100*time.Millisecond) {
			held = append(held, a.slotAt[before:]...) // a waits for its first ACCEPT
			continue
		}
		accept(a)
		accept(b)
	}
	var gaps []float64
	for i, c := range []*conn{a, b} {
		if len(c.out) < 900 || len(c.out) > 1100 {
			t.Fatalf("sender %d sent %d messages in 4 s, want about 1,000", i, len(c.out))
		}
		for j := range c.out {
			if j > 0 && c.out[j].sent < c.out[j-1].sent {
				t.Fatalf("sender %d: message %d timed before the one before it", i, j)
			}
		}
	}
	var slots []int64
	for _, c := range []*conn{a, b} {
		for j := range c.out {
			slots = append(slots, c.out[j].sent)
		}
	}
	slices.Sort(slots)
	for j := 1; j < len(slots); j++ {
		gaps = append(gaps, float64(slots[j]-slots[j-1]))
	}
	var sum, sq float64
	for _, g := range gaps {
		sum += g
	}
	mean := sum / float64(len(gaps))
	for _, g := range gaps {
		sq += (g - mean) * (g - mean)
	}
	cv := math.Sqrt(sq/float64(len(gaps))) / mean
	if mean < float64(1800*time.Microsecond) || mean > float64(2200*time.Microsecond) || cv < 0.85 || cv > 1.15 {
		t.Errorf("gaps between slots: mean %v, spread %.2f of the mean; want about 2 ms and 1 (exponential)", time.Duration(mean), cv)
	}
	// a's first slot was sent at once; the next waited for its ACCEPT.
	if len(held) < 2 || a.out[1].sent != held[0] || a.out[2].sent != held[1] {
		t.Fatalf("a's owed message timed %d, want its own slot %v (slots held: %d)", a.out[1].sent, held, len(held))
	}
}

// TestPhone runs the phone scenario against a real server, in the
// coordinator's process and over worker processes (the step's per-sender
// rate travels to them): every slot's message is sent, delivered once and
// in order, and receipted.
func TestPhone(t *testing.T) {
	tests := []struct {
		name       string
		pairs      int
		rate       float64
		perProcess int
		procs      int // generator processes, the coordinator included
		note       string
	}{
		{name: "one process", pairs: 10, rate: 400, procs: 1, note: "phone at 400 msg/s: each of 20 senders"},
		{name: "three workers", pairs: 6, rate: 240, perProcess: 4, procs: 4, note: "phone at 240 msg/s: each of 12 senders"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, delivery.Config{})
			cfg := srv.config("phone")
			cfg.Pairs, cfg.Rate, cfg.Duration, cfg.PerProcess = tt.pairs, tt.rate, time.Second, tt.perProcess
			res := runOK(t, cfg)
			want := uint64(tt.rate)
			checkAllDelivered(t, res, want)
			checkAllReceipted(t, res)
			if res.Unsent != 0 {
				t.Errorf("unsent %d, want 0 at 20 msg/s per sender", res.Unsent)
			}
			if got := uint64(res.SendToDeliver.TotalCount()); got != want {
				t.Errorf("send-to-deliver samples %d, want %d", got, want)
			}
			if res.Processes != tt.procs {
				t.Errorf("processes %d, want %d", res.Processes, tt.procs)
			}
			if !slices.ContainsFunc(res.Notes, func(n string) bool { return strings.HasPrefix(n, tt.note) }) {
				t.Errorf("no note %q… in %q", tt.note, res.Notes)
			}
		})
	}
}

// TestPhoneNotePoisson: with Poisson arrivals the phone note names them
// and gives the mean gap between sends and each sender's mean interval,
// not an even schedule's.
func TestPhoneNotePoisson(t *testing.T) {
	r := &run{cfg: &Config{Scenario: "phone", Pairs: 5, Arrivals: "poisson"}}
	want := "phone at 100 msg/s, Poisson arrivals: the sends reach the server at random moments (exponential gaps, 10ms apart on average), each going to the next of 10 senders (both users of every pair) in turn, so each sends every 100ms on average;"
	if got := r.phoneNote(100); !strings.HasPrefix(got, want) {
		t.Errorf("note\n got %s\nwant %s…", got, want)
	}
}

// TestPhoneWarmup runs the phone scenario with a warm-up, in the
// coordinator's process and over worker processes: every message of both
// phases is sent, delivered once and receipted; the latencies are of the
// measured phase's messages only, and the rates and the server's CPU per
// message divide what happened after the warm-up by the messages
// delivered after it.
func TestPhoneWarmup(t *testing.T) {
	for _, tt := range []struct {
		name       string
		pairs      int
		rate       float64
		perProcess int
	}{
		{name: "one process", pairs: 10, rate: 400},
		{name: "three workers", pairs: 6, rate: 240, perProcess: 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, delivery.Config{})
			cfg := srv.config("phone")
			cfg.Metrics = cpuPerAccepted(t, srv)
			cfg.Pairs, cfg.Rate, cfg.PerProcess = tt.pairs, tt.rate, tt.perProcess
			cfg.Warmup, cfg.Duration = time.Second, time.Second
			res := runOK(t, cfg)
			want := uint64(tt.rate) // a second's messages
			checkAllDelivered(t, res, 2*want)
			checkAllReceipted(t, res)
			// A slot at the very end of the warm-up may fall a nanosecond
			// either side of it (its time is a float product): one per
			// generator loop.
			for name, h := range map[string]*hdrhistogram.Histogram{"send-to-ack": res.SendToAck, "send-to-deliver": res.SendToDeliver, "generator-lag": res.GeneratorLag} {
				if got := uint64(h.TotalCount()); got+8 < want || got > want+8 {
					t.Errorf("%s samples %d, want the measured phase's %d", name, got, want)
				}
			}
			if res.WarmupSent+want/10 < want || res.WarmupSent > want+want/10 || res.WarmupDelivered > res.WarmupSent || res.WarmupAccepted > res.WarmupSent {
				t.Errorf("warm-up sent %d, accepted %d, delivered %d; want about %d sent", res.WarmupSent, res.WarmupAccepted, res.WarmupDelivered, want)
			}
			if res.Warmup < time.Second || res.Warmup > 1500*time.Millisecond || res.Duration < 900*time.Millisecond || res.Duration > 2*time.Second {
				t.Errorf("warm-up %v, measured %v; want about 1 s each", res.Warmup, res.Duration)
			}
			if got := res.Figures["delivered_per_s"]; got < 0.7*tt.rate || got > 1.1*tt.rate {
				t.Errorf("delivered_per_s %.0f, want about %v: the measured phase's messages over its time", got, tt.rate)
			}
			if got := res.Figures["server_cpu_per_msg_us"]; got < 0.9e6 || got > 1.1e6 {
				t.Errorf("server CPU per message %.0f µs, want about 1e6: the measured phase's CPU over its messages", got)
			}
			d := derive(res)
			if d.ServerCPUPerDeliveredUs == nil || *d.ServerCPUPerDeliveredUs < 0.9e6 || *d.ServerCPUPerDeliveredUs > 1.1e6 {
				t.Errorf("derived server CPU per message %v µs, want about 1e6", d.ServerCPUPerDeliveredUs)
			}
			if !slices.ContainsFunc(res.Notes, func(n string) bool { return strings.HasPrefix(n, "warm-up: the first 1.0 s were sent the same way") }) {
				t.Errorf("no warm-up note in %q", res.Notes)
			}
			var out bytes.Buffer
			PrintSummary(&out, res)
			if !strings.Contains(out.String(), " after a 1.0 s warm-up\n") {
				t.Errorf("the summary does not name the warm-up:\n%s", out.String())
			}
		})
	}
}

// TestSweep runs a two-step sweep over one set of connections, against a
// server whose metrics count two syncs and a CPU second per accepted
// message, so the per-message figures are known.
func TestSweep(t *testing.T) {
	srv := startServer(t, delivery.Config{})
	h := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n := srv.router.Stats().Accepted.Load()
		// The CPU starts at 1: a zero reads as "not measured".
		// The Go processors drop from 2 to 1 once the first step's
		// messages are in: the first step's row says 2 → 1, the second's 1.
		procs := 2
		if n >= 100 {
			procs = 1
		}
		fmt.Fprintf(w, "process_cpu_seconds_total %d\nswitchboard_store_syncs_total %d\nprocess_resident_memory_bytes 1000\ngo_sched_gomaxprocs_threads %d\n", 1+n, 2*n, procs)
	}))
	t.Cleanup(h.Close)
	cfg := srv.config("sweep")
	cfg.Metrics = h.URL + "/metrics"
	cfg.Pairs, cfg.Rates, cfg.Duration, cfg.P99 = 5, []float64{100, 200}, time.Second, 10*time.Second
	res := runOK(t, cfg)
	sw := res.Sweep
	if sw == nil || len(sw.Steps) != 2 {
		t.Fatalf("sweep %+v, want two steps", sw)
	}
	for i, want := range []uint64{100, 200} {
		s := sw.Steps[i]
		if s.Sent != want || s.Delivered != want || s.Unsent != 0 || !s.Passed {
			t.Errorf("step %d: sent %d delivered %d unsent %d passed %v, want %d sent and delivered", i, s.Sent, s.Delivered, s.Unsent, s.Passed, want)
		}
		if s.SendToDeliver.Count != int64(want) || s.SendToAck.Count != int64(want) || s.GeneratorLag.Count != int64(want) {
			t.Errorf("step %d: %d send-to-deliver, %d send-to-ack and %d generator-lag samples, want %d", i, s.SendToDeliver.Count, s.SendToAck.Count, s.GeneratorLag.Count, want)
		}
		if s.SyncsPerMsg == nil || *s.SyncsPerMsg != 2 {
			t.Errorf("step %d: syncs per message %v, want 2", i, s.SyncsPerMsg)
		}
		if s.ServerCPUPerMsgUs == nil || *s.ServerCPUPerMsgUs != 1e6 {
			t.Errorf("step %d: server CPU per message %v µs, want 1e6", i, s.ServerCPUPerMsgUs)
		}
		if !s.Held {
			t.Errorf("step %d did not hold a 10 s target: p99 %d µs", i, s.SendToDeliver.P99)
		}
	}
	if got := []string{procsCell(sw.Steps[0].ServerProcsAtStart, sw.Steps[0].ServerProcsAtEnd), procsCell(sw.Steps[1].ServerProcsAtStart, sw.Steps[1].ServerProcsAtEnd)}; !slices.Equal(got, []string{"2 → 1", "1"}) {
		t.Errorf("the steps' Go processors %q, want 2 → 1 and 1", got)
	}
	if sw.Highest != 200 || sw.Stopped != "" {
		t.Errorf("highest %v, stopped %q; want 200 and the sweep complete", sw.Highest, sw.Stopped)
	}
	checkAllReceipted(t, res)
	if res.Sent != 300 || res.Delivered != 300 || res.Lost != 0 {
		t.Errorf("sweep totals: sent %d delivered %d lost %d, want 300, 300, 0", res.Sent, res.Delivered, res.Lost)
	}
	if res.ServerSyncs == nil || *res.ServerSyncs != 600 {
		t.Errorf("sweep syncs %v, want 600", res.ServerSyncs)
	}
	if got := srv.srv.Stats().Logins.Load(); got != 10 {
		t.Errorf("%d logins, want 10: the steps share the connections", got)
	}
	if res.Conns != 10 {
		t.Errorf("conns %d, want 10", res.Conns)
	}

	dir := t.TempDir()
	if err := writeReport(dir, res, testChartDPI); err != nil {
		t.Fatal(err)
	}
	md := readFile(t, filepath.Join(dir, reportFile))
	for _, want := range []string{
		`**highest rate that holds p99 \< 10.0 s: 200 msg/s**`,
		"| 100 msg/s | ",
		"| 200 msg/s | ",
		" | 2 → 1 | ",
		"![p99 and server CPU per message against offered rate](sweep.png)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	img, err := png.DecodeConfig(bytes.NewReader([]byte(readFile(t, filepath.Join(dir, sweepChartFile)))))
	if err != nil || img.Height <= img.Width {
		t.Errorf("sweep.png: %v, %dx%d: want two charts stacked", err, img.Width, img.Height)
	}
	var js struct {
		Sweep struct {
			Highest float64 `json:"highest_holding_per_s"`
			Steps   []struct {
				Offered float64  `json:"offered_per_s"`
				Syncs   *float64 `json:"syncs_per_msg"`
				Procs   *float64 `json:"server_procs_at_end"`
				Held    bool     `json:"held"`
			} `json:"steps"`
		} `json:"sweep"`
	}
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(dir, resultFile))), &js); err != nil {
		t.Fatal(err)
	}
	if js.Sweep.Highest != 200 || len(js.Sweep.Steps) != 2 || js.Sweep.Steps[1].Syncs == nil || *js.Sweep.Steps[1].Syncs != 2 ||
		js.Sweep.Steps[0].Procs == nil || *js.Sweep.Steps[0].Procs != 1 {
		t.Errorf("result.json sweep %+v", js.Sweep)
	}
}

// cpuPerAccepted serves metrics for srv that charge a second of CPU per
// message accepted, so that the CPU of a phase is its messages, and
// returns their URL.
func cpuPerAccepted(t *testing.T, srv testServer) string {
	h := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		// The CPU starts at 1: a zero reads as "not measured".
		fmt.Fprintf(w, "process_cpu_seconds_total %d\nswitchboard_store_syncs_total 0\n", 1+srv.router.Stats().Accepted.Load())
	}))
	t.Cleanup(h.Close)
	return h.URL + "/metrics"
}

// TestSweepWarmup: with --warmup every step sends for the warm-up and
// then its duration; its row's latencies are of the measured messages, and
// its CPU per message is the measured phase's.
func TestSweepWarmup(t *testing.T) {
	srv := startServer(t, delivery.Config{})
	cfg := srv.config("sweep")
	cfg.Metrics = cpuPerAccepted(t, srv)
	cfg.Pairs, cfg.Rates, cfg.P99 = 5, []float64{100, 200}, 10*time.Second
	cfg.Warmup, cfg.Duration = time.Second, time.Second
	res := runOK(t, cfg)
	if res.Sweep == nil || len(res.Sweep.Steps) != 2 {
		t.Fatalf("sweep %+v, want two steps", res.Sweep)
	}
	for i, want := range []uint64{100, 200} {
		s := res.Sweep.Steps[i]
		if s.Sent != 2*want || s.Delivered != 2*want || !s.Passed {
			t.Errorf("step %d: sent %d, delivered %d, passed %v; want %d sent and delivered over the warm-up and the step", i, s.Sent, s.Delivered, s.Passed, 2*want)
		}
		if n := uint64(s.SendToDeliver.Count); n+4 < want || n > want+4 {
			t.Errorf("step %d: %d send-to-deliver samples, want the measured %d", i, n, want)
		}
		if s.ServerCPUPerMsgUs == nil || *s.ServerCPUPerMsgUs < 0.9e6 || *s.ServerCPUPerMsgUs > 1.1e6 {
			t.Errorf("step %d: server CPU per message %v µs, want about 1e6: the measured phase's", i, s.ServerCPUPerMsgUs)
		}
		if s.Duration < 900*time.Millisecond || s.Duration > 2*time.Second {
			t.Errorf("step %d measured for %v, want about 1 s", i, s.Duration)
		}
	}
	var out bytes.Buffer
	PrintSummary(&out, res)
	if !strings.Contains(out.String(), ", each step after a 1.0 s warm-up\n") {
		t.Errorf("the summary does not name the steps' warm-up:\n%s", out.String())
	}
}

// TestSweepPoissonSyncsLost runs a Poisson sweep against a server that
// stops exporting its store syncs during the second step: that step has
// no syncs per message, the sweep no total (a sum over some steps is not
// the run's), and the sweep's note names the Poisson arrivals.
func TestSweepPoissonSyncsLost(t *testing.T) {
	srv := startServer(t, delivery.Config{})
	h := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n := srv.router.Stats().Accepted.Load()
		fmt.Fprintf(w, "process_cpu_seconds_total %d\n", 1+n)
		if n < 150 { // the first step sends about 100
			fmt.Fprintf(w, "switchboard_store_syncs_total %d\n", n)
		}
	}))
	t.Cleanup(h.Close)
	cfg := srv.config("sweep")
	cfg.Metrics, cfg.Arrivals = h.URL+"/metrics", "poisson"
	cfg.Pairs, cfg.Rates, cfg.Duration, cfg.P99 = 5, []float64{100, 200}, time.Second, 10*time.Second
	res := runOK(t, cfg)
	if sw := res.Sweep; sw == nil || len(sw.Steps) != 2 || sw.Steps[0].SyncsPerMsg == nil || sw.Steps[1].SyncsPerMsg != nil {
		t.Fatalf("sweep %+v, want two steps, syncs measured in the first only", sw)
	}
	if res.ServerSyncs != nil {
		t.Errorf("the sweep's syncs %d, want none: the second step's were not measured", *res.ServerSyncs)
	}
	if !slices.ContainsFunc(res.Notes, func(n string) bool {
		return strings.HasPrefix(n, "sweep: ") && strings.Contains(n, "at random moments (Poisson arrivals)")
	}) {
		t.Errorf("no sweep note naming the Poisson arrivals in %q", res.Notes)
	}
}

// TestSweepStopsAtAFailedStep: a step that fails the checks (here a
// server, faked by a proxy, that delivers one message twice) ends the
// sweep: no higher rate is run, the sweep says where it stopped, and the
// failure names the rate it was found at.
func TestSweepStopsAtAFailedStep(t *testing.T) {
	srv := startServer(t, delivery.Config{})
	var once sync.Once
	p := startProxy(t, srv.addr, 0, func(f protocol.Frame, raw []byte) ([]byte, bool) {
		out := raw
		if f.Type == protocol.TypeDeliver {
			once.Do(func() { out = append(raw, raw...) })
		}
		return out, false
	})
	cfg := srv.config("sweep")
	cfg.Addr, cfg.Pairs, cfg.Rates, cfg.Duration, cfg.P99 = p.addr(), 5, []float64{100, 200}, time.Second, 10*time.Second
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if sw := res.Sweep; len(sw.Steps) != 1 || sw.Steps[0].Passed || sw.Stopped != "at 100 msg/s: the step failed the checks" || sw.Highest != 0 {
		t.Errorf("sweep %+v, want it stopped after the failed first step", sw)
	}
	if len(res.Failures) == 0 || !strings.HasPrefix(res.Failures[0], "at 100 msg/s offered: ") {
		t.Errorf("failures %q, want them prefixed with the step's rate", res.Failures)
	}
}

// TestSweepRendering checks the sweep's rows and verdict as the terminal
// and report.md show them.
func TestSweepRendering(t *testing.T) {
	lat := func(p50, p99, p999 int64) HistSummary {
		return HistSummary{Count: 1000, P50: p50, P99: p99, P999: p999}
	}
	cpu, syncs, two, one := 42.5, 0.25, 2.0, 1.0
	steps := []SweepStep{
		{Offered: 1000, DeliveredPerSec: 1000, ServerCPUPerMsgUs: &cpu, SyncsPerMsg: &syncs, ServerProcsAtStart: &two, ServerProcsAtEnd: &two, SendToDeliver: lat(900, 2500, 4000), GeneratorLag: lat(70, 350, 900), Passed: true, KeptUp: true, Held: true},
		{Offered: 2000, DeliveredPerSec: 1990, ServerProcsAtStart: &two, ServerProcsAtEnd: &one, SendToDeliver: lat(1200, 3100, 9000), Passed: true, KeptUp: true},
		{Offered: 5000, DeliveredPerSec: 4100, SendToDeliver: lat(1500, 2900, 9000), Passed: true, Unsent: 1234},
		{Offered: 10000, DeliveredPerSec: 9000, SendToDeliver: lat(1500, 2000, 2500), Passed: true, KeptUp: true, Held: true},
		{Offered: 30000, DeliveredPerSec: 19748, SendToDeliver: lat(900e3, 4.33e6, 5e6), Passed: true},
	}
	rows := []string{
		"1,000 msg/s|1,000 msg/s|42.5 µs|2|900 µs|2.50 ms|4.00 ms|350 µs|0.25|yes",
		"2,000 msg/s|1,990 msg/s|n/a|2 → 1|1.20 ms|3.10 ms|9.00 ms|—|n/a|no",
		"5,000 msg/s|4,100 msg/s|n/a|n/a|1.50 ms|2.90 ms|9.00 ms|—|n/a|no: 1,234 unsent",
		"10,000 msg/s|9,000 msg/s|n/a|n/a|1.50 ms|2.00 ms|2.50 ms|—|n/a|yes",
		"30,000 msg/s|19,748 msg/s|n/a|n/a|900 ms|4.33 s|5.00 s|—|n/a|no: delivered 66% of the rate, catch-up included",
	}
	for i, s := range steps {
		if got := strings.Join(sweepRow(s), "|"); got != rows[i] {
			t.Errorf("row %d:\n got %s\nwant %s", i, got, rows[i])
		}
	}
	if got := strings.Join(sweepRow(SweepStep{Offered: 300}), "|"); got != "300 msg/s|0.0 msg/s|n/a|n/a|—|—|—|—|n/a|FAIL" {
		t.Errorf("failed step's row %s", got)
	}
	if got, want := stepLine(steps[1], 3*time.Millisecond), "2,000 msg/s offered: 1,990 msg/s delivered, p50 1.20 ms, p99 3.10 ms, p99.9 9.00 ms, generator lag p99 —, server CPU n/a/msg, Go processors 2 → 1, n/a syncs/msg: no (p99 < 3.00 ms)"; got != want {
		t.Errorf("step line\n got %s\nwant %s", got, want)
	}

	tests := []struct {
		name  string
		sweep Sweep
		want  []string
	}{
		{
			name:  "a knee, and noise above it",
			sweep: Sweep{TargetP99: 3 * time.Millisecond, Steps: steps, Highest: 1000, HeldAboveMiss: []float64{10000}},
			want: []string{
				"highest rate that holds p99 < 3.00 ms: 1,000 msg/s",
				"10,000 msg/s held the target too, above a rate that did not: the figures are noisy near the knee; run longer steps (--duration) or again",
			},
		},
		{
			name:  "none holds, stopped",
			sweep: Sweep{TargetP99: 500 * time.Microsecond, Steps: steps[1:2], Stopped: "at 2,000 msg/s: the step failed the checks"},
			want: []string{
				"highest rate that holds p99 < 500 µs: none (no step from the lowest up held it)",
				"the sweep stopped early, at 2,000 msg/s: the step failed the checks",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sweepVerdict(&tt.sweep); !slices.Equal(got, tt.want) {
				t.Errorf("verdict\n got %q\nwant %q", got, tt.want)
			}
			r := newResult()
			r.Scenario, r.Sweep = "sweep", &tt.sweep
			var out bytes.Buffer
			PrintSummary(&out, r)
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w+"\n") {
					t.Errorf("summary lacks %q:\n%s", w, out.String())
				}
			}
			if !strings.Contains(out.String(), "p99 < "+formatMicros(float64(tt.sweep.TargetP99.Microseconds()))) {
				t.Errorf("summary's table has no target column:\n%s", out.String())
			}
		})
	}
}

// TestSweepStepKeptUp: a step that delivered under sweepKeptUp of its
// offered rate, catch-up included, does not hold the target, however
// generous the target; one that delivered most of it does.
func TestSweepStepKeptUp(t *testing.T) {
	step := func(offered float64, delivered uint64, d time.Duration) SweepStep {
		res := newResult()
		res.Sent, res.Delivered, res.Duration = delivered, delivered, d
		res.SendToDeliver.RecordValue(4_330_000) // 4.33 s
		return newSweepStep(offered, res, 10*time.Second, 8*time.Second)
	}
	// 30,000 offered for 8 s: 240,000 messages, sent over 12.15 s of catch-up.
	if s := step(30000, 240000, 12150*time.Millisecond); s.KeptUp || s.Held {
		t.Errorf("30,000 offered, 19,753 delivered a second: kept up %v, held %v; want neither", s.KeptUp, s.Held)
	}
	// 20,000 offered for 8 s, the last in-flight messages delivered in 0.2 s more.
	if s := step(20000, 160000, 8200*time.Millisecond); !s.KeptUp || !s.Held {
		t.Errorf("20,000 offered, 19,512 delivered a second: kept up %v, held %v; want both", s.KeptUp, s.Held)
	}
	// A catch-up of under a second counts as the last in-flight messages,
	// also in a short step on a busy host.
	if s := step(200, 1600, 8900*time.Millisecond); !s.KeptUp {
		t.Errorf("200 offered for 8 s, delivered within 0.9 s more: not kept up")
	}
	if s := step(200, 1440, 8200*time.Millisecond); !s.KeptUp {
		t.Errorf("200 offered for 8 s, 1,440 of 1,600 delivered (90%%): not kept up")
	}
	if s := step(200, 1200, 8200*time.Millisecond); s.KeptUp {
		t.Errorf("200 offered for 8 s, 1,200 of 1,600 delivered: kept up")
	}
}

// TestScrapeCostUnreachable: a server whose metrics do not answer costs
// nothing measured (zero metrics, so no CPU or syncs per message) and one
// note for the run, however often the sweep scrapes it.
func TestScrapeCostUnreachable(t *testing.T) {
	h := httptest.NewServer(http.NotFoundHandler())
	url := h.URL + "/metrics"
	h.Close() // nothing listens there any more
	r := &run{cfg: &Config{}, scr: newScrapers([]target{{addr: "127.0.0.1:7070", metrics: url}})}
	for i := 0; i < 3; i++ {
		if m := r.scrapeCost(context.Background()); !reflect.DeepEqual(m, serverMetrics{}) {
			t.Fatalf("scrape %d: %+v, want zero metrics", i, m)
		}
	}
	if len(r.notes) != 1 || !strings.HasPrefix(r.notes[0], "server metrics not reachable (") ||
		!strings.HasSuffix(r.notes[0], "): no server memory or CPU figures") {
		t.Errorf("notes %q, want one saying the metrics were not reachable", r.notes)
	}
	if len(r.mem) != 0 {
		t.Errorf("memory points %v: scrapeCost records none", r.mem)
	}
}
