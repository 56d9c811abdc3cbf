package bench

import (
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram bounds, in microseconds: 1 µs to 60 s at 3 significant digits,
// so a percentile is within 0.1% of the true value.
const (
	histMin    = 1
	histMax    = 60_000_000
	histDigits = 3
)

// NewHistogram returns a latency histogram in microseconds with the
// package's bounds; every histogram merged into a Result must come from here.
func NewHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(histMin, histMax, histDigits)
}

// measuredDelivered is the messages delivered after the warm-up (all of
// them without one): what the rates and costs per message divide by.
func (r *Result) measuredDelivered() uint64 { return r.Delivered - r.WarmupDelivered }

// Result is everything one run of a scenario measured. Worker processes
// fill one each; the coordinator merges them (Merge) and the report is
// made from the merged one.
type Result struct {
	Scenario string            `json:"scenario"`
	Params   map[string]string `json:"params"` // the flags that shaped the run, as given
	Started  time.Time         `json:"started"`
	Duration time.Duration     `json:"duration_ns"` // of the measured phase
	// CostWindow is the wall time the CPU figures were counted over when
	// it is not Duration (offline: the drain and the settling after it);
	// cores busy divide by it. Zero: Duration.
	CostWindow time.Duration `json:"cost_window_ns,omitempty"`
	// Warmup is how long the traffic was sent before the measured phase
	// (--warmup), the same way. Its messages are in the counts and the
	// checks; WarmupSent, WarmupAccepted and WarmupDelivered are how many
	// of the counts it made, and the rates, latencies and costs per message
	// are of the measured phase alone.
	Warmup          time.Duration `json:"warmup_ns,omitempty"`
	WarmupSent      uint64        `json:"warmup_sent,omitempty"`
	WarmupAccepted  uint64        `json:"warmup_accepted,omitempty"`
	WarmupDelivered uint64        `json:"warmup_delivered,omitempty"`

	Processes int `json:"processes"` // generator processes, the coordinator included
	Conns     int `json:"conns"`     // connections held at the peak
	// Transport is what the connections spoke: "plain", or "noise xx" or
	// "noise ik" (--noise). Handshakes counts the Noise handshakes that
	// finished, by pattern ("XX", "IK", "XXfallback": IK under a key the
	// server no longer has); nil on the plain transport.
	Transport  string            `json:"transport"`
	Handshakes map[string]uint64 `json:"handshakes,omitempty"`

	// Message counts, over the measured phase and its warm-up.
	Sent     uint64 `json:"sent"`     // SENDs written
	Accepted uint64 `json:"accepted"` // message ids covered by ACCEPTs
	Refused  uint64 `json:"refused"`  // REFUSEs received
	// RetryLater counts the REFUSEs with code RETRY_LATER (the server
	// busy); RetryAfter is their retry_after, in microseconds.
	RetryLater uint64 `json:"retry_later"`
	// Resent counts SENDs written again, with flag B: after a refusal's
	// retry_after, or after a reconnect. Sent counts first sends only.
	Resent     uint64 `json:"resent"`
	Delivered  uint64 `json:"delivered"`  // distinct messages delivered (after dedupe by sender and msg id)
	Duplicates uint64 `json:"duplicates"` // deliveries of a message already delivered
	Reordered  uint64 `json:"reordered"`  // deliveries out of order for their sender
	Lost       uint64 `json:"lost"`       // accepted messages never delivered by the end of the run
	// Unchecked counts accepted messages not delivered to every recipient
	// where a recipient could not log in (Spec.Retries): the run cannot
	// tell whether they wait in its mailbox, so they are not counted as
	// lost, but the run fails as unchecked.
	Unchecked uint64 `json:"unchecked,omitempty"`
	// Redelivered counts entries the server sent again after a reconnect
	// (at-least-once); the client's dedupe drops them and they are not
	// failures. Added by the engine (engine engineer), for the report.
	Redelivered uint64 `json:"redelivered"`
	// Unsent counts phone-regime messages whose time came during the run
	// but which were never sent: their sender was still waiting for the
	// ACCEPT of an earlier one when the catch-up time ran out. Not a
	// failure: the server did not keep up with the offered rate.
	Unsent uint64            `json:"unsent,omitempty"`
	Closes map[string]uint64 `json:"closes,omitempty"` // connections the server closed, by ERROR code name

	// Delivered receipts (PROTOCOL.md 8.3), counted per delivered copy: one
	// for a 1:1 message, one per member for a group message. Receipts are
	// those received, at most one per copy. ReceiptsRedelivered counts
	// copies whose receipt came again (the same entry after a reconnect,
	// or a receipt stored twice): not failures. ReceiptsMissing counts
	// copies delivered and acknowledged whose sender had no receipt when
	// the drain ended: failures. A scenario without a drain before its
	// count (connect) does not wait for receipts and counts none missing.
	Receipts            uint64 `json:"receipts"`
	ReceiptsRedelivered uint64 `json:"receipts_redelivered"`
	ReceiptsMissing     uint64 `json:"receipts_missing"`

	// Latencies in microseconds. SendToAck: SEND written to its ACCEPT read.
	// SendToDeliver: SEND written to DELIVER read (in the group scenario, to
	// the last member's). Open-loop runs record corrected values.
	SendToAck     *hdrhistogram.Histogram `json:"-"`
	SendToDeliver *hdrhistogram.Histogram `json:"-"`
	LoginLatency  *hdrhistogram.Histogram `json:"-"`
	// RetryAfter holds the retry_after of every REFUSE RETRY_LATER, in
	// microseconds (the histograms' unit; the server sends milliseconds).
	RetryAfter *hdrhistogram.Histogram `json:"-"`
	// GeneratorLag is, for every open-loop message, how late the
	// generator's loop came to it after its scheduled time (or after the
	// end of a wait in which no sender could take it): its timer's slack
	// and the time its thread waited for a core. The send latencies count
	// from the schedule and so include it; the wait for a previous ACCEPT
	// (phone) is the server's and is not in it. Empty in closed loop.
	GeneratorLag *hdrhistogram.Histogram `json:"-"`

	// Wire bytes counted by the generator, both directions.
	BytesOut uint64 `json:"bytes_out"`
	BytesIn  uint64 `json:"bytes_in"`

	// Timeline holds one sample a second, for the throughput chart.
	Timeline []Sample `json:"timeline"`
	// Memory holds the server's memory at moments the scenario chose (after
	// the ramp, after traffic…), for the memory chart and per-connection figures.
	Memory []MemPoint `json:"memory"`

	// CPU spent, for "is the generator the bottleneck" and µs per message.
	GeneratorCPU time.Duration `json:"generator_cpu_ns"` // all generator processes
	ServerCPU    time.Duration `json:"server_cpu_ns"`    // from the server's metrics, if reachable
	// ServerSyncs is how many times the servers synced their stores to
	// disk over the measured phase (switchboard_store_syncs_total: one per
	// durable group commit); nil when not measured (no metrics, or a
	// server that does not export the counter).
	ServerSyncs *uint64 `json:"server_syncs,omitempty"`

	// Figures are the scenario's headline numbers, named with their unit
	// (e.g. "connect_rate_per_s", "server_mem_per_conn_bytes", "drain_s",
	// "all_logged_in_s"); see each scenario's doc in bench/scenario*.go.
	// Added by the engine engineer for the report's table.
	Figures map[string]float64 `json:"figures,omitempty"`
	// Baseline is the same traffic measured without the disturbance (the
	// slow scenario runs it first, then with a share of clients not
	// reading), to be reported side by side. Nil in other scenarios.
	Baseline *Result `json:"baseline,omitempty"`
	// Sweep holds the steps of the sweep scenario, each a phone run at
	// one offered rate; nil in other scenarios. The Result's own counts
	// are the sums over the steps; its latencies are per step, here.
	Sweep *Sweep `json:"sweep,omitempty"`
	// Overload holds the overload scenario's capacity, offered rate,
	// goodput and verdict; nil in other scenarios.
	Overload *Overload `json:"overload,omitempty"`

	// Failures lists every correctness violation; a run with any fails.
	// Each generator loop lists its first 20; FailuresNotListed counts the
	// rest.
	Failures          []string `json:"failures,omitempty"`
	FailuresNotListed uint64   `json:"failures_not_listed,omitempty"`
	// Notes are facts for the reader (e.g. "server metrics not reachable").
	Notes []string `json:"notes,omitempty"`
}

// Sample is one second of a run.
type Sample struct {
	At        time.Duration `json:"at_ns"` // since the measured phase began
	Conns     int           `json:"conns"`
	Sent      uint64        `json:"sent"`      // in this second
	Delivered uint64        `json:"delivered"` // in this second
}

// MemPoint is the server's memory at one moment.
type MemPoint struct {
	Label     string `json:"label"` // "idle", "after traffic", "peak"…
	Conns     int    `json:"conns"`
	RSS       uint64 `json:"rss_bytes"`
	HeapInuse uint64 `json:"heap_inuse_bytes"` // 0 when unknown
}

// Passed reports whether the run found no correctness failure.
func (r *Result) Passed() bool { return len(r.Failures) == 0 }

// FailureCount is how many correctness failures the run found, listed or
// not.
func (r *Result) FailureCount() uint64 { return uint64(len(r.Failures)) + r.FailuresNotListed }

// measuredNothing reports whether the run never got as far as a connection
// or a message: its tables would hold only zeros, and its failures say why.
func (r *Result) measuredNothing() bool {
	return !r.Passed() && r.Conns == 0 && r.Sent == 0 && r.Delivered == 0 && r.Sweep == nil && r.Overload == nil
}
