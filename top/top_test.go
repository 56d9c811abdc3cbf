package top

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// metrics is a server's /metrics text with the figures top reads; the
// counters and the send→ACCEPT buckets are given, the gauges fixed except
// the longest shard queue.
type metrics struct {
	logins, accepted, live, stored, syncs float64
	slowWindow, slowOutbound              float64
	buckets                               [4]float64 // le 0.001, 0.005, 0.01, +Inf
	shardQueue                            float64
	storageErrors                         float64
	diskFree                              float64
}

func (m metrics) text() string {
	return fmt.Sprintf(`# HELP switchboard_connections Open client connections.
# TYPE switchboard_connections gauge
switchboard_connections 12
# TYPE switchboard_connection_cap gauge
switchboard_connection_cap 100
# TYPE switchboard_connections_by_state gauge
switchboard_connections_by_state{state="pre_login"} 2
switchboard_connections_by_state{state="logged_in"} 9
switchboard_connections_by_state{state="closing"} 1
# TYPE switchboard_logins_total counter
switchboard_logins_total %v
# TYPE switchboard_accepted_total counter
switchboard_accepted_total %v
# TYPE switchboard_delivered_live_total counter
switchboard_delivered_live_total %v
# TYPE switchboard_delivered_stored_total counter
switchboard_delivered_stored_total %v
# TYPE switchboard_store_syncs_total counter
switchboard_store_syncs_total %v
# TYPE switchboard_slow_consumers_total counter
switchboard_slow_consumers_total{cause="window"} %v
switchboard_slow_consumers_total{cause="outbound_cap"} %v
switchboard_slow_consumers_total{cause="write_buffer"} 0
# TYPE switchboard_send_accept_seconds histogram
switchboard_send_accept_seconds_bucket{le="0.001"} %v
switchboard_send_accept_seconds_bucket{le="0.005"} %v
switchboard_send_accept_seconds_bucket{le="0.01"} %v
switchboard_send_accept_seconds_bucket{le="+Inf"} %v
switchboard_send_accept_seconds_sum 0.5
switchboard_send_accept_seconds_count %[11]v
# TYPE switchboard_shard_queue_length gauge
switchboard_shard_queue_length{shard="0"} 7
switchboard_shard_queue_length{shard="1"} %v
# TYPE switchboard_group_queue_length gauge
switchboard_group_queue_length{worker="0"} 3
# TYPE switchboard_receipts_held gauge
switchboard_receipts_held{shard="0"} 0
switchboard_receipts_held{shard="1"} 5
# TYPE switchboard_routing_queue_capacity gauge
switchboard_routing_queue_capacity 4096
# TYPE switchboard_store_commit_queue_length gauge
switchboard_store_commit_queue_length 40
# TYPE switchboard_store_commit_queue_capacity gauge
switchboard_store_commit_queue_capacity 4096
# TYPE switchboard_store_bytes gauge
switchboard_store_bytes 1.572864e+06
# TYPE switchboard_store_max_bytes gauge
switchboard_store_max_bytes 1.6777216e+07
# TYPE switchboard_store_disk_free_bytes gauge
switchboard_store_disk_free_bytes %v
# TYPE switchboard_store_disk_size_bytes gauge
switchboard_store_disk_size_bytes 1.073741824e+10
# TYPE switchboard_storage_errors_total counter
switchboard_storage_errors_total %v
# TYPE switchboard_store_commit_errors_total counter
switchboard_store_commit_errors_total 0
# TYPE switchboard_ready gauge
switchboard_ready 1
`, m.logins, m.accepted, m.live, m.stored, m.syncs, m.slowWindow, m.slowOutbound,
		m.buckets[0], m.buckets[1], m.buckets[2], m.buckets[3], m.shardQueue, m.diskFree, m.storageErrors)
}

var (
	t0 = time.Date(2026, 12, 4, 6, 0, 0, 0, time.UTC)
	// before and after are two scrapes of one server 2 s apart.
	before = metrics{logins: 10, accepted: 100, live: 50, stored: 10, syncs: 40, slowWindow: 1, slowOutbound: 1,
		buckets: [4]float64{10, 10, 10, 10}, shardQueue: 100, diskFree: 5 << 30}
	after = metrics{logins: 30, accepted: 300, live: 150, stored: 50, syncs: 140, slowWindow: 1, slowOutbound: 1,
		buckets: [4]float64{110, 200, 209, 210}, shardQueue: 100, diskFree: 5 << 30}
)

func TestQuantile(t *testing.T) {
	tests := []struct {
		name string
		q    float64
		bs   []bucket
		want float64
	}{
		{"at a bucket's top", 0.5, []bucket{{1, 50}, {2, 100}, {inf, 100}}, 1},
		{"interpolated", 0.75, []bucket{{1, 50}, {2, 100}, {inf, 100}}, 1.5},
		{"in the first bucket", 0.1, []bucket{{0.004, 100}, {inf, 100}}, 0.0004},
		{"in +Inf: the highest bound", 0.99, []bucket{{1, 10}, {inf, 100}}, 1},
		{"an empty bucket skipped", 0.99, []bucket{{1, 0}, {2, 0}, {4, 100}, {inf, 100}}, 3.98},
		{"at a bucket's top, empty buckets above", 0.5, []bucket{{1, 50}, {2, 50}, {4, 100}, {inf, 100}}, 1},
	}
	for _, tt := range tests {
		if got := quantile(tt.q, tt.bs); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("%s: quantile(%v) = %v, want %v", tt.name, tt.q, got, tt.want)
		}
	}
	for _, bs := range [][]bucket{nil, {{1, 0}, {inf, 0}}} {
		if got := quantile(0.99, bs); !math.IsNaN(got) {
			t.Errorf("quantile(0.99, %v) = %v, want NaN (no observations)", bs, got)
		}
	}
	if got := quantile(0.99, []bucket{{inf, 10}}); !math.IsNaN(got) {
		t.Errorf("quantile of a histogram with no finite bound = %v, want NaN", got)
	}
}

// The observations between two scrapes of histograms whose bounds differ
// (a server restarted with another build): a different count of buckets
// gives the new ones as they are, the same count with other bounds none.
func TestSubBucketsOfOtherBounds(t *testing.T) {
	prev := []bucket{{1, 5}, {inf, 5}}
	more := []bucket{{1, 2}, {2, 3}, {inf, 3}}
	if got := subBuckets(more, prev); !slices.Equal(got, more) {
		t.Errorf("more buckets than before: %v, want %v", got, more)
	}
	if got := subBuckets(prev, more); !slices.Equal(got, prev) {
		t.Errorf("fewer buckets than before: %v, want %v", got, prev)
	}
	if got := subBuckets([]bucket{{2, 9}, {inf, 9}}, prev); got != nil {
		t.Errorf("other bounds: %v, want nil", got)
	}
}

func TestFiguresFromTwoScrapes(t *testing.T) {
	prev := newSample("a:9070", t0, before.text())
	cur := newSample("a:9070", t0.Add(2*time.Second), after.text())
	if prev.Err != nil || cur.Err != nil {
		t.Fatal(prev.Err, cur.Err)
	}
	f := figures(prev, cur)
	near := func(name string, got, want float64) {
		t.Helper()
		if math.IsNaN(got) || math.Abs(got-want) > 1e-9 { // NaN: a family not read
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	near("Conns", f.Conns, 12)
	near("PreLogin", f.PreLogin, 2)
	near("LoggedIn", f.LoggedIn, 9)
	near("Closing", f.Closing, 1)
	near("LoginsPerSec", f.LoginsPerSec, 10)          // (30-10)/2
	near("InPerSec", f.InPerSec, 100)                 // (300-100)/2
	near("OutPerSec", f.OutPerSec, 70)                // (100+40)/2
	near("SlowCloses", f.SlowCloses, 2)               // window + outbound_cap
	near("SlowPerSec", f.SlowPerSec, 0)               // none since
	near("SyncsPerMessage", f.SyncsPerMessage(), 0.5) // 100 syncs / 200 messages
	// The interval's observations: 100 ≤ 1 ms, 190 ≤ 5 ms, 199 ≤ 10 ms,
	// 200 in all. Rank 198 is the 8th of 9 between 5 and 10 ms.
	near("AcceptP99", f.AcceptP99(), 0.005+0.005*8/9)
	near("ShardQueue", f.ShardQueue, 100)
	near("GroupQueue", f.GroupQueue, 3)
	near("Held", f.Held, 5)
	near("CommitQueue", f.CommitQueue, 40)
	near("CommitCap", f.CommitCap, 4096)
	near("DiskFreeShare", f.DiskFreeShare(), 0.5)
	for fig := range numFigures {
		if f.Over(fig) {
			t.Errorf("figure %d over its limit; want none", fig)
		}
	}

	first := figures(Sample{}, cur)
	if !math.IsNaN(first.InPerSec) || !math.IsNaN(first.AcceptP99()) || !math.IsNaN(first.SyncsPerMessage()) {
		t.Errorf("one scrape gave rates: in %v/s, p99 %v, syncs/message %v; want NaN", first.InPerSec, first.AcceptP99(), first.SyncsPerMessage())
	}
}

func TestOverLimits(t *testing.T) {
	tests := []struct {
		name string
		edit func(*metrics)
		fig  Figure
	}{
		{"shard queue at four fifths", func(m *metrics) { m.shardQueue = 3277 }, FigShardQueue},
		{"slow-consumer closes rising", func(m *metrics) { m.slowOutbound = 2 }, FigSlow},
		{"disk free under a tenth", func(m *metrics) { m.diskFree = 1000 << 20 }, FigDisk},
		{"more syncs than messages", func(m *metrics) { m.syncs = 341 }, FigSyncs},
		{"store errors", func(m *metrics) { m.storageErrors = 1 }, FigStoreErrors},
	}
	for _, tt := range tests {
		cur := after
		tt.edit(&cur)
		f := figures(newSample("a", t0, before.text()), newSample("a", t0.Add(time.Second), cur.text()))
		for fig := range numFigures {
			if got := f.Over(fig); got != (fig == tt.fig) {
				t.Errorf("%s: Over(%d) = %v, want %v", tt.name, fig, got, fig == tt.fig)
			}
		}
	}
	// One short of four fifths is not over.
	cur := after
	cur.shardQueue = 3276
	if f := figures(Sample{}, newSample("a", t0, cur.text())); f.Over(FigShardQueue) {
		t.Error("shard queue 3276 of 4096 marked over; the mark starts at 3276.8")
	}
}

func TestSumOfACluster(t *testing.T) {
	busy := after
	busy.shardQueue = 4000
	busy.diskFree = 1000 << 20
	prev := []Sample{newSample("a", t0, before.text()), newSample("b", t0, before.text()), newSample("c", t0, before.text())}
	cur := []Sample{newSample("a", t0.Add(2*time.Second), after.text()), newSample("b", t0.Add(2*time.Second), busy.text()),
		{Addr: "c", At: t0.Add(2 * time.Second), Err: fmt.Errorf("connection refused")}}
	fr := NewFrame(prev, cur, time.Second)
	c := fr.Cluster
	if c == nil {
		t.Fatal("no cluster column for three servers")
	}
	if c.Servers != 3 || len(c.Down) != 1 || c.Down[0] != "c: connection refused" {
		t.Errorf("servers %d, down %q; want 3, [c: connection refused]", c.Servers, c.Down)
	}
	if c.Conns != 24 || c.InPerSec != 200 || c.LoginsPerSec != 20 {
		t.Errorf("conns %v, in %v/s, logins %v/s; want 24, 200, 20 (two servers up)", c.Conns, c.InPerSec, c.LoginsPerSec)
	}
	if c.ShardQueue != 4000 || !c.Over(FigShardQueue) {
		t.Errorf("cluster shard queue %v over=%v; want b's 4000, over", c.ShardQueue, c.Over(FigShardQueue))
	}
	if c.DiskFree != 1000<<20 || !c.Over(FigDisk) {
		t.Errorf("cluster disk free %v over=%v; want b's 1000 MiB (under a tenth of 10 GiB), over", c.DiskFree, c.Over(FigDisk))
	}
	if !c.Over(FigDown) {
		t.Error("a server down is not marked")
	}
	// Merged buckets: twice the observations, the same p99.
	if got, want := c.AcceptP99(), 0.005+0.005*8/9; math.Abs(got-want) > 1e-12 {
		t.Errorf("cluster p99 %v, want %v", got, want)
	}
	screen := fr.Render(Styles{})
	for _, want := range []string{"down c: connection refused", "4000 / 4096 " + Mark, "1 of 3 down " + Mark} {
		if !strings.Contains(screen, want) {
			t.Errorf("screen lacks %q:\n%s", want, screen)
		}
	}
}

func TestParseRejectsNonsense(t *testing.T) {
	if s := newSample("a", t0, "switchboard_connections{ 12\n"); s.Err == nil {
		t.Error("a broken metrics text parsed")
	}
}
