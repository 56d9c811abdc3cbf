package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// reportTestResult is a run with known figures: send → ack holds 1..1000 µs
// (p50 500 µs, p90 900 µs, p99 990 µs, p99.9 999 µs, max 1000 µs), send →
// deliver the same values times 1000 (1 ms..1 s), login is empty.
func reportTestResult(t *testing.T) *Result {
	t.Helper()
	ack, deliver := NewHistogram(), NewHistogram()
	for v := int64(1); v <= 1000; v++ {
		if err := ack.RecordValue(v); err != nil {
			t.Fatal(err)
		}
		if err := deliver.RecordValue(v * 1000); err != nil {
			t.Fatal(err)
		}
	}
	var timeline []Sample
	for i := range 10 {
		timeline = append(timeline, Sample{At: time.Duration(i+1) * time.Second, Conns: 1000, Sent: 10_000 + uint64(i*100), Delivered: 9_900 + uint64(i*100)})
	}
	return &Result{
		Scenario:      "chat",
		Params:        map[string]string{"conns": "1000", "rate": "10000", "size": "64"},
		Started:       time.Date(2026, 11, 26, 19, 0, 0, 0, time.UTC),
		Duration:      10 * time.Second,
		Processes:     2,
		Conns:         1000,
		Sent:          100_000,
		Accepted:      100_000,
		Delivered:     99_000,
		Duplicates:    12,
		Lost:          1_000,
		Closes:        map[string]uint64{"SLOW_READER": 3},
		SendToAck:     ack,
		SendToDeliver: deliver,
		LoginLatency:  NewHistogram(),
		BytesOut:      5_000_000,
		BytesIn:       4_900_000,
		Timeline:      timeline,
		Memory: []MemPoint{
			{Label: "baseline", Conns: 0, RSS: 20 << 20, HeapInuse: 4 << 20},
			{Label: "after ramp", Conns: 1000, RSS: 21 << 20, HeapInuse: 4<<20 + 512_000},
			{Label: "after traffic", Conns: 1000, RSS: 30 << 20, HeapInuse: 12 << 20},
		},
		GeneratorCPU: 4 * time.Second,
		ServerCPU:    2 * time.Second,
		Failures:     []string{"lost 1,000 accepted messages | e.g. user 7 msg 42"},
		Notes:        []string{"server metrics scraped from 127.0.0.1:9100"},
	}
}

// testChartDPI draws test charts coarse (about 310 × 170 px): rasterising
// at the report's 150 dpi takes seconds under the race detector.
const testChartDPI = 40

func TestWriteReport(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "out")
	r := reportTestResult(t)
	if err := writeReport(dir, r, testChartDPI); err != nil {
		t.Fatal(err)
	}
	md := readFile(t, filepath.Join(dir, reportFile))

	// Percentile rows: HDR at 3 digits holds every value below 2048 exactly.
	for _, want := range []string{
		"| send → ack | 1,000 | 500 µs | 900 µs | 990 µs | 999 µs | 1.00 ms |",
		"| send → deliver | 1,000 | 500 ms | 900 ms | 990 ms | 999 ms | 1.00 s |",
		"| p50 | p90 | p99 | p99.9 | max |",
		"**FAIL**: 1 failure",
		`lost 1,000 accepted messages \| e.g. user 7 msg 42`,
		"9,900 msg/s", // delivered rate
		"| both directions per delivered message | 100 B/msg |", // (5,000,000 + 4,900,000) / 99,000
		"| out per sent message | 50 B/msg |",
		"| in per delivered message | 49.5 B/msg |",
		"40.4 µs/msg", // generator CPU 4 s / 99,000
		"20.2 µs/msg", // server CPU 2 s / 99,000
		"1.02 KiB",    // (21 MiB − 20 MiB) / 1000 conns = 1048.6 B
		"0.40 of ",    // generator cores busy: 4 s / 10 s
		"| `rate` | `10000` |",
		"GOMAXPROCS",
		"server metrics scraped",
		"![Latency by percentile](latency.png)",
		"![Throughput over time](throughput.png)",
		"![Server memory against connections](memory.png)",
		"connections closed by the server: SLOW\\_READER | 3 conns",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	if strings.Contains(md, "| login |") {
		t.Error("report.md has a row for the empty login histogram")
	}

	// Every embedded image exists and decodes as a non-empty PNG.
	imgs := regexp.MustCompile(`!\[[^\]]*\]\(([^)]+)\)`).FindAllStringSubmatch(md, -1)
	if len(imgs) != 3 {
		t.Fatalf("report.md embeds %d images, want 3", len(imgs))
	}
	for _, m := range imgs {
		checkPNG(t, filepath.Join(dir, m[1]))
	}

	// result.json round-trips the counts and carries the percentiles.
	raw := []byte(readFile(t, filepath.Join(dir, resultFile)))
	var back Result
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if back.Sent != r.Sent || back.Delivered != r.Delivered || back.Lost != r.Lost || back.Duration != r.Duration ||
		back.Closes["SLOW_READER"] != 3 || len(back.Timeline) != 10 || len(back.Memory) != 3 || len(back.Failures) != 1 {
		t.Errorf("result.json did not round-trip the counts: %+v", back)
	}
	var extra struct {
		Passed      bool                   `json:"passed"`
		Percentiles map[string]HistSummary `json:"percentiles"`
		Derived     Derived                `json:"derived"`
		Machine     Machine                `json:"machine"`
	}
	if err := json.Unmarshal(raw, &extra); err != nil {
		t.Fatal(err)
	}
	wantAck := HistSummary{Count: 1000, Min: 1, Mean: 500.5, P50: 500, P90: 900, P99: 990, P999: 999, Max: 1000}
	if got := extra.Percentiles["send_to_ack"]; got != wantAck {
		t.Errorf("percentiles.send_to_ack = %+v, want %+v", got, wantAck)
	}
	if got := extra.Percentiles["send_to_deliver"]; got.P50 < 499_500 || got.P50 > 500_500 || got.Count != 1000 {
		t.Errorf("percentiles.send_to_deliver = %+v, want p50 ≈ 500,000 µs", got)
	}
	if _, ok := extra.Percentiles["login"]; ok {
		t.Error("percentiles has the empty login histogram")
	}
	if extra.Passed {
		t.Error("passed = true for a failing run")
	}
	if extra.Machine.Cores == 0 || extra.Machine.GoVersion == "" {
		t.Errorf("machine not filled: %+v", extra.Machine)
	}
	if f := extra.Derived.Memory[1].RSSPerConnOverBaseline; f == nil || *f != float64(1<<20)/1000 {
		t.Errorf("rss per conn over baseline = %v, want %v", f, float64(1<<20)/1000)
	}
	if f := extra.Derived.WireBytesPerDelivered; f == nil || *f != 100 {
		t.Errorf("wire bytes per delivered = %v, want 100", f)
	}

	// WriteJSON writes the same document.
	var buf bytes.Buffer
	if err := WriteJSON(&buf, r); err != nil {
		t.Fatal(err)
	}
	if buf.String() != string(raw) {
		t.Error("WriteJSON differs from result.json")
	}
}

// TestNegativeMemoryHasACaveat: on a server reused from an earlier run the
// RSS can fall below the baseline, and a negative cost a connection is
// explained, not just printed.
func TestNegativeMemoryHasACaveat(t *testing.T) {
	r := &Result{Scenario: "connect", Duration: time.Second, Memory: []MemPoint{
		{Label: "baseline", Conns: 0, RSS: 300 << 20},
		{Label: "peak", Conns: 1000, RSS: 200 << 20},
	}}
	jr := buildReport(r)
	if f := jr.Derived.Memory[1].RSSPerConnOverBaseline; f == nil || *f >= 0 {
		t.Fatalf("rss per conn over baseline = %v, want negative", f)
	}
	want := `The server's RSS at "peak" is below its baseline`
	if !slices.ContainsFunc(jr.Derived.Warnings, func(s string) bool { return strings.HasPrefix(s, want) }) {
		t.Errorf("warnings %q lack %q", jr.Derived.Warnings, want)
	}
	r.Memory[1].RSS = 400 << 20
	for _, s := range buildReport(r).Derived.Warnings {
		if strings.HasPrefix(s, want) {
			t.Errorf("warning %q for a positive cost", s)
		}
	}
}

func TestWriteReportSkipsEmptyCharts(t *testing.T) {
	dir := t.TempDir()
	// A chart left by an earlier report must not survive beside this one.
	if err := os.WriteFile(filepath.Join(dir, memoryChartFile), []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &Result{
		Scenario: "idle",
		Duration: time.Second,
		Memory:   []MemPoint{{Label: "peak", Conns: 10, RSS: 1 << 20}},
	}
	if err := WriteReport(dir, r); err != nil {
		t.Fatal(err)
	}
	md := readFile(t, filepath.Join(dir, reportFile))
	for _, want := range []string{
		"No latency chart",
		"No throughput chart",
		"No memory chart",
		"**PASS**",
		`No memory point is labelled "baseline"`,
		"Server CPU was not measured",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	if strings.Contains(md, "![") {
		t.Error("report.md embeds an image that was not drawn")
	}
	for _, f := range []string{latencyChartFile, throughputChartFile, memoryChartFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
			t.Errorf("%s exists (err %v), want none", f, err)
		}
	}
}

func TestPrintSummary(t *testing.T) {
	tests := []struct {
		name     string
		failures []string
		want     []string
		wantNot  []string
	}{
		{
			name:     "failing",
			failures: []string{"lost 1,000 accepted messages", "user 9 saw seq 5 after seq 6"},
			want:     []string{"· FAIL", "FAIL: 2 failures", "  - lost 1,000 accepted messages", "  - user 9 saw seq 5 after seq 6"},
			wantNot:  []string{"PASS"},
		},
		{
			name: "passing",
			want: []string{"· PASS", "PASS: no correctness failure"},
			// Lost was left at 1,000: the summary must not hide it.
			wantNot: []string{"FAIL"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := reportTestResult(t)
			r.Failures = tt.failures
			var buf bytes.Buffer
			PrintSummary(&buf, r)
			out := buf.String()
			for _, s := range append(tt.want,
				"500 µs", "990 µs", "1.00 s", "9,900 msg/s", "100 B/msg", "40.4 µs/msg", "1.02 KiB", "rate=10000") {
				if !strings.Contains(out, s) {
					t.Errorf("summary lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tt.wantNot {
				if strings.Contains(out, s) {
					t.Errorf("summary has %q:\n%s", s, out)
				}
			}
			checkAligned(t, out)
		})
	}
}

// TestSummaryCountsEveryFailure: a loop lists its first failures only, and
// the FAIL line counts them all; a run that connected nothing prints its
// reason under the header instead of tables of zeros.
func TestSummaryCountsEveryFailure(t *testing.T) {
	r := &Result{Scenario: "phone", Processes: 1, Params: map[string]string{"addr": "127.0.0.1:1"}}
	for i := range maxFailureLines {
		r.Failures = append(r.Failures, fmt.Sprintf("user %d could not log in to 127.0.0.1:1: connect: connection refused", i))
	}
	r.FailuresNotListed = 1980
	r.Failures = append(r.Failures, "the run could not be carried out: loop 0: connect: 2000 connections could not log in (see the failures)")
	var buf bytes.Buffer
	PrintSummary(&buf, r)
	out := buf.String()
	for _, s := range []string{"· FAIL", "nothing was measured", "FAIL: 2,001 failures", "… and 1,980 more like them, not listed", "could not be carried out"} {
		if !strings.Contains(out, s) {
			t.Errorf("summary lacks %q:\n%s", s, out)
		}
	}
	for _, s := range []string{"messages", "latency", "wire", "store"} {
		if strings.Contains(out, "\n"+s) {
			t.Errorf("summary of a run that measured nothing has its %q table:\n%s", s, out)
		}
	}
	if lines := strings.Count(out, "\n"); lines > maxFailureLines+12 {
		t.Errorf("summary of a run that measured nothing is %d lines:\n%s", lines, out)
	}

	var md bytes.Buffer
	if err := writeMarkdown(&md, buildReport(r), nil); err != nil {
		t.Fatal(err)
	}
	if s := "**FAIL**: 2,001 failures"; !strings.Contains(md.String(), s) {
		t.Errorf("report.md lacks %q:\n%s", s, md.String())
	}

	// Once something was measured, the tables come back.
	r.Conns, r.Sent = 10, 5
	buf.Reset()
	PrintSummary(&buf, r)
	if !strings.Contains(buf.String(), "\nmessages") || strings.Contains(buf.String(), "nothing was measured") {
		t.Errorf("summary of a run that measured something:\n%s", buf.String())
	}

	var merged Result
	merged.Merge(r)
	merged.Merge(r)
	if got := merged.FailureCount(); got != 2*2001 {
		t.Errorf("merged FailureCount = %d, want %d", got, 2*2001)
	}
}

// checkAligned checks that within each table the rows are the same width
// (numbers are right-aligned to a common edge).
func checkAligned(t *testing.T, out string) {
	t.Helper()
	for _, block := range strings.Split(out, "\n\n") {
		lines := strings.Split(strings.TrimSpace(block), "\n")
		if !strings.HasPrefix(lines[0], "latency") {
			continue
		}
		w := len([]rune(lines[0]))
		for _, l := range lines[1:] {
			if len([]rune(l)) != w {
				t.Errorf("latency table not aligned:\n%s", block)
			}
		}
		return
	}
	t.Error("no latency table")
}

func TestFormat(t *testing.T) {
	tests := []struct{ got, want string }{
		{formatCount(0), "0"},
		{formatCount(999), "999"},
		{formatCount(1000), "1,000"},
		{formatCount(1234567), "1,234,567"},
		{formatLatency(7), "7 µs"},
		{formatLatency(2140), "2.14 ms"},
		{formatLatency(21400), "21.4 ms"},
		{formatLatency(999_999), "1.00 s"},
		{formatMicros(0.5), "0.50 µs"},
		{formatBytes(82), "82 B"},
		{formatBytes(82.26), "82.3 B"},
		{formatBytes(1536), "1.50 KiB"},
		{formatBytes(-2048), "−2.00 KiB"},
		{formatBytes(3 << 30), "3.00 GiB"},
		{formatRate(48_200.4), "48,200 msg/s"},
		{formatRate(3.25), "3.2 msg/s"},
		{mdCode("a|b"), "`a\\|b`"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if b := img.Bounds(); b.Dx() < 100 || b.Dy() < 100 {
		t.Errorf("%s is %v, want a real chart", path, b)
	}
}

func TestWriteReportBaselineAndFigures(t *testing.T) {
	dir := t.TempDir()
	r := reportTestResult(t)
	base := reportTestResult(t)
	base.Failures, base.Lost = nil, 0
	base.SendToAck = NewHistogram()
	for v := int64(1); v <= 1000; v++ {
		if err := base.SendToAck.RecordValue(v / 2); err != nil { // half the latency
			t.Fatal(err)
		}
	}
	r.Baseline = base
	r.Figures = map[string]float64{"connect_rate_per_s": 12_500, "drain_s": 1.25, "server_mem_per_conn_bytes": 891.3, "slow_readers_closed": 200}
	if err := writeReport(dir, r, testChartDPI); err != nil {
		t.Fatal(err)
	}
	md := readFile(t, filepath.Join(dir, reportFile))
	for _, want := range []string{
		"## Against the baseline",
		"| send → ack p50 | 250 µs | 500 µs | ×2.0 |",
		"| send → deliver p50 | 500 ms | 500 ms | = |",
		"| lost | 0 msg | 1,000 msg | — |",
		"| failures | 0 | 1 |  |",
		"| connect rate | 12,500/s |",
		"| drain | 1.25 s |",
		"| server mem per conn | 891 B |",
		"| slow readers closed | 200 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	checkPNG(t, filepath.Join(dir, latencyChartFile))

	var doc struct {
		Figures  map[string]float64 `json:"figures"`
		Baseline struct {
			Lost        uint64                 `json:"lost"`
			Percentiles map[string]HistSummary `json:"percentiles"`
			Machine     *Machine               `json:"machine"`
		} `json:"baseline"`
	}
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(dir, resultFile))), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Baseline.Percentiles["send_to_ack"].P50 != 250 || doc.Baseline.Machine != nil || doc.Figures["drain_s"] != 1.25 {
		t.Errorf("result.json baseline/figures: %+v", doc)
	}

	var buf bytes.Buffer
	PrintSummary(&buf, r)
	for _, want := range []string{"against baseline", "×2.0", "connect rate", "12,500/s"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, buf.String())
		}
	}
}

// TestMarkdownConditionalLines: the lines report.md writes only when they
// apply: a failed baseline and its failures, a moderate change against
// the baseline, store syncs per message beside the baseline's, messages
// left unchecked, failures not listed, and a baseline memory point taken
// with connections open.
func TestMarkdownConditionalLines(t *testing.T) {
	r, base := reportTestResult(t), reportTestResult(t)
	base.Failures, base.Delivered, base.ServerSyncs = []string{"baseline: lost 3 | e.g. user 9"}, 66_000, ptrU64(66_000)
	r.ServerSyncs, r.Unchecked, r.FailuresNotListed = ptrU64(49_500), 7, 1
	r.Memory[0].Conns = 100
	r.Baseline = base
	var md bytes.Buffer
	if err := writeMarkdown(&md, buildReport(r), nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"The baseline itself failed:\n\n- baseline: lost 3 \\| e.g. user 9\n\n",
		"| delivered rate | 6,600 msg/s | 9,900 msg/s | +50% |",
		"| store syncs per delivered message | 1.00 | 0.5 | -50% |",
		"| not checked: a recipient could not log in | 7 msg |  |",
		"- … and 1 more like them, not listed",
		"÷ (N − 100): the marginal cost of one more connection",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
}

func TestWarnings(t *testing.T) {
	m := Machine{Cores: 2}
	tests := []struct {
		name          string
		gen, srv      time.Duration // over a 10 s run
		lost          uint64
		want, wantNot string
	}{
		{name: "generator bound", gen: 17 * time.Second, srv: 2 * time.Second, want: "generator kept 1.70 of this machine's 2 cores busy"},
		{name: "host saturated", gen: 9 * time.Second, srv: 8 * time.Second, want: "together kept 1.70 cores busy", wantNot: "generator kept"},
		{name: "room to spare", gen: 5 * time.Second, srv: 5 * time.Second, wantNot: "cores busy"},
		{name: "server unmeasured", gen: time.Second, want: "Server CPU was not measured"},
		{name: "loss without failure", gen: time.Second, srv: time.Second, lost: 3, want: "3 lost and 0 reordered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Result{Duration: 10 * time.Second, Delivered: 1000, GeneratorCPU: tt.gen, ServerCPU: tt.srv, Lost: tt.lost}
			d := derive(r)
			got := strings.Join(warnings(r, &d, m), "\n")
			if tt.want != "" && !strings.Contains(got, tt.want) {
				t.Errorf("warnings lack %q:\n%s", tt.want, got)
			}
			if tt.wantNot != "" && strings.Contains(got, tt.wantNot) {
				t.Errorf("warnings have %q:\n%s", tt.wantNot, got)
			}
		})
	}
}

// TestVerdictNotKeptUp: a run that passed its checks but left scheduled
// messages unsent says so in its verdict, since its latencies leave the
// latest messages out; a sweep says it per step instead.
func TestVerdictNotKeptUp(t *testing.T) {
	r := newResult()
	if got := verdict(r); got != "PASS" {
		t.Errorf("verdict %q, want PASS", got)
	}
	r.Unsent = 47244
	if got := verdict(r); !strings.HasPrefix(got, "PASS, but the server did not keep up: 47,244 messages never sent") {
		t.Errorf("verdict with unsent messages: %q", got)
	}
	r.Sweep = &Sweep{}
	if got := verdict(r); got != "PASS" {
		t.Errorf("a sweep's verdict %q, want PASS (its steps say which did not keep up)", got)
	}
	r.Failures = append(r.Failures, "1 lost")
	if got := verdict(r); got != "FAIL" {
		t.Errorf("verdict with a failure %q, want FAIL", got)
	}
}

// TestCoresBusyOverTheCostWindow: cores busy divide the CPU by the time it
// was counted over: the cost window when the run has one (offline, whose
// measured drain can take milliseconds while the CPU is counted over the
// drain and the settling after it), not the measured phase.
func TestCoresBusyOverTheCostWindow(t *testing.T) {
	r := newResult()
	r.Delivered, r.Duration = 2000, 10*time.Millisecond
	r.ServerCPU, r.GeneratorCPU = 500*time.Millisecond, 250*time.Millisecond
	if d := derive(r); d.ServerCoresBusy == nil || *d.ServerCoresBusy != 50 {
		t.Fatalf("without a cost window: server cores busy %v, want 50 (over the 10 ms phase)", d.ServerCoresBusy)
	}
	r.CostWindow = time.Second
	d := derive(r)
	if d.ServerCoresBusy == nil || *d.ServerCoresBusy != 0.5 || d.GeneratorCoresBusy == nil || *d.GeneratorCoresBusy != 0.25 {
		t.Errorf("server cores busy %v, generator %v; want 0.5 and 0.25 over the 1 s window", d.ServerCoresBusy, d.GeneratorCoresBusy)
	}
	if d.DeliveredPerSec != 200000 {
		t.Errorf("delivered a second %v, want 200,000 over the measured 10 ms", d.DeliveredPerSec)
	}
}
