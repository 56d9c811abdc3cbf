package bench

import (
	"context"
	"fmt"
	"time"
)

// connect ramps to --conns logged-in connections at --connect-rate, holds
// them idle for --hold, then has each send --burst messages to its pair
// and waits (--drain at most) for every delivery and delivered receipt.
// Figures: connect_rate_per_s (logins over the ramp), and the server's
// memory per connection: idle_per_conn_* (after the hold, against before
// the ramp) and traffic_per_conn_* (after the burst and its drain).
func (r *run) connect(ctx context.Context) (*Result, error) {
	n := r.totalConns()
	before := r.scrape(ctx, "baseline")
	sm := r.sample() // the ramp and the burst, for the throughput chart
	defer sm.end()
	ramp, err := r.connectAll("all", n)
	if err != nil {
		return r.partial(err)
	}
	r.measured()
	fmt.Fprintf(r.cfg.Out, "bench: %d connections logged in; holding them idle for %v\n", n, r.cfg.Hold)
	select {
	case <-time.After(r.cfg.Hold):
	case <-ctx.Done():
		return r.partial(ctx.Err())
	}
	idle := r.scrape(ctx, "idle")
	var burstErr error
	if r.cfg.Burst > 0 {
		s := Step{Kind: "traffic", Count: r.cfg.Burst, Window: r.cfg.Window, Timeout: r.cfg.Drain + time.Duration(r.cfg.Burst)*time.Second}
		_, burstErr = r.step(s, "burst", int64(n)*int64(r.cfg.Burst), func(c counters) int64 { return int64(c.Delivered) })
	}
	var drainErr error
	if r.cfg.Burst > 0 && burstErr == nil {
		// Every delivered receipt too, so that the checks hold them to
		// the same standard as the messages.
		drainErr = r.drainAll()
	}
	after := r.scrape(ctx, "after traffic")
	res, err := r.fl.collect()
	if err != nil {
		return nil, err
	}
	if drainErr != nil {
		res.Notes = append(res.Notes, drainErr.Error())
	}
	res.Duration = ramp
	r.figure(res, "connect_rate_per_s", float64(n)/ramp.Seconds())
	r.note("memory per connection is cleanest against a freshly started server: an older one carries garbage from earlier runs, and Go returns freed memory to the system lazily")
	r.perConn(res, "idle_per_conn", before, idle, n)
	r.perConn(res, "traffic_per_conn", before, after, n)
	return res, burstErr
}

// chat has --pairs pairs exchange messages of --size bytes for
// --duration: open loop at --rate messages per second in all, or closed
// loop with --window messages in flight per sender (--rate 0). With
// scenario "group", --groups groups of --group-size members, --senders
// of which send to their group. With scenario "phone", the phone regime
// at --rate (phoneStep). Figures: delivered_per_s, wire_bytes_per_msg,
// server_cpu_per_msg_us; the store's syncs per message in Derived.
//
// With --hold, the logged-in connections first stay idle that long, and
// the result also has connect's figures: connect_rate_per_s and the
// servers' memory per idle connection (idle_per_conn_*). The hold is what
// a capacity run asks of many connections: hold them, then talk.
func (r *run) chat(ctx context.Context, kind string) (*Result, error) {
	n := r.totalConns()
	before := r.scrape(ctx, "baseline")
	ramp, err := r.connectAll("all", n)
	if err != nil {
		return r.partial(err)
	}
	var idle serverMetrics
	if r.cfg.Hold > 0 {
		// scripts/million.sh reads memory between these two lines: keep
		// their words.
		fmt.Fprintf(r.cfg.Out, "bench: %d connections logged in; holding them idle for %v\n", n, r.cfg.Hold)
		select {
		case <-time.After(r.cfg.Hold):
		case <-ctx.Done():
			return r.partial(ctx.Err())
		}
		idle = r.scrape(ctx, "idle")
		fmt.Fprintf(r.cfg.Out, "bench: hold over; sending\n")
	}
	if kind == "group" {
		s := Step{Kind: "groups", Timeout: 30 * time.Second}
		if _, err := r.step(s, "groups", 0, conns); err != nil {
			return r.partial(err)
		}
		if r.cfg.ClusterNodes > 0 {
			r.groupsApart = r.fl.progress().GroupsApart
			r.note("%d of %d groups have their home node (that of the group id, which the server derives from the creator and the create's msg id) on a node that homes none of their members: each of their messages goes to that node and back", r.groupsApart, r.cfg.Groups)
		}
	}
	from := r.scrape(ctx, "connected")
	res, err := r.traffic(ctx, "fast")
	if err != nil {
		return res, err
	}
	to := r.scrape(ctx, "after traffic")
	if r.warmedUp != nil {
		from = *r.warmedUp
	}
	r.serverCost(res, from, to)
	if kind == "group" && r.cfg.ClusterNodes > 0 {
		r.figure(res, "groups_homed_apart", float64(r.groupsApart))
	}
	if r.cfg.Hold > 0 {
		r.figure(res, "connect_rate_per_s", float64(n)/ramp.Seconds())
		r.perConn(res, "idle_per_conn", before, idle, n)
	}
	return res, nil
}

// traffic runs the main sending phase and its drain, and collects.
func (r *run) traffic(ctx context.Context, who string) (*Result, error) {
	s := Step{Kind: "traffic", Who: who, Rate: r.cfg.Rate, Window: r.cfg.Window, Duration: r.cfg.Duration,
		Timeout: r.cfg.Duration + time.Minute}
	if r.cfg.Scenario == "phone" {
		s = r.phoneStep(r.cfg.Rate)
	} else {
		s.Warmup = r.cfg.Warmup
		s.Timeout += s.Warmup
	}
	sm := r.sample()
	res, err := r.sendAndDrain(ctx, s, "traffic")
	sm.end()
	if res == nil {
		return nil, err
	}
	switch {
	case s.SenderRate > 0:
		r.note("%s", r.phoneNote(r.cfg.Rate))
		if res.Unsent > 0 {
			r.note("%s messages were due but never sent: their senders still waited for the ACCEPT of earlier ones when the catch-up time (--duration again) ran out; the server did not keep up with %s", formatCount(res.Unsent), formatRate(r.cfg.Rate))
		}
	case r.cfg.Rate > 0:
		r.note("open loop at %v msg/s: latencies count from each message's intended send time (corrected for coordinated omission)", r.cfg.Rate)
	default:
		r.note("closed loop: each sender keeps %d messages in flight until they are delivered", r.cfg.Window)
	}
	if r.cfg.Scenario == "group" {
		r.note("group: delivered messages and delivered receipts count one per member; send-to-deliver is to the last member")
	}
	if res.Warmup > 0 {
		r.note("warm-up: the first %s were sent the same way, straight into the measured %s; their %s sent messages are in the counts and checks, not in the rates, latencies, CPU and syncs per message",
			formatSeconds(res.Warmup), formatSeconds(res.Duration), formatCount(res.WarmupSent))
	}
	return res, err
}

// drainAll waits, --drain at most, until nothing sent is undelivered and
// no delivered copy lacks its receipt; the error says what was left.
func (r *run) drainAll() error {
	d := Step{Kind: "drain", Timeout: r.cfg.Drain}
	if _, err := r.step(d, "drain", 0, func(c counters) int64 { return c.Pending }); err != nil {
		return fmt.Errorf("deliveries or delivered receipts still outstanding after --drain %v: %w", r.cfg.Drain, err)
	}
	return nil
}

// sendAndDrain runs traffic step s and, if it went well, a drain, and
// collects: the Result's Duration is the sending time, and its figures
// delivered_per_s and wire_bytes_per_msg. A nil Result means the collect
// failed (the error says why). With s.Warmup, the measured phase begins
// when it ends: the Duration, the generator's CPU and the servers'
// metrics in r.warmedUp are from then.
func (r *run) sendAndDrain(ctx context.Context, s Step, label string) (*Result, error) {
	r.warmedUp = nil
	secs := int64((s.Warmup + s.Duration) / time.Second)
	t0 := time.Now()
	d0 := r.fl.progress().Delivered
	cpu0 := r.cpu()
	var mark *warmMark
	if s.Warmup > 0 {
		mark = r.markAfter(ctx, s.Warmup)
	}
	elapsed, err := r.step(s, label, secs, func(counters) int64 { return int64(time.Since(t0) / time.Second) })
	r.windowDelivered = r.fl.progress().Delivered - d0
	r.measured()
	warmup := time.Duration(0)
	if mark != nil {
		if mark.end() {
			warmup = mark.at.Sub(t0)
			r.measuredCPU -= mark.cpu - cpu0
			r.warmedUp = &mark.server
		} else {
			warmup = elapsed // the step ended first: nothing was measured
		}
	}
	var drainErr error
	if err == nil {
		drainErr = r.drainAll()
	}
	res, cerr := r.fl.collect()
	if cerr != nil {
		return nil, cerr
	}
	res.Duration, res.Warmup = elapsed-warmup, warmup
	if res.Duration > 0 {
		r.figure(res, "delivered_per_s", float64(res.measuredDelivered())/res.Duration.Seconds())
	}
	if res.Delivered > 0 {
		r.figure(res, "wire_bytes_per_msg", float64(res.BytesIn+res.BytesOut)/float64(res.Delivered))
	}
	if drainErr != nil {
		// What is still undelivered counts as lost, a copy still without
		// its receipt as missing; the note says why.
		res.Notes = append(res.Notes, drainErr.Error())
	}
	return res, err
}

// phoneStep is the traffic step of the phone regime at rate messages per
// second in all: every user of every pair sends rate ÷ senders a second
// on its own evenly spaced schedule (with --arrivals poisson, the loops'
// sends at random moments instead), with at most one message unaccepted
// (traffic's comment tells how).
func (r *run) phoneStep(rate float64) Step {
	return Step{Kind: "traffic", SenderRate: rate / float64(r.cfg.senders()), Poisson: r.cfg.Arrivals == "poisson",
		Warmup: r.cfg.Warmup, Duration: r.cfg.Duration,
		// The sending, its catch-up (as long again), and a minute for a
		// loop far behind to notice.
		Timeout: 2*(r.cfg.Warmup+r.cfg.Duration) + time.Minute}
}

// phoneNote says what the phone regime did at rate.
func (r *run) phoneNote(rate float64) string {
	senders := r.cfg.senders()
	every := time.Duration(float64(time.Second) * float64(senders) / rate)
	if r.cfg.Arrivals == "poisson" {
		return fmt.Sprintf("phone at %s, Poisson arrivals: the sends reach the server at random moments (exponential gaps, %v apart on average), each going to the next of %s senders (both users of every pair) in turn, so each sends every %v on average; none ever has two messages unaccepted: a message due while the previous one waits for its ACCEPT goes out when the ACCEPT comes; latencies count from each message's drawn time, so that wait is charged (corrected for coordinated omission)",
			formatRate(rate), (time.Duration(float64(time.Second) / rate)).Round(time.Microsecond), formatCount(uint64(senders)), every.Round(time.Microsecond))
	}
	return fmt.Sprintf("phone at %s: each of %s senders (both users of every pair) sends every %v on its own evenly spaced schedule, staggered against the others, and never has two messages unaccepted: a message due while the previous one waits for its ACCEPT goes out when the ACCEPT comes; latencies count from each message's scheduled time, so that wait is charged (corrected for coordinated omission)",
		formatRate(rate), formatCount(uint64(senders)), every.Round(time.Microsecond))
}

// offline fills the mailboxes of --pairs receivers with --messages each
// while they are away, then logs them in at once. Figures: drain_s (from
// the logins to the last backlog entry received), drain_rate_per_s.
func (r *run) offline(ctx context.Context) (*Result, error) {
	units, _ := r.cfg.shape()
	total := int64(units) * int64(r.cfg.Messages)
	r.scrape(ctx, "baseline")
	if _, err := r.connectAll("a", int64(units)); err != nil {
		return r.partial(err)
	}
	fill := Step{Kind: "traffic", Who: "a", Count: r.cfg.Messages, Window: max(r.cfg.Window, 32), UntilAccepted: true,
		Timeout: r.cfg.Drain + time.Duration(r.cfg.Messages)*time.Second}
	if _, err := r.step(fill, "fill", total, func(c counters) int64 { return int64(c.Sent) }); err != nil {
		return r.partial(err)
	}
	full := r.scrape(ctx, "mailboxes full")
	costFrom := time.Now()
	sm := r.sample()
	back := Step{Kind: "connect", Who: "b", Drain: true, Timeout: r.cfg.Drain + r.rampTimeout(int64(units))}
	drain, err := r.step(back, "drain", total, func(c counters) int64 { return int64(c.Delivered) })
	r.measured()
	if err == nil {
		_, err = r.step(Step{Kind: "drain", Timeout: r.cfg.Drain}, "settle", 0, func(c counters) int64 { return c.Pending })
	}
	sm.end()
	after := r.scrape(ctx, "drained")
	costWindow := time.Since(costFrom)
	res, cerr := r.fl.collect()
	if cerr != nil {
		return nil, cerr
	}
	res.Duration, res.CostWindow = drain, costWindow
	r.figure(res, "drain_s", drain.Seconds())
	r.figure(res, "drain_rate_per_s", float64(res.Delivered)/drain.Seconds())
	r.serverCost(res, full, after)
	if err != nil {
		res.Notes = append(res.Notes, "drain incomplete: "+err.Error())
	}
	return res, nil
}

// storm logs in --conns connections, has each send --messages to its pair
// and leaves them unacknowledged, then drops every connection at once and
// reconnects them all at once. Figures: all_logged_in_s, drained_s (every
// connection received its redelivered backlog), and the server's memory
// before, at the peak (sampled every 100 ms) and after.
func (r *run) storm(ctx context.Context) (*Result, error) {
	n := r.totalConns()
	r.scrape(ctx, "baseline")
	if _, err := r.connectAll("all", n); err != nil {
		return r.partial(err)
	}
	fill := Step{Kind: "traffic", Count: r.cfg.Messages, Window: r.cfg.Window, HoldAcks: true, Timeout: r.cfg.Drain}
	if _, err := r.step(fill, "fill", n*int64(r.cfg.Messages), func(c counters) int64 { return int64(c.Delivered) }); err != nil {
		return r.partial(err)
	}
	held := r.fl.progress().Delivered // none acknowledged: each must come again
	before := r.scrape(ctx, "before storm")
	if err := r.fl.do(Step{Kind: "drop"}); err != nil {
		return r.partial(err)
	}
	// Peak memory and the moment all are logged in, sampled while the
	// storm runs.
	stop := make(chan struct{})
	var peak serverMetrics
	var peakEach []serverMetrics
	var loggedIn time.Duration
	done := make(chan struct{})
	t0 := time.Now()
	loggedInDone := make(chan struct{})
	go func() {
		// Every 10 ms (workers report every 100 ms): when all are back.
		defer close(loggedInDone)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if r.fl.progress().Ready >= n {
				loggedIn = time.Since(t0)
				return
			}
			select {
			case <-tick.C:
			case <-stop:
				return
			}
		}
	}()
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if m, each, err := r.scr.scrape(ctx); err == nil && m.RSS > peak.RSS {
				peak, peakEach = m, each
			}
			select {
			case <-tick.C:
			case <-stop:
				return
			}
		}
	}()
	sm := r.sample()
	back := Step{Kind: "connect", Rate: 0, Drain: true, Timeout: r.cfg.Drain + r.rampTimeout(n)}
	drained, err := r.step(back, "storm", n, conns)
	r.measured()
	close(stop)
	<-done
	<-loggedInDone
	sm.end()
	if loggedIn == 0 && err == nil {
		loggedIn = drained
	}
	if peak.RSS != 0 {
		r.mem = append(r.mem, MemPoint{Label: "peak", Conns: peak.Conns, RSS: peak.RSS, HeapInuse: peak.HeapInuse})
		r.notePerServer("peak", peakEach)
	}
	if err == nil {
		_, err = r.step(Step{Kind: "drain", Timeout: r.cfg.Drain}, "settle", 0, func(c counters) int64 { return c.Pending })
	}
	after := r.scrape(ctx, "after storm")
	res, cerr := r.fl.collect()
	if cerr != nil {
		return nil, cerr
	}
	res.Duration = drained
	r.figure(res, "all_logged_in_s", loggedIn.Seconds())
	r.figure(res, "drained_s", drained.Seconds())
	if before.RSS != 0 && after.RSS != 0 {
		r.figure(res, "rss_before_bytes", float64(before.RSS))
		r.figure(res, "rss_peak_bytes", float64(peak.RSS))
		r.figure(res, "rss_after_bytes", float64(after.RSS))
	}
	if err != nil {
		return res, err
	}
	requireRedelivered(res, held)
	return res, nil
}

// requireRedelivered fails res unless the held entries, left
// unacknowledged when every connection dropped, all came again after the
// reconnect: a server that lost them would otherwise pass, since each was
// delivered once before the drop.
func requireRedelivered(res *Result, held uint64) {
	if res.Redelivered < held {
		res.Failures = append(res.Failures, fmt.Sprintf("%d entries were held unacknowledged at the drop and %d came again after the reconnect: %d lost", held, res.Redelivered, held-res.Redelivered))
	}
}

// withBaseline sets base as res's baseline. A fault in the baseline fails
// the run too: the verdict and the exit code read the run's own failures.
func withBaseline(res, base *Result) {
	res.Baseline = base
	for _, f := range base.Failures {
		res.Failures = append(res.Failures, "baseline: "+f)
	}
}

// slow runs chat traffic twice: first with every client reading (the
// baseline), then with --slow-share of the receivers not reading at all.
// The server should close those as slow consumers and keep their messages
// in storage; at the end they come back and must receive every one. The
// others' latency is compared with the baseline (Result.Baseline).
func (r *run) slow(ctx context.Context) (*Result, error) {
	n := r.totalConns()
	r.scrape(ctx, "baseline")
	if _, err := r.connectAll("all", n); err != nil {
		return r.partial(err)
	}
	fmt.Fprintln(r.cfg.Out, "bench: phase 1 of 2: every client reads (the baseline)")
	from := r.scrape(ctx, "connected")
	base, err := r.traffic(ctx, "all")
	if err != nil {
		return base, err
	}
	base.GeneratorCPU = r.measuredCPU
	base.Duration = max(base.Duration, time.Millisecond)
	to := r.scrape(ctx, "after baseline")
	r.serverCost(base, from, to)
	r.timeline = nil
	fmt.Fprintln(r.cfg.Out, "bench: phase 2 of 2: the slow share stops reading")
	if err := r.fl.do(Step{Kind: "pause", Who: "slow"}); err != nil {
		return r.partial(err)
	}
	s := Step{Kind: "traffic", Who: "fast", Rate: r.cfg.Rate, Window: r.cfg.Window, Duration: r.cfg.Duration, Timeout: r.cfg.Duration + time.Minute}
	sm := r.sample()
	t0 := time.Now()
	elapsed, err := r.step(s, "traffic", int64(r.cfg.Duration/time.Second), func(counters) int64 { return int64(time.Since(t0) / time.Second) })
	r.measured()
	sm.end()
	if err != nil {
		return r.partial(err)
	}
	mid := r.scrape(ctx, "slow readers stalled")
	fmt.Fprintln(r.cfg.Out, "bench: the slow clients come back to collect what waited for them")
	if err := r.fl.do(Step{Kind: "resume", Who: "slow"}); err != nil {
		return r.partial(err)
	}
	_, derr := r.step(Step{Kind: "drain", Timeout: r.cfg.Drain}, "drain", 0, func(c counters) int64 { return c.Pending })
	res, cerr := r.fl.collect()
	if cerr != nil {
		return nil, cerr
	}
	res.Duration = elapsed
	withBaseline(res, base)
	r.serverCost(res, to, mid)
	if elapsed > 0 {
		r.figure(res, "delivered_per_s", float64(res.Delivered)/elapsed.Seconds())
	}
	if base.SendToDeliver != nil && res.SendToDeliver != nil && base.SendToDeliver.TotalCount() > 0 {
		r.figure(res, "p99_vs_baseline", float64(res.SendToDeliver.ValueAtQuantile(99))/float64(max(base.SendToDeliver.ValueAtQuantile(99), 1)))
	}
	res.Notes = append(res.Notes, "send-to-deliver covers the clients that kept reading; messages to the slow ones are checked (delivered once, in order, nothing lost) but not timed")
	if res.Closes["SLOW_CONSUMER"] == 0 {
		res.Notes = append(res.Notes, "the server closed no slow reader during the run: it stops pushing when a reader's window (256 entries or 128 KiB) is full, and closes it once the window stayed full for delivery.Config.SlowAfter (30 s by default); run longer, or faster per receiver, to see the closes")
	}
	if derr != nil {
		res.Notes = append(res.Notes, "drain incomplete: "+derr.Error())
	}
	return res, nil
}

// partial collects what was measured before err stopped the run.
func (r *run) partial(err error) (*Result, error) {
	res, cerr := r.fl.collect()
	if cerr != nil {
		return nil, err
	}
	return res, err
}
