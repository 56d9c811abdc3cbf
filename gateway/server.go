package gateway

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"switchboard/delivery"
	"switchboard/protocol"
)

// Server is the network side of Switchboard: gnet event loops that parse
// frames, verify logins, keep time, and write what the router pushes.
type Server struct {
	gnet.BuiltinEventEngine

	// Immutable after construction.
	cfg       Config
	delivery  atomic.Pointer[Delivery] // the router; replaced only by a failed handover (Rebind)
	sessions  sessionTable             // session ids to connections (sessions.go)
	start     time.Time
	codec     *protocol.Codec // the dictionary offered at login; nil: none
	fileLimit int             // the open-file limit the cap keeps under
	rate      rateLimit       // the per-connection frame rate limit (rate.go)
	// preLoginShare is each loop's share of Config.MaxPreLogin (admit.go).
	preLoginShare int
	// hsJobs carries the first step of each Noise handshake to the
	// handshake workers (it holds Config.MaxHandshakes), hsLater its later
	// steps, which the workers take first. hsStop ends the workers.
	hsJobs, hsLater chan hsJob
	hsStop          chan struct{}

	// Set once by OnBoot.
	eng    gnet.Engine
	addr   net.Addr
	booted chan struct{}
	// ticked is closed by the first OnTick, which gnet calls only once
	// every loop is registered: Adopt waits for it before it registers
	// connections with the engine.
	ticked     chan struct{}
	tickedOnce sync.Once

	mu    sync.Mutex
	loops map[gnet.EventLoop]*loop // guarded by mu; a loop is added on its first connection

	conns       atomic.Int64
	stopping    atomic.Bool
	paused      atomic.Bool  // a handover is under way (handover.go)
	reserved    atomic.Int64 // places in conns held for Config.Inherited, until Adopt
	countFailed atomic.Bool  // a count of open files failed and was logged
	stats       Stats
	live        live // connections by state, bytes queued (gauges.go)

	// panicHook, when set (by tests), is called at each per-connection
	// point ("open", "check", "close", "goaway") and may panic. nil in
	// production: one atomic load.
	panicHook atomic.Pointer[func(point string, user uint64)]
}

// Stats are the server's counters and gauges. Every field is atomic.
type Stats struct {
	// ConnCap is the connection cap in force: the open-file limit minus
	// FDReserve, or Config.MaxConns when that is lower. A gauge, set by New
	// and then once a second.
	ConnCap atomic.Int64
	// FDReserve is the descriptors kept for everything but connections:
	// those open besides connections when last counted, plus headroom
	// (filelimit.go). A gauge, set with ConnCap.
	FDReserve atomic.Int64

	Accepted  atomic.Uint64 // connections opened
	Refused   atomic.Uint64 // connections refused at the cap or while stopping
	Logins    atomic.Uint64 // successful logins
	FramesIn  atomic.Uint64
	FramesOut atomic.Uint64
	BytesOut  atomic.Uint64
	OverRate  atomic.Uint64 // frames over the rate limit: SENDs and GROUPs refused, SIGNALs dropped, others served
	// PreLoginEvicted counts connections closed before login to make room
	// for a newer one (admit.go).
	PreLoginEvicted atomic.Uint64
	Panics          atomic.Uint64 // panics while handling one connection, in any callback or check (it was closed)
	// Noise transport (noise.go).
	Handshakes         atomic.Uint64 // Noise handshakes completed
	HandshakesFailed   atomic.Uint64 // Noise handshakes that failed (a message that did not verify)
	HandshakesRefused  atomic.Uint64 // Noise handshakes refused at Config.MaxHandshakes (GOAWAY RETRY_LATER)
	NoiseFrameTooLarge atomic.Uint64 // frames too large for a transport message: the connection was closed
	WakeErrors         atomic.Uint64
	Adopted            atomic.Uint64 // connections adopted from another process (handover.go)
	// Closes counts closed connections by the code they were closed with;
	// index 0 counts closes by the peer (or with no code).
	Closes [64]atomic.Uint64
}

// New returns a server that routes through r. Run starts it. It counts the
// files the process holds (the store should be open by now) and fails with
// ErrFileLimit when the open-file limit cannot hold them with
// Config.MaxConns connections (see filelimit.go).
func New(cfg Config, r Delivery) (*Server, error) {
	limit, err := openFileLimit()
	if err != nil {
		return nil, err
	}
	return newServer(cfg, r, limit)
}

// newServer is New under the open-file limit fileLimit.
func newServer(cfg Config, r Delivery, fileLimit int) (*Server, error) {
	cfg.setDefaults()
	errs := []error{cfg.validate()}
	var other int
	if cfg.Loops > 0 && cfg.FDHeadroom > 0 {
		open, err := cfg.OpenFiles()
		if err != nil {
			errs = append(errs, fmt.Errorf("gateway: counting open files: %w", err))
		} else {
			other = open - cfg.Inherited + engineFiles(cfg.Loops)
			errs = append(errs, checkFileLimit(&cfg, fileLimit, other))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, start: cfg.Now(), fileLimit: fileLimit, rate: newRateLimit(cfg.RateLimit, cfg.RateBurst), booted: make(chan struct{}), ticked: make(chan struct{}), loops: map[gnet.EventLoop]*loop{}}
	if !cfg.DisableCompression {
		s.codec, _ = protocol.Lookup(protocol.DictV1)
	}
	reserve := fileReserve(other, cfg.FDHeadroom)
	s.stats.FDReserve.Store(int64(reserve))
	connCap := fileCap(fileLimit, reserve, cfg.MaxConns)
	s.stats.ConnCap.Store(int64(connCap))
	maxPreLogin := cfg.MaxPreLogin
	if maxPreLogin == 0 {
		maxPreLogin = max(connCap/4, 64*cfg.Loops)
	}
	s.preLoginShare = max((maxPreLogin+cfg.Loops-1)/cfg.Loops, 1)
	s.delivery.Store(&r)
	// Connections about to be adopted hold their places from the start,
	// so that new ones cannot take them (Adopt).
	s.conns.Store(int64(cfg.Inherited))
	s.reserved.Store(int64(cfg.Inherited))
	if len(cfg.NoiseKeys) > 0 {
		// A later step is of a connection not logged in that had its
		// first step taken: there are at most MaxPreLogin of them, and
		// steps of ones evicted since wait at most MaxHandshakes more.
		s.hsJobs, s.hsLater = make(chan hsJob, cfg.MaxHandshakes), make(chan hsJob, cfg.MaxHandshakes+maxPreLogin)
		s.hsStop = make(chan struct{})
	}
	return s, nil
}

// router returns the router requests go to.
func (s *Server) router() Delivery { return *s.delivery.Load() }

// ErrAddrInUse means another process listens on the configured address.
var ErrAddrInUse = errors.New("gateway: address already in use by another process")

// Run listens and serves until Shutdown; it returns the engine's error.
func (s *Server) Run() error {
	if !s.cfg.Beside {
		if err := checkFree(s.cfg.Addr); err != nil {
			return err
		}
	}
	addr, fd, err := reservePort(s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("gateway: serving %s: %w", s.cfg.Addr, err)
	}
	if s.hsJobs != nil {
		for range s.cfg.HandshakeWorkers {
			go s.handshakes(s.hsJobs, s.hsLater, s.hsStop)
		}
		defer close(s.hsStop)
	}
	if fd >= 0 {
		defer unix.Close(fd)
	}
	err = gnet.Run(s, "tcp://"+addr,
		gnet.WithMulticore(true),
		gnet.WithNumEventLoop(s.cfg.Loops),
		gnet.WithReusePort(true),
		// The sockets accepted from a listener inherit its SO_REUSEADDR, and
		// so do their TIME_WAIT remains after a stop; without it on both
		// sides a restart could not bind for a minute (checkFree's plain
		// bind included), while a live listener still conflicts.
		gnet.WithReuseAddr(true),
		gnet.WithTicker(true),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogger(gnetLogger{s.cfg.Logger}),
	)
	if err != nil {
		return fmt.Errorf("gateway: serving %s: %w", s.cfg.Addr, err)
	}
	return nil
}

// checkFree fails with ErrAddrInUse when another socket listens on addr.
// The loops listen with SO_REUSEPORT, which would let a second server (say,
// one started by mistake beside a running one) silently share the port and
// its clients; one plain bind first tells. It sets SO_REUSEADDR (as
// net.Listen does), so the TIME_WAIT connections of a server that just
// stopped do not count, but a socket listening on addr does. Port 0 is
// always free.
func checkFree(addr string) error {
	if _, port, err := net.SplitHostPort(addr); err == nil && port == "0" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, unix.EADDRINUSE) {
		return fmt.Errorf("%w: %s", ErrAddrInUse, addr)
	}
	if err != nil {
		return fmt.Errorf("gateway: listening on %s: %w", addr, err)
	}
	return ln.Close()
}

// reservePort turns port 0 in addr into a free port that every loop can
// bind. gnet gives each loop its own SO_REUSEPORT listener, and with port 0
// each would draw its own ephemeral port: every loop but the one Addr
// reports would be unreachable. The port is held by a socket bound with
// SO_REUSEPORT that never listens (so it takes no connections); the caller
// closes fd when serving ends. With a fixed port, addr is returned as is
// and fd is -1.
func reservePort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port != "0" {
		return addr, -1, nil // gnet reports a malformed address
	}
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return "", -1, err
	}
	family := unix.AF_INET6
	var sa unix.Sockaddr = &unix.SockaddrInet6{}
	if ip4 := ta.IP.To4(); ip4 != nil || ta.IP == nil {
		family = unix.AF_INET
		in4 := &unix.SockaddrInet4{}
		copy(in4.Addr[:], ip4)
		sa = in4
	} else {
		copy(sa.(*unix.SockaddrInet6).Addr[:], ta.IP.To16())
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", -1, fmt.Errorf("reserving a port: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		unix.Close(fd)
		return "", -1, fmt.Errorf("reserving a port: %w", err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return "", -1, fmt.Errorf("reserving a port: %w", err)
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return "", -1, fmt.Errorf("reserving a port: %w", err)
	}
	var p int
	switch got := got.(type) {
	case *unix.SockaddrInet4:
		p = got.Port
	case *unix.SockaddrInet6:
		p = got.Port
	}
	return net.JoinHostPort(host, strconv.Itoa(p)), fd, nil
}

// Addr waits until the server listens and returns its address (useful with
// port 0).
func (s *Server) Addr(ctx context.Context) (net.Addr, error) {
	select {
	case <-s.booted:
		return s.addr, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Stats returns the server's counters.
func (s *Server) Stats() *Stats { return &s.stats }

// Conns returns the number of open connections.
func (s *Server) Conns() int { return int(s.conns.Load()) }

// OnBoot implements gnet.EventHandler.
func (s *Server) OnBoot(eng gnet.Engine) gnet.Action {
	s.eng = eng
	if fd, err := eng.Dup(); err == nil {
		if sa, err := unix.Getsockname(fd); err == nil {
			if in4, ok := sa.(*unix.SockaddrInet4); ok {
				s.addr = &net.TCPAddr{IP: net.IP(in4.Addr[:]), Port: in4.Port}
			} else if in6, ok := sa.(*unix.SockaddrInet6); ok {
				s.addr = &net.TCPAddr{IP: net.IP(in6.Addr[:]), Port: in6.Port}
			}
		}
		unix.Close(fd)
	}
	close(s.booted)
	return gnet.None
}

// now returns seconds since the server started: the loops' clock.
func (s *Server) now() uint32 { return uint32(s.cfg.Now().Sub(s.start)/time.Second) + 1 }

// second returns the first loop second whose tick comes at or after t
// (now() rounds down, this rounds up), saturating: a deadline of t is then
// never enforced early.
func (s *Server) second(t time.Time) uint32 {
	d := t.Sub(s.start)
	if d <= 0 {
		return 1
	}
	n := (d + time.Second - 1) / time.Second
	return uint32(min(n+1, math.MaxUint32))
}

// OnOpen implements gnet.EventHandler. It refuses a connection over the cap
// in force (Stats.ConnCap) with SERVER_FULL, so accept never runs the
// process out of descriptors.
func (s *Server) OnOpen(gc gnet.Conn) (out []byte, action gnet.Action) {
	defer func() {
		if p := recover(); p != nil {
			s.panicked("OnOpen", 0, p)
			if gc.Context() == nil {
				s.conns.Add(-1) // OnClose will not count this one out
			}
			out, action = nil, gnet.Close
		}
	}()
	if a, ok := gc.Context().(*adoption); ok {
		s.adoptOpen(gc, a) // always: it was open before, and counted then
		return nil, gnet.None
	}
	if n := s.conns.Add(1); s.stopping.Load() || n > s.stats.ConnCap.Load() {
		s.conns.Add(-1) // counted first, so two loops cannot both take the last place
		s.stats.Refused.Add(1)
		e := protocol.Error{Code: protocol.CodeServerFull, Reason: fmt.Sprintf("at the connection cap of %d", s.stats.ConnCap.Load())}
		if s.stopping.Load() {
			e = protocol.Error{Code: protocol.CodeShuttingDown, Reason: "server shutting down"}
		}
		if s.paused.Load() {
			g := protocol.GoAway{After: handoverRetry, Code: protocol.CodeRetryLater}
			return g.Append(nil), gnet.Close
		}
		s.cfg.Logger.Debug("gateway: connection refused", "code", e.Code.String(), "reason", e.Reason)
		return appendError(nil, e), gnet.Close
	}
	s.stats.Accepted.Add(1)
	l := s.loopOf(gc.EventLoop())
	s.hook("open", 0)
	c := &conn{gc: gc, loop: l, lastRecv: l.wheel.now}
	gc.SetContext(c)
	s.sessions.add(c, gc.Fd())
	l.admit(c)
	return nil, gnet.None
}

// OnClose implements gnet.EventHandler.
func (s *Server) OnClose(gc gnet.Conn, err error) gnet.Action {
	c, ok := gc.Context().(*conn)
	if !ok {
		return gnet.None
	}
	defer func() {
		if p := recover(); p != nil {
			s.panicked("OnClose", c.user, p)
		}
	}()
	s.conns.Add(-1)
	c.loop.wheel.remove(c)
	c.loop.forgetSecure(c)
	if c.has(carrying) {
		delete(c.loop.carry, c)
	}
	if c.state < stateJoining {
		c.loop.preLogin--
	}
	c.markClosed()
	s.live.closed(c.state >= stateJoining)
	if !c.has(detached) {
		s.stats.Closes[min(int(c.closeCode), len(s.stats.Closes)-1)].Add(1)
	}
	reason := reasonPeerClosed
	if l := c.loop; l.closedConn == c {
		reason = l.closedWhy
		l.closedConn, l.closedWhy = nil, ""
	} else if err != nil {
		reason = err.Error()
	}
	if c.has(detached) {
		s.sessions.remove(c, gc.Fd())
		return gnet.None // it lives on in another process
	}
	s.logClose(c, reason)
	s.hook("close", c.user)
	if c.state >= stateJoining {
		s.router().Logout(c.session(), delivery.To(c.user))
	}
	s.sessions.remove(c, gc.Fd())
	return gnet.None
}

// OnTraffic implements gnet.EventHandler: it runs when bytes arrive and when
// a worker woke the connection to write what it pushed.
func (s *Server) OnTraffic(gc gnet.Conn) (action gnet.Action) {
	c := gc.Context().(*conn)
	defer func() {
		if p := recover(); p != nil {
			s.panicked("OnTraffic", c.user, p)
			// The peer is told why, like any other close. The scratch buffer
			// may hold half an encoding: drop it.
			c.loop.wbuf = c.loop.wbuf[:0]
			action = c.loop.fail(c, c.loop.reject(protocol.CodeInternal, reasonPanic))
		}
	}()
	return c.loop.serve(c)
}

// panicked counts and logs, once and with its stack, a panic recovered in
// a per-connection path; the caller closes that connection.
func (s *Server) panicked(where string, user uint64, p any) {
	s.stats.Panics.Add(1)
	s.cfg.Logger.Error("gateway: panic handling a connection; closing it", "in", where, "user", user, "panic", p, "stack", string(debug.Stack()))
}

// hook calls the test hook at point, if one is set.
func (s *Server) hook(point string, user uint64) {
	if h := s.panicHook.Load(); h != nil {
		(*h)(point, user)
	}
}

// OnTick implements gnet.EventHandler. It runs on its own goroutine, once a
// second from the engine's start: it counts the open files to set the
// connection cap, and asks each loop to advance its wheel on the loop
// itself.
func (s *Server) OnTick() (time.Duration, gnet.Action) {
	s.tickedOnce.Do(func() { close(s.ticked) })
	s.updateCap()
	s.mu.Lock()
	for el, l := range s.loops {
		_ = el.Execute(context.Background(), l.tickFn)
	}
	s.mu.Unlock()
	return time.Second, gnet.None
}

func (s *Server) loopOf(el gnet.EventLoop) *loop {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.loops[el]
	if !ok {
		l = newLoop(s, el)
		s.loops[el] = l
	}
	return l
}

// ErrShutdownTimeout means Shutdown gave up on a step that did not finish
// within Config.ShutdownTimeout (or the caller's deadline); the log names it.
var ErrShutdownTimeout = errors.New("gateway: shutdown deadline passed")

// Drain is the first half of a graceful stop: from now on the server
// refuses new connections (ERROR SHUTTING_DOWN) and reads no more frames,
// so no new request reaches the router, while what the router pushes is
// still written. The owner of the process then stops the router, whose
// commits in flight queue their ACCEPTs, and calls Shutdown, which writes
// them before the GOAWAYs. Drain returns at once; calling it again does
// nothing.
func (s *Server) Drain() { s.stopping.Store(true) }

// Draining reports whether Drain or Shutdown was called.
func (s *Server) Draining() bool { return s.stopping.Load() }

// Shutdown stops the server gracefully: it drains (see Drain), then on
// every loop writes what is queued and a GOAWAY and closes each connection,
// and stops the engine. It stops nothing but the gateway: the caller stops
// the router before it (after Drain, so the ACCEPTs of commits in flight go
// out before the GOAWAYs) and closes the store after it.
//
// It returns within Config.ShutdownTimeout, or ctx's deadline if sooner,
// whatever hangs. A step not done by then is logged, left running, and
// reported as ErrShutdownTimeout; Run may then not have returned.
func (s *Server) Shutdown(ctx context.Context) error {
	select {
	case <-s.booted:
	default:
		return errors.New("gateway: shutdown before the server started")
	}
	// Wall time, not Config.Now: the deadline bounds real waiting.
	deadline := time.Now().Add(s.cfg.ShutdownTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	log := s.cfg.Logger
	var gaveUp []string

	s.Drain()
	g := s.shutdownGoAway()
	s.mu.Lock()
	var pending atomic.Int64
	done := make(chan struct{})
	finish := func() {
		if pending.Add(-1) == 0 {
			close(done)
		}
	}
	pending.Store(int64(len(s.loops)) + 1)
	for el, l := range s.loops {
		err := el.Execute(ctx, gnet.RunnableFunc(func(context.Context) error {
			defer finish()
			l.goAway(g)
			return nil
		}))
		if err != nil {
			finish()
		}
	}
	s.mu.Unlock()
	finish()
	select {
	case <-done:
	case <-ctx.Done():
		n := pending.Load()
		log.Error("gateway: shutdown gave up waiting for event loops to send GOAWAY and close their connections", "loops", n)
		gaveUp = append(gaveUp, fmt.Sprintf("event loops (%d)", n))
	}
	if err := s.eng.Stop(ctx); err != nil {
		if ctx.Err() == nil || !errors.Is(err, ctx.Err()) {
			return fmt.Errorf("gateway: stopping the engine: %w", err)
		}
		log.Error("gateway: shutdown gave up waiting for the engine to stop")
		gaveUp = append(gaveUp, "engine")
	}
	if len(gaveUp) > 0 {
		return fmt.Errorf("%w: gave up on %s", ErrShutdownTimeout, strings.Join(gaveUp, ", "))
	}
	return nil
}
