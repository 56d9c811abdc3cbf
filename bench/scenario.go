package bench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Run carries out one scenario against one or more servers and returns
// what it measured. The error is non-nil when the run could not be
// carried out (no server, refused logins, a step that timed out…);
// correctness failures are in the Result (see Passed).
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ts, err := cfg.targets()
	if err != nil {
		return nil, err
	}
	servers := make([]Target, len(ts))
	keys := map[string]Key{} // by path: one file may serve every server
	for i, t := range ts {
		k, ok := keys[t.keys]
		if !ok {
			if k, err = ReadKeys(t.keys); err != nil {
				return nil, err
			}
			keys[t.keys] = k
		}
		servers[i] = Target{Addr: t.addr, Key: k}
	}
	if cfg.Noise == NoiseIK {
		nks, err := noiseKeys(ts, cfg.NoiseKey)
		if err != nil {
			return nil, err
		}
		for i := range servers {
			servers[i].NoiseKey = nks[i]
		}
	}
	var rb [8]byte
	rand.Read(rb[:])
	runID := binary.BigEndian.Uint64(rb[:])
	p, err := cfg.makePlan(servers, runID)
	if err != nil {
		return nil, err
	}
	r := &run{cfg: &cfg, scr: newScrapers(ts), started: time.Now(), cpuFrom: selfCPU()}
	if p.cluster != nil {
		r.note("%s", clusterNote(&cfg, servers, *p.cluster))
		fmt.Fprintf(cfg.Out, "bench: %s\n", r.notes[len(r.notes)-1])
	} else if len(servers) > 1 {
		r.note("%s", spreadNote(&cfg, servers))
		fmt.Fprintf(cfg.Out, "bench: %s\n", r.notes[len(r.notes)-1])
	}
	if err := r.start(p); err != nil {
		return nil, err
	}
	// An interrupt (Ctrl-C) ends the step under way; what was measured so
	// far is still collected and reported.
	stopAbort := context.AfterFunc(ctx, func() {
		for _, m := range r.fl.members {
			m.abort(fmt.Errorf("interrupted: %w", ctx.Err()))
		}
	})
	res, runErr := r.scenario(ctx)
	stopAbort()
	genCPU, stopErr := r.fl.stop()
	if runErr == nil && stopErr != nil {
		runErr = fmt.Errorf("stopping the generator processes: %w", stopErr)
	}
	if res == nil {
		res = newResult()
	}
	res.Scenario = cfg.Scenario
	res.Transport = "plain"
	if cfg.Noise != "" {
		res.Transport = "noise " + cfg.Noise
	}
	res.Params = cfg.Params
	res.Started = r.started
	res.Processes = len(p.specs)
	if !p.local {
		res.Processes++ // the coordinator
		genCPU += selfCPU() - r.cpuFrom
	}
	res.GeneratorCPU = genCPU
	if r.measuredCPU > 0 {
		// Over the measured phase, like Duration and the server's CPU.
		res.GeneratorCPU = r.measuredCPU
	}
	if res.Figures == nil {
		res.Figures = map[string]float64{}
	}
	res.Figures["generator_cpu_whole_run_s"] = genCPU.Seconds()
	if p.cluster != nil {
		units, _ := cfg.shape()
		spanning, one := "cross_node_pairs", "same_node_pairs"
		if cfg.Scenario == "group" {
			spanning, one = "spanning_groups", "same_node_groups"
		}
		res.Figures[spanning] = float64(p.cluster.spanning)
		res.Figures[one] = float64(units - p.cluster.spanning)
	}
	res.Memory = r.mem
	res.Timeline = r.timeline
	res.Notes = append(res.Notes, r.notes...)
	if runErr != nil {
		// A run that could not be carried out verified nothing: it fails,
		// and the reason leads the list.
		res.Failures = append([]string{"the run could not be carried out: " + runErr.Error()}, res.Failures...)
	}
	return res, runErr
}

// spreadNote says how the units are spread over the servers (makePlan's
// rule: the run's u-th unit is homed on servers[u % len(servers)]).
func spreadNote(cfg *Config, servers []Target) string {
	units, size := cfg.shape()
	kind := "pairs"
	if cfg.Scenario == "group" {
		kind = "groups"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d servers; the run's %s are homed on them in turn (the u-th on server u mod %d), all users of one on its server:", len(servers), kind, len(servers))
	for i, t := range servers {
		n := units / len(servers)
		if i < units%len(servers) {
			n++
		}
		sep := ","
		if i == len(servers)-1 {
			sep = ""
		}
		fmt.Fprintf(&b, " %s %d %s (%s)%s", t.Addr, n, kind, formatConns(n*size), sep)
	}
	return b.String()
}

// run is the coordinator's state during one Run.
type run struct {
	cfg      *Config
	scr      scrapers
	fl       *fleet
	started  time.Time
	cpuFrom  time.Duration
	mem      []MemPoint
	timeline []Sample
	notes    []string
	metricsN bool // a "metrics unreachable" note was made
	syncsN   bool // a "no syncs counter" note was made
	procsN   bool // a "processors changed" note was made

	local   bool          // the coordinator runs the only engine
	lastCPU time.Duration // generator CPU of the last step
	// windowDelivered is what sendAndDrain's traffic step delivered while
	// it sent (before the drain), as the progress counters saw it.
	windowDelivered uint64
	measuredCPU     time.Duration // generator CPU of the measured phase
	// warmedUp holds the servers' metrics when a traffic step's warm-up
	// ended, for the cost of the measured phase; nil without a warm-up.
	warmedUp *serverMetrics
	// groupsApart is, in a group run on a cluster, the groups whose home
	// node homes none of their members, read after the groups step.
	groupsApart uint64
}

// cpu returns the CPU time every generator process has used so far.
func (r *run) cpu() time.Duration {
	c := r.fl.progress().CPU
	if !r.local {
		c += selfCPU() // the coordinator, beside its workers
	}
	return c
}

// measured marks the last step as the measured phase, for the CPU figure.
func (r *run) measured() { r.measuredCPU = r.lastCPU }

// warmMark is the moment a traffic step's warm-up ended, as the
// coordinator saw it: the generators' CPU and the servers' metrics then.
type warmMark struct {
	at     time.Time
	cpu    time.Duration
	server serverMetrics

	stop chan struct{}
	done chan struct{}
	ok   bool // the mark was taken (the warm-up ended before end was called)
}

// markAfter takes a warmMark once d has passed, unless end comes first.
func (r *run) markAfter(ctx context.Context, d time.Duration) *warmMark {
	m := &warmMark{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-m.stop:
			return
		}
		m.at, m.cpu = time.Now(), r.cpu()
		m.server = r.scrapeCost(ctx)
		m.ok = true
	}()
	return m
}

// end waits for the mark and reports whether it was taken: false when
// the warm-up had not ended.
func (m *warmMark) end() bool {
	close(m.stop)
	<-m.done
	return m.ok
}

func (r *run) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// start builds the fleet: the coordinator's own engine, or workers.
func (r *run) start(p plan) error {
	r.fl = &fleet{}
	r.local = p.local
	if p.local {
		m, err := newLocalMember(p.specs[0])
		if err != nil {
			return err
		}
		r.fl.members = append(r.fl.members, m)
		return nil
	}
	fmt.Fprintf(r.cfg.Out, "bench: spreading the connections over %d worker processes (source addresses %s…)\n", len(p.specs), p.specs[0].Source)
	for _, s := range p.specs {
		m, err := startWorker(s, r.cfg.Out)
		if err != nil {
			r.fl.stop()
			return err
		}
		r.fl.members = append(r.fl.members, m)
	}
	return nil
}

// scrape reads the servers' memory and records their sum under label
// (each server's figures go in a note when there are several); it returns
// the summed metrics (zero when a server is unreachable).
func (r *run) scrape(ctx context.Context, label string) serverMetrics {
	m, each, err := r.scr.scrape(ctx)
	if err != nil {
		if !r.metricsN {
			r.metricsN = true
			r.note("server metrics not reachable (%v): no server memory or CPU figures", err)
		}
		return serverMetrics{}
	}
	r.mem = append(r.mem, MemPoint{Label: label, Conns: m.Conns, RSS: m.RSS, HeapInuse: m.HeapInuse})
	r.notePerServer(label, each)
	return m
}

// notePerServer notes each server's share of a memory point whose sum the
// report shows; nothing with one server.
func (r *run) notePerServer(label string, each []serverMetrics) {
	if len(each) < 2 {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "server memory at %q, per server:", label)
	for i, m := range each {
		sep := ";"
		if i == len(each)-1 {
			sep = ""
		}
		fmt.Fprintf(&b, " %s %s, RSS %s, heap %s, CPU %.1f s so far%s", r.scr.addrs[i], formatConns(m.Conns), formatBytes(float64(m.RSS)), formatBytes(float64(m.HeapInuse)), m.CPU, sep)
	}
	r.notes = append(r.notes, b.String())
}

// step runs s on the fleet with a live progress line.
func (r *run) step(s Step, label string, total int64, done func(c counters) int64) (time.Duration, error) {
	pr := NewProgress(r.cfg.Out, label, total)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	t0 := time.Now()
	cpu0 := r.cpu()
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			c := r.fl.progress()
			pr.Update(done(c), status(c, time.Since(t0)))
			select {
			case <-tick.C:
			case <-stop:
				return
			}
		}
	}()
	err := r.fl.do(s)
	elapsed := time.Since(t0)
	r.lastCPU = r.cpu() - cpu0
	close(stop)
	wg.Wait()
	c := r.fl.progress()
	pr.Update(done(c), status(c, elapsed))
	pr.Finish()
	return elapsed, err
}

func status(c counters, _ time.Duration) string {
	s := fmt.Sprintf("logged in %d  sent %d  delivered %d  in flight %d", c.Ready, c.Sent, c.Delivered, c.Pending)
	if c.Unreceipted > 0 {
		s += fmt.Sprintf("  awaiting receipts %d", c.Unreceipted)
	}
	if c.Failures > 0 {
		s += fmt.Sprintf("  FAILURES %d", c.Failures)
	}
	return s
}

// sampler records one Sample a second from the fleet's counters until stopped.
type sampler struct {
	stop chan struct{}
	done chan struct{}
}

func (r *run) sample() *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	t0 := time.Now()
	prev := r.fl.progress()
	go func() {
		defer close(s.done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
			case <-s.stop:
				return
			}
			c := r.fl.progress()
			r.timeline = append(r.timeline, Sample{
				At: time.Since(t0), Conns: int(c.Ready),
				Sent: c.Sent - prev.Sent, Delivered: c.Delivered - prev.Delivered,
			})
			prev = c
		}
	}()
	return s
}

func (s *sampler) end() { close(s.stop); <-s.done }

// scenario runs the configured scenario.
func (r *run) scenario(ctx context.Context) (*Result, error) {
	switch r.cfg.Scenario {
	case "connect":
		return r.connect(ctx)
	case "chat":
		return r.chat(ctx, "chat")
	case "phone":
		return r.chat(ctx, "phone")
	case "sweep":
		return r.sweep(ctx)
	case "group":
		return r.chat(ctx, "group")
	case "offline":
		return r.offline(ctx)
	case "storm":
		return r.storm(ctx)
	case "slow":
		return r.slow(ctx)
	case "overload":
		return r.overload(ctx)
	}
	return nil, fmt.Errorf("unknown scenario %q", r.cfg.Scenario)
}

func conns(c counters) int64 { return c.Ready }

func (r *run) totalConns() int64 {
	units, size := r.cfg.shape()
	return int64(units * size)
}

// connectAll logs every connection in at the configured rate.
func (r *run) connectAll(who string, total int64) (time.Duration, error) {
	s := Step{Kind: "connect", Who: who, Rate: r.cfg.ConnectRate, Timeout: r.rampTimeout(total)}
	return r.step(s, "connect", total, conns)
}

// rampTimeout allows the ramp twice its planned time plus a handshake.
func (r *run) rampTimeout(n int64) time.Duration {
	t := 30 * time.Second
	if r.cfg.ConnectRate > 0 {
		t += 2 * time.Duration(float64(n)/r.cfg.ConnectRate*float64(time.Second))
	}
	return t
}

func (r *run) figure(res *Result, name string, v float64) {
	if res.Figures == nil {
		res.Figures = map[string]float64{}
	}
	res.Figures[name] = v
}

// perConn adds the server's memory per connection between two points.
func (r *run) perConn(res *Result, name string, from, to serverMetrics, n int64) {
	if from.RSS == 0 || to.RSS == 0 || n == 0 {
		return
	}
	r.figure(res, name+"_rss_bytes", (float64(to.RSS)-float64(from.RSS))/float64(n))
	if from.HeapInuse != 0 && to.HeapInuse != 0 {
		r.figure(res, name+"_heap_bytes", (float64(to.HeapInuse)-float64(from.HeapInuse))/float64(n))
	}
}

// scrapeCost reads the servers' metrics for serverCost without recording
// a memory point (the sweep scrapes around every step).
func (r *run) scrapeCost(ctx context.Context) serverMetrics {
	m, _, err := r.scr.scrape(ctx)
	if err != nil {
		if !r.metricsN {
			r.metricsN = true
			r.note("server metrics not reachable (%v): no server memory or CPU figures", err)
		}
		return serverMetrics{}
	}
	return m
}

// serverCost adds the server's CPU and store syncs between two scrapes;
// derive makes them per message. Syncs stay unmeasured (nil) when a
// server does not export switchboard_store_syncs_total: never a failure.
func (r *run) serverCost(res *Result, from, to serverMetrics) {
	if who := r.restarted(from, to); who != "" {
		r.note("%s restarted while measured (its CPU counter went back): server CPU and syncs per message not measured", who)
		return
	}
	if from.HasSyncs && to.HasSyncs {
		n := uint64(max(to.Syncs-from.Syncs, 0))
		res.ServerSyncs = &n
	} else if from.CPU != 0 && to.CPU != 0 && !r.syncsN {
		r.syncsN = true
		r.note("the server exports no switchboard_store_syncs_total: store syncs per message not measured")
	}
	if from.CPU == 0 || to.CPU == 0 {
		return
	}
	res.ServerCPU = time.Duration((to.CPU - from.CPU) * float64(time.Second))
	if n := res.measuredDelivered(); n > 0 {
		r.figure(res, "server_cpu_per_msg_us", (to.CPU-from.CPU)*1e6/float64(n))
	}
	// What a message costs depends on the Go processors the server runs
	// on, which serve tunes to the load (summed over servers).
	if from.Procs > 0 && to.Procs > 0 {
		r.figure(res, "server_procs_at_start", float64(from.Procs))
		r.figure(res, "server_procs_at_end", float64(to.Procs))
		if from.Procs != to.Procs && !r.procsN {
			r.procsN = true
			whose := "server's"
			if len(to.Each) > 1 {
				whose = "servers' (summed)"
			}
			where := "a longer --duration weighs the settled one more"
			if res.Warmup > 0 {
				where = "a longer --warmup lets them settle before the measured phase"
			}
			changed := fmt.Sprintf("went from %d to %d while measured", from.Procs, to.Procs)
			if r.cfg.Scenario == "sweep" {
				// Noted once for the run: the table's procs column says which steps.
				changed = "changed while steps were measured (the sweep table's server procs column shows which)"
				where = "longer steps (--duration, --warmup) weigh the settled count more"
			}
			r.note("the %s Go processors %s: serve tunes them to the load about ten seconds after it changes, so the CPU per message mixes the two counts; %s (docs/BENCHMARKS.md, \"The phone regime second by second\")", whose, changed, where)
		}
	}
	r.notePerServerCPU(res, from, to)
}

// restarted names the server whose process CPU counter is lower at the
// second scrape than at the first: a new process, whose counters started
// again from zero. "" when none did.
func (r *run) restarted(from, to serverMetrics) string {
	if len(from.Each) > 1 && len(from.Each) == len(to.Each) {
		for i := range to.Each {
			if to.Each[i].CPU < from.Each[i].CPU {
				if r.cfg.ClusterNodes > 0 {
					return fmt.Sprintf("node %d (%s)", i+1, r.scr.addrs[i])
				}
				return "the server at " + r.scr.addrs[i]
			}
		}
		return ""
	}
	if to.CPU != 0 && to.CPU < from.CPU {
		return "the server"
	}
	return ""
}

// notePerServerCPU notes, with several servers, each one's share of the
// CPU that serverCost summed: a cluster's nodes need not share the work
// evenly (a cross-node message costs its sender's node and its
// recipient's).
func (r *run) notePerServerCPU(res *Result, from, to serverMetrics) {
	if len(from.Each) < 2 || len(from.Each) != len(to.Each) {
		return
	}
	var b strings.Builder
	b.WriteString("server CPU over the measured phase, per server:")
	for i := range to.Each {
		cpu := to.Each[i].CPU - from.Each[i].CPU
		name := r.scr.addrs[i]
		if r.cfg.ClusterNodes > 0 {
			name = fmt.Sprintf("node %d (%s)", i+1, name)
		}
		sep := ";"
		if i == len(to.Each)-1 {
			sep = ""
		}
		fmt.Fprintf(&b, " %s %.2f s", name, cpu)
		if n := res.measuredDelivered(); n > 0 {
			fmt.Fprintf(&b, ", %.1f µs per delivered message", cpu*1e6/float64(n))
		}
		b.WriteString(sep)
	}
	r.notes = append(r.notes, b.String())
}
