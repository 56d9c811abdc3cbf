package bench

// What a report says, derived from a Result: the figures, the machine and the
// caveats, shared by result.json, report.md and the terminal summary.

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
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

	// SyncsPerMsg is the servers' store syncs per delivered message
	// (Result.ServerSyncs ÷ Delivered); null when not measured.
	SyncsPerMsg *float64 `json:"syncs_per_msg"`

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
	// Rates and costs are of the measured phase; the wire's bytes are
	// counted over the warm-up too, and so divide by every message.
	delivered := float64(r.measuredDelivered())
	if secs > 0 {
		d.SentPerSec = float64(r.Sent-r.WarmupSent) / secs
		d.DeliveredPerSec = delivered / secs
	}
	d.WireBytesPerDelivered = ratio(float64(r.BytesOut+r.BytesIn), float64(r.Delivered))
	d.BytesOutPerSent = ratio(float64(r.BytesOut), float64(r.Sent))
	d.BytesInPerDelivered = ratio(float64(r.BytesIn), float64(r.Delivered))
	costSecs := secs
	if r.CostWindow > 0 {
		costSecs = r.CostWindow.Seconds()
	}
	if r.GeneratorCPU > 0 {
		d.GeneratorCPUPerDeliveredUs = ratio(float64(r.GeneratorCPU.Microseconds()), delivered)
		d.GeneratorCoresBusy = ratio(r.GeneratorCPU.Seconds(), costSecs)
	}
	if r.ServerCPU > 0 {
		d.ServerCPUPerDeliveredUs = ratio(float64(r.ServerCPU.Microseconds()), delivered)
		d.ServerCoresBusy = ratio(r.ServerCPU.Seconds(), costSecs)
	}
	if r.ServerSyncs != nil {
		d.SyncsPerMsg = ratio(float64(*r.ServerSyncs), delivered)
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
	if r.Passed() && (r.Lost > 0 || r.Reordered > 0 || r.ReceiptsMissing > 0) {
		w = append(w, fmt.Sprintf("The counts show %s lost and %s reordered messages and %s missing receipts, yet the run recorded no failure.",
			formatCount(r.Lost), formatCount(r.Reordered), formatCount(r.ReceiptsMissing)))
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
		for i, f := range d.Memory {
			if v := f.RSSPerConnOverBaseline; v != nil && *v < 0 {
				w = append(w, fmt.Sprintf("The server's RSS at %q is below its baseline: it held memory from before the run (an earlier run on the same process) and gave it back since. Measure memory on a fresh server.",
					r.Memory[i].Label))
				break
			}
		}
	}
	return w
}
