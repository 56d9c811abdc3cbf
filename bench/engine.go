package bench

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"switchboard/client"
)

// Spec is one generator process's share of a run: which users it plays,
// how they are grouped, and where the servers are. The coordinator makes
// one per process and sends it to each worker as JSON.
type Spec struct {
	// Servers are the run's servers, in --addr's order; the process's u-th
	// unit is homed on Servers[(FirstUnit+u) % len(Servers)] (see homeOf),
	// unless Users is set. In a cluster, Servers[i] is node i+1.
	Servers   []Target `json:"servers"`
	FirstUnit int      `json:"first_unit"` // the run-wide index of this process's first unit

	Source   string `json:"source,omitempty"` // source IP to dial from; "": the kernel's choice
	RunID    uint64 `json:"run_id"`           // stamped in every body: tells this run's messages from old ones
	UserBase uint64 `json:"user_base"`        // first user id of this process; unused when Users is set
	// Users, in a cluster, is every user of this process, unit after unit
	// (Units×UnitSize ids), and Homes the index in Servers of each one's
	// home node (chosen by placeUnits). nil: users UserBase, UserBase+1…,
	// each unit's on the server homeOf names.
	Users    []uint64 `json:"users,omitempty"`
	Homes    []int    `json:"homes,omitempty"`
	Units    int      `json:"units"`     // pairs or groups this process holds
	UnitSize int      `json:"unit_size"` // connections per unit: 2 for a pair, S for a group
	Slow     int      `json:"slow"`      // units whose receiver is slow (the first ones)
	Size     int      `json:"size"`      // message body, bytes
	Loops    int      `json:"loops"`     // event loops; 0: one per core but one
	Senders  int      `json:"senders"`   // group senders per group (members 0..Senders-1)
	Weight   float64  `json:"weight"`    // this process's share of rates, 0..1

	ConnFrameCap     int           `json:"conn_frame_cap"`    // frames per second per connection
	Retries          int           `json:"retries"`           // failed logins retried before giving up
	Ping             time.Duration `json:"ping"`              // keepalive interval asked for
	HandshakeTimeout time.Duration `json:"handshake_timeout"` // dial to WELCOME
	// Noise is the transport: "" plain, NoiseXX or NoiseIK (PROTOCOL.md
	// 3.1; noise.go).
	Noise string `json:"noise,omitempty"`
}

// Target is one server of a run: where to dial, and the key its tokens
// verify with.
type Target struct {
	Addr string `json:"addr"` // host:port
	Key  Key    `json:"key"`  // the newest key of the server's keys file
	// NoiseKey is the server's Noise static public key, for Spec.Noise
	// NoiseIK; nil otherwise.
	NoiseKey []byte `json:"noise_key,omitempty"`
}

// homeOf returns the index in Servers of the server that the process's
// u-th unit is homed on.
func (s *Spec) homeOf(u int) int { return (s.FirstUnit + u) % len(s.Servers) }

// unit is a pair or a group: connections that only talk among themselves,
// so they live on one loop and on one server.
type unit struct {
	home     int // index in Spec.Servers of the server its users log in to (in a cluster, its first user's home)
	conns    []*conn
	slow     bool
	group    uint64 // the group's id once created; 0: a pair
	groupReq uint64 // msg id of the pending GROUP create, the first conn's
}

// members returns the users a unit's group is created with: all but its
// first, the admin, who creates it.
func (u *unit) members() []uint64 {
	m := make([]uint64, 0, len(u.conns)-1)
	for _, c := range u.conns[1:] {
		m = append(m, c.user)
	}
	return m
}

// isGroupReq reports whether msg id is c's pending GROUP create: the ids of
// every connection start at the same base, so only the admin's counts.
func (c *conn) isGroupReq(id uint64) bool {
	return id == c.unit.groupReq && id != 0 && c == c.unit.conns[0]
}

// engine is one process's generator: its loops and connections.
type engine struct {
	spec    Spec
	t0      time.Time
	family  int
	servers []netip.AddrPort // Spec.Servers, resolved; all of one family
	source  netip.Addr       // invalid: the kernel chooses
	loops   []*loop
	units   []*unit
	firstID uint64 // every conn's first message id: lower ids are earlier runs'
	wg      sync.WaitGroup

	failOnce sync.Once
	failed   chan struct{} // closed by fatal
	fatalErr error         // set before failed is closed
}

// newEngine resolves the addresses, builds the connections and starts the loops.
func newEngine(spec Spec) (*engine, error) {
	if spec.Loops <= 0 {
		// One per core but one, as the server's (gateway.DefaultLoops): a
		// loop waits in epoll_wait holding a Go processor, and with none to
		// spare the rest of the process waits for the runtime to take one
		// back. At 5,000 msg/s that took a third of a millisecond off the
		// measured p50 and a fifth of the generator's CPU
		// (docs/BENCHMARKS.md, "A processor to spare").
		spec.Loops = max(1, runtime.GOMAXPROCS(0)-1)
	}
	spec.Loops = max(1, min(spec.Loops, spec.Units))
	if len(spec.Servers) == 0 {
		return nil, errors.New("bench: the spec names no server")
	}
	e := &engine{spec: spec, t0: time.Now(), failed: make(chan struct{})}
	for _, t := range spec.Servers {
		ap, err := resolve(t.Addr)
		if err != nil {
			return nil, err
		}
		if len(e.servers) > 0 && ap.Addr().Is4() != e.servers[0].Addr().Is4() {
			return nil, fmt.Errorf("bench: servers %s and %s are of different address families", e.servers[0], ap)
		}
		e.servers = append(e.servers, ap)
	}
	e.family = unix.AF_INET
	if e.servers[0].Addr().Is6() {
		e.family = unix.AF_INET6
	}
	if spec.Source != "" {
		src, err := netip.ParseAddr(spec.Source)
		if err != nil || src.Is4() != e.servers[0].Addr().Is4() {
			return nil, fmt.Errorf("bench: source address %q does not suit server %s", spec.Source, e.servers[0])
		}
		e.source = src
	}
	if spec.Users != nil && (len(spec.Users) != spec.Units*spec.UnitSize || len(spec.Homes) != len(spec.Users)) {
		return nil, fmt.Errorf("bench: the spec lists %d users and %d homes for %d units of %d", len(spec.Users), len(spec.Homes), spec.Units, spec.UnitSize)
	}
	for _, h := range spec.Homes {
		if h < 0 || h >= len(spec.Servers) {
			return nil, fmt.Errorf("bench: the spec homes a user on server #%d of %d", h, len(spec.Servers))
		}
	}
	for i := 0; i < spec.Loops; i++ {
		l, err := newLoop(e, i)
		if err != nil {
			for _, l := range e.loops {
				l.closeFDs()
			}
			return nil, err
		}
		e.loops = append(e.loops, l)
	}
	user := spec.UserBase
	// Message ids start at the microseconds since the protocol epoch, like
	// protocol.Client's: the server drops a repeated (user, id) as a retry,
	// and a clock-based start keeps this run clear of earlier runs' ids.
	idBase := uint64(time.Since(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)).Microseconds())
	e.firstID = idBase
	for u := 0; u < spec.Units; u++ {
		l := e.loops[u%len(e.loops)]
		un := &unit{home: spec.homeOf(u), slow: u < spec.Slow}
		for m := 0; m < spec.UnitSize; m++ {
			home := un.home
			if spec.Users != nil {
				i := u*spec.UnitSize + m
				user, home = spec.Users[i], spec.Homes[i]
				if m == 0 {
					un.home = home
				}
			}
			c := &conn{l: l, idx: int32(len(l.conns)), member: int32(len(un.conns)), user: user, unit: un, home: home, fd: -1, outBase: idBase}
			cfg := sessionConfig
			cfg.NextMsgID = idBase
			c.sess = *client.NewSession(cfg)
			user++
			l.conns = append(l.conns, c)
			l.users[c.user] = c
			un.conns = append(un.conns, c)
		}
		e.units = append(e.units, un)
	}
	for _, l := range e.loops {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			l.run()
		}()
	}
	return e, nil
}

func resolve(addr string) (netip.AddrPort, error) {
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bench: server address %q: %w", addr, err)
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// fatal stops the run: a step cannot be carried out.
func (e *engine) fatal(err error) {
	e.failOnce.Do(func() {
		e.fatalErr = err
		close(e.failed)
	})
}

// close stops the loops, which close their connections.
func (e *engine) close() {
	for _, l := range e.loops {
		l.submit(func() { l.quit = true })
	}
	e.wg.Wait()
}

// Step is one phase of a scenario, run by every generator process at once.
type Step struct {
	Kind string `json:"kind"` // connect, traffic, drain, drop, pause, resume, groups, collect
	// Who selects the connections: "all" (default), "a" (the first of each
	// unit), "b" (the others), "slow" (the b of slow units), "fast" (all
	// but those).
	Who string `json:"who,omitempty"`
	// Rate: connect: connections per second; traffic: messages per second
	// (open loop); both for the whole run, scaled by Spec.Weight. 0: connect
	// at once; traffic in closed loop.
	Rate float64 `json:"rate,omitempty"`
	// Drain (connect): wait until each connection has received its backlog.
	Drain bool `json:"drain,omitempty"`
	// SenderRate (traffic): messages per second of each sender, in the
	// phone regime: every sender on its own evenly spaced schedule, with
	// at most one message not yet accepted (see traffic). Rate is 0 then.
	SenderRate float64 `json:"sender_rate,omitempty"`
	// Poisson (traffic, phone regime): the loop's sends come at random
	// moments (Poisson arrivals at the same mean rate) instead of evenly
	// spaced; each still goes to the next sender in turn.
	Poisson bool `json:"poisson,omitempty"`
	// Window (closed-loop traffic): messages each sender keeps in flight,
	// until delivered to every recipient.
	Window int `json:"window,omitempty"`
	// Count (traffic): messages each sender sends; then the step waits
	// until they are delivered (or accepted, with UntilAccepted).
	Count         int  `json:"count,omitempty"`
	UntilAccepted bool `json:"until_accepted,omitempty"`
	// HoldAcks (traffic): receivers do not acknowledge, so the entries stay
	// in the mailboxes to be redelivered.
	HoldAcks bool `json:"hold_acks,omitempty"`
	// Duration (traffic without Count): how long to send.
	Duration time.Duration `json:"duration,omitempty"`
	// Warmup (traffic without Count): how long to send first, the same
	// way, before Duration. Its messages are counted and checked; its
	// latencies are not recorded, and the Result's Warmup counts say how
	// many of the counts it made.
	Warmup time.Duration `json:"warmup,omitempty"`
	// Timeout bounds the step; 0: none.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// settleQuiet is how long a drain waits without new mailbox entries before
// it counts the mailboxes empty: receipts follow ACKs within milliseconds.
const settleQuiet = 100 * time.Millisecond

// selects reports whether Who picks the m-th connection of unit u.
func selects(who string, u *unit, m int) bool {
	switch who {
	case "", "all":
		return true
	case "a":
		return m == 0
	case "b":
		return m > 0
	case "slow":
		return u.slow && m > 0
	case "fast":
		return !(u.slow && m > 0)
	}
	return false
}

// do runs a step on every loop and waits until all finished it.
func (e *engine) do(s Step) error {
	if s.Kind == "collect" {
		return errors.New("bench: collect is not a step for do")
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, l := range e.loops {
		wg.Add(1)
		finish := func(err error) {
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("loop %d: %s: %w", l.id, s.Kind, err))
				mu.Unlock()
			}
			wg.Done()
		}
		l.submit(func() { l.start(s, finish) })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-e.failed:
		return e.fatalErr
	}
	select {
	case <-e.failed:
		return e.fatalErr
	default:
	}
	return errors.Join(errs...)
}

// start begins step s on the loop. Loop-only.
func (l *loop) start(s Step, finish func(error)) {
	st := &loopStep{finish: finish}
	if s.Timeout > 0 {
		st.deadline = l.now + int64(s.Timeout)
	}
	each := func(fn func(c *conn)) {
		for _, u := range l.e.units {
			if u.conns[0].l != l {
				continue
			}
			for m, c := range u.conns {
				if selects(s.Who, u, m) {
					fn(c)
				}
			}
		}
	}
	switch s.Kind {
	case "connect":
		l.waiting, l.waitDrain = 0, s.Drain
		each(func(c *conn) {
			c.autoRedial = true
			c.holdAcks = false // a client that logs in acknowledges what it gets
			c.attempts = 0
			c.stepWait = true
			l.waiting++
			if c.state == stateReady {
				c.checkWait()
				return
			}
			if c.state == stateIdle || c.state == stateClosed {
				c.reconnectAt = 0
				l.dials = append(l.dials, c)
			}
		})
		l.dialAt = l.now
		l.dialGap = 0
		if rate := s.Rate * l.e.spec.Weight; rate > 0 {
			l.dialGap = int64(float64(time.Second) * float64(len(l.e.loops)) / rate)
		}
		gaveUp := l.gaveUp
		st.done = func() bool { return l.waiting == 0 }
		prev := st.finish
		st.finish = func(err error) {
			if err == nil && l.gaveUp > gaveUp {
				err = fmt.Errorf("%d connections could not log in (see the failures)", l.gaveUp-gaveUp)
			}
			prev(err)
		}
	case "traffic":
		t := &l.traffic
		*t = traffic{active: true, window: max(s.Window, 1), count: s.Count, start: l.now, untilAccepted: s.UntilAccepted}
		for _, c := range l.conns {
			c.inflight = 0 // what earlier steps left in flight does not hold this one's window
		}
		if s.Count == 0 && s.Duration > 0 {
			t.deadline = l.now + int64(s.Warmup+s.Duration)
		}
		l.measureFrom, l.warming = 0, false
		if s.Warmup > 0 && t.deadline > 0 {
			l.measureFrom, l.warming = l.now+int64(s.Warmup), true
		}
		each(func(c *conn) {
			if c.paused || (c.unit.group != 0 && indexIn(c) >= max(l.e.spec.Senders, 1)) {
				return
			}
			c.sending = true
			c.quota = s.Count
			t.senders = append(t.senders, c)
		})
		for _, c := range l.conns {
			c.holdAcks = s.HoldAcks
		}
		switch {
		case s.SenderRate > 0 && s.Count == 0 && len(t.senders) > 0:
			t.startPhone(s.SenderRate, s.Warmup+s.Duration, s.Poisson, l.e.spec.RunID, uint64(l.e.spec.FirstUnit)<<16|uint64(l.id))
		case s.Rate > 0 && s.Count == 0:
			t.rate = s.Rate * l.e.spec.Weight / float64(len(l.e.loops))
			t.interval = float64(time.Second) / t.rate
		default:
			for _, c := range t.senders {
				c.fillWindow()
			}
		}
		st.done = func() bool {
			if t.phone {
				return t.phoneDone(l.now)
			}
			if t.count > 0 {
				for _, c := range t.senders {
					if c.quota > 0 {
						return false
					}
				}
				if s.UntilAccepted {
					return l.unaccepted == 0
				}
				// Delivered and accepted: the server writes the ACCEPT and
				// the DELIVER after the same commit, in either order.
				return l.pending == 0 && l.unaccepted == 0
			}
			return l.now >= t.deadline
		}
		prev := st.finish
		st.finish = func(err error) {
			if t.rate > 0 && t.deadline > 0 {
				l.res.Unsent += t.unsent()
			}
			l.stopTraffic()
			prev(err)
		}
	case "drain":
		for _, c := range l.conns {
			c.holdAcks = false
			if c.sessSeq > c.ackedSeq {
				// What arrived while acks were held was checked then.
				c.sess.Processed(c.sessSeq, 0, time.Duration(l.now))
				c.scheduleAck()
			}
		}
		// Done when every message is delivered, every entry acknowledged,
		// and the receipts those ACKs cause have come and been acknowledged
		// too: the mailboxes are left empty for the next run. A copy whose
		// receipt has not come by the step's end is missing (checkReceipts).
		l.receiptsDue = true
		st.done = func() bool {
			return l.pending == 0 && l.unreceipted == 0 && len(l.acks) == 0 && l.now-l.lastEntry > int64(settleQuiet)
		}
	case "drop":
		each(func(c *conn) { c.drop() })
		st.done = func() bool { return true }
	case "pause":
		each(func(c *conn) {
			c.paused = true
			c.untimed = true
			c.autoRedial = false
			c.sending = false
			if c.fd >= 0 {
				c.setEvents(len(c.wpend) > 0)
			}
		})
		st.done = func() bool { return true }
	case "resume":
		each(func(c *conn) {
			c.paused = false
			c.autoRedial = true
			if c.fd >= 0 {
				c.setEvents(len(c.wpend) > 0)
			} else {
				c.attempts = 0
				l.dials = append(l.dials, c)
				l.dialAt, l.dialGap = l.now, 0
			}
		})
		st.done = func() bool { return true }
	case "groups":
		for _, u := range l.e.units {
			if u.conns[0].l != l || u.group != 0 {
				continue
			}
			// The create takes the admin's next msg id from its session,
			// which resends it like a message; its place among the
			// messages' states is settled from the start.
			admin := u.conns[0]
			u.groupReq = admin.sess.Queue()
			admin.out = append(admin.out, msgState{accepted: true, settled: true})
			admin.pump()
		}
		st.done = func() bool {
			for _, u := range l.e.units {
				if u.conns[0].l == l && u.group == 0 {
					return false
				}
			}
			return true
		}
	default:
		finish(fmt.Errorf("unknown step %q", s.Kind))
		return
	}
	l.step = st
}

func indexIn(c *conn) int {
	for i, x := range c.unit.conns {
		if x == c {
			return i
		}
	}
	return -1
}

// stopTraffic ends the current traffic step's sending.
func (l *loop) stopTraffic() {
	for _, c := range l.traffic.senders {
		c.sending = false
		c.quota = 0
	}
	l.traffic = traffic{}
	l.blocked = l.blocked[:0]
}

// failure records a correctness failure. Loop-only.
func (l *loop) failure(msg string) {
	l.prog.failures.Add(1)
	// The first few of each loop say what went wrong; the counts say how often.
	if len(l.res.Failures) < maxFailureLines {
		l.res.Failures = append(l.res.Failures, msg)
	}
	l.failureCount++
}

// maxFailureLines bounds the failure messages kept per loop: the first
// ones explain, the counts measure.
const maxFailureLines = 20

// counters is a live snapshot of a process's progress.
type counters struct {
	Ready     int64  `json:"ready"`
	Logins    uint64 `json:"logins"`
	Sent      uint64 `json:"sent"`
	Delivered uint64 `json:"delivered"`
	Failures  uint64 `json:"failures"`
	Pending   int64  `json:"pending"`
	// Unreceipted is the copies delivered whose delivered receipt has not
	// come back yet.
	Unreceipted int64 `json:"unreceipted"`
	// GroupsApart is, in a cluster, the groups created whose home node
	// (home.Of of the group id, which the server derives) homes none of
	// their members: each of their messages goes to another node and back.
	GroupsApart uint64 `json:"groups_apart,omitempty"`
	// CPU is the process's CPU time so far (user and system).
	CPU time.Duration `json:"cpu_ns"`
}

func (c *counters) add(o counters) {
	c.Ready += o.Ready
	c.Logins += o.Logins
	c.Sent += o.Sent
	c.Delivered += o.Delivered
	c.Failures += o.Failures
	c.Pending += o.Pending
	c.Unreceipted += o.Unreceipted
	c.GroupsApart += o.GroupsApart
	c.CPU += o.CPU
}

func (e *engine) progress() counters {
	c := counters{CPU: selfCPU()}
	for _, l := range e.loops {
		c.add(counters{
			Ready: l.prog.ready.Load(), Logins: l.prog.logins.Load(), Sent: l.prog.sent.Load(),
			Delivered: l.prog.delivered.Load(), Failures: l.prog.failures.Load(), Pending: l.prog.pending.Load(),
			Unreceipted: l.prog.unreceipted.Load(), GroupsApart: l.prog.groupsApart.Load(),
		})
	}
	return c
}

// collect returns what the loops measured since the last collect, with the
// losses found now: accepted messages not delivered to every recipient, and
// delivered copies without their delivered receipt.
func (e *engine) collect() *Result {
	r := newResult()
	var mu sync.Mutex
	var wg sync.WaitGroup
	var staleSum, uncheckedSum, readSum uint64
	for _, l := range e.loops {
		wg.Add(1)
		l.submit(func() {
			defer wg.Done()
			lr := l.res
			l.countLosses(lr)
			if l.failureCount > uint64(maxFailureLines) {
				lr.FailuresNotListed += l.failureCount - maxFailureLines
			}
			unchecked := l.checkReceipts(lr)
			stale, read := l.stale, l.readReceipts
			conns := 0
			for _, c := range l.conns {
				if c.state == stateReady {
					conns++
				}
			}
			mu.Lock()
			r.Merge(lr)
			r.Conns += conns
			staleSum += stale
			uncheckedSum += unchecked
			readSum += read
			mu.Unlock()
			l.res = newResult()
			l.failureCount, l.stale, l.readReceipts = 0, 0, 0
		})
	}
	wg.Wait()
	if staleSum > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d entries of earlier runs (messages, receipts) were waiting in the mailboxes; acknowledged and ignored", staleSum))
	}
	if uncheckedSum > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d delivered messages were still without their delivered receipt when counted, not as missing: no drain waited for receipts since the previous count, or a member of their pair or group was logged out or held unacknowledged entries", uncheckedSum))
	}
	if readSum > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d read receipts arrived, though the bench sends no READ; not counted as delivered receipts", readSum))
	}
	r.Processes = 1
	return r
}
