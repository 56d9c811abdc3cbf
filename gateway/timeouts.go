package gateway

import (
	"fmt"
	"time"

	"switchboard/delivery"
	"switchboard/protocol"
)

// Timeouts. Each connection waits in the timing wheel for its next
// deadline: the handshake, idleness (1.5 × ping), an incomplete frame, its
// token's expiry, or a retry of an ACK the router was too busy to take.
// check runs when the deadline comes and closes the connection or
// schedules the next. goAway sweeps the loop's connections at shutdown,
// with the GOAWAY whose window shutdownGoAway sized to the connections.

// checkBy moves c's next check forward to second due if it is later.
// Loop-only.
func (l *loop) checkBy(c *conn, due uint32) {
	if c.has(inWheel) && c.due > due {
		l.wheel.remove(c)
		l.wheel.add(c, due)
	}
}

// stampSlack is added to every deadline. The loop's clock (wheel.now) is
// whole seconds and advances on a tick, so a stamp such as c.lastRecv may be
// up to a second older than the event: without the slack a 1 s handshake
// timeout could close a connection a few milliseconds after it opened.
const stampSlack = 1

// checkCaught is check, closing c with INTERNAL if it panics: the wheel
// and the loop's other connections carry on. Loop-only.
func (l *loop) checkCaught(c *conn) {
	defer func() {
		if p := recover(); p != nil {
			l.srv.panicked("timing check", c.user, p)
			l.wbuf = l.wbuf[:0] // may hold half an encoding
			l.closeNow(c, l.reject(protocol.CodeInternal, reasonPanic))
		}
	}()
	l.srv.hook("check", c.user)
	l.check(c)
}

// check runs when c's wheel slot comes up: it closes c if a deadline passed
// and otherwise schedules the next check. Loop-only.
func (l *loop) check(c *conn) {
	now := l.wheel.now
	if l.srv.paused.Load() {
		// Nothing is read during a handover: no deadline is fair to keep.
		l.wheel.add(c, now+1)
		return
	}
	var next uint32
	if c.state < stateReady {
		next = c.handshakeDue
		if now >= next {
			l.closeNow(c, l.reject(protocol.CodeHandshakeTimeout, "no LOGIN before the handshake deadline"))
			return
		}
	} else {
		next = c.lastRecv + uint32(c.ping)*3/2 + stampSlack
		if now >= next {
			// The stamp may be up to a second older than the frame.
			l.closeNow(c, l.rejectf(protocol.CodeIdleTimeout, "nothing received for %ds or more (1.5 × ping %ds)", now-c.lastRecv-stampSlack, c.ping))
			return
		}
	}
	if c.expires != 0 {
		if now >= c.expires {
			l.expire(c)
			return
		}
		next = min(next, c.expires)
	}
	if c.partialSince != 0 {
		due := l.partialDue(c)
		if now >= due {
			l.closeNow(c, l.rejectf(protocol.CodePartialFrameTimeout, "frame incomplete: no new byte for %v, or under %d B/s", l.srv.cfg.PartialFrameTimeout, l.srv.cfg.PartialFrameMinRate))
			return
		}
		next = min(next, due)
	}
	if c.has(ackPending) {
		c.setFlag(ackPending, !l.srv.router().Ack(c.session(), delivery.To(c.user), c.acked))
		next = min(next, now+1)
	}
	if c.state == stateReady {
		// The loop's second runs up to a second ahead of Config.Now.
		rateFreshen(&c.rateAt, uint32(uint64(now-1)*uint64(time.Second/time.Microsecond)))
		next = min(next, now+rateFreshenEvery)
	}
	l.wheel.add(c, next)
}

// expire ends c's session when its login token expires: it writes what is
// queued, then GOAWAY TOKEN_EXPIRED with no delay, so the client reconnects
// at once with a fresh token, and closes c. Loop-only.
func (l *loop) expire(c *conn) {
	l.flush(c) // a close a worker asked for gives way to this one
	g := protocol.GoAway{Code: protocol.CodeTokenExpired}
	l.write(c, g.Append(l.wbuf[:0]))
	c.closeCode = uint8(protocol.CodeTokenExpired)
	l.reason, l.closedConn, l.closedWhy = "", c, "login token expired: GOAWAY TOKEN_EXPIRED"
	_ = l.el.Close(c.gc)
}

// maxGoAwayWindow caps the reconnect window of a stop. 10 minutes: at the
// default GoAwayRate it spreads 6 million connections, more than a host
// holds, and a planned stop should not keep a client away longer; past it
// the logins come back faster than GoAwayRate.
const maxGoAwayWindow = 10 * time.Minute

// goAwayWindow returns the reconnect window, in whole milliseconds, of a
// stop that began with conns connections open: long enough that they come
// back at no more than cfg.GoAwayRate logins a second, since each client
// draws its delay uniformly in [0, window] (PROTOCOL.md 8.10); at least
// cfg.GoAwayAfter, at most maxGoAwayWindow.
func goAwayWindow(cfg *Config, conns int) time.Duration {
	ms := min(int64(conns)*1000/int64(cfg.GoAwayRate), maxGoAwayWindow.Milliseconds())
	w := max(cfg.GoAwayAfter, time.Duration(ms)*time.Millisecond)
	return min(w, maxGoAwayWindow).Truncate(time.Millisecond)
}

// shutdownGoAway returns the GOAWAY every connection gets at shutdown,
// its window sized to the connections open now (goAwayWindow), and logs
// the window. Shutdown calls it once, before the loops' sweeps.
func (s *Server) shutdownGoAway() protocol.GoAway {
	n := s.Conns()
	w := goAwayWindow(&s.cfg, n)
	if n > 0 { // none after a handover: they went to the successor
		s.cfg.Logger.Info(fmt.Sprintf("gateway: telling %d clients to reconnect within %v", n, w),
			"clients", n, "window", w, "goaway_rate", s.cfg.GoAwayRate)
	}
	return protocol.GoAway{After: uint32(w / time.Millisecond), Code: protocol.CodeShuttingDown}
}

// goAway writes what is queued and g to every connection of the loop, and
// closes them. Loop-only.
func (l *loop) goAway(g protocol.GoAway) {
	var all []*conn
	l.wheel.each(func(c *conn) { all = append(all, c) })
	for _, c := range all {
		l.goAwayOne(c, &g)
	}
}

// goAwayOne writes what is queued for c and g, and closes c; a panic
// closes c all the same, and the sweep goes on. Loop-only.
func (l *loop) goAwayOne(c *conn, g *protocol.GoAway) {
	defer func() {
		if p := recover(); p != nil {
			l.srv.panicked("GOAWAY", c.user, p)
			l.wbuf = l.wbuf[:0]
			c.closeCode = uint8(protocol.CodeInternal)
			l.reason, l.closedConn, l.closedWhy = "", c, reasonPanic
			_ = l.el.Close(c.gc)
		}
	}()
	l.srv.hook("goaway", c.user)
	l.flush(c)
	l.write(c, g.Append(l.wbuf[:0]))
	c.closeCode = uint8(protocol.CodeShuttingDown)
	l.reason, l.closedConn, l.closedWhy = "", c, reasonShuttingDown
	_ = l.el.Close(c.gc)
}
