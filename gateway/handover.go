package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"switchboard/delivery"
	"switchboard/handover"
	"switchboard/noise"
	"switchboard/protocol"
)

// Handing connections to another process (package handover has the
// exchange). The old process's owner calls, in order: Pause (no more
// reading, new connections told to come back), then stops its router with
// Finish, then Flush (every answer written and sent), then Detach (each
// connection leaves the event loops as a record and a copy of its socket).
// The new process calls Adopt with those, after its router started. If the
// new process fails before it commits, the old one calls Rebind with a new
// router, Adopt with its own records, and Unpause.

// handoverRetry is the GOAWAY delay, in ms, for a connection that opens
// while the server pauses for a handover: the new process listens within
// about that.
const handoverRetry = 1000

// adoption is the gnet context of a connection being adopted, until
// OnOpen replaces it with the conn.
type adoption struct{ rec *handover.Conn }

// Pause starts a handover: from now on the server reads no more frames (so
// no new request reaches the router) and answers new connections with
// GOAWAY RETRY_LATER. What the router pushes is still written. Unpause
// undoes it.
func (s *Server) Pause() {
	s.paused.Store(true)
	s.stopping.Store(true)
}

// Unpause resumes reading after a handover that did not happen, and wakes
// every connection so that what arrived meanwhile is read.
func (s *Server) Unpause() {
	s.paused.Store(false)
	s.stopping.Store(false)
	s.eachLoop(context.Background(), func(l *loop) {
		l.wheel.each(func(c *conn) { c.wake() })
	})
}

// Rebind makes r the router requests go to. Only while no connection is
// served: after Detach, before Adopt.
func (s *Server) Rebind(r Delivery) { s.delivery.Store(&r) }

// Flush writes what is queued for every connection, and waits until gnet
// has handed every byte to the kernel, or ctx ends. It returns how many
// connections still hold unsent bytes (Detach lets those go), as its last
// pass over every loop counted them; when ctx ended before one, as the
// loops it reached counted them.
func (s *Server) Flush(ctx context.Context) int {
	last := -1 // the last pass over every loop
	for {
		var mu sync.Mutex
		waiting := 0
		every := s.eachLoop(ctx, func(l *loop) {
			n := 0
			l.wheel.each(func(c *conn) {
				if c.state != stateHandshake {
					l.flush(c)
				}
				if c.gc.OutboundBuffered() > 0 {
					n++
				}
			})
			mu.Lock()
			waiting += n
			mu.Unlock()
		})
		if every {
			last = waiting
			if waiting == 0 {
				return 0
			}
		}
		select {
		case <-ctx.Done():
			// Not another pass: with ctx ended, it would count nothing.
			if last < 0 {
				return waiting
			}
			return last
		case <-time.After(10 * time.Millisecond): // the kernel drains the sockets
		}
	}
}

// Detach takes every connection off the event loops. Each that can carry
// on elsewhere becomes a record and a duplicate of its socket, which the
// caller owns; the loops close their own descriptor (the client sees
// nothing: the socket stays open through the duplicate). The others are
// closed, and their clients reconnect: a Noise handshake in progress, one
// with bytes gnet could not send, or one holding more unread bytes than a
// record carries. Call it after Pause and Flush.
func (s *Server) Detach(ctx context.Context) (recs []handover.Conn, fds []int, letGo int, err error) {
	var mu sync.Mutex
	var errs []error
	s.eachLoop(ctx, func(l *loop) {
		var all []*conn
		l.wheel.each(func(c *conn) { all = append(all, c) })
		for _, c := range all {
			rec, fd, err := l.detach(c)
			mu.Lock()
			switch {
			case err != nil:
				errs = append(errs, err)
				letGo++
			case fd < 0:
				letGo++
			default:
				recs, fds = append(recs, rec), append(fds, fd)
			}
			mu.Unlock()
		}
	})
	if ctx.Err() != nil {
		errs = append(errs, fmt.Errorf("gateway: detaching connections: %w", ctx.Err()))
	}
	return recs, fds, letGo, errors.Join(errs...)
}

// detach turns c into a record and a duplicate of its socket, and closes
// c on the loop; fd is -1 when c was closed instead. Loop-only.
func (l *loop) detach(c *conn) (rec handover.Conn, fd int, err error) {
	if code := l.flush(c); code != 0 {
		// The router asked for this close (REPLACED, a slow consumer):
		// it happens here, as it would have.
		l.closeNow(c, code)
		return rec, -1, nil
	}
	inbound := l.inbound(c)
	switch {
	case c.state == stateHandshake, c.gc.OutboundBuffered() > 0, len(inbound) > handover.MaxInbound:
		c.closeCode = uint8(protocol.CodeShuttingDown)
		l.reason, l.closedConn, l.closedWhy = "", c, "handover: the connection could not be handed over"
		_ = l.el.Close(c.gc)
		return rec, -1, nil
	}
	fd, err = unix.FcntlInt(uintptr(c.gc.Fd()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		_ = l.el.Close(c.gc)
		return rec, -1, fmt.Errorf("gateway: duplicating a connection's socket: %w", err)
	}
	rec = handover.Conn{State: c.state, Ping: c.ping, User: c.user, Delivered: c.delivered, Acked: c.acked}
	rec.Inbound = append([]byte(nil), inbound...)
	if c.expires != 0 {
		rec.Expires = l.srv.timeOf(c.expires).UnixMilli()
	}
	if c.has(dictOn) {
		rec.Flags |= handover.FlagDict
	}
	if c.has(noiseOn) {
		sec := l.secure[c]
		st := sec.sess.State()
		rec.Flags |= handover.FlagNoise
		rec.SendKey, rec.RecvKey, rec.SendN, rec.RecvN = st.SendKey, st.RecvKey, st.SendN, st.RecvN
		if sec.hs != nil {
			rec.Flags |= handover.FlagPeer
			rec.Peer = sec.hs.peer
		}
	}
	c.setFlag(detached, true)
	_ = l.el.Close(c.gc)
	return rec, fd, nil
}

// Adopt takes on connections another process handed over: fds[i] is
// recs[i]'s socket, and Adopt owns every descriptor. Each joins an event
// loop where its record left it: a logged-in one is resumed with the
// router (Delivery.Resume) without a new WELCOME, one that was joining
// logs in again, one before login waits for its LOGIN, and the bytes that
// had arrived unread are read first: the records' Inbound bytes are kept,
// and the caller must not reuse them. It returns how many it adopted.
func (s *Server) Adopt(ctx context.Context, recs []handover.Conn, fds []int) (int, error) {
	select {
	case <-s.ticked:
	case <-ctx.Done():
		closeAll(fds)
		return 0, ctx.Err()
	}
	// Each connection counts from now (or from New, for Config.Inherited),
	// and every one that is not adopted is counted out.
	s.conns.Add(int64(len(recs)) - s.reserved.Swap(0))
	var errs []error
	adopted := 0
	pending := make(chan (<-chan gnet.RegisteredResult), s.adoptInFlight())
	collect := func() error {
		select {
		case r := <-<-pending:
			if r.Err != nil {
				s.conns.Add(-1)
				errs = append(errs, fmt.Errorf("gateway: adopting a connection: %w", r.Err))
			} else {
				adopted++
			}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for i := range recs {
		if len(pending) == cap(pending) {
			if err := collect(); err != nil {
				closeAll(fds[i:])
				s.conns.Add(-int64(len(recs) - i))
				return adopted, errors.Join(append(errs, err)...)
			}
		}
		nc, err := fileConn(fds[i])
		if err != nil {
			s.conns.Add(-1)
			errs = append(errs, err)
			continue
		}
		rec := recs[i]
		ch, err := s.eng.Register(gnet.NewNetConnContext(gnet.NewContext(ctx, &adoption{rec: &rec}), nc))
		if err != nil {
			nc.Close()
			s.conns.Add(-1)
			errs = append(errs, fmt.Errorf("gateway: adopting a connection: %w", err))
			continue
		}
		pending <- ch
	}
	for len(pending) > 0 {
		if err := collect(); err != nil {
			return adopted, errors.Join(append(errs, err)...)
		}
	}
	return adopted, errors.Join(errs...)
}

// adoptInFlight is how many registrations Adopt keeps waiting at once.
// Each holds one more descriptor until gnet has its own copy, so they take
// at most half of the descriptors still free under the open-file limit
// (every connection received is open already), and at least a few: the
// reserve's headroom (Config.FDHeadroom) covers those. More in flight hide
// the loops' wake-ups: 256 adopt about 15% faster than 32.
func (s *Server) adoptInFlight() int {
	const least, most = 8, 256
	open, err := s.cfg.OpenFiles()
	if err != nil {
		return least
	}
	return min(max((s.fileLimit-open)/2, least), most)
}

// closeAll closes descriptors no one will adopt.
func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// fileConn makes a net.Conn of socket fd, taking fd.
func fileConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "handed-over")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("gateway: a handed-over socket: %w", err)
	}
	return nc, nil
}

// adoptOpen is OnOpen for a connection being adopted. Loop-only.
func (s *Server) adoptOpen(gc gnet.Conn, a *adoption) {
	rec := a.rec
	s.stats.Adopted.Add(1) // counted in conns by Adopt
	l := s.loopOf(gc.EventLoop())
	c := &conn{gc: gc, loop: l, lastRecv: l.wheel.now, state: rec.State, user: rec.User, delivered: rec.Delivered, acked: rec.Acked, ping: rec.Ping}
	c.rateAt = uint32(s.cfg.Now().Sub(s.start) / time.Microsecond) // a full bucket
	if rec.Expires != 0 {
		c.expires = s.second(time.UnixMilli(rec.Expires))
	}
	c.setFlag(dictOn, rec.Has(handover.FlagDict) && s.codec != nil)
	gc.SetContext(c)
	s.sessions.add(c, gc.Fd())
	if rec.Has(handover.FlagNoise) {
		sess, err := noise.Resume(noise.State{SendKey: rec.SendKey, RecvKey: rec.RecvKey, SendN: rec.SendN, RecvN: rec.RecvN})
		if err != nil { // 32-byte keys always make a cipher
			panic(err)
		}
		sec := &secure{sess: sess}
		if rec.Has(handover.FlagPeer) {
			sec.hs = &handshake{peer: rec.Peer}
		}
		l.secure[c] = sec
		c.setFlag(noiseOn, true)
	}
	if len(rec.Inbound) > 0 {
		l.carry[c] = rec.Inbound
		c.setFlag(carrying, true)
	}
	switch c.state {
	case statePreface, stateLogin:
		l.admit(c)
	case stateJoining:
		s.live.preLogin.Add(1)
		l.wheel.add(c, l.wheel.now+uint32(s.cfg.HandshakeTimeout/time.Second)+stampSlack)
		if !s.router().Login(c.session(), delivery.To(c.user), c.acked) {
			c.state = stateLogin // not registered: OnClose must not log it out
			l.preLogin++         // which OnClose counts out
			g := protocol.GoAway{After: busyLoginRetry, Code: protocol.CodeRetryLater}
			l.wbuf = g.Append(l.wbuf[:0])
			l.closeNow(c, l.reject(closeQuietly, reasonLoginBusy))
			return
		}
		s.live.login()
	default:
		s.live.preLogin.Add(1)
		s.live.login()
		l.wheel.add(c, c.lastRecv+uint32(c.ping)*3/2+stampSlack)
		if c.expires != 0 {
			l.checkBy(c, c.expires)
		}
		s.router().Resume(c.session(), delivery.To(c.user), c.acked, c.delivered)
	}
	if len(rec.Inbound) > 0 {
		c.wake() // read what was carried over: no event will say it is there
	}
}

// Carried bytes. A record's unread bytes cannot go back into gnet's
// buffer, so the loop keeps them in carry and read parses them before
// what gnet has. Only an adopted connection has any, until it reads them.

// inbound returns what c has to read: what was carried over, then what
// gnet buffered. Loop-only.
func (l *loop) inbound(c *conn) []byte {
	buf, _ := c.gc.Peek(-1)
	if !c.has(carrying) {
		return buf
	}
	carried := l.carry[c]
	l.joined = append(append(l.joined[:0], carried...), buf...)
	return l.joined
}

// consume drops the first n bytes of what inbound returned. Loop-only.
func (l *loop) consume(c *conn, n int) {
	if c.has(carrying) {
		carried := l.carry[c]
		if n < len(carried) {
			l.carry[c] = carried[n:]
			return
		}
		delete(l.carry, c)
		c.setFlag(carrying, false)
		n -= len(carried)
	}
	if n > 0 {
		// Not Discard(0): gnet takes n <= 0 to mean "everything", which
		// would drop the start of a frame that is still arriving.
		_, _ = c.gc.Discard(n)
	}
}

// timeOf is the time loop second sec begins (the inverse of second).
func (s *Server) timeOf(sec uint32) time.Time {
	return s.start.Add(time.Duration(sec-1) * time.Second)
}

// eachLoop runs fn on every loop, on the loop, and waits for all of them
// or ctx. Once ctx ends, fn starts on no more loops, and eachLoop returns
// when those it runs on finished: fn never runs after eachLoop returned
// (gnet runs a queued runnable whatever its context), so what it records
// and the connections it takes stay the caller's to see. It reports
// whether fn ran on every loop that took it (a stopped engine's loops
// take nothing).
func (s *Server) eachLoop(ctx context.Context, fn func(*loop)) (every bool) {
	var gate sync.RWMutex // read-held while fn runs; gaveUp under it
	gaveUp := false
	var ran atomic.Int64
	queued := int64(0)
	s.mu.Lock()
	var wg sync.WaitGroup
	for el, l := range s.loops {
		wg.Add(1)
		err := el.Execute(ctx, gnet.RunnableFunc(func(context.Context) error {
			defer wg.Done()
			gate.RLock()
			defer gate.RUnlock()
			if !gaveUp {
				fn(l)
				ran.Add(1)
			}
			return nil
		}))
		if err != nil {
			wg.Done()
		} else {
			queued++
		}
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		gate.Lock()
		gaveUp = true
		gate.Unlock()
	}
	return ran.Load() == queued
}
