package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"
)

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
	p("started %s · measured %s%s\n", formatTime(r.Started), formatSeconds(r.Duration), warmupText(r))
	p("load    %s at peak from %d generator %s, over %s\n", formatConns(r.Conns), r.Processes, plural(r.Processes, "process", "processes"), transportText(r))
	p("machine %s · %s/%s · %d cores · GOMAXPROCS %d · %s\n", m.Hostname, m.OS, m.Arch, m.Cores, m.GOMAXPROCS, m.GoVersion)
	if len(r.Params) > 0 {
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(r.Params)) {
			kv = append(kv, k+"="+r.Params[k])
		}
		p("params  %s\n", strings.Join(kv, " "))
	}
	if r.measuredNothing() {
		// Nothing connected: the tables would be zeros above the reason.
		p("\nnothing was measured\n\n")
		printFailures(w, r)
		return
	}

	if rows := figureRows(r.Figures); len(rows) > 0 {
		p("\n")
		writeTable(w, append([][]string{{"figures", ""}}, rows...))
	}
	if sw := r.Sweep; sw != nil {
		p("\n")
		rows := [][]string{sweepHeader(sw.TargetP99)}
		for _, s := range sw.Steps {
			rows = append(rows, sweepRow(s))
		}
		writeTable(w, rows)
		p("  send → deliver latency, from each message's scheduled time; CPU and syncs per delivered message\n")
		for _, v := range sweepVerdict(sw) {
			p("%s\n", v)
		}
	}
	if ov := r.Overload; ov != nil {
		if len(ov.Probe) > 0 {
			p("\n")
			rows := [][]string{probeHeader()}
			for _, s := range ov.Probe {
				rows = append(rows, probeRow(s))
			}
			writeTable(w, rows)
		}
		p("\n")
		if rows := overloadRows(ov); len(rows) > 0 {
			writeTable(w, append([][]string{{"overload", ""}}, rows...))
		}
		p("%s\n", overloadVerdict(ov))
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
	if r.Sweep != nil {
		p("  send latencies are per step, in the sweep table\n")
	}

	p("\n")
	writeTable(w, append([][]string{{"wire", ""}}, wireRows(r, d)...))

	p("\n")
	writeTable(w, append([][]string{{"cpu", "time", "per delivered msg", "cores busy"}}, cpuRows(r, d, m)...))
	p("\n")
	writeTable(w, append([][]string{{"store", "syncs", "per delivered msg"}}, syncRows(r, d)...))

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
		printFailures(w, r)
	}
}

// printFailures writes the FAIL line and the failures listed.
func printFailures(w *errWriter, r *Result) {
	n := r.FailureCount()
	w.printf("FAIL: %s %s\n", formatCount(n), plural(int(n), "failure", "failures"))
	for _, f := range r.Failures {
		w.printf("  - %s\n", f)
	}
	if r.FailuresNotListed > 0 {
		w.printf("  - … and %s more like them, not listed (each generator loop lists its first %d)\n", formatCount(r.FailuresNotListed), maxFailureLines)
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

// warmupText says, after the measured duration, what was sent before it.
func warmupText(r *Result) string {
	switch {
	case r.Warmup <= 0:
		return ""
	case r.Sweep != nil:
		return ", each step after a " + formatSeconds(r.Warmup) + " warm-up"
	}
	return " after a " + formatSeconds(r.Warmup) + " warm-up"
}
