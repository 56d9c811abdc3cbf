package bench

import (
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"switchboard/client"
	"switchboard/protocol"
)

// loop is one event loop of the generator: an epoll set over its
// connections and an eventfd to take commands; epoll_pwait2's nanosecond
// timeout wakes it for its schedules.
// One goroutine runs it, and everything in it but the fields marked atomic
// is owned by that goroutine: the connections, their correctness state and
// the histograms. The units of a run (a pair, a group) live on one loop, so
// a receiver checks its sender's state without a lock.
type loop struct {
	// Immutable after construction.
	e     *engine
	id    int
	epfd  int
	evfd  int // eventfd: commands are waiting
	conns []*conn
	users map[uint64]*conn // every user of the loop, for receivers' lookups
	// The loop's own socket addresses: a unix.Sockaddr caches its raw
	// form when used, so loops must not share one.
	servers []unix.Sockaddr // engine.servers', by index
	source  unix.Sockaddr   // nil: the kernel chooses

	// cmds carries work from the engine goroutine to the loop (which runs
	// it between epoll waits). Bound: one command per step per loop; the
	// engine waits for each step, so it never fills.
	cmds chan func()

	// Owned by the loop.
	now      int64 // ns since the engine started, as of the last wake
	noPwait2 bool  // the kernel lacks epoll_pwait2: millisecond timeouts
	rbuf     []byte
	body     []byte // the message body template, patched per send
	tok      []byte
	sbuf     []byte    // Noise: the transport messages sealed for one connection's write
	dirty    []*conn   // connections with bytes in obuf to write at the end of the iteration
	acks     []*conn   // connections with an ACK due, in order of due time
	blocked  []*conn   // closed-loop senders held back by the per-connection frame cap
	wakes    wakeQueue // sessions with a send due later (a hold, a retry_after), earliest first
	dials    []*conn   // connections to dial, in order
	dialNext int       // index into dials of the next to dial
	dialGap  int64     // ns between dials; 0: all at once
	dialAt   int64     // when dials[dialNext] is due
	step     *loopStep
	traffic  traffic
	rr       int // round-robin cursor over traffic.senders
	quit     bool

	// Correctness and step bookkeeping.
	pending      int    // messages sent and not yet delivered to every recipient (or refused for good)
	unaccepted   int    // messages sent and not yet accepted (or refused for good)
	unreceipted  int    // copies delivered whose delivered receipt has not come back
	receiptsDue  bool   // a drain waited for receipts since the last collect: the missing ones are failures
	readReceipts uint64 // read receipts received (the bench sends no READ), since the last collect
	waiting      int    // connections the connect step still waits for
	waitDrain    bool   // the connect step waits for backlogs too
	gaveUp       int    // connections that could not log in
	stale        uint64 // messages of earlier runs found in mailboxes
	lastEntry    int64  // when a mailbox entry last arrived
	failureCount uint64 // failures, counted beyond the lines kept

	res  *Result // counts and histograms since the last collect
	prog progress

	// measureFrom: latencies are recorded for messages due at or after it
	// (the end of a traffic step's warm-up; 0: all). warming: the warm-up
	// is not over, and res's counts are not yet copied into its Warmup ones.
	measureFrom int64
	warming     bool
}

// progress is the loop's live counters, read by the engine's progress
// reports while the loop runs.
type progress struct {
	ready     atomic.Int64  // connections logged in now
	logins    atomic.Uint64 // logins completed
	sent      atomic.Uint64
	delivered atomic.Uint64
	failures  atomic.Uint64
	pending   atomic.Int64 // messages sent and not yet delivered to every recipient
	// unreceipted is loop.unreceipted, stored once per iteration (it
	// changes per message; the progress line needs no more).
	unreceipted atomic.Int64
	// groupsApart counts, in a cluster, the groups created on this loop
	// whose home node (that of the group id) homes none of their members.
	groupsApart atomic.Uint64
}

// Epoll data: Pad holds the connection's index in loop.conns, or padEvent.
const padEvent = -1

// Sizes and intervals of the loop.
const (
	// readBufLen holds the largest frame a server sends twice over, so a
	// partial frame left at the end of a read always fits before the next.
	readBufLen = 2 * (protocol.MaxServerFrame + protocol.MaxFrameHeader)
	// ackDelay coalesces a receiver's ACKs: at most one per 5 ms, or one
	// per ackEvery entries, keeps frames well under the server's per-
	// connection rate limit without holding its 256-entry window.
	ackDelay = 5 * time.Millisecond
	ackEvery = 64
	// minBackoff and maxBackoff bound the sessions' reconnect ceilings,
	// below the protocol's 1 s and 60 s: the bench reconnects its own
	// server within a run's seconds, and the full jitter still spreads
	// thousands of reconnects over the first 200 ms.
	minBackoff = 200 * time.Millisecond
	maxBackoff = 5 * time.Second
	// housekeeping is how often the loop checks timeouts and keepalives.
	housekeeping = 100 * time.Millisecond
	// maxSendsPerWake bounds the open-loop catch-up of one iteration so a
	// late loop still reads between bursts of sends.
	maxSendsPerWake = 2048
)

// sessionConfig is every connection's client.Session: ACKs coalesced as
// above, reconnects backed off as above.
var sessionConfig = client.Config{AckEvery: ackEvery, AckDelay: ackDelay, MinBackoff: minBackoff, MaxBackoff: maxBackoff}

func newLoop(e *engine, id int) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("bench: epoll_create: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("bench: eventfd: %w", err)
	}
	l := &loop{
		e: e, id: id, epfd: epfd, evfd: evfd,
		users: map[uint64]*conn{},
		cmds:  make(chan func(), 16),
		rbuf:  make([]byte, readBufLen),
		res:   newResult(),
	}
	for _, ap := range e.servers {
		l.servers = append(l.servers, sockaddr(ap))
	}
	if e.source.IsValid() {
		l.source = sockaddr(netip.AddrPortFrom(e.source, 0))
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(evfd), Pad: padEvent}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		l.closeFDs()
		return nil, fmt.Errorf("bench: epoll_ctl: %w", err)
	}
	l.body = make([]byte, e.spec.Size)
	for i := bodyHeaderLen; i < len(l.body); i++ {
		l.body[i] = byte('a' + i%26) // compressible like text, not all zeros
	}
	return l, nil
}

func (l *loop) closeFDs() {
	unix.Close(l.epfd)
	unix.Close(l.evfd)
}

// submit runs fn on the loop. Any goroutine may call it.
func (l *loop) submit(fn func()) {
	l.cmds <- fn
	var one = [8]byte{1}
	unix.Write(l.evfd, one[:])
}

func (l *loop) clock() int64 { return int64(time.Since(l.e.t0)) }

// run is the loop's goroutine.
func (l *loop) run() {
	defer l.closeFDs()
	events := make([]unix.EpollEvent, 512)
	l.now = l.clock()
	nextHouse := l.now
	for !l.quit {
		if l.now >= nextHouse {
			l.housekeep()
			nextHouse = l.now + int64(housekeeping)
		}
		l.timers()
		l.flush()
		l.prog.unreceipted.Store(int64(l.unreceipted))
		l.checkStep()
		if l.quit {
			break
		}
		n, err := l.wait(events, l.next(nextHouse)-l.clock())
		l.now = l.clock()
		if err != nil && !errors.Is(err, unix.EINTR) {
			l.e.fatal(fmt.Errorf("bench: epoll_wait: %w", err))
			return
		}
		for i := 0; i < n; i++ {
			ev := &events[i]
			switch ev.Pad {
			case padEvent:
				var b [8]byte
				unix.Read(l.evfd, b[:])
				l.runCmds()
			default:
				c := l.conns[ev.Pad]
				if c.fd != int(ev.Fd) {
					continue // closed (and maybe reopened) earlier in this batch
				}
				l.event(c, ev.Events)
			}
		}
	}
	for _, c := range l.conns {
		if c.fd >= 0 {
			c.closeFD()
		}
	}
}

func (l *loop) runCmds() {
	for {
		select {
		case fn := <-l.cmds:
			fn()
		default:
			return
		}
	}
}

// next returns the earliest deadline the loop has.
func (l *loop) next(house int64) int64 {
	next := house
	if l.dialNext < len(l.dials) {
		next = min(next, l.dialAt)
	}
	if len(l.acks) > 0 {
		next = min(next, l.acks[0].ackDue)
	}
	if t := &l.traffic; t.active && t.rate > 0 {
		// No slot is due after the deadline: wake for the deadline itself,
		// and in the phone regime for the end of its catch-up time.
		switch due := t.due(); {
		case t.deadline == 0 || due < t.deadline:
			next = min(next, max(due, t.blockedUntil))
		case l.now < t.deadline:
			next = min(next, t.deadline)
		case t.phone:
			next = min(next, t.deadline+t.catchUp)
		}
	}
	if at, ok := l.wakes.next(); ok {
		next = min(next, at)
	}
	if l.warming {
		next = min(next, l.measureFrom)
	}
	return next
}

// wait waits for events, at most timeout ns. epoll_pwait2 takes the
// timeout in nanoseconds, so an open-loop send goes out on time, not up to
// a millisecond late; kernels before 5.11 lack it and get epoll_wait.
func (l *loop) wait(events []unix.EpollEvent, timeout int64) (int, error) {
	timeout = max(timeout, 0)
	if !l.noPwait2 {
		ts := unix.NsecToTimespec(timeout)
		n, _, errno := unix.Syscall6(unix.SYS_EPOLL_PWAIT2, uintptr(l.epfd),
			uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(unsafe.Pointer(&ts)), 0, 0)
		if errno != unix.ENOSYS {
			if errno != 0 {
				return 0, errno
			}
			return int(n), nil
		}
		l.noPwait2 = true
	}
	return unix.EpollWait(l.epfd, events, int((timeout+999_999)/1_000_000))
}

// timers does what is due: dials, ACKs, open-loop sends, the sessions'
// sends after a hold or a retry_after.
func (l *loop) timers() {
	now := l.now
	for l.dialNext < len(l.dials) && l.dialAt <= now {
		c := l.dials[l.dialNext]
		l.dials[l.dialNext] = nil
		l.dialNext++
		l.dialAt += l.dialGap
		c.dial()
	}
	if l.dialNext == len(l.dials) && len(l.dials) > 0 {
		l.dials, l.dialNext = l.dials[:0], 0
	}
	n := 0
	for n < len(l.acks) && l.acks[n].ackDue <= now {
		l.acks[n].sendAck()
		l.acks[n] = nil
		n++
	}
	if n > 0 {
		l.acks = append(l.acks[:0], l.acks[n:]...)
	}
	for at, ok := l.wakes.next(); ok && at <= now; at, ok = l.wakes.next() {
		w := l.wakes.pop()
		if w.c.wakeAt == w.at {
			w.c.wakeAt = 0
			w.c.pump()
		}
	}
	if l.warming && now >= l.measureFrom {
		l.warming = false
		l.res.WarmupSent, l.res.WarmupAccepted, l.res.WarmupDelivered = l.res.Sent, l.res.Accepted, l.res.Delivered
	}
	l.traffic.tick(l)
}

// housekeep runs every 100 ms: handshake timeouts, keepalives, and the
// closed-loop senders the frame cap held back.
func (l *loop) housekeep() {
	now := l.now
	hs := int64(l.e.spec.HandshakeTimeout)
	for _, c := range l.conns {
		switch {
		case c.state == stateConnecting || c.state == stateHandshake:
			if now-c.dialStart > hs {
				c.fail("login timed out after " + l.e.spec.HandshakeTimeout.String())
			}
		case c.state == stateReady && c.ping > 0 && now-c.lastWrite > c.ping/2:
			c.obuf = protocol.AppendPing(c.obuf)
			c.wrote()
		case c.state == stateClosed && c.reconnectAt > 0 && now >= c.reconnectAt:
			c.reconnectAt = 0
			c.dial()
		}
	}
	if len(l.blocked) > 0 {
		b := l.blocked
		l.blocked = nil
		for _, c := range b {
			c.blockedCap = false
			c.pump()
			c.fillWindow()
		}
	}
}

// event handles epoll events of c.
func (l *loop) event(c *conn, ev uint32) {
	if c.state == stateConnecting {
		if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			c.connected()
		}
		return
	}
	if ev&unix.EPOLLOUT != 0 && len(c.wpend) > 0 {
		c.writePending()
		if c.fd < 0 {
			return
		}
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		if c.paused {
			c.closedUnread()
			return
		}
		c.readAll()
	}
}

// flush writes what each dirty connection has in obuf.
func (l *loop) flush() {
	for i, c := range l.dirty {
		l.dirty[i] = nil
		c.isDirty = false
		if c.fd >= 0 && len(c.obuf) > 0 {
			c.writeFrames(c.obuf)
		}
		if cap(c.obuf) > 4<<10 {
			c.obuf = nil // an idle connection keeps no large buffer
		} else {
			c.obuf = c.obuf[:0]
		}
	}
	l.dirty = l.dirty[:0]
}

// sockaddr returns the server's address.
func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// loopStep is a step's part on one loop: done reports when it is finished.
type loopStep struct {
	done     func() bool
	deadline int64 // 0: none
	finish   func(err error)
}

// checkStep finishes the current step when it is done or out of time.
func (l *loop) checkStep() {
	s := l.step
	if s == nil {
		return
	}
	if s.done() {
		l.step = nil
		s.finish(nil)
		return
	}
	if s.deadline > 0 && l.now > s.deadline {
		l.step = nil
		s.finish(errStepTimeout)
	}
}

var errStepTimeout = errors.New("timed out")
