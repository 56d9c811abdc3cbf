package gateway

import (
	"sync"
	"sync/atomic"

	"switchboard/delivery"
	"switchboard/protocol"
)

// Delivery is what the gateway needs of the delivery layer: requests and
// acknowledgements in, as values. *delivery.Router implements it; so can a
// test's fake, or later a forwarder to another node.
type Delivery interface {
	Login(s delivery.Session, to delivery.Addressee, ack uint64) bool
	// Resume carries on a session another process handed over (no
	// WELCOME); it reports false only when the router stopped.
	Resume(s delivery.Session, to delivery.Addressee, acked, written uint64) bool
	Logout(s delivery.Session, to delivery.Addressee)
	Send(s delivery.Session, m delivery.Message) bool
	Ack(s delivery.Session, to delivery.Addressee, seq uint64) bool
	Read(r delivery.ReadReceipt) error
	Signal(from, to delivery.Addressee, kind uint32)
	SignalGroup(from delivery.Addressee, group uint64, kind uint32)
	GroupOp(s delivery.Session, actor delivery.Addressee, g *protocol.Group) bool
	// BusyRetryAfter is the retry_after, in ms, of a request refused
	// because the router was busy.
	BusyRetryAfter() uint32
	// Window is the flow window announced in WELCOME.
	Window() int
}

// The gateway implements delivery.Sessions: the router names a session by
// value, and the gateway finds its connection in a table indexed by file
// descriptor. A session id is the connection's descriptor in its low 32
// bits and the descriptor's generation in the high 32, bumped each time the
// descriptor is given to a new connection, so an id outlives its connection
// harmlessly: it then finds nobody, or a newer connection whose generation
// differs. Lookups take no lock. The table costs 16 bytes per descriptor in
// use, in chunks of 1,024.
const sessionChunk = 1024

type sessionSlot struct {
	c   atomic.Pointer[conn]
	gen atomic.Uint32
}

type sessionTable struct {
	mu     sync.Mutex                                   // serialises growth
	chunks atomic.Pointer[[]*[sessionChunk]sessionSlot] // copied on growth
}

// slot returns fd's slot, or nil if there is none and grow is false.
func (t *sessionTable) slot(fd int, grow bool) *sessionSlot {
	i, j := fd/sessionChunk, fd%sessionChunk
	if p := t.chunks.Load(); p != nil && i < len(*p) && (*p)[i] != nil {
		return &(*p)[i][j]
	}
	if !grow || fd < 0 {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var cur []*[sessionChunk]sessionSlot
	if p := t.chunks.Load(); p != nil {
		cur = *p
	}
	next := make([]*[sessionChunk]sessionSlot, max(len(cur), i+1))
	copy(next, cur)
	if next[i] == nil {
		next[i] = new([sessionChunk]sessionSlot)
	}
	t.chunks.Store(&next)
	return &next[i][j]
}

// add registers c, whose descriptor is fd. Loop-only (c's loop).
func (t *sessionTable) add(c *conn, fd int) {
	s := t.slot(fd, true)
	if s.gen.Add(1) == 0 {
		s.gen.Add(1) // generation 0 is never used: no id is 0
	}
	s.c.Store(c)
}

// remove unregisters c. Loop-only.
func (t *sessionTable) remove(c *conn, fd int) {
	if s := t.slot(fd, false); s != nil {
		s.c.CompareAndSwap(c, nil)
	}
}

// id returns the session id of c, registered on fd.
func (t *sessionTable) id(fd int) delivery.Session {
	s := t.slot(fd, false)
	if s == nil {
		return delivery.Session{}
	}
	return delivery.Session{ID: uint64(s.gen.Load())<<32 | uint64(uint32(fd))}
}

// lookup returns the connection of session s, or nil if it is gone.
func (t *sessionTable) lookup(s delivery.Session) *conn {
	if s.Node != 0 || s.ID == 0 {
		return nil
	}
	slot := t.slot(int(uint32(s.ID)), false)
	if slot == nil {
		return nil
	}
	c := slot.c.Load()
	if c == nil || slot.gen.Load() != uint32(s.ID>>32) {
		return nil
	}
	return c
}

// session returns c's session id. Loop-only, while c is open.
func (c *conn) session() delivery.Session { return c.loop.srv.sessions.id(c.gc.Fd()) }

// Push implements delivery.Sessions: it queues out on the session's
// connection (conn.Push), or reports false if the connection is gone.
func (s *Server) Push(id delivery.Session, out delivery.Outbound) bool {
	c := s.sessions.lookup(id)
	return c != nil && c.Push(out)
}

// Close implements delivery.Sessions.
func (s *Server) Close(id delivery.Session, code protocol.Code) {
	if c := s.sessions.lookup(id); c != nil {
		c.Close(code)
	}
}
