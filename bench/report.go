package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Report files, relative to the folder WriteReport writes.
const (
	reportFile = "report.md"
	resultFile = "result.json"
)

// baselineLabel names the MemPoint taken before any connection was opened;
// when a run has one, per-connection memory is measured against it.
const baselineLabel = "baseline"

// generatorBoundShare is the share of this machine's cores the generator may
// use before the report warns that it, not the server, may be the limit:
// above 80% the scheduler, not the server, starts to set the pace.
const generatorBoundShare = 0.8

// errNilResult is returned when a report is asked for without a Result.
var errNilResult = errors.New("bench: nil result")

// HistSummary is one latency histogram summarised for result.json; values
// are in microseconds, as recorded.
type HistSummary struct {
	Count int64   `json:"count"`
	Min   int64   `json:"min_us"`
	Mean  float64 `json:"mean_us"`
	P50   int64   `json:"p50_us"`
	P90   int64   `json:"p90_us"`
	P99   int64   `json:"p99_us"`
	P999  int64   `json:"p99_9_us"`
	Max   int64   `json:"max_us"`
}

// MemFigure is the per-connection cost derived from one MemPoint, in bytes.
// A nil field could not be computed (no connections, heap unknown, no
// baseline, or not more connections than the baseline).
type MemFigure struct {
	Label string `json:"label"`
	Conns int    `json:"conns"`
	// RSS ÷ conns and heap ÷ conns: include the process's fixed cost.
	RSSPerConn  *float64 `json:"rss_per_conn_bytes,omitempty"`
	HeapPerConn *float64 `json:"heap_per_conn_bytes,omitempty"`
	// (value − baseline value) ÷ (conns − baseline conns): the marginal cost.
	RSSPerConnOverBaseline  *float64 `json:"rss_per_conn_over_baseline_bytes,omitempty"`
	HeapPerConnOverBaseline *float64 `json:"heap_per_conn_over_baseline_bytes,omitempty"`
}

// Derived holds the figures the report computes from a Result, so that
// report.md, the terminal table and result.json agree. A nil field could not
// be computed (nothing delivered, zero duration, not measured).
type Derived struct {
	SentPerSec      float64 `json:"sent_per_sec"`
	DeliveredPerSec float64 `json:"delivered_per_sec"`

	// Wire bytes counted by the generator.
	WireBytesPerDelivered *float64 `json:"wire_bytes_per_delivered,omitempty"` // (out + in) ÷ delivered
	BytesOutPerSent       *float64 `json:"bytes_out_per_sent,omitempty"`
	BytesInPerDelivered   *float64 `json:"bytes_in_per_delivered,omitempty"`

	// CPU in µs per delivered message, and cores kept busy on average
	// (CPU time ÷ measured duration).
	GeneratorCPUPerDeliveredUs *float64 `json:"generator_cpu_per_delivered_us,omitempty"`
	ServerCPUPerDeliveredUs    *float64 `json:"server_cpu_per_delivered_us,omitempty"`
	GeneratorCoresBusy         *float64 `json:"generator_cores_busy,omitempty"`
	ServerCoresBusy            *float64 `json:"server_cores_busy,omitempty"`

	Memory []MemFigure `json:"memory,omitempty"`

	// Warnings are caveats the report found in the figures themselves.
	Warnings []string `json:"warnings,omitempty"`
}

// Machine describes the host that wrote the report (the coordinator).
type Machine struct {
	Hostname   string `json:"hostname"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	Cores      int    `json:"cores"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	GoVersion  string `json:"go_version"`
}

// jsonReport is the shape of result.json: the Result's own fields, then
// what the report adds (the histograms are not in the Result's JSON).
type jsonReport struct {
	*Result
	Passed      bool                   `json:"passed"`
	Percentiles map[string]HistSummary `json:"percentiles"`
	Derived     Derived                `json:"derived"`
	Machine     *Machine               `json:"machine,omitempty"` // nil in a nested baseline
	// Baseline shadows Result.Baseline so that the baseline run carries
	// its own percentiles and derived figures too.
	Baseline *jsonReport `json:"baseline,omitempty"`
}

// buildReport computes everything the three outputs share.
func buildReport(r *Result) *jsonReport {
	m := thisMachine()
	jr := buildRun(r, m)
	jr.Machine = &m
	if r.Baseline != nil && r.Baseline != r {
		jr.Baseline = buildRun(r.Baseline, m) // one level: a baseline's own baseline is not reported
	}
	return jr
}

// buildRun computes one run's percentiles and derived figures.
func buildRun(r *Result, m Machine) *jsonReport {
	jr := &jsonReport{
		Result:      r,
		Passed:      r.Passed(),
		Percentiles: map[string]HistSummary{},
		Derived:     derive(r),
	}
	for _, nh := range histograms(r) {
		jr.Percentiles[nh.key] = summarize(nh)
	}
	jr.Derived.Warnings = warnings(r, &jr.Derived, m)
	return jr
}

func summarize(nh namedHist) HistSummary {
	h := nh.h
	v := h.ValueAtPercentilesSlice([]float64{50, 90, 99, 99.9})
	return HistSummary{
		Count: h.TotalCount(),
		Min:   h.Min(),
		Mean:  h.Mean(),
		P50:   v[0],
		P90:   v[1],
		P99:   v[2],
		P999:  v[3],
		Max:   h.Max(),
	}
}

func thisMachine() Machine {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return Machine{
		Hostname:   host,
		OS:         runtime.GOOS,
		Arch:       runtime.GOARCH,
		Cores:      runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		GoVersion:  runtime.Version(),
	}
}

func ptr(v float64) *float64 { return &v }

// ratio returns num ÷ den, or nil when den is zero.
func ratio(num, den float64) *float64 {
	if den == 0 {
		return nil
	}
	return ptr(num / den)
}

func derive(r *Result) Derived {
	var d Derived
	secs := r.Duration.Seconds()
	delivered := float64(r.Delivered)
	if secs > 0 {
		d.SentPerSec = float64(r.Sent) / secs
		d.DeliveredPerSec = delivered / secs
	}
	d.WireBytesPerDelivered = ratio(float64(r.BytesOut+r.BytesIn), delivered)
	d.BytesOutPerSent = ratio(float64(r.BytesOut), float64(r.Sent))
	d.BytesInPerDelivered = ratio(float64(r.BytesIn), delivered)
	if r.GeneratorCPU > 0 {
		d.GeneratorCPUPerDeliveredUs = ratio(float64(r.GeneratorCPU.Microseconds()), delivered)
		d.GeneratorCoresBusy = ratio(r.GeneratorCPU.Seconds(), secs)
	}
	if r.ServerCPU > 0 {
		d.ServerCPUPerDeliveredUs = ratio(float64(r.ServerCPU.Microseconds()), delivered)
		d.ServerCoresBusy = ratio(r.ServerCPU.Seconds(), secs)
	}
	base, hasBase := baseline(r.Memory)
	for _, m := range r.Memory {
		f := MemFigure{Label: m.Label, Conns: m.Conns}
		if m.Conns > 0 {
			f.RSSPerConn = ratio(float64(m.RSS), float64(m.Conns))
			if m.HeapInuse > 0 {
				f.HeapPerConn = ratio(float64(m.HeapInuse), float64(m.Conns))
			}
		}
		if hasBase && m.Conns > base.Conns {
			n := float64(m.Conns - base.Conns)
			f.RSSPerConnOverBaseline = ptr((float64(m.RSS) - float64(base.RSS)) / n)
			if m.HeapInuse > 0 && base.HeapInuse > 0 {
				f.HeapPerConnOverBaseline = ptr((float64(m.HeapInuse) - float64(base.HeapInuse)) / n)
			}
		}
		d.Memory = append(d.Memory, f)
	}
	return d
}

// baseline returns the first MemPoint labelled "baseline", if any.
func baseline(ms []MemPoint) (MemPoint, bool) {
	for _, m := range ms {
		if strings.EqualFold(strings.TrimSpace(m.Label), baselineLabel) {
			return m, true
		}
	}
	return MemPoint{}, false
}

// warnings lists caveats a reader sizing a host must not miss.
func warnings(r *Result, d *Derived, m Machine) []string {
	var w []string
	if r.Duration <= 0 {
		w = append(w, "The measured duration is zero: no rate could be computed.")
	}
	if r.Passed() && (r.Lost > 0 || r.Reordered > 0) {
		w = append(w, fmt.Sprintf("The counts show %s lost and %s reordered messages, yet the run recorded no failure.",
			formatCount(r.Lost), formatCount(r.Reordered)))
	}
	if d.GeneratorCoresBusy != nil && *d.GeneratorCoresBusy >= generatorBoundShare*float64(m.Cores) {
		w = append(w, fmt.Sprintf("The generator kept %.2f of this machine's %d cores busy: it may be the bottleneck, not the server.",
			*d.GeneratorCoresBusy, m.Cores))
	}
	if g, s := d.GeneratorCoresBusy, d.ServerCoresBusy; g != nil && s != nil &&
		*g < generatorBoundShare*float64(m.Cores) && *g+*s >= generatorBoundShare*float64(m.Cores) {
		w = append(w, fmt.Sprintf("Generator and server together kept %.2f cores busy: if they share this %d-core host, "+
			"it was saturated and the figures understate what a dedicated server does.", *g+*s, m.Cores))
	}
	if r.ServerCPU <= 0 {
		w = append(w, "Server CPU was not measured: no server µs per message.")
	}
	if len(r.Memory) > 0 {
		if _, ok := baseline(r.Memory); !ok {
			w = append(w, `No memory point is labelled "baseline": RSS ÷ connections includes the process's fixed cost and overstates the cost of one connection.`)
		}
	}
	return w
}

// WriteJSON writes the Result as JSON with the report's additions: "passed",
// "percentiles" (one object per non-empty histogram, in µs), "derived" (rates,
// bytes and CPU per message, memory per connection, warnings) and "machine".
// It is the content of result.json.
func WriteJSON(w io.Writer, r *Result) error {
	if r == nil {
		return errNilResult
	}
	return writeJSON(w, buildReport(r))
}

func writeJSON(w io.Writer, jr *jsonReport) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(jr); err != nil {
		return fmt.Errorf("bench: encode result: %w", err)
	}
	return nil
}

// WriteReport creates dir if needed and writes into it report.md,
// result.json (as WriteJSON) and the PNG charts that have data:
// latency.png (percentile curves), throughput.png (sent and delivered per
// second) and memory.png (server memory against connections, from two
// memory points up). The report says which charts were skipped and why.
// Files from an earlier report in dir are overwritten.
func WriteReport(dir string, r *Result) error {
	return writeReport(dir, r, chartDPI)
}

// writeReport is WriteReport with the charts' resolution given: tests draw
// them coarse, as rasterising dominates their time under the race detector.
func writeReport(dir string, r *Result, dpi int) error {
	if r == nil {
		return errNilResult
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bench: report folder: %w", err)
	}
	jr := buildReport(r)

	charts := map[string]bool{}
	for _, c := range []struct {
		file string
		draw func(string, *Result, int) (bool, error)
	}{
		{latencyChartFile, writeLatencyChart},
		{throughputChartFile, writeThroughputChart},
		{memoryChartFile, writeMemoryChart},
	} {
		path := filepath.Join(dir, c.file)
		ok, err := c.draw(path, r, dpi)
		if err != nil {
			return fmt.Errorf("bench: chart %s: %w", c.file, err)
		}
		if !ok {
			// A chart left from an earlier run would be wrong beside this report.
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("bench: remove stale chart: %w", err)
			}
		}
		charts[c.file] = ok
	}

	if err := writeFile(filepath.Join(dir, resultFile), func(w io.Writer) error {
		return writeJSON(w, jr)
	}); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, reportFile), func(w io.Writer) error {
		return writeMarkdown(w, jr, charts)
	})
}

// writeFile creates path and fills it with fill through a buffer.
func writeFile(path string, fill func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	bw := bufio.NewWriter(f)
	if err := fill(bw); err != nil {
		f.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("bench: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("bench: write %s: %w", path, err)
	}
	return nil
}

// verdict is the one-word outcome.
func verdict(r *Result) string {
	if r.Passed() {
		return "PASS"
	}
	return "FAIL"
}

// writeMarkdown writes report.md; charts says which chart files exist.
func writeMarkdown(out io.Writer, jr *jsonReport, charts map[string]bool) error {
	r, d := jr.Result, &jr.Derived
	w := &errWriter{w: out}
	p := w.printf

	p("# Switchboard bench: %s — %s\n\n", mdText(orDash(r.Scenario)), verdict(r))
	p("Started %s; measured for %s with %s generator %s and %s at the peak.\n\n",
		formatTime(r.Started), formatSeconds(r.Duration), formatCount(uint64(r.Processes)),
		plural(r.Processes, "process", "processes"), formatConns(r.Conns))

	p("## Verdict\n\n")
	if r.Passed() {
		p("**PASS**: the run found no correctness failure (no loss, reordering or other violation was recorded).\n\n")
	} else {
		p("**FAIL**: %d %s:\n\n", len(r.Failures), plural(len(r.Failures), "failure", "failures"))
		for _, f := range r.Failures {
			p("- %s\n", mdText(f))
		}
		p("\n")
	}
	if len(d.Warnings) > 0 {
		p("Read the figures below with these caveats:\n\n")
		for _, s := range d.Warnings {
			p("- %s\n", mdText(s))
		}
		p("\n")
	}

	if rows := figureRows(r.Figures); len(rows) > 0 {
		p("## Headline figures\n\n")
		p("| figure | value |\n|---|--:|\n")
		for _, row := range rows {
			p("| %s | %s |\n", mdText(row[0]), row[1])
		}
		p("\n")
	}

	if jr.Baseline != nil {
		p("## Against the baseline\n\n")
		p("The baseline is the same traffic measured without the disturbance.\n\n")
		p("| | baseline | this run | change |\n|---|--:|--:|--:|\n")
		for _, row := range compareRows(jr.Baseline, jr) {
			p("| %s | %s | %s | %s |\n", row[0], row[1], row[2], row[3])
		}
		p("\n")
		if !jr.Baseline.Passed {
			p("The baseline itself failed:\n\n")
			for _, f := range jr.Baseline.Failures {
				p("- %s\n", mdText(f))
			}
			p("\n")
		}
	}

	p("## Throughput\n\n")
	p("| messages | count | rate |\n|---|--:|--:|\n")
	for _, row := range messageRows(r, d) {
		p("| %s | %s | %s |\n", mdText(row[0]), row[1], row[2])
	}
	p("\n")
	p("Delivered counts distinct messages (after dropping redeliveries); rates are over the measured phase.\n\n")
	chart(w, charts[throughputChartFile], "Throughput over time", throughputChartFile,
		"No throughput chart: the run recorded no timeline.")

	p("## Latency\n\n")
	hs := histograms(r)
	if len(hs) == 0 {
		p("No latency was recorded.\n\n")
	} else {
		p("| | samples | p50 | p90 | p99 | p99.9 | max |\n|---|--:|--:|--:|--:|--:|--:|\n")
		for _, nh := range hs {
			s := jr.Percentiles[nh.key]
			p("| %s | %s | %s | %s | %s | %s | %s |\n", nh.title, formatCount(uint64(s.Count)),
				formatLatency(s.P50), formatLatency(s.P90), formatLatency(s.P99), formatLatency(s.P999), formatLatency(s.Max))
		}
		p("\n")
		p("Send → ack is a SEND written to its ACCEPT read; send → deliver is a SEND written to the DELIVER read " +
			"(in group runs, the last member's). Percentiles come from HDR histograms with 3 significant digits " +
			"(within 0.1%%); open-loop runs record values corrected for coordinated omission.\n\n")
	}
	chart(w, charts[latencyChartFile], "Latency by percentile", latencyChartFile,
		"No latency chart: no histogram holds a value.")

	p("## Bytes on the wire\n\n")
	p("| | value |\n|---|--:|\n")
	for _, row := range wireRows(r, d) {
		p("| %s | %s |\n", row[0], row[1])
	}
	p("\n")
	p("Counted by the generator in both directions: every byte it wrote or read, handshakes, acks, receipts and keepalives included.\n\n")

	p("## CPU\n\n")
	p("| | CPU time | per delivered message | cores busy |\n|---|--:|--:|--:|\n")
	for _, row := range cpuRows(r, d, *jr.Machine) {
		p("| %s | %s | %s | %s |\n", row[0], row[1], row[2], row[3])
	}
	p("\n")
	p("Cores busy is CPU time ÷ measured duration. The generator's figure covers all its processes.\n\n")

	p("## Server memory\n\n")
	if len(r.Memory) == 0 {
		p("No server memory was recorded.\n\n")
	} else {
		p("| point | connections | RSS | heap in use | RSS ÷ conns | heap ÷ conns | RSS per conn over baseline | heap per conn over baseline |\n")
		p("|---|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, row := range memoryRows(r, d) {
			p("| %s | %s | %s | %s | %s | %s | %s | %s |\n", mdText(row[0]), row[1], row[2], row[3], row[4], row[5], row[6], row[7])
		}
		p("\n")
		if base, ok := baseline(r.Memory); ok {
			den := "N"
			if base.Conns > 0 {
				den = "(N − " + formatCount(uint64(base.Conns)) + ")"
			}
			p("Per connection over baseline = (value at N connections − value at the baseline point) ÷ %s: "+
				"the marginal cost of one more connection. RSS ÷ conns includes the process's fixed cost.\n\n", den)
		} else {
			p("RSS ÷ conns includes the process's fixed cost; take a point labelled \"baseline\" before connecting to measure the marginal cost.\n\n")
		}
	}
	chart(w, charts[memoryChartFile], "Server memory against connections", memoryChartFile,
		"No memory chart: it needs at least two memory points.")

	p("## Parameters\n\n")
	if len(r.Params) == 0 {
		p("None recorded.\n\n")
	} else {
		p("| parameter | value |\n|---|---|\n")
		for _, k := range slices.Sorted(maps.Keys(r.Params)) {
			p("| %s | %s |\n", mdCode(k), mdCode(r.Params[k]))
		}
		p("\n")
	}

	m := jr.Machine
	p("## Machine\n\n")
	p("The host that ran the coordinator and wrote this report.\n\n")
	p("| | |\n|---|---|\n")
	p("| hostname | %s |\n| OS | %s/%s |\n| cores | %d |\n| GOMAXPROCS | %d |\n| Go | %s |\n\n",
		mdText(m.Hostname), m.OS, m.Arch, m.Cores, m.GOMAXPROCS, m.GoVersion)

	p("## Notes\n\n")
	if len(r.Notes) == 0 {
		p("None.\n")
	} else {
		for _, n := range r.Notes {
			p("- %s\n", mdText(n))
		}
	}
	return w.err
}

// chart embeds file when it was drawn, or says why it was not.
func chart(w *errWriter, drawn bool, alt, file, missing string) {
	if drawn {
		w.printf("![%s](%s)\n\n", alt, file)
	} else {
		w.printf("_%s_\n\n", missing)
	}
}

// messageRows are the message counts: name, count with unit, rate or "".
func messageRows(r *Result, d *Derived) [][]string {
	rate := func(v float64) string {
		if r.Duration <= 0 {
			return "—"
		}
		return formatRate(v)
	}
	secs := r.Duration.Seconds()
	acceptedRate := "—"
	if secs > 0 {
		acceptedRate = formatRate(float64(r.Accepted) / secs)
	}
	rows := [][]string{
		{"sent", formatMsgs(r.Sent), rate(d.SentPerSec)},
		{"accepted", formatMsgs(r.Accepted), acceptedRate},
		{"refused", formatMsgs(r.Refused), ""},
		{"delivered", formatMsgs(r.Delivered), rate(d.DeliveredPerSec)},
		{"duplicate deliveries", formatMsgs(r.Duplicates), ""},
		{"redelivered after a reconnect", formatMsgs(r.Redelivered), ""},
		{"reordered", formatMsgs(r.Reordered), ""},
		{"lost", formatMsgs(r.Lost), ""},
	}
	for _, code := range slices.Sorted(maps.Keys(r.Closes)) {
		n := r.Closes[code]
		rows = append(rows, []string{"connections closed by the server: " + code,
			formatCount(n) + " " + plural(int(min(n, 2)), "conn", "conns"), ""})
	}
	return rows
}

// figureRows renders a scenario's headline figures, sorted by name, with
// the unit their name ends in: "connect_rate_per_s" reads "connect rate",
// "1,234/s".
func figureRows(figs map[string]float64) [][]string {
	var rows [][]string
	for _, name := range slices.Sorted(maps.Keys(figs)) {
		label, value := formatFigure(name, figs[name])
		rows = append(rows, []string{label, value})
	}
	return rows
}

// formatFigure splits a figure's unit suffix off its name and formats the
// value in that unit; a name without a known suffix gets a bare number.
func formatFigure(name string, v float64) (label, value string) {
	units := []struct {
		suffix string
		format func(float64) string
	}{
		{"_per_s", func(v float64) string { return formatNumber(v) + "/s" }},
		{"_bytes", formatBytes},
		{"_us", formatMicros},
		{"_ms", func(v float64) string { return formatMicros(v * 1e3) }},
		{"_s", func(v float64) string { return formatNumber(v) + " s" }},
		{"_pct", func(v float64) string { return formatNumber(v) + "%" }},
		{"_percent", func(v float64) string { return formatNumber(v) + "%" }},
	}
	value = formatNumber(v)
	for _, u := range units {
		if base, ok := strings.CutSuffix(name, u.suffix); ok && base != "" {
			name, value = base, u.format(v)
			break
		}
	}
	return strings.ReplaceAll(name, "_", " "), value
}

// compareRows sets the baseline run beside this one: metric, baseline,
// this run, relative change.
func compareRows(base, run *jsonReport) [][]string {
	row := func(name string, b, r float64, format func(float64) string) []string {
		return []string{name, format(b), format(r), change(b, r)}
	}
	rows := [][]string{
		row("delivered rate", base.Derived.DeliveredPerSec, run.Derived.DeliveredPerSec, formatRate),
	}
	for _, nh := range []namedHist{{title: "send → ack", key: "send_to_ack"}, {title: "send → deliver", key: "send_to_deliver"}, {title: "login", key: "login"}} {
		b, okB := base.Percentiles[nh.key]
		r, okR := run.Percentiles[nh.key]
		if !okB || !okR {
			continue
		}
		lat := func(v float64) string { return formatLatency(int64(v)) }
		rows = append(rows,
			row(nh.title+" p50", float64(b.P50), float64(r.P50), lat),
			row(nh.title+" p99", float64(b.P99), float64(r.P99), lat),
			row(nh.title+" p99.9", float64(b.P999), float64(r.P999), lat),
			row(nh.title+" max", float64(b.Max), float64(r.Max), lat),
		)
	}
	if b, r := base.Derived.WireBytesPerDelivered, run.Derived.WireBytesPerDelivered; b != nil && r != nil {
		rows = append(rows, row("wire bytes per delivered message", *b, *r, func(v float64) string { return formatBytes(v) + "/msg" }))
	}
	if b, r := base.Derived.ServerCPUPerDeliveredUs, run.Derived.ServerCPUPerDeliveredUs; b != nil && r != nil {
		rows = append(rows, row("server CPU per delivered message", *b, *r, func(v float64) string { return formatMicros(v) + "/msg" }))
	}
	count := func(v float64) string { return formatMsgs(uint64(v)) }
	rows = append(rows,
		row("lost", float64(base.Lost), float64(run.Lost), count),
		row("reordered", float64(base.Reordered), float64(run.Reordered), count),
		[]string{"failures", fmt.Sprint(len(base.Failures)), fmt.Sprint(len(run.Failures)), ""},
	)
	return rows
}

// change writes the relative change from b to r, or "—" from zero.
func change(b, r float64) string {
	if b == 0 {
		if r == 0 {
			return "="
		}
		return "—"
	}
	c := (r - b) / b * 100
	switch {
	case math.Abs(c) < 0.5:
		return "="
	case c >= 100: // "+1533%" is harder to read than "×16.3"
		return fmt.Sprintf("×%.1f", r/b)
	}
	return fmt.Sprintf("%+.0f%%", c)
}

func wireRows(r *Result, d *Derived) [][]string {
	return [][]string{
		{"out (generator → server)", formatBytes(float64(r.BytesOut))},
		{"in (server → generator)", formatBytes(float64(r.BytesIn))},
		{"out per sent message", perMsg(d.BytesOutPerSent, formatBytes)},
		{"in per delivered message", perMsg(d.BytesInPerDelivered, formatBytes)},
		{"both directions per delivered message", perMsg(d.WireBytesPerDelivered, formatBytes)},
	}
}

func cpuRows(r *Result, d *Derived, m Machine) [][]string {
	row := func(name string, cpu time.Duration, perMsgUs, cores *float64) []string {
		if cpu <= 0 {
			return []string{name, "not measured", "—", "—"}
		}
		busy := "—"
		if cores != nil {
			busy = fmt.Sprintf("%.2f of %d", *cores, m.Cores)
		}
		return []string{name, formatSeconds(cpu), perMsg(perMsgUs, formatMicros), busy}
	}
	gen := fmt.Sprintf("generator (%d %s)", r.Processes, plural(r.Processes, "process", "processes"))
	return [][]string{
		row(gen, r.GeneratorCPU, d.GeneratorCPUPerDeliveredUs, d.GeneratorCoresBusy),
		row("server", r.ServerCPU, d.ServerCPUPerDeliveredUs, d.ServerCoresBusy),
	}
}

// memoryRows: label, conns, RSS, heap, RSS/conn, heap/conn, and the two
// over-baseline figures; "—" where a figure does not apply.
func memoryRows(r *Result, d *Derived) [][]string {
	var rows [][]string
	for i, m := range r.Memory {
		f := d.Memory[i]
		heap := "—"
		if m.HeapInuse > 0 {
			heap = formatBytes(float64(m.HeapInuse))
		}
		rows = append(rows, []string{
			m.Label, formatConns(m.Conns), formatBytes(float64(m.RSS)), heap,
			optBytes(f.RSSPerConn), optBytes(f.HeapPerConn),
			optBytes(f.RSSPerConnOverBaseline), optBytes(f.HeapPerConnOverBaseline),
		})
	}
	return rows
}

func optBytes(v *float64) string {
	if v == nil {
		return "—"
	}
	return formatBytes(*v)
}

func perMsg(v *float64, format func(float64) string) string {
	if v == nil {
		return "—"
	}
	return format(*v) + "/msg"
}

// PrintSummary writes the human summary of r to w: the verdict, the
// parameters of the run, message counts and rates, latency percentiles,
// wire bytes, CPU, server memory, every failure and the notes, in aligned
// columns with a unit on every figure. Errors writing to w are ignored, as
// for fmt.Fprintf to a terminal.
func PrintSummary(out io.Writer, r *Result) {
	if r == nil {
		fmt.Fprintln(out, "switchboard bench: no result")
		return
	}
	jr := buildReport(r)
	d, m := &jr.Derived, *jr.Machine
	w := &errWriter{w: out}
	p := w.printf

	p("switchboard bench · %s · %s\n", orDash(r.Scenario), verdict(r))
	p("started %s · measured %s\n", formatTime(r.Started), formatSeconds(r.Duration))
	p("load    %s at peak from %d generator %s\n", formatConns(r.Conns), r.Processes, plural(r.Processes, "process", "processes"))
	p("machine %s · %s/%s · %d cores · GOMAXPROCS %d · %s\n", m.Hostname, m.OS, m.Arch, m.Cores, m.GOMAXPROCS, m.GoVersion)
	if len(r.Params) > 0 {
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(r.Params)) {
			kv = append(kv, k+"="+r.Params[k])
		}
		p("params  %s\n", strings.Join(kv, " "))
	}

	if rows := figureRows(r.Figures); len(rows) > 0 {
		p("\n")
		writeTable(w, append([][]string{{"figures", ""}}, rows...))
	}
	if jr.Baseline != nil {
		p("\n")
		writeTable(w, append([][]string{{"against baseline", "baseline", "this run", "change"}}, compareRows(jr.Baseline, jr)...))
		if !jr.Baseline.Passed {
			p("  the baseline itself failed:\n")
			for _, f := range jr.Baseline.Failures {
				p("    - %s\n", f)
			}
		}
	}

	p("\n")
	writeTable(w, append([][]string{{"messages", "count", "rate"}}, messageRows(r, d)...))

	if hs := histograms(r); len(hs) > 0 {
		p("\n")
		rows := [][]string{{"latency", "samples", "p50", "p90", "p99", "p99.9", "max"}}
		for _, nh := range hs {
			s := jr.Percentiles[nh.key]
			rows = append(rows, []string{nh.title, formatCount(uint64(s.Count)),
				formatLatency(s.P50), formatLatency(s.P90), formatLatency(s.P99), formatLatency(s.P999), formatLatency(s.Max)})
		}
		writeTable(w, rows)
	} else {
		p("\nlatency  none recorded\n")
	}

	p("\n")
	writeTable(w, append([][]string{{"wire", ""}}, wireRows(r, d)...))

	p("\n")
	writeTable(w, append([][]string{{"cpu", "time", "per delivered msg", "cores busy"}}, cpuRows(r, d, m)...))

	if len(r.Memory) > 0 {
		p("\n")
		// Six columns fit an 80-column terminal: with a baseline, show the
		// marginal cost only (report.md has both).
		rows := memoryRows(r, d)
		base, hasBase := baseline(r.Memory)
		header := []string{"server memory", "conns", "RSS", "heap", "RSS/conn", "heap/conn"}
		for i, row := range rows {
			if hasBase {
				rows[i] = append(row[:4:4], row[6], row[7])
			} else {
				rows[i] = row[:6]
			}
		}
		if hasBase {
			header[4], header[5] = "ΔRSS/conn", "Δheap/conn"
		}
		writeTable(w, append([][]string{header}, rows...))
		if hasBase {
			p("  Δ…/conn = (value − %q value) ÷ (conns − %s)\n", baselineLabel, formatCount(uint64(base.Conns)))
		} else {
			p("  …/conn = value ÷ conns, fixed process cost included (no %q point)\n", baselineLabel)
		}
	}

	if len(d.Warnings) > 0 {
		p("\ncaveats\n")
		for _, s := range d.Warnings {
			p("  - %s\n", s)
		}
	}
	if len(r.Notes) > 0 {
		p("\nnotes\n")
		for _, n := range r.Notes {
			p("  - %s\n", n)
		}
	}
	p("\n")
	if r.Passed() {
		p("PASS: no correctness failure\n")
	} else {
		p("FAIL: %d %s\n", len(r.Failures), plural(len(r.Failures), "failure", "failures"))
		for _, f := range r.Failures {
			p("  - %s\n", f)
		}
	}
}

// writeTable writes rows in columns two spaces apart: the first column
// left-aligned, the others right-aligned; rows after the first (the
// header) are indented by two spaces.
func writeTable(w *errWriter, rows [][]string) {
	var widths []int
	for i, row := range rows {
		for j, cell := range row {
			n := utf8.RuneCountInString(cell)
			if j == 0 && i > 0 {
				n += 2
			}
			if j >= len(widths) {
				widths = append(widths, 0)
			}
			widths[j] = max(widths[j], n)
		}
	}
	var b strings.Builder
	for i, row := range rows {
		b.Reset()
		for j, cell := range row {
			pad := widths[j] - utf8.RuneCountInString(cell)
			switch {
			case j == 0 && i > 0:
				b.WriteString("  ")
				b.WriteString(cell)
				b.WriteString(strings.Repeat(" ", pad-2))
			case j == 0:
				b.WriteString(cell)
				b.WriteString(strings.Repeat(" ", pad))
			default:
				b.WriteString("  ")
				b.WriteString(strings.Repeat(" ", pad))
				b.WriteString(cell)
			}
		}
		w.printf("%s\n", strings.TrimRight(b.String(), " "))
	}
}

// errWriter keeps the first write error so the writers above read straight.
type errWriter struct {
	w   io.Writer
	err error
}

func (w *errWriter) printf(format string, args ...any) {
	if w.err != nil {
		return
	}
	_, w.err = fmt.Fprintf(w.w, format, args...)
}

// Formatting. Every figure carries its unit; latencies and bytes keep three
// significant digits, the precision the histograms have.

// formatCount writes n with thousands separators: 1,234,567.
func formatCount(n uint64) string {
	s := fmt.Sprint(n)
	if len(s) <= 3 {
		return s
	}
	var b strings.Builder
	lead := len(s) % 3
	if lead > 0 {
		b.WriteString(s[:lead])
	}
	for i := lead; i < len(s); i += 3 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s[i : i+3])
	}
	return b.String()
}

func formatMsgs(n uint64) string { return formatCount(n) + " msg" }

func formatConns(n int) string {
	if n < 0 {
		n = 0
	}
	return formatCount(uint64(n)) + " " + plural(n, "conn", "conns")
}

// formatNumber writes v with separators from 1,000 up and three
// significant digits below.
func formatNumber(v float64) string {
	sign := ""
	if v < 0 {
		sign, v = "−", -v
	}
	if v >= 999.5 {
		return sign + formatCount(uint64(math.Round(v)))
	}
	return sign + sig3(v)
}

// formatRate writes a rate in msg/s: whole numbers with separators from 100
// up, one decimal below.
func formatRate(v float64) string {
	if v >= 100 {
		return formatCount(uint64(math.Round(v))) + " msg/s"
	}
	return fmt.Sprintf("%.1f msg/s", v)
}

// sig3 writes v with three significant digits for v in [0, 1000).
func sig3(v float64) string {
	switch {
	case v >= 99.95:
		return fmt.Sprintf("%.0f", v)
	case v >= 9.995:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// formatLatency writes a histogram value (whole µs) in µs, ms or s.
func formatLatency(us int64) string {
	if us < 1000 {
		return fmt.Sprintf("%d µs", us)
	}
	return formatMicros(float64(us))
}

// formatMicros writes a duration given in µs, in µs, ms or s.
func formatMicros(us float64) string {
	switch {
	case us < 999.5:
		return sig3(us) + " µs"
	case us < 999_500:
		return sig3(us/1e3) + " ms"
	default:
		return sig3(us/1e6) + " s"
	}
}

// formatBytes writes a byte count (possibly fractional or negative) in B,
// KiB, MiB or GiB.
func formatBytes(b float64) string {
	sign := ""
	if b < 0 {
		sign, b = "−", -b
	}
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for b >= 1023.5 && i < len(units)-1 {
		b /= 1024
		i++
	}
	if i == 0 && b == math.Trunc(b) {
		return fmt.Sprintf("%s%.0f B", sign, b)
	}
	return sign + sig3(b) + " " + units[i]
}

func formatSeconds(d time.Duration) string {
	return fmt.Sprintf("%.1f s", d.Seconds())
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "(start time not recorded)"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// mdText escapes text for Markdown: table pipes, emphasis and link
// characters, and line breaks (a failure message must not end a table).
func mdText(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch c {
		case '\\', '*', '_', '`', '|', '[', ']', '<', '>', '#':
			b.WriteByte('\\')
			b.WriteRune(c)
		case '\n', '\r':
			b.WriteByte(' ')
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// mdCode writes s as a code span, safe inside a table cell.
func mdCode(s string) string {
	if s == "" {
		return "(empty)"
	}
	s = strings.NewReplacer("\n", " ", "\r", " ", "|", "\\|").Replace(s)
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		s = " " + s + " "
	}
	return fence + s + fence
}
