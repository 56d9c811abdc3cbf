package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"
)

// Config is one run.
type Config struct {
	Addr     string
	Pid      int     // the broker's process, for its CPU; 0: not read
	Pairs    int     // pairs of users
	Rate     float64 // messages a second in all; 0: closed loop
	Window   int     // closed loop: messages in flight per sender
	Size     int     // payload bytes
	Warmup   time.Duration
	Duration time.Duration
	Drain    time.Duration
}

func (c Config) validate() error {
	var bad []string
	if c.Pairs < 1 {
		bad = append(bad, "--pairs must be at least 1")
	}
	if c.Rate < 0 {
		bad = append(bad, "--rate must not be negative")
	}
	if c.Window < 1 {
		bad = append(bad, "--window must be at least 1")
	}
	if c.Size < 16 || c.Size > maxRemaining-64 {
		bad = append(bad, fmt.Sprintf("--size must be in [16, %d]", maxRemaining-64))
	}
	if c.Duration <= 0 || c.Warmup < 0 || c.Drain <= 0 {
		bad = append(bad, "--duration and --drain must be positive, --warmup not negative")
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}

// Latency is a distribution in microseconds.
type Latency struct {
	Samples int64   `json:"samples"`
	P50     float64 `json:"p50_us"`
	P90     float64 `json:"p90_us"`
	P99     float64 `json:"p99_us"`
	P999    float64 `json:"p99_9_us"`
	Max     float64 `json:"max_us"`
}

func latency(h *hdrhistogram.Histogram) Latency {
	return Latency{Samples: h.TotalCount(), P50: float64(h.ValueAtQuantile(50)), P90: float64(h.ValueAtQuantile(90)),
		P99: float64(h.ValueAtQuantile(99)), P999: float64(h.ValueAtQuantile(99.9)), Max: float64(h.Max())}
}

// Result is what a run measured. Counts are of the whole run; rates,
// latencies and CPU of the measured phase.
type Result struct {
	Regime          string        `json:"regime"`
	Pairs           int           `json:"pairs"`
	Warmup          time.Duration `json:"warmup_ns"`
	Duration        time.Duration `json:"duration_ns"`
	Sent            uint64        `json:"sent"`
	Acked           uint64        `json:"acked"`
	Delivered       uint64        `json:"delivered"`
	Lost            uint64        `json:"lost"`       // sent, never delivered
	Duplicates      uint64        `json:"duplicates"` // delivered again, or after a later one
	Reordered       uint64        `json:"reordered"`  // delivered past one or more not yet delivered
	Measured        uint64        `json:"measured_delivered"`
	DeliveredPerSec float64       `json:"delivered_per_s"`
	ServerCPUPerMsg float64       `json:"server_cpu_per_msg_us,omitempty"`
	ServerCores     float64       `json:"server_cores,omitempty"`
	OwnCPUPerMsg    float64       `json:"generator_cpu_per_msg_us"`
	SendAck         Latency       `json:"send_puback"`
	SendDeliver     Latency       `json:"send_deliver"`
	// GeneratorLag: how late each open-loop sender woke for its message
	// after the message's scheduled time (its timer, its wait for a core),
	// or after it came to the message, if the wait for its previous PUBACK
	// held it past the time: that wait is the broker's. The latencies
	// count from the schedule and hold the lag.
	GeneratorLag Latency `json:"generator_lag"`
}

func (r *Result) write(w io.Writer) {
	fmt.Fprintf(w, "mqttref: %s, %d pairs, measured %v after a %v warm-up\n", r.Regime, r.Pairs, r.Duration, r.Warmup)
	fmt.Fprintf(w, "  sent %d  acked %d  delivered %d  lost %d  duplicates %d  reordered %d\n", r.Sent, r.Acked, r.Delivered, r.Lost, r.Duplicates, r.Reordered)
	fmt.Fprintf(w, "  delivered %.0f msg/s (%d in the measured phase)\n", r.DeliveredPerSec, r.Measured)
	if r.ServerCores > 0 {
		fmt.Fprintf(w, "  broker cpu per msg %.1f µs (%.2f of a core)\n", r.ServerCPUPerMsg, r.ServerCores)
	}
	fmt.Fprintf(w, "  generator cpu per msg %.1f µs\n", r.OwnCPUPerMsg)
	fmt.Fprintf(w, "  %-22s %8s %8s %8s %8s %8s %8s\n", "latency (µs)", "samples", "p50", "p90", "p99", "p99.9", "max")
	for _, l := range []struct {
		name string
		l    Latency
	}{{"send → puback", r.SendAck}, {"send → deliver", r.SendDeliver}, {"generator lag", r.GeneratorLag}} {
		fmt.Fprintf(w, "  %-22s %8d %8.0f %8.0f %8.0f %8.0f %8.0f\n", l.name, l.l.Samples, l.l.P50, l.l.P90, l.l.P99, l.l.P999, l.l.Max)
	}
}

// user is one connection: publisher to its partner's topic, subscriber to
// its own.
type user struct {
	id      int
	nc      net.Conn
	rd      *bufio.Reader
	partner *user

	wmu  sync.Mutex // guards wbuf and writes to nc: the sender's PUBLISH, the reader's PUBACK
	wbuf []byte

	mu     sync.Mutex // guards flight
	flight []inflight // the PUBLISHes awaiting their PUBACK, in order
	nextID uint16     // packet id of the next PUBLISH; owned by the sender

	sent      atomic.Uint64
	acked     atomic.Uint64
	delivered atomic.Uint64 // of this user's messages, at its partner
	ev        chan struct{} // a PUBACK or a delivery happened; capacity 1
	tick      chan struct{} // open loop: a message of this user came due (runner.clock); capacity 1
	recvNext  uint64        // the partner's counter expected next; owned by the reader
}

// inflight is a PUBLISH awaiting its PUBACK.
type inflight struct {
	id  uint16
	due int64
}

// runner is one run's shared state.
type runner struct {
	cfg     Config
	t0      time.Time
	measure int64 // ns after t0 from which messages due are measured
	users   []*user

	hmu         sync.Mutex
	sendAck     *hdrhistogram.Histogram
	sendDeliver *hdrhistogram.Histogram
	lag         *hdrhistogram.Histogram

	delivered  atomic.Uint64
	duplicates atomic.Uint64
	reordered  atomic.Uint64
	failOnce   sync.Once
	failed     chan struct{} // closed at the first failure of a connection
	failErr    error         // that failure; set before failed is closed
}

// newHist holds latencies from 1 µs to a minute, to three significant
// digits, as the bench's histograms do.
func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, 60_000_000, 3) }

// run connects every user, sends for the warm-up and the measured phase,
// waits for the last messages, and returns the result.
func run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, sendAck: newHist(), sendDeliver: newHist(), lag: newHist(), failed: make(chan struct{})}
	defer r.close()
	// Senders stop when the run ends, also while one waits for room that
	// a broker which stopped answering will never give.
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	if err := r.connect(ctx); err != nil {
		return nil, err
	}
	r.t0 = time.Now()
	r.measure = int64(cfg.Warmup)
	end := int64(cfg.Warmup + cfg.Duration)
	for _, u := range r.users {
		go r.read(u)
	}
	var senders sync.WaitGroup
	for _, u := range r.users {
		senders.Go(func() { r.send(sctx, u, end) })
	}
	if cfg.Rate > 0 {
		go r.clock(sctx, end)
	}

	res := &Result{Regime: r.regime(), Pairs: cfg.Pairs, Warmup: cfg.Warmup, Duration: cfg.Duration}
	if err := r.sleepUntil(ctx, int64(cfg.Warmup)); err != nil {
		return nil, err
	}
	d0, s0, o0, err := r.snapshot()
	if err != nil {
		return nil, err
	}
	if err := r.sleepUntil(ctx, end); err != nil {
		return nil, err
	}
	d1, s1, o1, err := r.snapshot()
	if err != nil {
		return nil, err
	}
	// The last messages due, and what is in flight, have --drain.
	deadline := time.Now().Add(cfg.Drain)
	sent := make(chan struct{})
	go func() { senders.Wait(); close(sent) }()
	select {
	case <-sent:
	case <-time.After(time.Until(deadline)):
		stop()
		<-sent
	}
	drainErr := r.drain(ctx, deadline)

	for _, u := range r.users {
		res.Sent += u.sent.Load()
		res.Acked += u.acked.Load()
	}
	res.Delivered, res.Duplicates, res.Reordered = r.delivered.Load(), r.duplicates.Load(), r.reordered.Load()
	res.Lost = res.Sent - min(res.Sent, res.Delivered)
	res.Measured = d1 - d0
	res.DeliveredPerSec = float64(res.Measured) / cfg.Duration.Seconds()
	if n := float64(res.Measured); n > 0 {
		if cfg.Pid != 0 {
			res.ServerCPUPerMsg = (s1 - s0).Seconds() * 1e6 / n
			res.ServerCores = (s1 - s0).Seconds() / cfg.Duration.Seconds()
		}
		res.OwnCPUPerMsg = (o1 - o0).Seconds() * 1e6 / n
	}
	r.hmu.Lock()
	res.SendAck, res.SendDeliver, res.GeneratorLag = latency(r.sendAck), latency(r.sendDeliver), latency(r.lag)
	r.hmu.Unlock()
	return res, drainErr
}

func (r *runner) regime() string {
	if r.cfg.Rate > 0 {
		return fmt.Sprintf("open loop at %.0f msg/s, one in flight per sender", r.cfg.Rate)
	}
	return fmt.Sprintf("closed loop, %d in flight per sender", r.cfg.Window)
}

// connect dials every user, 64 at a time, and subscribes each to its topic.
func (r *runner) connect(ctx context.Context) error {
	n := 2 * r.cfg.Pairs
	r.users = make([]*user, n)
	for i := range r.users {
		r.users[i] = &user{id: i, ev: make(chan struct{}, 1), tick: make(chan struct{}, 1)}
	}
	for i, u := range r.users {
		u.partner = r.users[i^1]
	}
	errs := make(chan error, n)
	sem := make(chan struct{}, 64) // logins in progress: the broker's accept queue need not hold them all
	var wg sync.WaitGroup
	for _, u := range r.users {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs <- r.login(ctx, u)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func topic(id int) string { return "u/" + strconv.Itoa(id) }

// login connects u, waits for CONNACK, subscribes and waits for SUBACK.
func (r *runner) login(ctx context.Context, u *user) error {
	d := net.Dialer{Timeout: 10 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", r.cfg.Addr)
	if err != nil {
		return err
	}
	u.nc, u.rd = nc, bufio.NewReaderSize(nc, 4096)
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	defer nc.SetDeadline(time.Time{})
	var buf []byte
	for _, step := range []struct {
		out  []byte
		want byte
	}{
		// A keepalive of 10 minutes: longer than a sender's gap at any
		// useful rate, so no PINGREQ is needed.
		{appendConnect(nil, fmt.Sprintf("mqttref-%d-%d", os.Getpid(), u.id), 600), typeConnack},
		{appendSubscribe(nil, 1, topic(u.id)), typeSuback},
	} {
		if _, err := nc.Write(step.out); err != nil {
			return err
		}
		var p packet
		p, buf, err = readPacket(u.rd, buf)
		if err != nil {
			return fmt.Errorf("user %d: %w", u.id, err)
		}
		if p.kind() != step.want || len(p.body) < 2 || (step.want == typeConnack && p.body[1] != 0) || (step.want == typeSuback && p.body[len(p.body)-1] > 2) {
			return fmt.Errorf("user %d: broker answered type %d % x where type %d was due", u.id, p.kind(), p.body, step.want)
		}
	}
	return nil
}

// send publishes u's messages until end (ns after t0): on an even schedule
// at the open loop's rate, or as the window frees in the closed loop.
func (r *runner) send(ctx context.Context, u *user, end int64) {
	every, due := r.schedule(u.id)
	payload := make([]byte, r.cfg.Size)
	for k := uint64(0); ; k++ {
		if every > 0 {
			if due >= end {
				return
			}
			// A sender that comes to its slot late, held by the wait for
			// its previous PUBACK, was held by the broker: its lag counts
			// from when it came.
			from := max(due, r.now())
			if r.awaitTick(ctx, u, due) != nil {
				return
			}
			r.recordFrom(r.lag, due, from, r.now())
		}
		// Wait for room: a PUBACK (open loop), or a PUBACK and the
		// delivery (closed loop), of the oldest message in flight.
		for u.sent.Load()-r.done(u) >= uint64(r.window()) {
			select {
			case <-u.ev:
			case <-ctx.Done():
				return
			}
		}
		at := due
		if every == 0 {
			if at = r.now(); at >= end {
				return
			}
		}
		binary.BigEndian.PutUint64(payload, uint64(at))
		binary.BigEndian.PutUint64(payload[8:], k)
		u.nextID++
		if u.nextID == 0 {
			u.nextID = 1
		}
		u.mu.Lock()
		u.flight = append(u.flight, inflight{id: u.nextID, due: at})
		u.mu.Unlock()
		u.sent.Add(1)
		u.wmu.Lock()
		u.wbuf = appendPublish(u.wbuf[:0], u.nextID, topic(u.partner.id), payload)
		_, err := u.nc.Write(u.wbuf)
		u.wmu.Unlock()
		if err != nil {
			r.fail(fmt.Errorf("user %d: %w", u.id, err))
			return
		}
		due += every
	}
}

// schedule returns the open loop's interval between the messages of user
// id and when its first is due (ns after t0), staggered against the other
// users'; every is 0 in the closed loop.
func (r *runner) schedule(id int) (every, first int64) {
	if r.cfg.Rate <= 0 {
		return 0, 0
	}
	senders := int64(len(r.users))
	every = int64(float64(senders) / r.cfg.Rate * 1e9)
	return every, every * int64(id) / senders
}

// clock wakes each open-loop sender when its next message comes due, all
// the senders' schedules in one, until end. Go's timers wake a sleeping
// thread to the millisecond only (the runtime waits in epoll_pwait, whose
// timeout is in milliseconds), which made the senders 0.5 ms late at the
// median and 1.2 ms at the 99th percentile. This one goroutine, on a thread
// of its own with a timer slack of 1 ns (Linux's default is 50 µs), sleeps
// to each due time with clock_nanosleep instead.
func (r *runner) clock(ctx context.Context, end int64) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0) // best effort: without it, up to 50 µs later
	n := len(r.users)
	for k := 0; ; k++ {
		u := r.users[k%n]
		every, first := r.schedule(u.id)
		due := first + int64(k/n)*every
		for d := due - r.now(); d > 0; d = due - r.now() {
			if due >= end || ctx.Err() != nil {
				return
			}
			// At most 50 ms at a time, so that the run's end stops it.
			ts := unix.NsecToTimespec(min(d, int64(50*time.Millisecond)))
			_ = unix.ClockNanosleep(unix.CLOCK_MONOTONIC, 0, &ts, nil) // EINTR: the loop sleeps again
		}
		if due >= end {
			return
		}
		select {
		case u.tick <- struct{}{}:
		default: // a wake is pending already; the sender reads the time itself
		}
	}
}

// awaitTick waits until u's message due at due (ns after t0) is due: the
// clock's wake, or the time itself when the sender comes late (a PUBACK
// held it past its slot).
func (r *runner) awaitTick(ctx context.Context, u *user, due int64) error {
	for r.now() < due {
		select {
		case <-u.tick:
		case <-r.failed:
			return r.failErr
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (r *runner) window() int {
	if r.cfg.Rate > 0 {
		return 1
	}
	return r.cfg.Window
}

// done counts u's messages no longer in flight.
func (r *runner) done(u *user) uint64 {
	if r.cfg.Rate > 0 {
		return u.acked.Load()
	}
	return min(u.acked.Load(), u.delivered.Load())
}

func wake(u *user) {
	select {
	case u.ev <- struct{}{}:
	default:
	}
}

// read handles what the broker sends u: PUBACKs of its PUBLISHes, and its
// partner's messages, each acknowledged.
func (r *runner) read(u *user) {
	var buf, out []byte
	for {
		p, b, err := readPacket(u.rd, buf)
		buf = b
		if err != nil {
			r.fail(fmt.Errorf("user %d: %w", u.id, err))
			return
		}
		now := r.now()
		switch p.kind() {
		case typePuback:
			id, err := p.packetID()
			if err != nil {
				r.fail(err)
				return
			}
			u.mu.Lock()
			if len(u.flight) == 0 || u.flight[0].id != id {
				u.mu.Unlock()
				r.fail(fmt.Errorf("user %d: a PUBACK of packet id %d, not of the oldest PUBLISH in flight", u.id, id))
				return
			}
			due := u.flight[0].due
			u.flight = append(u.flight[:0], u.flight[1:]...)
			u.mu.Unlock()
			u.acked.Add(1)
			r.record(r.sendAck, due, now)
			wake(u)
		case typePublish:
			id, payload, err := p.publish()
			if err == nil && len(payload) < 16 {
				err = fmt.Errorf("%w: a payload of %d bytes", errMalformed, len(payload))
			}
			if err != nil {
				r.fail(err)
				return
			}
			if id != 0 {
				u.wmu.Lock()
				out = appendPuback(out[:0], id)
				_, err = u.nc.Write(out)
				u.wmu.Unlock()
				if err != nil {
					r.fail(err)
					return
				}
			}
			due, k := int64(binary.BigEndian.Uint64(payload)), binary.BigEndian.Uint64(payload[8:])
			switch {
			case k < u.recvNext:
				r.duplicates.Add(1)
				continue
			case k > u.recvNext:
				r.reordered.Add(1)
			}
			u.recvNext = k + 1
			r.record(r.sendDeliver, due, now)
			r.delivered.Add(1)
			u.partner.delivered.Add(1)
			wake(u.partner)
		}
	}
}

// record adds now-due to h if the message was due in the measured phase.
func (r *runner) record(h *hdrhistogram.Histogram, due, now int64) {
	r.recordFrom(h, due, due, now)
}

// recordFrom adds now-from to h if the message was due in the measured
// phase.
func (r *runner) recordFrom(h *hdrhistogram.Histogram, due, from, now int64) {
	if due < r.measure {
		return
	}
	r.hmu.Lock()
	_ = h.RecordValue(max(now-from, 0) / 1000)
	r.hmu.Unlock()
}

func (r *runner) now() int64 { return int64(time.Since(r.t0)) }

func (r *runner) sleepUntil(ctx context.Context, at int64) error {
	d := time.Duration(at - r.now())
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-r.failed:
		return r.failErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fail records the run's first failure, which ends its waits.
func (r *runner) fail(err error) {
	r.failOnce.Do(func() {
		r.failErr = err
		close(r.failed)
	})
}

// snapshot reads the delivered count and the broker's and this process's
// CPU.
func (r *runner) snapshot() (delivered uint64, server, own time.Duration, err error) {
	delivered = r.delivered.Load()
	if r.cfg.Pid != 0 {
		if server, err = procCPU(r.cfg.Pid); err != nil {
			return 0, 0, 0, err
		}
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0, 0, err
	}
	own = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return delivered, server, own, nil
}

// drain waits until every message sent was acknowledged and delivered,
// until deadline.
func (r *runner) drain(ctx context.Context, deadline time.Time) error {
	for {
		var out uint64
		for _, u := range r.users {
			out += u.sent.Load() - min(u.acked.Load(), u.delivered.Load())
		}
		if out == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d messages not acknowledged or not delivered %v after the sending ended", out, r.cfg.Drain)
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-r.failed:
			return r.failErr
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (r *runner) close() {
	for _, u := range r.users {
		if u != nil && u.nc != nil {
			_ = u.nc.Close()
		}
	}
}

// clockTicks is the unit of /proc/<pid>/stat's times: USER_HZ, 100 on
// every Linux architecture Go runs on.
const clockTicks = 100

// procCPU returns the user and system CPU time process pid has used.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from after its closing one (field 3, the state).
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	var ticks int64
	for _, v := range f[11:13] { // utime (field 14), stime (field 15)
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}
