package gateway

import "sync/atomic"

// Gauges is a snapshot of the gateway's connections by state and the bytes
// waiting for them, for metrics. The fields are read one by one, so a
// connection changing state as they are read may show in two or in none.
type Gauges struct {
	// PreLogin are the connections open that have not logged in (waiting
	// for the preface or LOGIN, or a login the router was too busy for).
	PreLogin int64
	// LoggedIn are the connections whose LOGIN was verified, waiting for
	// WELCOME or logged in, and not asked to close.
	LoggedIn int64
	// Closing are the connections the router asked to close (SLOW_CONSUMER,
	// REPLACED, …) or whose outbound queue went over the cap, that their
	// loop has not closed yet. It stays near zero while the loops keep up.
	Closing int64
	// Draining is true once Drain or Shutdown was called: every connection
	// is being stopped, and no frame is read any more.
	Draining bool
	// OutboundBytes are the bytes routing workers pushed to connections
	// that their loops have not yet taken to write (what Push charges
	// against Config.OutboundCap). Bytes already handed to gnet are not in
	// it.
	OutboundBytes int64
}

// SlowConsumers counts the connections the gateway closed as slow
// consumers, by cause, when its loop decides the close (reason.go); the
// ERROR's reason begins with the cause's name. The router's own cause (a
// window that stayed full, reason "window: …") is
// delivery.Stats.SlowConsumers.
type SlowConsumers struct {
	// OutboundCap counts closes because a Push would have taken the
	// connection's queue past Config.OutboundCap: workers pushed more than
	// the loop took between two writes.
	OutboundCap uint64
	// WriteBuffer counts closes because the bytes written and not yet
	// taken by the socket (gnet's buffer) passed Config.OutboundCap: the
	// client does not read.
	WriteBuffer uint64
}

// live backs Gauges and SlowConsumers. Atomic; updated by the loops and by
// the routing workers in Push and Close.
type live struct {
	preLogin atomic.Int64 // +1 by admit, -1 at login or at the close of one not logged in
	loggedIn atomic.Int64 // +1 at login, -1 at the close of one logged in
	closing  atomic.Int64 // +1 when conn.closing is first set, -1 when that connection closes
	outbound atomic.Int64 // the sum of every conn.out.bytes
	// handshakes counts Noise handshake steps waiting for or on a worker.
	handshakes atomic.Int64

	slowOverCap, slowWriteBuffer atomic.Uint64
}

// Gauges returns the connections by state and the bytes waiting now. It
// may be called from any goroutine.
func (s *Server) Gauges() Gauges {
	closing := s.live.closing.Load()
	return Gauges{
		PreLogin:      max(s.live.preLogin.Load(), 0),
		LoggedIn:      max(s.live.loggedIn.Load()-closing, 0),
		Closing:       max(closing, 0),
		Draining:      s.Draining(),
		OutboundBytes: max(s.live.outbound.Load(), 0),
	}
}

// SlowConsumers returns the gateway's slow-consumer closes by cause. It
// may be called from any goroutine.
func (s *Server) SlowConsumers() SlowConsumers {
	return SlowConsumers{OutboundCap: s.live.slowOverCap.Load(), WriteBuffer: s.live.slowWriteBuffer.Load()}
}

// login moves one connection from PreLogin to LoggedIn. Loop-only.
func (v *live) login() {
	v.preLogin.Add(-1)
	v.loggedIn.Add(1)
}

// closed counts out a connection that closed; joined says whether it had
// logged in (conn.state >= stateJoining). Loop-only (OnClose).
func (v *live) closed(joined bool) {
	if joined {
		v.loggedIn.Add(-1)
	} else {
		v.preLogin.Add(-1)
	}
}

// dropped counts out, as its connection is marked closed, the close asked
// for it (closing, conn.closing) and the bytes still queued (out,
// conn.out). Loop-only, with conn.mu held.
func (v *live) dropped(closing uint8, out *outbox) {
	if closing != 0 {
		v.closing.Add(-1)
	}
	if out != nil {
		v.outbound.Add(-int64(out.bytes))
	}
}
