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
	"slices"
	"strings"
	"time"
)

// Report files, relative to the folder WriteReport writes.
const (
	reportFile = "report.md"
	resultFile = "result.json"
)

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
		{sweepChartFile, writeSweepChart},
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
	switch {
	case !r.Passed():
		return "FAIL"
	case r.Unsent > 0 && r.Sweep == nil:
		// Correct, but not a measurement of the rate asked for: the
		// latest messages are missing from the latencies.
		return fmt.Sprintf("PASS, but the server did not keep up: %s messages never sent, left out of the latencies", formatCount(r.Unsent))
	}
	return "PASS"
}

// writeMarkdown writes report.md; charts says which chart files exist.
func writeMarkdown(out io.Writer, jr *jsonReport, charts map[string]bool) error {
	r, d := jr.Result, &jr.Derived
	w := &errWriter{w: out}
	p := w.printf

	p("# Switchboard bench: %s — %s\n\n", mdText(orDash(r.Scenario)), verdict(r))
	p("Started %s; measured for %s%s with %s generator %s and %s at the peak, over %s.\n\n",
		formatTime(r.Started), formatSeconds(r.Duration), warmupText(r), formatCount(uint64(r.Processes)),
		plural(r.Processes, "process", "processes"), formatConns(r.Conns), mdText(transportText(r)))

	p("## Verdict\n\n")
	if r.Passed() {
		p("**PASS**: the run found no correctness failure (no loss, reordering or other violation was recorded).\n\n")
	} else {
		n := r.FailureCount()
		p("**FAIL**: %s %s:\n\n", formatCount(n), plural(int(n), "failure", "failures"))
		for _, f := range r.Failures {
			p("- %s\n", mdText(f))
		}
		if r.FailuresNotListed > 0 {
			p("- … and %s more like them, not listed (each generator loop lists its first %d)\n", formatCount(r.FailuresNotListed), maxFailureLines)
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

	if sw := r.Sweep; sw != nil {
		p("## Sweep\n\n")
		for _, v := range sweepVerdict(sw) {
			p("**%s**\n\n", mdText(v))
		}
		h := sweepHeader(sw.TargetP99)
		p("| %s |\n|%s--:|\n", strings.Join(h, " | "), strings.Repeat("--:|", len(h)-1))
		for _, s := range sw.Steps {
			p("| %s |\n", strings.Join(sweepRow(s), " | "))
		}
		p("\n")
		p("Each step is a phone run at its offered rate over the same connections, then a drain. Latency is send → deliver, "+
			"counted from each message's scheduled time (a message that waited for the ACCEPT of its sender's previous one is charged the wait). "+
			"Server CPU and syncs (the store's fsyncs, one per durable group commit) are per delivered message, from the servers' metrics around each step. "+
			"Lag p99 is how late the generator itself came to its messages, part of every latency: a p99 near it is the generator's. "+
			"A step holds the target when nothing failed, it delivered at least %.0f%% of the messages offered with at most a second (or a tenth of the step) of catch-up, nothing was left unsent and its p99 is below %s; "+
			"the highest rate that holds is the highest with every lower step holding too.\n\n", 100*sweepKeptUp, mdText(formatMicros(float64(sw.TargetP99.Microseconds()))))
		chart(w, charts[sweepChartFile], "p99 and server CPU per message against offered rate", sweepChartFile,
			"No sweep chart: no step completed.")
	}

	if ov := r.Overload; ov != nil {
		p("## Overload\n\n")
		p("**%s**\n\n", mdText(overloadVerdict(ov)))
		if rows := overloadRows(ov); len(rows) > 0 {
			p("| | |\n|---|--:|\n")
			for _, row := range rows {
				p("| %s | %s |\n", mdText(row[0]), mdText(row[1]))
			}
			p("\n")
		}
		if len(ov.Probe) > 0 {
			h := probeHeader()
			p("| %s |\n|%s--:|\n", strings.Join(h, " | "), strings.Repeat("--:|", len(h)-1))
			for _, s := range ov.Probe {
				p("| %s |\n", strings.Join(probeRow(s), " | "))
			}
			p("\n")
			p("The capacity probe offers each rate open loop for %v, then drains; a rate is kept up when nothing failed, no SEND was refused RETRY_LATER, "+
				"at least %.0f%% of its messages were delivered within the step and send → deliver p99 stayed under %v. "+
				"The capacity is the highest delivered rate of the rates kept up, up to the first that was not.\n\n", probeStep, 100*probeKeptUp, probeP99)
		}
		p("The overload offers %.3g × the capacity open loop. Clients back off as PROTOCOL.md 8.5 says: a message refused RETRY_LATER is resent with flag B "+
			"after its retry_after, never sooner, and its connection sends nothing new meanwhile. Goodput counts distinct messages delivered while the load was offered, "+
			"per second; the run passes when it is at least %.0f%% of the capacity and nothing accepted was lost, duplicated or reordered.\n\n", ov.Factor, 100*ov.MinShare)
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
	if r.Sweep != nil {
		p("Send latencies are per step, in the sweep table above; the chart draws each step's send → deliver curve.\n\n")
	}
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
			"(within 0.1%%); open-loop runs record values corrected for coordinated omission. Generator lag is how late " +
			"the generator came to each open-loop message after its scheduled time (its timers' slack and its wait for a " +
			"core); the send latencies count from the schedule, so they hold it too.\n\n")
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

	p("## Store syncs\n\n")
	p("| | syncs | per delivered message |\n|---|--:|--:|\n")
	for _, row := range syncRows(r, d) {
		p("| %s | %s | %s |\n", row[0], row[1], row[2])
	}
	p("\n")
	p("The servers' fsyncs of their stores (`switchboard_store_syncs_total`), one per durable group commit, over the measured phase: " +
		"below 1 per message, commits carried several messages. n/a: the servers' metrics were not read, or they do not export the counter.\n\n")

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
		acceptedRate = formatRate(float64(r.Accepted-r.WarmupAccepted) / secs)
	}
	rows := [][]string{
		{"sent", formatMsgs(r.Sent), rate(d.SentPerSec)},
		{"accepted", formatMsgs(r.Accepted), acceptedRate},
		{"refused", formatMsgs(r.Refused), ""},
		{"of which RETRY_LATER (busy)", formatMsgs(r.RetryLater), ""},
		{"resent with flag B", formatMsgs(r.Resent), ""},
		{"delivered", formatMsgs(r.Delivered), rate(d.DeliveredPerSec)},
		{"duplicate deliveries", formatMsgs(r.Duplicates), ""},
		{"redelivered after a reconnect", formatMsgs(r.Redelivered), ""},
		{"reordered", formatMsgs(r.Reordered), ""},
		{"lost", formatMsgs(r.Lost), ""},
		{"delivered receipts", formatMsgs(r.Receipts), ""},
		{"receipts redelivered or repeated", formatMsgs(r.ReceiptsRedelivered), ""},
		{"receipts missing", formatMsgs(r.ReceiptsMissing), ""},
	}
	if r.Unchecked > 0 {
		rows = append(rows, []string{"not checked: a recipient could not log in", formatMsgs(r.Unchecked), ""})
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
	if b, r := base.Derived.SyncsPerMsg, run.Derived.SyncsPerMsg; b != nil && r != nil {
		rows = append(rows, row("store syncs per delivered message", *b, *r, formatRatio))
	}
	count := func(v float64) string { return formatMsgs(uint64(v)) }
	rows = append(rows,
		row("lost", float64(base.Lost), float64(run.Lost), count),
		row("reordered", float64(base.Reordered), float64(run.Reordered), count),
		row("receipts missing", float64(base.ReceiptsMissing), float64(run.ReceiptsMissing), count),
		[]string{"failures", fmt.Sprint(base.FailureCount()), fmt.Sprint(run.FailureCount()), ""},
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

// syncRows is the store syncs row: name, count, per delivered message;
// "n/a" when not measured.
func syncRows(r *Result, d *Derived) [][]string {
	count, per := "n/a", "n/a"
	if r.ServerSyncs != nil {
		count = formatCount(*r.ServerSyncs)
		if d.SyncsPerMsg != nil {
			per = formatRatio(*d.SyncsPerMsg)
		} else {
			per = "—"
		}
	}
	return [][]string{{"server store syncs", count, per}}
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

// transportText names the run's transport, with the Noise handshakes by
// pattern: "noise ik (handshakes: IK 1,000, XXfallback 2)".
func transportText(r *Result) string {
	t := orDash(r.Transport)
	if len(r.Handshakes) == 0 {
		return t
	}
	var hs []string
	for _, k := range slices.Sorted(maps.Keys(r.Handshakes)) {
		hs = append(hs, k+" "+formatCount(r.Handshakes[k]))
	}
	return t + " (handshakes: " + strings.Join(hs, ", ") + ")"
}
