package bench

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// The sweep: phone runs at rising offered rates, one after the other over
// the same connections, to find the highest rate a host carries within a
// p99 target. Each step is checked like any run (exactly once, in order,
// every delivered receipt back); a step that fails the checks ends the
// sweep and fails it.

// Sweep is what a sweep measured.
type Sweep struct {
	// TargetP99 is the target a step holds when its send-to-deliver p99 is
	// below it (--p99).
	TargetP99 time.Duration `json:"target_p99_ns"`
	// Steps are the phone runs, in the order run (rising offered rates).
	Steps []SweepStep `json:"steps"`
	// Highest is the highest offered rate that held the target with every
	// lower step holding it too (highestHeld), in messages per second;
	// 0: none did.
	Highest float64 `json:"highest_holding_per_s"`
	// HeldAboveMiss lists the offered rates above the first step that
	// missed the target which held it anyway: noise around the knee.
	HeldAboveMiss []float64 `json:"held_above_a_miss,omitempty"`
	// Stopped says why the sweep ended before its last rate; "": it ran
	// every rate.
	Stopped string `json:"stopped,omitempty"`
}

// SweepStep is one phone run of a sweep. A nil figure was not measured.
type SweepStep struct {
	Offered         float64       `json:"offered_per_s"`   // messages per second in all, as scheduled
	Duration        time.Duration `json:"duration_ns"`     // sending, catch-up included
	Sent            uint64        `json:"sent"`            // SENDs written
	Delivered       uint64        `json:"delivered"`       // distinct messages delivered
	Unsent          uint64        `json:"unsent"`          // scheduled and never sent (Result.Unsent)
	DeliveredPerSec float64       `json:"delivered_per_s"` // Delivered ÷ Duration

	ServerCPUPerMsgUs    *float64 `json:"server_cpu_per_msg_us"`
	GeneratorCPUPerMsgUs *float64 `json:"generator_cpu_per_msg_us"`
	// SyncsPerMsg is the store's fsyncs per delivered message: 1 when
	// every commit carries one message, less as commits group several.
	SyncsPerMsg *float64 `json:"syncs_per_msg"`
	// ServerProcsAtStart and ServerProcsAtEnd are the Go processors the
	// servers ran on (summed) when the step began and when its drain
	// ended: serve tunes them to the load, and a message costs more CPU on
	// more of them (docs/BENCHMARKS.md, "Processors sized to the load").
	ServerProcsAtStart *float64 `json:"server_procs_at_start"`
	ServerProcsAtEnd   *float64 `json:"server_procs_at_end"`

	SendToAck     HistSummary `json:"send_to_ack"`
	SendToDeliver HistSummary `json:"send_to_deliver"`
	// GeneratorLag: how late the generator came to the step's messages
	// (Result.GeneratorLag), part of its send latencies.
	GeneratorLag HistSummary `json:"generator_lag"`

	Passed bool `json:"passed"` // no correctness failure
	// KeptUp: the step delivered at least sweepKeptUp of what was offered,
	// and its catch-up after the step's duration took at most a second or
	// a tenth of the duration. A server that cannot take the rate makes
	// the senders send late; the latencies charge them the wait, but a
	// generous target could still be under them.
	KeptUp bool `json:"kept_up"`
	// Held: passed, kept up, nothing unsent, and send-to-deliver p99
	// below the target.
	Held bool `json:"held"`

	deliver *hdrhistogram.Histogram // send-to-deliver, for the latency chart
}

// sweepKeptUp is the share of the offered messages a step must deliver to
// count as kept up, and sweepCatchUp the catch-up past its duration it may
// take (or a tenth of the duration, when longer): the last in-flight
// messages take a fraction of a second, while a server that cannot take
// the rate falls behind for as long as the step lasts (30,000 offered for
// 8 s on this 2-core host: delivered over 12.15 s, 19,753 a second).
const (
	sweepKeptUp  = 0.9
	sweepCatchUp = time.Second
)

// highestHeld returns the highest offered rate of steps that held the
// target with every lower rate holding it too, or 0 when the lowest did
// not; and the rates above the first miss that held anyway. A rate that
// holds only above one that failed is noise around the knee, not capacity
// to plan on. steps may come in any order.
func highestHeld(steps []SweepStep) (highest float64, heldAboveMiss []float64) {
	sorted := slices.SortedFunc(slices.Values(steps), func(a, b SweepStep) int { return cmp.Compare(a.Offered, b.Offered) })
	missed := false
	for _, s := range sorted {
		switch {
		case !s.Held:
			missed = true
		case missed:
			heldAboveMiss = append(heldAboveMiss, s.Offered)
		default:
			highest = s.Offered
		}
	}
	return highest, heldAboveMiss
}

// newSweepStep summarises one step's Result against the target.
func newSweepStep(offered float64, res *Result, target, length time.Duration) SweepStep {
	d := derive(res)
	s := SweepStep{
		Offered:              offered,
		Duration:             res.Duration,
		Sent:                 res.Sent,
		Delivered:            res.Delivered,
		Unsent:               res.Unsent,
		DeliveredPerSec:      d.DeliveredPerSec,
		ServerCPUPerMsgUs:    d.ServerCPUPerDeliveredUs,
		GeneratorCPUPerMsgUs: d.GeneratorCPUPerDeliveredUs,
		SyncsPerMsg:          d.SyncsPerMsg,
		ServerProcsAtStart:   figureOf(res, "server_procs_at_start"),
		ServerProcsAtEnd:     figureOf(res, "server_procs_at_end"),
		Passed:               res.Passed(),
		deliver:              res.SendToDeliver,
	}
	if h := res.SendToAck; h != nil && h.TotalCount() > 0 {
		s.SendToAck = summarize(namedHist{h: h})
	}
	if h := res.SendToDeliver; h != nil && h.TotalCount() > 0 {
		s.SendToDeliver = summarize(namedHist{h: h})
	}
	if h := res.GeneratorLag; h != nil && h.TotalCount() > 0 {
		s.GeneratorLag = summarize(namedHist{h: h})
	}
	s.KeptUp = float64(s.Delivered) >= sweepKeptUp*offered*length.Seconds() &&
		res.Duration <= length+max(sweepCatchUp, length/10)
	s.Held = s.Passed && s.KeptUp && s.Unsent == 0 && s.SendToDeliver.Count > 0 &&
		s.SendToDeliver.P99 < target.Microseconds()
	return s
}

// sweep connects every pair once, then runs a phone step at each of
// --rates for --duration, each followed by a drain, scraping the servers
// around each step for its CPU and syncs per message. Its Result sums the
// steps' counts; Result.Sweep holds each step's figures.
func (r *run) sweep(ctx context.Context) (*Result, error) {
	n := r.totalConns()
	r.scrape(ctx, "baseline")
	if _, err := r.connectAll("all", n); err != nil {
		return r.partial(err)
	}
	r.scrape(ctx, "connected")
	sw := &Sweep{TargetP99: r.cfg.P99}
	total := newResult()
	var serverCPU, genCPU, elapsed time.Duration
	var syncs uint64
	syncsAll := true
	sm := r.sample()
	var runErr error
	for i, rate := range r.cfg.Rates {
		if ctx.Err() != nil {
			sw.Stopped = "interrupted"
			break
		}
		fmt.Fprintf(r.cfg.Out, "bench: sweep step %d of %d: %s offered\n", i+1, len(r.cfg.Rates), formatRate(rate))
		from := r.scrapeCost(ctx)
		res, err := r.sendAndDrain(ctx, r.phoneStep(rate), "traffic "+formatRate(rate))
		if res == nil {
			runErr = err
			sw.Stopped = fmt.Sprintf("at %s: %v", formatRate(rate), err)
			break
		}
		res.GeneratorCPU = r.measuredCPU
		genCPU += r.measuredCPU
		to := r.scrapeCost(ctx)
		if r.warmedUp != nil {
			from = *r.warmedUp
		}
		r.serverCost(res, from, to)
		step := newSweepStep(rate, res, r.cfg.P99, r.cfg.Duration)
		sw.Steps = append(sw.Steps, step)
		fmt.Fprintf(r.cfg.Out, "bench: %s\n", stepLine(step, r.cfg.P99))

		serverCPU += res.ServerCPU
		elapsed += res.Duration
		if res.ServerSyncs != nil {
			syncs += *res.ServerSyncs
		} else {
			syncsAll = false
		}
		for j, f := range res.Failures {
			res.Failures[j] = fmt.Sprintf("at %s offered: %s", formatRate(rate), f)
		}
		for j, nt := range res.Notes {
			res.Notes[j] = fmt.Sprintf("at %s offered: %s", formatRate(rate), nt)
		}
		conns := total.Conns
		total.Merge(res)
		total.Conns = max(conns, res.Conns)
		if err != nil {
			runErr = err
			sw.Stopped = fmt.Sprintf("at %s: %v", formatRate(rate), err)
			break
		}
		if !res.Passed() {
			sw.Stopped = fmt.Sprintf("at %s: the step failed the checks", formatRate(rate))
			break
		}
	}
	sm.end()
	r.scrape(ctx, "after the sweep")
	sw.Highest, sw.HeldAboveMiss = highestHeld(sw.Steps)
	total.Sweep = sw
	total.Duration = elapsed
	total.ServerCPU = serverCPU
	// Merge took the first step's syncs: the total is the sum over every
	// step, or not measured when a step's were not.
	total.ServerSyncs = nil
	if syncsAll && len(sw.Steps) > 0 {
		total.ServerSyncs = &syncs
	}
	r.measuredCPU = genCPU
	// Latency is per step (Sweep.Steps): one histogram over every rate
	// would describe none of them.
	total.SendToAck, total.SendToDeliver, total.GeneratorLag = NewHistogram(), NewHistogram(), NewHistogram()
	total.Figures = map[string]float64{}
	senders := formatCount(uint64(r.cfg.senders()))
	schedule := "on its own evenly spaced schedule"
	if r.cfg.Arrivals == "poisson" {
		schedule = "on average, the sends reaching the server at random moments (Poisson arrivals)"
	}
	length := r.cfg.Duration.String()
	if r.cfg.Warmup > 0 {
		length += fmt.Sprintf(" after a warm-up of %v at the same rate (its messages checked, not measured)", r.cfg.Warmup)
	}
	r.note("sweep: each step runs the phone regime at its offered rate for %s over the same connections, then a drain: each of %s senders sends the offered rate ÷ %s %s and never has two messages unaccepted, latencies counting from each message's scheduled time; a step holds the target when nothing failed, it delivered at least %.0f%% of the messages offered with at most a second (or a tenth of the step) of catch-up, nothing was left unsent and its send-to-deliver p99 is below %s",
		length, senders, senders, schedule, 100*sweepKeptUp, formatMicros(float64(r.cfg.P99.Microseconds())))
	return total, runErr
}

// stepLine is one step in a line, for the progress output.
func stepLine(s SweepStep, target time.Duration) string {
	row := sweepRow(s)
	return fmt.Sprintf("%s offered: %s delivered, p50 %s, p99 %s, p99.9 %s, generator lag p99 %s, server CPU %s/msg, Go processors %s, %s syncs/msg: %s (p99 < %s)",
		row[0], row[1], row[4], row[5], row[6], row[7], row[2], row[3], row[8], row[9], formatMicros(float64(target.Microseconds())))
}

// sweepHeader and sweepRow are the sweep table, for the terminal and
// report.md alike.
func sweepHeader(target time.Duration) []string {
	return []string{"offered", "delivered", "server CPU/msg", "server procs", "p50", "p99", "p99.9", "lag p99", "syncs/msg",
		"p99 < " + formatMicros(float64(target.Microseconds()))}
}

func sweepRow(s SweepStep) []string {
	na := func(v *float64, format func(float64) string) string {
		if v == nil {
			return "n/a"
		}
		return format(*v)
	}
	held := "yes"
	switch {
	case !s.Passed:
		held = "FAIL"
	case s.Unsent > 0:
		held = "no: " + formatCount(s.Unsent) + " unsent"
	case !s.KeptUp:
		held = fmt.Sprintf("no: delivered %.0f%% of the rate, catch-up included", 100*s.DeliveredPerSec/s.Offered)
	case !s.Held:
		held = "no"
	}
	lat := func(us int64) string {
		if s.SendToDeliver.Count == 0 {
			return "—"
		}
		return formatLatency(us)
	}
	lag := "—"
	if s.GeneratorLag.Count > 0 {
		lag = formatLatency(s.GeneratorLag.P99)
	}
	return []string{
		formatRate(s.Offered), formatRate(s.DeliveredPerSec),
		na(s.ServerCPUPerMsgUs, formatMicros), procsCell(s.ServerProcsAtStart, s.ServerProcsAtEnd),
		lat(s.SendToDeliver.P50), lat(s.SendToDeliver.P99), lat(s.SendToDeliver.P999), lag,
		na(s.SyncsPerMsg, formatRatio), held,
	}
}

// figureOf returns res's figure name, or nil when it was not measured.
func figureOf(res *Result, name string) *float64 {
	if v, ok := res.Figures[name]; ok {
		return &v
	}
	return nil
}

// procsCell is the servers' Go processors over a step: "2", or "2 → 1"
// when serve retuned them during it.
func procsCell(start, end *float64) string {
	switch {
	case start == nil || end == nil:
		return "n/a"
	case *start == *end:
		return fmt.Sprintf("%.0f", *start)
	}
	return fmt.Sprintf("%.0f → %.0f", *start, *end)
}

// sweepVerdict is the sweep's answer in a sentence, with what qualifies it.
func sweepVerdict(sw *Sweep) []string {
	target := formatMicros(float64(sw.TargetP99.Microseconds()))
	var out []string
	if sw.Highest > 0 {
		out = append(out, fmt.Sprintf("highest rate that holds p99 < %s: %s", target, formatRate(sw.Highest)))
	} else {
		out = append(out, fmt.Sprintf("highest rate that holds p99 < %s: none (no step from the lowest up held it)", target))
	}
	if len(sw.HeldAboveMiss) > 0 {
		var rs []string
		for _, v := range sw.HeldAboveMiss {
			rs = append(rs, formatRate(v))
		}
		out = append(out, fmt.Sprintf("%s held the target too, above a rate that did not: the figures are noisy near the knee; run longer steps (--duration) or again", strings.Join(rs, ", ")))
	}
	if sw.Stopped != "" {
		out = append(out, "the sweep stopped early, "+sw.Stopped)
	}
	return out
}

// formatRatio writes a per-message ratio with three significant digits.
func formatRatio(v float64) string {
	if v >= 1 || v == 0 {
		return formatNumber(v)
	}
	return fmt.Sprintf("%.3g", v)
}
