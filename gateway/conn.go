package gateway

import (
	"sync"

	"github.com/panjf2000/gnet/v2"

	"switchboard/delivery"
	"switchboard/protocol"
)

// Connection states, in order.
const (
	statePreface   uint8 = iota // waiting for the four-byte preface
	stateHandshake              // a Noise handshake (noise.go)
	stateLogin                  // waiting for LOGIN
	stateJoining                // LOGIN verified, waiting for the router's welcome
	stateReady                  // logged in
)

// conn is one client connection: the gnet connection's context. The router
// reaches it through the server by its session id (sessions.go). It holds
// no buffers while idle. Every idle connection has one, so its fields are
// ordered by size to fit 112 bytes
// (a smaller size class than 120 would get); TestConnSize keeps it there.
// loopFlags are a conn's loop-owned booleans, packed so that a conn stays
// within its size class.
const (
	inWheel    uint8 = 1 << iota // in the wheel's slot lists
	ackPending                   // acked was not yet taken by the router (shard busy)
	dictOn                       // the client negotiated the server's dictionary
	noiseOn                      // the Noise transport: its state is in loop.secure
	detached                     // handed over to another process: its close is not the client's
	carrying                     // adopted with unread bytes: they are in loop.carry
)

// has reports whether every flag in f is set. Loop-only.
func (c *conn) has(f uint8) bool { return c.flags&f == f }

// setFlag sets or clears the flags in f. Loop-only.
func (c *conn) setFlag(f uint8, on bool) {
	if on {
		c.flags |= f
	} else {
		c.flags &^= f
	}
}

type conn struct {
	// Immutable after construction.
	gc   gnet.Conn
	loop *loop

	// Owned by the event loop.
	user      uint64 // set at login
	delivered uint64 // highest seq written to the connection, or WELCOME.last: what an ACK may name
	acked     uint64 // highest seq acked by the client
	prev      *conn  // wheel: slot list links
	next      *conn

	// Guarded by mu; shared with workers.
	mu  sync.Mutex
	out *outbox // nil while nothing is queued: an idle connection holds no buffer

	// Owned by the event loop.
	handshakeDue uint32 // loop second its handshake deadline passes (admit.go)
	lastRecv     uint32 // loop second a byte last arrived
	partialSince uint32 // loop second an incomplete frame was first seen; 0: none
	due          uint32 // wheel: second of the next check
	expires      uint32 // loop second its login token expires (GOAWAY then); 0: not logged in
	rateAt       uint32 // token bucket: µs when it is full again (rate.go)
	ping         uint16 // granted ping interval, seconds
	closeCode    uint8  // the protocol.Code it was closed with (every fatal code fits); 0: none
	state        uint8
	flags        uint8 // loopFlags

	// Guarded by mu.
	closing uint8 // a close was requested: a protocol.Code, or closeOverCap
	closed  bool  // the loop closed the connection
	woken   bool  // a Wake is pending for out or closing
}

// closeOverCap is conn.closing when Push found the outbound cap full: the
// loop closes with SLOW_CONSUMER, and says which cap in the reason.
const closeOverCap uint8 = 0xff

// outbox is what workers pushed to a connection and its loop has not yet
// taken. It is bounded by Config.OutboundCap, and returned to outboxes when
// the loop takes it.
type outbox struct {
	items []delivery.Outbound
	bytes int // charged against the outbound cap
}

// outboxes recycles outboxes (and their item arrays) between bursts.
var outboxes = sync.Pool{New: func() any { return new(outbox) }}

// Push queues o for the loop to write (Server.Push, for the router). It may
// be called from any goroutine.
func (c *conn) Push(o delivery.Outbound) bool {
	size := o.Size()
	c.mu.Lock()
	if c.closed || c.closing != 0 {
		c.mu.Unlock()
		return false
	}
	if c.out == nil {
		c.out = outboxes.Get().(*outbox)
	}
	// The queue is capped here and gnet's buffer by the loop after each
	// write (only the loop can read it truly: gnet drains it on its own),
	// so a connection holds at most about twice the cap.
	taken := c.out.bytes+size <= c.loop.srv.cfg.OutboundCap
	if taken {
		c.out.items = append(c.out.items, o)
		c.out.bytes += size
		c.loop.srv.live.outbound.Add(int64(size))
	} else {
		c.closing = closeOverCap // the loop writes what is queued, then closes
		c.loop.srv.live.closing.Add(1)
	}
	wake := c.wakeLocked()
	c.mu.Unlock()
	if wake {
		c.wake()
	}
	return taken
}

// Close (Server.Close, for the router): the loop writes what is queued, then an
// ERROR with code, then closes.
func (c *conn) Close(code protocol.Code) {
	c.mu.Lock()
	if c.closed || c.closing != 0 {
		c.mu.Unlock()
		return
	}
	c.closing = uint8(code) // delivery closes with fatal codes, all below 32
	c.loop.srv.live.closing.Add(1)
	wake := c.wakeLocked()
	c.mu.Unlock()
	if wake {
		c.wake()
	}
}

// wakeLocked reports whether the caller must wake the loop: only the first
// push since the loop last drained the queue does.
func (c *conn) wakeLocked() bool {
	if c.woken {
		return false
	}
	c.woken = true
	return true
}

func (c *conn) wake() {
	if err := c.gc.Wake(nil); err != nil {
		// The engine is stopping; the connection goes with it.
		c.loop.srv.stats.WakeErrors.Add(1)
	}
}

// take moves the queued items into dst and returns them with the close
// requested (conn.closing), if any. Loop-only.
func (c *conn) take(dst []delivery.Outbound) ([]delivery.Outbound, uint8) {
	c.mu.Lock()
	ob := c.out
	c.out = nil
	c.woken = false
	code := c.closing
	c.mu.Unlock()
	if ob != nil {
		c.loop.srv.live.outbound.Add(-int64(ob.bytes))
		dst = append(dst, ob.items...)
		ob.release()
	}
	return dst, code
}

// markClosed makes later pushes fail and drops what is queued. Loop-only.
func (c *conn) markClosed() {
	c.mu.Lock()
	c.closed = true
	c.loop.srv.live.dropped(c.closing, c.out)
	ob := c.out
	c.out = nil
	c.mu.Unlock()
	if ob != nil {
		ob.release()
	}
}

// release empties ob and returns it to the pool, keeping small arrays.
func (ob *outbox) release() {
	clear(ob.items)
	ob.items = ob.items[:0]
	if cap(ob.items) > 256 {
		ob.items = nil
	}
	ob.bytes = 0
	outboxes.Put(ob)
}
