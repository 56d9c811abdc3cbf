package gateway

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/panjf2000/gnet/v2"

	"switchboard/delivery"
	"switchboard/protocol"
	"switchboard/token"
)

// loop is one gnet event loop's state. Everything in it is owned by that
// loop: only code running on the loop (gnet callbacks and runnables it
// executes) touches it.
type loop struct {
	srv    *Server
	el     gnet.EventLoop
	wheel  wheel
	tickFn gnet.RunnableFunc

	// Scratch reused for every connection of the loop.
	wbuf     []byte
	items    []delivery.Outbound
	batch    protocol.BatchWriter
	inflate  []byte          // decompressed inbound payloads; grows to at most MaxFrame
	sbuf     []byte          // sealed transport messages (noise.go)
	verifier *token.Verifier // token MACs, reused

	// secure holds the Noise state of the loop's Noise connections (those
	// with noiseOn), so that a plain connection carries none.
	secure map[*conn]*secure
	// carry holds the unread bytes adopted connections brought (those
	// with carrying); joined is the scratch read parses them from
	// (handover.go).
	carry  map[*conn][]byte
	joined []byte

	// reason is why the connection in hand is being closed, set with the
	// close code by reject (reason.go) and taken by fail. closedConn and
	// closedWhy carry it from fail to OnClose, which gnet calls before it
	// serves another connection.
	reason     string
	closedConn *conn
	closedWhy  string

	// Admission before login (admit.go).
	preLogin int     // connections open that have not logged in
	waiting  []*conn // the FIFO they were opened in, with stale entries

	// State of the read in progress.
	nowMicros uint32 // Config.Now in µs since start, wrapping: the rate limit's clock
	overRate  uint32 // the frame being handled is over the rate: ms until a token; 0: it is not
}

func newLoop(s *Server, el gnet.EventLoop) *loop {
	l := &loop{srv: s, el: el, verifier: token.NewVerifier(s.cfg.Keys), secure: map[*conn]*secure{}, carry: map[*conn][]byte{}}
	l.wheel.now = s.now()
	l.tickFn = func(context.Context) error {
		l.wheel.advance(s.now(), l.checkCaught)
		return nil
	}
	return l
}

// serve reads what arrived on c, then writes what was queued for it.
// Loop-only.
func (l *loop) serve(c *conn) gnet.Action {
	for {
		if c.state == stateHandshake {
			if code := l.handshakeStep(c); code != 0 {
				return l.fail(c, code)
			}
		}
		joining := c.state == stateJoining
		if (c.gc.InboundBuffered() > 0 || c.has(carrying)) && !l.srv.stopping.Load() {
			if code := l.read(c); code != 0 {
				return l.fail(c, code)
			}
		}
		if code := l.flush(c); code != 0 {
			return l.fail(c, code)
		}
		// Frames pipelined behind LOGIN wait until the router welcomed c.
		if !joining || c.state != stateReady || (c.gc.InboundBuffered() == 0 && !c.has(carrying)) {
			return gnet.None
		}
	}
}

// fail writes what is pending for c (answers to earlier frames of the same
// read), then an ERROR with code unless code is closeQuietly, and tells gnet
// to close c, which flushes it first. Loop-only.
func (l *loop) fail(c *conn, code protocol.Code) gnet.Action {
	reason := l.reason
	l.reason = ""
	if reason == "" {
		reason = code.String() // every check names itself through reject; a fallback
	}
	if code != closeQuietly {
		c.closeCode = uint8(code)
		l.wbuf = appendError(l.wbuf, protocol.Error{Code: code, Reason: reason})
	}
	l.closedConn, l.closedWhy = c, reason
	if len(l.wbuf) > 0 {
		l.write(c, l.wbuf) // never left for the loop's next connection
	}
	return gnet.Close
}

// busyLoginRetry is the GOAWAY delay, in milliseconds, for a login its
// shard was too busy to take: a few shard queues' worth of work; clients
// draw their wait from [0, it] (full jitter).
const busyLoginRetry = 1000

// closeQuietly closes without an ERROR: the peer sent one, or went away.
const closeQuietly protocol.Code = 0xffff

// closeNow closes c from a runnable (not a gnet callback). Loop-only.
func (l *loop) closeNow(c *conn, code protocol.Code) {
	l.fail(c, code)
	_ = l.el.Close(c.gc)
}

// gnetLogger sends gnet's logs to slog.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(format string, args ...any) { g.l.Debug(fmt.Sprintf(format, args...)) }

func (g gnetLogger) Infof(format string, args ...any) { g.l.Info(fmt.Sprintf(format, args...)) }

func (g gnetLogger) Warnf(format string, args ...any) { g.l.Warn(fmt.Sprintf(format, args...)) }

func (g gnetLogger) Errorf(format string, args ...any) { g.l.Error(fmt.Sprintf(format, args...)) }

func (g gnetLogger) Fatalf(format string, args ...any) { g.l.Error(fmt.Sprintf(format, args...)) }
