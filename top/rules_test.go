package top

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// set returns text with the value of series (a name with its labels, as the
// text writes it) replaced by v.
func set(t *testing.T, text, series, v string) string {
	t.Helper()
	var out []string
	found := false
	for l := range strings.SplitSeq(text, "\n") {
		if strings.HasPrefix(l, series+" ") {
			l, found = series+" "+v, true
		}
		out = append(out, l)
	}
	if !found {
		t.Fatalf("no series %s in the text", series)
	}
	return strings.Join(out, "\n")
}

// without returns text without the families named, as an older server that
// does not export them answers.
func without(text string, families ...string) string {
	var out []string
	for l := range strings.SplitSeq(text, "\n") {
		name := strings.TrimPrefix(strings.TrimPrefix(l, "# TYPE "), "# HELP ")
		name, _, _ = strings.Cut(name, " ")
		name, _, _ = strings.Cut(name, "{")
		keep := true
		for _, f := range families {
			keep = keep && name != f
		}
		if keep {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// screenLine returns the cells of the line of label in a rendered screen,
// single-spaced.
func screenLine(t *testing.T, screen, label string) string {
	t.Helper()
	for l := range strings.SplitSeq(screen, "\n") {
		if rest, ok := strings.CutPrefix(l, label); ok && (rest == "" || rest[0] == ' ') {
			return strings.Join(strings.Fields(rest), " ")
		}
	}
	t.Fatalf("no %q line in:\n%s", label, screen)
	return ""
}

// One server 2 s after before, its text edited: the one figure over its
// limit, the line that shows it, and nothing else over. Each limit is
// reached exactly (80% of a capacity is over, as docs/METRICS.md says).
func TestEachLimitMarked(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(string) string
		fig   Figure
		label string
		want  string
	}{
		{"connections at 80% of the cap", func(s string) string { return set(t, s, "switchboard_connections", "80") },
			FigConns, "connections", "80 / 100 !"},
		{"held receipts at 80%", func(s string) string { return set(t, s, `switchboard_receipts_held{shard="0"}`, "3300") },
			FigHeld, "held receipts (max)", "3300 / 4096 !"},
		{"a group worker's queue at 80%: the longest, not the sum", func(s string) string {
			return set(t, s, `switchboard_group_queue_length{worker="0"}`, "3\nswitchboard_group_queue_length{worker=\"1\"} 3300")
		}, FigGroupQueue, "group queue (max)", "3300 / 4096 !"},
		{"commit queue at 80% of its own capacity", func(s string) string {
			return set(t, set(t, s, "switchboard_store_commit_queue_capacity", "1000"), "switchboard_store_commit_queue_length", "800")
		}, FigCommitQueue, "commit queue", "800 / 1000 !"},
		{"store at 80% of --store-max-bytes", func(s string) string { return set(t, s, "switchboard_store_bytes", "13421773") },
			FigStore, "store", "12.8 MiB / 16.0 MiB !"},
		{"a failed commit", func(s string) string { return set(t, s, "switchboard_store_commit_errors_total", "1") },
			FigStoreErrors, "store errors", "1 !"},
		{"not ready", func(s string) string { return set(t, s, "switchboard_ready", "0") },
			FigDown, "state", "not ready !"},
		{"slow-consumer closes rising", func(s string) string { return set(t, s, `switchboard_slow_consumers_total{cause="outbound_cap"}`, "2") },
			FigSlow, "slow-consumer closes", "3 +0.5/s !"},
		{"a connection cap fallen to 0 (the reserve grew past the open-file limit)", func(s string) string {
			return set(t, s, "switchboard_connection_cap", "0")
		}, FigConns, "connections", "12 / 0 !"},
	}
	for _, tt := range tests {
		prev := newSample("a", t0, before.text())
		cur := newSample("a", t0.Add(2*time.Second), tt.edit(after.text()))
		if cur.Err != nil {
			t.Fatalf("%s: %v", tt.name, cur.Err)
		}
		fr := NewFrame([]Sample{prev}, []Sample{cur}, time.Second)
		for fig := range numFigures {
			if got := fr.Servers[0].Over(fig); got != (fig == tt.fig) {
				t.Errorf("%s: Over(%d) = %v, want %v", tt.name, fig, got, fig == tt.fig)
			}
		}
		screen := fr.Render(Styles{})
		if got := screenLine(t, screen, tt.label); got != tt.want {
			t.Errorf("%s: %s %q, want %q", tt.name, tt.label, got, tt.want)
		}
		if n := strings.Count(screen, Mark); n != 1 {
			t.Errorf("%s: %d marks, want 1:\n%s", tt.name, n, screen)
		}
	}
}

// A limit reached but not passed is not marked: a tenth of the disk free,
// one sync per message; and syncs in an interval with no message accepted
// give no ratio ("–"), not an infinite one marked over.
func TestLimitsNotPassed(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(string) string
		label string
		want  string
	}{
		{"a tenth of the disk free", func(s string) string { return set(t, s, "switchboard_store_disk_free_bytes", "1.073741824e+09") },
			"disk free", "1.0 GiB 10%"},
		{"one sync per message", func(s string) string { return set(t, s, "switchboard_store_syncs_total", "240") },
			"syncs/message", "1.00"},
		{"syncs and no message", func(s string) string { return set(t, s, "switchboard_accepted_total", "100") },
			"syncs/message", "–"},
	}
	for _, tt := range tests {
		fr := NewFrame([]Sample{newSample("a", t0, before.text())}, []Sample{newSample("a", t0.Add(2*time.Second), tt.edit(after.text()))}, time.Second)
		for fig := range numFigures {
			if fr.Servers[0].Over(fig) {
				t.Errorf("%s: Over(%d), want no figure over", tt.name, fig)
			}
		}
		if got := screenLine(t, fr.Render(Styles{}), tt.label); got != tt.want {
			t.Errorf("%s: %s %q, want %q", tt.name, tt.label, got, tt.want)
		}
	}
}

// A server of an older version, without switchboard_ready or the commit
// queue's gauges, is up and shows those figures as unknown, not as 0.
func TestOlderServer(t *testing.T) {
	old := without(after.text(), "switchboard_ready", "switchboard_store_commit_queue_length", "switchboard_store_commit_queue_capacity")
	fr := NewFrame([]Sample{newSample("a", t0, before.text())}, []Sample{newSample("a", t0.Add(2*time.Second), old)}, time.Second)
	f := fr.Servers[0]
	if f.NotReady != 0 || !math.IsNaN(f.CommitQueue) || !math.IsNaN(f.CommitCap) {
		t.Errorf("not ready %d, commit queue %v / %v; want 0, NaN / NaN", f.NotReady, f.CommitQueue, f.CommitCap)
	}
	screen := fr.Render(Styles{})
	for label, want := range map[string]string{"state": "up", "commit queue": "–"} {
		if got := screenLine(t, screen, label); got != want {
			t.Errorf("%s %q, want %q\n%s", label, got, want, screen)
		}
	}
}

// A text without its # TYPE lines (untyped series, as a proxy or a saved
// file may give) reads the same counts and rates.
func TestUntypedSeries(t *testing.T) {
	untyped := func(text string) string {
		var out []string
		for l := range strings.SplitSeq(text, "\n") {
			if !strings.HasPrefix(l, "#") {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\n")
	}
	f := figures(newSample("a", t0, untyped(before.text())), newSample("a", t0.Add(2*time.Second), untyped(after.text())))
	if f.Conns != 12 || f.LoggedIn != 9 || f.InPerSec != 100 || f.ShardQueue != 100 {
		t.Errorf("conns %v, logged in %v, in %v/s, shard queue %v; want 12, 9, 100, 100", f.Conns, f.LoggedIn, f.InPerSec, f.ShardQueue)
	}
}

// A server restarted between two scrapes: its counters and histogram
// buckets went down, so they count from zero, and the rates and p99 are
// those of what the new process did (docs/METRICS.md, "switchboard top").
func TestAfterARestart(t *testing.T) {
	prev := newSample("a", t0, after.text())
	cur := newSample("a", t0.Add(time.Second), before.text())
	f := figures(prev, cur)
	if f.LoginsPerSec != 10 || f.InPerSec != 100 || f.OutPerSec != 60 {
		t.Errorf("logins %v/s, in %v/s, out %v/s; want 10, 100, 60 (before's counters over 1 s)", f.LoginsPerSec, f.InPerSec, f.OutPerSec)
	}
	// before's 10 observations, all within 1 ms: rank 9.9 of 10 in the
	// first bucket.
	if got := screenLine(t, NewFrame([]Sample{prev}, []Sample{cur}, time.Second).Render(Styles{}), "send→ACCEPT p99"); got != "990µs" {
		t.Errorf("p99 %q after a restart, want 990µs", got)
	}
}

// Two rounds stamped at the same instant give no rates: "–", not +Inf.
func TestNoRatesOverNoTime(t *testing.T) {
	fr := NewFrame([]Sample{newSample("a", t0, before.text())}, []Sample{newSample("a", t0, after.text())}, time.Second)
	f := fr.Servers[0]
	if !math.IsNaN(f.InPerSec) || !math.IsNaN(f.LoginsPerSec) || !math.IsNaN(f.AcceptP99()) {
		t.Errorf("in %v/s, logins %v/s, p99 %v over no time; want NaN", f.InPerSec, f.LoginsPerSec, f.AcceptP99())
	}
	if got := screenLine(t, fr.Render(Styles{}), "messages in/s"); got != "–" {
		t.Errorf("messages in/s %q, want –", got)
	}
}

// The cluster's column: counts, capacities and rates summed, the longest
// queue against the largest capacity (not the sum), and a figure marked
// when it is in any server even if the sums are under the limit; the
// title gives the time of the round.
func TestClusterColumn(t *testing.T) {
	slow := after
	slow.slowWindow = 2
	slow.storageErrors = 1
	busy := after
	busy.shardQueue = 4000
	busy.syncs = 250 // 210 syncs for 200 messages: 1.05 each
	busy.slowOutbound = 2
	busy.storageErrors = 2
	busyText := set(t, busy.text(), "switchboard_ready", "0")
	at := t0.Add(2 * time.Second)
	fr := NewFrame([]Sample{newSample("a", t0, before.text()), newSample("b", t0, before.text())},
		[]Sample{newSample("a", at, slow.text()), newSample("b", at, busyText)}, time.Second)
	screen := fr.Render(Styles{})
	// Columns: cluster, a, b.
	for _, tt := range []struct{ label, want string }{
		{"state", "1 not ready ! up not ready !"},
		{"connections", "24 / 200 12 / 100 12 / 100"},
		{"  pre-login", "4 2 2"},
		{"  logged in", "18 9 9"},
		{"  closing", "2 1 1"},
		{"messages out/s", "140 70.0 70.0"},
		{"shard queue (max)", "4000 / 4096 ! 100 / 4096 4000 / 4096 !"},
		{"group queue (max)", "3 / 4096 3 / 4096 3 / 4096"},
		{"held receipts (max)", "5 / 4096 5 / 4096 5 / 4096"},
		{"commit queue", "40 / 4096 40 / 4096 40 / 4096"},
		{"slow-consumer closes", "6 +1.0/s ! 3 +0.5/s ! 3 +0.5/s !"},
		{"store", "3.0 MiB / 32.0 MiB 1.5 MiB / 16.0 MiB 1.5 MiB / 16.0 MiB"},
		{"syncs/message", "0.78 ! 0.50 1.05 !"}, // 310 syncs for 400 messages, but b's over
		{"store errors", "3 ! 1 ! 2 !"},
	} {
		if got := screenLine(t, screen, tt.label); got != tt.want {
			t.Errorf("%s %q, want %q", tt.label, got, tt.want)
		}
	}
	if !strings.Contains(screen, "06:00:02 UTC") {
		t.Errorf("the title lacks the round's time, 06:00:02 UTC:\n%s", screen)
	}
}

// A figure over its limit in the first server only is marked in the
// cluster's column: the servers after it do not clear the mark.
func TestClusterMarkFromFirstServer(t *testing.T) {
	busy := after
	busy.syncs = 250 // 1.05 syncs a message
	at := t0.Add(2 * time.Second)
	fr := NewFrame([]Sample{newSample("a", t0, before.text()), newSample("b", t0, before.text())},
		[]Sample{newSample("a", at, busy.text()), newSample("b", at, after.text())}, time.Second)
	if got := screenLine(t, fr.Render(Styles{}), "syncs/message"); got != "0.78 ! 1.05 ! 0.50" {
		t.Errorf("syncs/message %q, want 0.78 ! 1.05 ! 0.50", got)
	}
}

// Histograms of different bounds cannot be merged: the cluster has no p99,
// while each server shows its own, and a server after them does not give
// the cluster its own.
func TestClusterOfDifferentBuckets(t *testing.T) {
	other := func(m metrics) string { return strings.ReplaceAll(m.text(), `le="0.005"`, `le="0.002"`) }
	at := t0.Add(2 * time.Second)
	fr := NewFrame([]Sample{newSample("a", t0, before.text()), newSample("b", t0, other(before)), newSample("c", t0, before.text())},
		[]Sample{newSample("a", at, after.text()), newSample("b", at, other(after)), newSample("c", at, after.text())}, time.Second)
	// b: rank 198 is the 8th of 9 between 2 and 10 ms.
	if got, want := screenLine(t, fr.Render(Styles{}), "send→ACCEPT p99"), fmt.Sprintf("– 9.4ms %.1fms 9.4ms", 1e3*(0.002+0.008*8/9)); got != want {
		t.Errorf("p99 %q, want %q", got, want)
	}
}

// A server that answers again after being down has no rates in its first
// round back, and neither has the cluster: a sum without it would be too
// low, not a rate of the cluster.
func TestClusterRatesNeedEveryServer(t *testing.T) {
	at := t0.Add(2 * time.Second)
	fr := NewFrame([]Sample{newSample("a", t0, before.text()), {Addr: "b", At: t0, Err: fmt.Errorf("connection refused")}},
		[]Sample{newSample("a", at, after.text()), newSample("b", at, after.text())}, time.Second)
	if got := screenLine(t, fr.Render(Styles{}), "messages in/s"); got != "– 100 –" {
		t.Errorf("messages in/s %q, want – 100 – (no cluster rate while b has none)", got)
	}
}

// Every figure of a send's latency is shown in its unit: under a
// millisecond in microseconds.
func TestSecondsUnits(t *testing.T) {
	for v, want := range map[float64]string{0.00042: "420µs", 0.0094: "9.4ms", 2.5: "2.50s", math.NaN(): "–"} {
		if got := seconds(v); got != want {
			t.Errorf("seconds(%v) = %q, want %q", v, got, want)
		}
	}
}

// MaxServers fit; a refresh every MinEvery does and one just faster does
// not; the scrape timeout is the interval held between 1 s and 5 s.
func TestConfigBounds(t *testing.T) {
	addrs := make([]string, MaxServers)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("10.0.0.%d:9070", i+1)
	}
	if err := (&Config{Addrs: addrs}).Validate(); err != nil {
		t.Errorf("%d servers: %v, want them accepted", MaxServers, err)
	}
	if err := (&Config{Addrs: addrs, Every: MinEvery}).Validate(); err != nil {
		t.Errorf("refresh every %v: %v, want it accepted", MinEvery, err)
	}
	if err := (&Config{Addrs: addrs, Every: MinEvery - time.Millisecond}).Validate(); err == nil || !strings.Contains(err.Error(), "at least 100ms") {
		t.Errorf("refresh every %v: %v, want it refused", MinEvery-time.Millisecond, err)
	}
	for every, want := range map[time.Duration]time.Duration{
		100 * time.Millisecond: time.Second, 2 * time.Second: 2 * time.Second, time.Minute: 5 * time.Second,
	} {
		if got := (Config{Addrs: addrs, Every: every}).Scraper().Client.Timeout; got != want {
			t.Errorf("every %v: scrape timeout %v, want %v", every, got, want)
		}
	}
}
