package gateway

import (
	"context"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"

	"switchboard/protocol"
)

// LoopsInUse returns how many event loops have had a connection, for tests.
func (s *Server) LoopsInUse() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.loops)
}

// NewWithFileLimit is New under the open-file limit limit instead of the
// process's, for tests.
func NewWithFileLimit(cfg Config, r Delivery, limit int) (*Server, error) {
	return newServer(cfg, r, limit)
}

// CountOpenFiles is Config.OpenFiles' default; ReadOpenFiles its fallback
// for kernels before 6.2, which read /proc/self/fd.
var CountOpenFiles, ReadOpenFiles = countOpenFiles, readOpenFiles

// SetPanicHook makes the server call h at each per-connection point
// ("open", "check", "close", "goaway"); h may panic.
func (s *Server) SetPanicHook(h func(point string, user uint64)) { s.panicHook.Store(&h) }

// HangLoops makes every event loop that has had a connection hang until
// release is closed, and returns how many it hung, for tests of Shutdown's
// deadline.
func (s *Server) HangLoops(release <-chan struct{}) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for el := range s.loops {
		_ = el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			<-release
			return nil
		}))
	}
	return len(s.loops)
}

// Tick advances every loop's wheel to Config.Now, as the ticker does once
// a second, and returns when they all have: bytes that reached a loop's
// socket before the call were read first (gnet runs queued tasks after the
// socket events of the same poll).
func (s *Server) Tick() {
	s.mu.Lock()
	done := make(chan struct{}, len(s.loops))
	n := 0
	for el, l := range s.loops {
		err := el.Execute(context.Background(), gnet.RunnableFunc(func(ctx context.Context) error {
			defer func() { done <- struct{}{} }()
			return l.tickFn(ctx)
		}))
		if err == nil {
			n++
		}
	}
	s.mu.Unlock()
	for range n {
		<-done
	}
}

// Buffered returns the bytes the server holds unread for user's
// connection (an incomplete frame), as its event loop sees them: a test
// that drips a frame waits until they arrived before it ticks.
func (s *Server) Buffered(user uint64) int {
	s.mu.Lock()
	got := make(chan int, len(s.loops))
	n := 0
	for el, l := range s.loops {
		err := el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			b := 0
			l.wheel.each(func(c *conn) {
				if c.user == user {
					b = c.gc.InboundBuffered()
				}
			})
			got <- b
			return nil
		}))
		if err == nil {
			n++
		}
	}
	s.mu.Unlock()
	total := 0
	for range n {
		total += <-got
	}
	return total
}

// AppendError is appendError, for tests.
var AppendError = appendError

// HandoverRetry is the GOAWAY delay of a connection refused while a
// handover holds new ones, for tests.
const HandoverRetry = handoverRetry

// OpenFileLimit is what New reads as the open-file limit.
var OpenFileLimit = openFileLimit

// HandshakeSteps returns the Noise handshake steps waiting for or on a
// worker.
func (s *Server) HandshakeSteps() int64 { return s.live.handshakes.Load() }

// Unsent returns the bytes gnet holds unsent for user's connection, as
// its event loop sees them.
func (s *Server) Unsent(user uint64) int {
	var n atomic.Int64
	s.eachLoop(context.Background(), func(l *loop) {
		l.wheel.each(func(c *conn) {
			if c.user == user {
				n.Add(int64(c.gc.OutboundBuffered()))
			}
		})
	})
	return int(n.Load())
}

// CloseUnwoken asks user's connection to close with code, as the router
// does, but leaves its loop unwoken, as when the wake is still queued
// behind the next runnable: for tests of a runnable (Detach's) that finds
// a close the loop has not handled.
func (s *Server) CloseUnwoken(user uint64, code protocol.Code) {
	s.eachLoop(context.Background(), func(l *loop) {
		l.wheel.each(func(c *conn) {
			if c.user == user {
				c.mu.Lock()
				c.closing, c.woken = uint8(code), true
				s.live.closing.Add(1)
				c.mu.Unlock()
			}
		})
	})
}

// PreLoginQueue returns the entries in the loops' FIFOs of connections
// opened before login (admit.go), stale ones included.
func (s *Server) PreLoginQueue() int {
	var n atomic.Int64
	s.eachLoop(context.Background(), func(l *loop) { n.Add(int64(len(l.waiting))) })
	return int(n.Load())
}

// NoiseStates returns the Noise connection states the loops hold.
func (s *Server) NoiseStates() int {
	var n atomic.Int64
	s.eachLoop(context.Background(), func(l *loop) { n.Add(int64(len(l.secure))) })
	return int(n.Load())
}
