package bench

import (
	"context"
	"fmt"
	"time"
)

// The overload run: does the server keep delivering at its capacity when
// offered twice as much? It finds the capacity (or takes --capacity), then
// offers overloadFactor × capacity open loop for --duration from clients
// that back off as PROTOCOL.md 8.5 says: a message refused RETRY_LATER is
// resent (flag B) after its retry_after and never sooner, and its
// connection sends nothing new meanwhile. It passes when the goodput —
// distinct messages delivered per second while the load was offered — is
// at least minGoodputShare of the capacity, and the usual checks hold:
// nothing accepted lost, duplicated or reordered, every receipt back.

// Parameters of the overload run. Each says why.
const (
	// overloadFactor is how far past its capacity the server is pushed:
	// twice, the load of the issue that asked for this run.
	overloadFactor = 2.0
	// minGoodputShare is the share of capacity the server must still
	// deliver under that load: a server that spends its time refusing
	// falls far below it; one that sets the pace loses little.
	minGoodputShare = 0.9
	// probeStep is how long each probe rate is offered: long enough for
	// queues to fill when the rate is too high (a shard queue holds about
	// a tenth of a second), short enough that a ladder of rates fits in
	// half a minute.
	probeStep = 2 * time.Second
	// probeKeptUp is the share of a probe step's scheduled messages that
	// must be delivered within the step: the rest is the last moment's
	// messages still in flight.
	probeKeptUp = 0.9
	// probeP99 bounds a probe step's send-to-deliver p99: a server that
	// keeps up delivers within a few hundred milliseconds even on a busy
	// two-core host (docs/BENCHMARKS.md: 117 ms at 20,000/s), one that
	// does not builds a queue that grows by the second.
	probeP99 = 500 * time.Millisecond
)

// defaultProbeRates is the capacity probe's ladder, in messages per second
// in all: from well below what a 2-core host carries open loop (~20,000/s
// with the generator beside it, docs/BENCHMARKS.md) to well past it, in
// steps of an eighth near the knee.
var defaultProbeRates = []float64{5000, 7500, 10000, 12500, 15000, 17500, 20000, 22500, 25000, 30000, 35000, 40000}

// Overload is what an overload run measured.
type Overload struct {
	// Capacity is the rate the server sustains, in messages per second:
	// --capacity, or the probe's answer (capacityOf).
	Capacity     float64     `json:"capacity_per_s"`
	CapacityFrom string      `json:"capacity_from"` // "--capacity" or "probe"
	Probe        []ProbeStep `json:"probe,omitempty"`

	Factor   float64       `json:"factor"`        // offered ÷ capacity
	Offered  float64       `json:"offered_per_s"` // scheduled messages per second
	Duration time.Duration `json:"duration_ns"`   // the overload's sending time

	// Sent counts first transmissions during the whole overload phase;
	// Unsent the scheduled messages the clients held back (a RETRY_LATER's
	// retry_after was running on every connection that could take them)
	// and never sent by its end.
	Sent   uint64 `json:"sent"`
	Unsent uint64 `json:"unsent"`
	// RetryLater counts the busy refusals, Resent the SENDs written again.
	RetryLater uint64 `json:"retry_later"`
	Resent     uint64 `json:"resent"`
	// RetryAfter summarises the busy refusals' retry_after, microseconds.
	RetryAfter HistSummary `json:"retry_after"`

	// DeliveredInWindow counts distinct messages delivered while the load
	// was offered; Goodput is that per second of Duration.
	DeliveredInWindow uint64  `json:"delivered_in_window"`
	Goodput           float64 `json:"goodput_per_s"`
	// MinShare is the share of Capacity Goodput must reach.
	MinShare float64 `json:"min_share"`
	// Held: Goodput ≥ MinShare × Capacity.
	Held bool `json:"held"`
}

// ProbeStep is one rate of the capacity probe.
type ProbeStep struct {
	Offered           float64 `json:"offered_per_s"`
	DeliveredInWindow uint64  `json:"delivered_in_window"`
	DeliveredPerSec   float64 `json:"delivered_per_s"` // DeliveredInWindow ÷ the step's time
	RetryLater        uint64  `json:"retry_later"`
	P99               int64   `json:"p99_us"` // send → deliver
	Passed            bool    `json:"passed"`
	// KeptUp: passed, no busy refusal, at least probeKeptUp of the
	// scheduled messages delivered within the step, p99 under probeP99.
	KeptUp bool `json:"kept_up"`
}

// newProbeStep judges one probe step.
func newProbeStep(offered float64, elapsed time.Duration, inWindow uint64, res *Result) ProbeStep {
	s := ProbeStep{Offered: offered, DeliveredInWindow: inWindow, RetryLater: res.RetryLater, Passed: res.Passed()}
	if elapsed > 0 {
		s.DeliveredPerSec = float64(inWindow) / elapsed.Seconds()
	}
	if h := res.SendToDeliver; h != nil && h.TotalCount() > 0 {
		s.P99 = h.ValueAtQuantile(99)
	}
	scheduled := offered * elapsed.Seconds()
	s.KeptUp = s.Passed && s.RetryLater == 0 && float64(inWindow) >= probeKeptUp*scheduled &&
		s.P99 > 0 && s.P99 < probeP99.Microseconds()
	return s
}

// capacityOf returns the probe's answer: the highest delivered rate of the
// steps that kept up, up to the first that did not (a rate that keeps up
// only above one that missed is noise near the knee); 0 when none did.
func capacityOf(steps []ProbeStep) float64 {
	best := 0.0
	for _, s := range steps {
		if !s.KeptUp {
			break
		}
		best = max(best, s.DeliveredPerSec)
	}
	return best
}

// judge sets Goodput and Held from the counts, and returns the failure to
// report, or "".
func (o *Overload) judge() string {
	if o.Duration > 0 {
		o.Goodput = float64(o.DeliveredInWindow) / o.Duration.Seconds()
	}
	o.Held = o.Capacity > 0 && o.Goodput >= o.MinShare*o.Capacity
	if o.Held {
		return ""
	}
	return fmt.Sprintf("goodput %s under %s offered is %.0f%% of the capacity %s, below the %.0f%% required",
		formatRate(o.Goodput), formatRate(o.Offered), 100*o.Goodput/max(o.Capacity, 1), formatRate(o.Capacity), 100*o.MinShare)
}

// overloadVerdict is the run's answer in a sentence.
func overloadVerdict(o *Overload) string {
	if o.Duration == 0 {
		// The probe found no rate kept up with, or the run stopped during it.
		return "no overload offered: the capacity probe ended without a capacity (see the failures)"
	}
	held := "held"
	if !o.Held {
		held = "NOT held"
	}
	return fmt.Sprintf("goodput %s at %s offered (%.3g × the capacity %s, from %s): %.0f%% of capacity, %s (≥ %.0f%% required)",
		formatRate(o.Goodput), formatRate(o.Offered), o.Factor, formatRate(o.Capacity), o.CapacityFrom,
		100*o.Goodput/max(o.Capacity, 1), held, 100*o.MinShare)
}

// overloadRows is the run's table, for the terminal and report.md alike;
// none when no overload was offered (the probe found no capacity).
func overloadRows(o *Overload) [][]string {
	if o.Duration == 0 {
		return nil
	}
	ra := func(us int64) string {
		if o.RetryAfter.Count == 0 {
			return "—"
		}
		return formatLatency(us)
	}
	return [][]string{
		{"capacity (" + o.CapacityFrom + ")", formatRate(o.Capacity)},
		{"offered, open loop", formatRate(o.Offered)},
		{"goodput: distinct messages delivered per second while offered", formatRate(o.Goodput)},
		{"goodput ÷ capacity", fmt.Sprintf("%.0f%% (≥ %.0f%%)", 100*o.Goodput/max(o.Capacity, 1), 100*o.MinShare)},
		{"first sends", formatMsgs(o.Sent)},
		{"held back by the clients, never sent", formatMsgs(o.Unsent)},
		{"busy refusals (REFUSE RETRY_LATER)", formatMsgs(o.RetryLater)},
		{"resends (flag B)", formatMsgs(o.Resent)},
		{"retry_after p50 / p90 / p99 / max", fmt.Sprintf("%s / %s / %s / %s", ra(o.RetryAfter.P50), ra(o.RetryAfter.P90), ra(o.RetryAfter.P99), ra(o.RetryAfter.Max))},
	}
}

// probeHeader and probeRow are the probe's table.
func probeHeader() []string {
	return []string{"probe: offered", "delivered in step", "RETRY_LATER", "p99", "kept up"}
}

func probeRow(s ProbeStep) []string {
	kept := "yes"
	switch {
	case !s.Passed:
		kept = "FAIL"
	case !s.KeptUp:
		kept = "no"
	}
	p99 := "—"
	if s.P99 > 0 {
		p99 = formatLatency(s.P99)
	}
	return []string{formatRate(s.Offered), formatRate(s.DeliveredPerSec), formatCount(s.RetryLater), p99, kept}
}

// overload runs the capacity probe (unless --capacity is given) and the
// overload phase over the same connections; its Result is the overload
// phase's, with the probe's failures and notes added. When the probe finds
// no capacity no overload is offered: the Result counts no message, only
// the connections the probe held.
func (r *run) overload(ctx context.Context) (*Result, error) {
	n := r.totalConns()
	r.scrape(ctx, "baseline")
	if _, err := r.connectAll("all", n); err != nil {
		return r.partial(err)
	}
	r.scrape(ctx, "connected")
	ov := &Overload{Capacity: r.cfg.Capacity, CapacityFrom: "--capacity", Factor: overloadFactor, MinShare: minGoodputShare}
	var carried []string // the probe's failures and notes
	var probeFailures []string
	probeConns := 0 // the most connections a probe step held
	if ov.Capacity == 0 {
		ov.CapacityFrom = "probe"
		for i, rate := range r.cfg.Rates {
			if ctx.Err() != nil {
				return r.partial(ctx.Err())
			}
			fmt.Fprintf(r.cfg.Out, "bench: capacity probe %d of at most %d: %s offered for %v\n", i+1, len(r.cfg.Rates), formatRate(rate), probeStep)
			res, err := r.sendAndDrain(ctx, r.openStep(rate, probeStep), "probe "+formatRate(rate))
			if res == nil {
				return nil, err
			}
			probeConns = max(probeConns, res.Conns)
			st := newProbeStep(rate, res.Duration, r.windowDelivered, res)
			ov.Probe = append(ov.Probe, st)
			fmt.Fprintf(r.cfg.Out, "bench: %s\n", probeLine(st))
			for _, f := range res.Failures {
				probeFailures = append(probeFailures, fmt.Sprintf("probe at %s: %s", formatRate(rate), f))
			}
			for _, nt := range res.Notes {
				carried = append(carried, fmt.Sprintf("probe at %s: %s", formatRate(rate), nt))
			}
			if err != nil {
				res.Overload = ov
				res.Failures = append(probeFailures, res.Failures...)
				return res, err
			}
			if !st.KeptUp {
				break
			}
		}
		ov.Capacity = capacityOf(ov.Probe)
		if ov.Capacity == 0 {
			res := newResult()
			res.Conns = probeConns
			res.Overload = ov
			res.Failures = append(probeFailures, "the capacity probe found no rate the server kept up with: give --capacity, or lower --rates")
			res.Notes = carried
			return res, nil
		}
		if last := ov.Probe[len(ov.Probe)-1]; last.KeptUp {
			carried = append(carried, fmt.Sprintf("the server kept up with every probe rate up to %s: the capacity may be higher; add higher --rates", formatRate(last.Offered)))
		}
	}
	ov.Offered = ov.Capacity * ov.Factor
	if perConn := ov.Offered / float64(max(r.cfg.senders(), 1)); perConn*2 > float64(r.cfg.ConnFrameCap) {
		return nil, fmt.Errorf("overload: %s over %d senders is %.0f msg/s per connection; with the ACKs that exceeds --conn-frame-cap %d: add pairs", formatRate(ov.Offered), r.cfg.senders(), perConn, r.cfg.ConnFrameCap)
	}
	fmt.Fprintf(r.cfg.Out, "bench: overload: %s offered (%.3g × the capacity %s) for %v\n", formatRate(ov.Offered), ov.Factor, formatRate(ov.Capacity), r.cfg.Duration)
	from := r.scrapeCost(ctx)
	sm := r.sample()
	res, err := r.sendAndDrain(ctx, r.openStep(ov.Offered, r.cfg.Duration), "overload")
	sm.end()
	if res == nil {
		return nil, err
	}
	to := r.scrape(ctx, "after overload")
	r.serverCost(res, from, to)
	ov.Duration = res.Duration
	ov.Sent, ov.Unsent, ov.RetryLater, ov.Resent = res.Sent, res.Unsent, res.RetryLater, res.Resent
	ov.DeliveredInWindow = r.windowDelivered
	if h := res.RetryAfter; h != nil && h.TotalCount() > 0 {
		ov.RetryAfter = summarize(namedHist{h: h})
	}
	if f := ov.judge(); f != "" {
		res.Failures = append(res.Failures, f)
	}
	res.Failures = append(probeFailures, res.Failures...)
	res.Notes = append(carried, res.Notes...)
	res.Overload = ov
	r.figure(res, "goodput_per_s", ov.Goodput)
	r.figure(res, "capacity_per_s", ov.Capacity)
	r.note("overload: open loop at %s for %v; a client refused RETRY_LATER resends the message with flag B after its retry_after, never sooner, and sends nothing new on that connection meanwhile (PROTOCOL.md 8.5); the scheduled messages no connection could take wait, keeping their scheduled time, and those still waiting at the end are counted as held back; goodput counts distinct messages delivered while the load was offered", formatRate(ov.Offered), r.cfg.Duration)
	return res, err
}

// openStep is an open-loop traffic step at rate for d. Its senders back
// off as PROTOCOL.md 8.5 says, as every sender's client.Session does.
func (r *run) openStep(rate float64, d time.Duration) Step {
	return Step{Kind: "traffic", Rate: rate, Duration: d, Timeout: d + time.Minute}
}

// probeLine is one probe step in a line, for the progress output.
func probeLine(s ProbeStep) string {
	row := probeRow(s)
	return fmt.Sprintf("probe %s offered: %s delivered within the step, %s RETRY_LATER, p99 %s: kept up %s", row[0], row[1], row[2], row[3], row[4])
}
