package bench

import (
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

func TestMerge(t *testing.T) {
	a, b := newResult(), newResult()
	a.Sent, a.Delivered, a.Conns, a.Processes, a.Duration = 10, 9, 100, 1, 2*time.Second
	b.Sent, b.Delivered, b.Conns, b.Processes, b.Duration, b.Lost = 5, 5, 50, 1, 3*time.Second, 1
	a.Closes = map[string]uint64{"SLOW_CONSUMER": 1}
	b.Closes = map[string]uint64{"SLOW_CONSUMER": 2, "EOF": 1}
	for v := int64(1); v <= 100; v++ {
		a.SendToDeliver.RecordValue(v)
		b.SendToDeliver.RecordValue(1000 + v)
	}
	a.Notes, b.Notes = []string{"same", "a"}, []string{"same", "b"}
	b.Failures = []string{"lost one"}
	a.Merge(b)
	if a.Sent != 15 || a.Delivered != 14 || a.Lost != 1 || a.Conns != 150 || a.Processes != 2 || a.Duration != 3*time.Second {
		t.Errorf("counts %+v", a)
	}
	if a.Closes["SLOW_CONSUMER"] != 3 || a.Closes["EOF"] != 1 {
		t.Errorf("closes %v", a.Closes)
	}
	if a.SendToDeliver.TotalCount() != 200 || a.SendToDeliver.Max() < 1100 {
		t.Errorf("histogram count %d max %d", a.SendToDeliver.TotalCount(), a.SendToDeliver.Max())
	}
	if strings.Join(a.Notes, ",") != "same,a,b" || a.Passed() {
		t.Errorf("notes %v, failures %v", a.Notes, a.Failures)
	}
}

// TestMergeAddsEveryCount: every count of two generator processes (the
// messages, receipts, bytes and warm-up counts) adds up in the merge, and
// so do the Noise handshakes by pattern.
func TestMergeAddsEveryCount(t *testing.T) {
	setCounts := func(r *Result, n uint64) {
		v := reflect.ValueOf(r).Elem()
		for i := range v.NumField() {
			if f := v.Field(i); f.Kind() == reflect.Uint64 {
				f.SetUint(n)
			}
		}
	}
	a, b := newResult(), newResult()
	setCounts(a, 1)
	setCounts(b, 2)
	a.Handshakes = map[string]uint64{"IK": 3}
	b.Handshakes = map[string]uint64{"IK": 4, "XXfallback": 1}
	a.Merge(b)
	v := reflect.ValueOf(a).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Uint64 && f.Uint() != 3 {
			t.Errorf("%s is %d after merging 1 and 2, want 3", v.Type().Field(i).Name, f.Uint())
		}
	}
	if !maps.Equal(a.Handshakes, map[string]uint64{"IK": 7, "XXfallback": 1}) {
		t.Errorf("handshakes %v, want IK 7, XXfallback 1", a.Handshakes)
	}
}

func TestResultWireRoundTrip(t *testing.T) {
	r := newResult()
	r.Sent, r.Redelivered = 42, 3
	r.Figures = map[string]float64{"drain_s": 1.5}
	for v := int64(1); v < 5000; v += 7 {
		r.SendToAck.RecordValue(v)
		r.LoginLatency.RecordValue(v * 2)
		r.GeneratorLag.RecordValue(v * 3)
		r.RetryAfter.RecordValue(v * 5)
	}
	b, err := marshalResult(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := unmarshalResult(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Sent != 42 || got.Redelivered != 3 || got.Figures["drain_s"] != 1.5 {
		t.Errorf("got %+v", got)
	}
	if !got.SendToAck.Equals(r.SendToAck) || got.LoginLatency.TotalCount() != r.LoginLatency.TotalCount() ||
		!got.GeneratorLag.Equals(r.GeneratorLag) || !got.RetryAfter.Equals(r.RetryAfter) {
		t.Error("histograms changed on the wire")
	}
	if got.SendToDeliver == nil || got.SendToDeliver.TotalCount() != 0 {
		t.Error("empty histogram not restored as empty")
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 1.234e+08
go_memstats_heap_inuse_bytes 5.5e+07
process_cpu_seconds_total 12.5
switchboard_connections 19000
go_sched_gomaxprocs_threads 1
switchboard_closes_total{reason="SLOW_CONSUMER"} 4
switchboard_closes_total{reason="peer"} 10
`
	m, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS != 123400000 || m.HeapInuse != 55000000 || m.CPU != 12.5 || m.Conns != 19000 || m.Procs != 1 || m.Closes["SLOW_CONSUMER"] != 4 {
		t.Errorf("parsed %+v", m)
	}
}

// FuzzParseMetrics: whatever a /metrics answer holds, the parser returns
// without a panic, and a well-formed sample line appended after the noise
// is still read. A brace closing before it opens ("}a{ 1") panicked.
func FuzzParseMetrics(f *testing.F) {
	f.Add("switchboard_connections 19000\n")
	f.Add("}a{ 1\n")
	f.Add("switchboard_closes_total{reason=\"a}b\"} 3\n")
	f.Add("a{b 1\nc} 2\n")
	f.Fuzz(func(t *testing.T, text string) {
		if _, err := parseMetrics(strings.NewReader(text)); err != nil {
			return // a line longer than the scanner's buffer
		}
		m, err := parseMetrics(strings.NewReader(text + "\nprocess_cpu_seconds_total 7.25\n"))
		if err == nil && m.CPU != 7.25 {
			t.Errorf("after %q, process_cpu_seconds_total read %v, want 7.25", text, m.CPU)
		}
	})
}

var oneServer = []Target{{Addr: "127.0.0.1:7070", Key: Key{ID: 1}}}

func TestPlanSpreadsConnections(t *testing.T) {
	c := Config{Scenario: "connect", Conns: 100_000, Addr: "127.0.0.1:7070"}
	c.setDefaults()
	p, err := c.makePlan(oneServer, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.specs) < 7 || p.local {
		t.Fatalf("%d processes for 100,000 connections", len(p.specs))
	}
	seen := map[string]bool{}
	next := c.UserBase
	units := 0
	for _, s := range p.specs {
		if n := s.Units * s.UnitSize; n > defaultPerProcessMax {
			t.Errorf("a process holds %d connections", n)
		}
		if seen[s.Source] || !strings.HasPrefix(s.Source, "127.0.0.") || s.Source == "127.0.0.1" {
			t.Errorf("source %q reused or not a loopback alias", s.Source)
		}
		seen[s.Source] = true
		if s.UserBase != next {
			t.Errorf("user base %d, want %d (contiguous, no overlap)", s.UserBase, next)
		}
		next += uint64(s.Units * s.UnitSize)
		units += s.Units
	}
	if units != 50_000 {
		t.Errorf("units %d, want 50,000 pairs", units)
	}

	c = Config{Scenario: "slow", Pairs: 1000, SlowShare: 0.1, PerProcess: 300, Addr: "127.0.0.1:7070"}
	c.setDefaults()
	p, err = c.makePlan(oneServer, 1)
	if err != nil {
		t.Fatal(err)
	}
	slow := 0
	for _, s := range p.specs {
		slow += s.Slow
		if s.Slow > s.Units {
			t.Errorf("%d slow of %d units", s.Slow, s.Units)
		}
	}
	if slow != 100 {
		t.Errorf("%d slow pairs, want 100", slow)
	}
}

// TestPlanSpreadsOverServers checks the homes the engines give their
// units: every user of a pair on one server, the servers evenly loaded,
// every process talking to every server.
func TestPlanSpreadsOverServers(t *testing.T) {
	servers := []Target{
		{Addr: "127.0.0.1:7071", Key: Key{ID: 1}},
		{Addr: "127.0.0.1:7072", Key: Key{ID: 2}},
		{Addr: "127.0.0.1:7073", Key: Key{ID: 3}},
	}
	tests := []struct {
		name     string
		cfg      Config
		wantConn []int // connections per server
	}{
		{"connect 1000 in 4 processes", Config{Scenario: "connect", Conns: 1000, PerProcess: 300}, []int{334, 334, 332}},
		{"chat 7 pairs in 3 processes", Config{Scenario: "chat", Pairs: 7, PerProcess: 6}, []int{6, 4, 4}},
		{"group 5 of 4 in one process", Config{Scenario: "group", Groups: 5, GroupSize: 4}, []int{8, 8, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cfg
			c.Addr = "127.0.0.1:7071,127.0.0.1:7072,127.0.0.1:7073"
			c.setDefaults()
			p, err := c.makePlan(servers, 1)
			if err != nil {
				t.Fatal(err)
			}
			home := map[uint64]string{} // user → the address it dials
			perServer := make([]int, len(servers))
			for i, s := range p.specs {
				e, err := newEngine(s)
				if err != nil {
					t.Fatal(err)
				}
				procServers := map[int]bool{}
				for _, u := range e.units {
					for _, c := range u.conns {
						if _, ok := home[c.user]; ok {
							t.Errorf("user %d played twice", c.user)
						}
						home[c.user] = e.spec.Servers[c.unit.home].Addr
						if home[c.user] != home[u.conns[0].user] {
							t.Errorf("process %d: user %d on %s, its unit's first user on %s", i, c.user, home[c.user], home[u.conns[0].user])
						}
						if got, want := e.servers[c.unit.home].String(), home[c.user]; got != want {
							t.Errorf("user %d dials %s, homed on %s", c.user, got, want)
						}
						perServer[c.unit.home]++
					}
					procServers[u.home] = true
				}
				e.close()
				if len(p.specs) > 1 && s.Units >= len(servers) && len(procServers) != len(servers) {
					t.Errorf("process %d with %d units talks to %d of %d servers", i, s.Units, len(procServers), len(servers))
				}
			}
			if !slices.Equal(perServer, tt.wantConn) {
				t.Errorf("connections per server %v, want %v", perServer, tt.wantConn)
			}
		})
	}
}

func TestTargets(t *testing.T) {
	tests := []struct {
		name            string
		addr, met, keys string
		want            []target
		wantErr         []string // substrings of the error; nil: none
	}{
		{name: "one server, defaults", addr: "127.0.0.1:7070", met: "http://127.0.0.1:9070/metrics", keys: "data/keys",
			want: []target{{"127.0.0.1:7070", "http://127.0.0.1:9070/metrics", "data/keys"}}},
		{name: "two servers, one keys file, host:port endpoints", addr: "127.0.0.1:7071, 127.0.0.1:7072", met: "127.0.0.1:9071,127.0.0.1:9072", keys: "k",
			want: []target{{"127.0.0.1:7071", "http://127.0.0.1:9071/metrics", "k"}, {"127.0.0.1:7072", "http://127.0.0.1:9072/metrics", "k"}}},
		{name: "two servers, two keys files, no metrics", addr: "a:1,b:2", met: "-", keys: "k1,k2",
			want: []target{{"a:1", "", "k1"}, {"b:2", "", "k2"}}},
		{name: "the default endpoint for two servers", addr: "a:1,b:2", met: "http://127.0.0.1:9070/metrics", keys: "k",
			wantErr: []string{"--metrics lists 1 endpoints for 2 servers"}},
		{name: "every mistake at once", addr: "a:1,a:1,b:2", met: "x:1,-,y:2", keys: "k1,k2",
			wantErr: []string{"lists a:1 twice", "every server needs an endpoint", "--keys lists 2 files for 3 servers"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{Addr: tt.addr, Metrics: tt.met, Keys: tt.keys}
			got, err := c.targets()
			for _, w := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("err %v, want it to say %q", err, w)
				}
			}
			if tt.wantErr == nil && err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("targets %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	c := Config{Scenario: "chat", Pairs: 1, Rate: 100_000, Size: 3}
	c.setDefaults()
	err := c.validate()
	if err == nil || !strings.Contains(err.Error(), "--size") || !strings.Contains(err.Error(), "--conn-frame-cap") {
		t.Errorf("validate: %v", err)
	}
	c = Config{Scenario: "nope"}
	c.setDefaults()
	if err := c.validate(); err == nil {
		t.Error("unknown scenario accepted")
	}
}

// FuzzUnmarshalResult: whatever a worker's result line holds, decoding it
// returns an error or a Result the coordinator merges into its own without
// a panic, with every histogram present.
func FuzzUnmarshalResult(f *testing.F) {
	r := newResult()
	r.Sent, r.Closes, r.Notes = 3, map[string]uint64{"EOF": 1}, []string{"n"}
	for v := int64(1); v < 100; v += 3 {
		r.SendToAck.RecordValue(v)
	}
	b, err := marshalResult(r)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"send_to_ack":"bm90IGEgaGlzdG9ncmFt"}`)) // base64 of "not a histogram"
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := unmarshalResult(b)
		if err != nil {
			return
		}
		for _, h := range []*hdrhistogram.Histogram{got.SendToAck, got.SendToDeliver, got.LoginLatency, got.RetryAfter, got.GeneratorLag} {
			if h == nil {
				t.Fatal("a histogram missing after decoding")
			}
		}
		into := newResult()
		into.Merge(got)
		if into.Sent != got.Sent || into.SendToAck.TotalCount() != got.SendToAck.TotalCount() {
			t.Fatalf("merged sent %d, %d samples; decoded %d, %d", into.Sent, into.SendToAck.TotalCount(), got.Sent, got.SendToAck.TotalCount())
		}
	})
}
