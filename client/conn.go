package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"switchboard/noise"
	"switchboard/protocol"
)

// Event is what Conn.Recv returns: a *protocol.Deliver, *protocol.Receipt
// (delivered, read or expired), *protocol.GroupEvent (mailbox entries),
// *protocol.Accept (of a SEND or, with Ref, of a GROUP request),
// *protocol.Refuse, *protocol.Signal (typing…) or *Reconnected. Each is
// freshly allocated and owned by the caller.
type Event = any

// Reconnected is the Event that starts each connection after the first
// (and the first, when Options.KeepTrying took Dial past a failed attempt):
// the session logged in again, and the outbox went out again with flag B.
type Reconnected struct{ Welcome protocol.Welcome }

// Options configures Dial. The zero value is usable but for Token.
type Options struct {
	// Token returns the login token for each connection; it is called again
	// after TOKEN_EXPIRED. Required. With Noise, the token must be bound to
	// the device's key, Noise.Static.Public (token.MintBound: a backend
	// mints it when the device registers that key): the server refuses an
	// unbound one with BAD_TOKEN unless it runs with noise-unbound-tokens.
	Token func(ctx context.Context) ([]byte, error)
	// Noise makes every connection use the Noise transport (PROTOCOL.md
	// 3.1): a handshake carrying LOGIN, then encrypted frames. nil: the
	// plain transport, for a trusted network or under TLS.
	Noise *NoiseOptions
	// Session configures the state machine: persisted counter and resume
	// point, ACK coalescing, backoff.
	Session Config
	// Ping is the keepalive interval asked for at login, rounded up to whole
	// seconds. 0 asks for the server's default. Conn pings when it has
	// written nothing for the interval WELCOME grants.
	Ping time.Duration
	// Events bounds the events read and not yet returned by Recv. 0 means
	// 1024: more than the server's default window (256 entries), so a
	// backlog arrives without the reader stopping. While it is full the
	// reader stops, and the server holds what is left; the connection is
	// not taken for dead meanwhile (DeadAfter), since its PONGs wait unread.
	Events int
	// WriteTimeout bounds each write. 0 means 10 s: a server that takes
	// nothing for that long is gone, and the connection is dropped.
	WriteTimeout time.Duration
	// DeadAfter is how long the Conn waits for any frame after a PING
	// before it takes the connection for dead and reconnects (PROTOCOL.md
	// 8.8). 0 means 10 s: longer than a server upgraded in place pauses
	// for, which a client must sit out rather than reconnect.
	DeadAfter time.Duration
	// Dialer dials TCP; nil means a zero net.Dialer.
	Dialer *net.Dialer
	// Dict is the compression dictionary offered at login
	// (protocol.DictV1); 0, the default, offers none. When the server takes
	// it, frames it compresses (PROTOCOL.md 6) are inflated before Recv
	// returns their events. Dial refuses a dictionary this build lacks.
	Dict uint32

	// Outbox is the outbox the application persisted (Conn.Outbox) when it
	// last ran, in msg_id order: every entry goes again, with flag B for a
	// SEND, as soon as the session is logged in (PROTOCOL.md 8.5). Ids must
	// rise; the msg_id counter moves past the last. nil: nothing to resend.
	Outbox []Outgoing
	// ManualAck makes the application say when an entry is stored: Recv then
	// leaves the resume point where it is, and Processed moves it and owes
	// the ACK. false: an entry counts as stored once Recv returned it, which
	// suits an application that keeps nothing across restarts.
	ManualAck bool
	// KeepTrying makes Dial return a Conn that is offline when the first
	// connection fails, and that keeps trying as after a lost one (a refusal
	// for good, such as BAD_TOKEN, ends it: Recv returns why). false: Dial
	// returns the first connection's error.
	KeepTrying bool
}

// NoiseOptions configures the Noise transport of a Conn.
type NoiseOptions struct {
	// Static is the device's static key: made once (noise.NewKeypair) and
	// kept with the device's other secrets across runs. The login token is
	// bound to its public half (Options.Token). Required: the zero
	// Keypair is refused.
	Static noise.Keypair
	// Server is the server's static public key that an earlier run pinned
	// (Conn.ServerKey), 32 bytes: the first handshake is then IK, one round
	// trip. nil: the first handshake is XX, which learns it. Either way
	// the Conn pins the key each handshake proves, and the next connection
	// runs IK with it; when the server's key changed, IK falls back to
	// XXfallback, and the new key is pinned.
	Server []byte
	// Random is the source of ephemeral keys; nil: crypto/rand.
	Random io.Reader
}

// MaxNoiseBody is the largest body a Conn sends over Noise, where a frame
// travels in one transport message (PROTOCOL.md 3.1): the frame limit of a
// server under Noise (noise.MaxPlaintext less 64 bytes, room for the fields
// a DELIVER adds) less 1 KiB, the body a server takes by default. A larger
// body could never be sealed, and would be resent after every reconnect.
const MaxNoiseBody = noise.MaxPlaintext - 64 - 1024

// lastWordTimeout bounds the last write before a close: Close's owed ACK,
// or the ERROR telling a server it broke the protocol. A few bytes a live
// socket takes at once; a stalled one must not hold the close.
const lastWordTimeout = 100 * time.Millisecond

// maxBody returns the largest body c sends (PROTOCOL.md 9): at most
// protocol.MaxBody and max_frame − 1,024 for the last WELCOME's max_frame,
// and at most MaxNoiseBody over Noise or before any WELCOME, since a server
// that offers Noise, as one with its defaults does, takes no more even on a
// plain connection.
func (c *Conn) maxBody() int {
	limit := int64(protocol.MaxBody)
	mf := c.maxFrame.Load()
	if mf > 0 {
		limit = min(limit, mf-1024)
	}
	if c.opts.Noise != nil || mf == 0 {
		limit = min(limit, MaxNoiseBody)
	}
	return int(max(limit, 0))
}

// ErrClosed is returned by Conn's methods after Close, or after the session
// ended for good (ERROR REPLACED, BAD_TOKEN…; the error then wraps it).
var ErrClosed = errors.New("client: closed")

// Conn is a blocking client connection driven by a Session: it dials, logs
// in with the resume point, reads on a goroutine of its own, acknowledges
// what Recv returned, resends the outbox after each reconnect and backs off
// as the server asks. Every method may be called from any goroutine.
type Conn struct {
	// Immutable after Dial.
	addr  string
	opts  Options
	start time.Time       // origin of the session clock
	codec *protocol.Codec // Options.Dict's; nil: none offered

	// target is the address connect dials: addr, or the one a GOAWAY MOVED
	// named, until an attempt there fails (PROTOCOL.md 8.10). Owned by the
	// goroutine that connects: Dial, then run.
	target string

	// events carries what the read goroutine decoded to Recv. Its bound is
	// Options.Events; a full channel stops the reader.
	events chan Event
	kick   chan struct{} // wakes the timer goroutine; capacity 1, sends never block
	// changed tells a watcher that Status changed; capacity 1, sends never
	// block, so a watcher that is slow sees the latest Status, not each.
	changed chan struct{}
	done    chan struct{} // closed by Close
	// closing is cancelled by Close with done: it cuts a reconnect's login
	// short, which would otherwise hold Close until the server answered.
	closing     context.Context
	cancelClose context.CancelFunc
	ended       chan struct{} // closed when the run goroutine returns, after cause is set
	cause       error
	heard       atomic.Int64 // session clock when a frame was last read: the reader stamps it, the timers read it
	waiting     atomic.Bool  // the reader waits for room in events: the timers take no silence for a dead connection
	maxFrame    atomic.Int64 // WELCOME.max_frame of the last login; 0: none yet

	// wsem is held (a token in it) by the one goroutine writing to a
	// connection, which it does without mu: the writer goroutine, or Close
	// for its last ACK. A socket that takes nothing holds the writer for up
	// to WriteTimeout, and nothing else: Send, Status and the reader go on.
	wsem  chan struct{}
	wkick chan struct{} // wakes the writer goroutine; capacity 1, sends never block

	mu     sync.Mutex // guards everything below
	sess   *Session
	nc     net.Conn          // the current connection; nil between connections
	bodies map[uint64]outMsg // the outbox's messages, by msg_id
	out    []byte            // frames queued for nc, in order; empty while nc is nil
	spare  []byte            // the writer's last buffer, for out to reuse
	wrote  time.Duration     // when something was last queued for a connection
	pinged time.Duration     // when a PING went that no frame has followed yet; 0: none
	ping   time.Duration     // granted keepalive interval
	state  State             // what Status reports, with the fields below
	last   uint64            // WELCOME.last of the current or last connection
	retry  time.Time         // offline: when the next attempt starts
	err    error             // why the last connection ended or the last attempt failed
	cut    error             // why this side closed the current connection (no PONG, a failed write); nil: it did not
	pin    []byte            // Noise: the server's static key the last handshake proved (or Options.Noise.Server); nil: none yet
	shake  string            // Noise: the handshake pattern of the current or last connection
	queued uint64            // highest entry seq put on events, on any connection of this Conn
	offset time.Duration     // the server's clock less this host's, from the last WELCOME (PROTOCOL.md 8.1)
	dict   uint32            // the dictionary offered at login: Options.Dict, until a DECOMPRESSION (then 0)
}

// outMsg is a message or GROUP request of the outbox: what a resend writes
// again.
type outMsg struct {
	to    uint64 // the user, or the group (0 for a create)
	group bool   // a SEND to a group
	body  []byte
	op    protocol.GroupOp // not 0: a GROUP request
	mem   []uint64         // its members
}

// Dial logs in to addr and returns once the first WELCOME arrived, or with
// the server's refusal (the error wraps its *protocol.Error). A GOAWAY MOVED
// is followed, here and on every later connection: Conn dials the address
// it names (at most Session's MaxRedirects in a row), and keeps dialling it
// after a lost connection until an attempt there fails; the next attempt
// goes to addr again.
func Dial(ctx context.Context, addr string, opts Options) (*Conn, error) {
	if opts.Token == nil {
		return nil, errors.New("client: Options.Token is required")
	}
	if opts.Events <= 0 {
		opts.Events = 1024
	}
	if opts.DeadAfter <= 0 {
		opts.DeadAfter = 10 * time.Second
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.Dialer == nil {
		opts.Dialer = &net.Dialer{}
	}
	var pin []byte
	if nz := opts.Noise; nz != nil {
		if nz.Static == (noise.Keypair{}) {
			return nil, errors.New("client: Options.Noise.Static is required: the device's static key")
		}
		if nz.Server != nil && len(nz.Server) != 32 {
			return nil, fmt.Errorf("client: Options.Noise.Server of %d bytes, want a 32-byte key", len(nz.Server))
		}
		pin = bytes.Clone(nz.Server)
	}
	var codec *protocol.Codec
	if opts.Dict != 0 {
		var ok bool
		if codec, ok = protocol.Lookup(opts.Dict); !ok {
			return nil, fmt.Errorf("client: no dictionary %d in this build", opts.Dict)
		}
	}
	c := &Conn{
		addr: addr, target: addr, opts: opts, start: time.Now(),
		events:  make(chan Event, opts.Events),
		kick:    make(chan struct{}, 1),
		changed: make(chan struct{}, 1),
		wsem:    make(chan struct{}, 1),
		wkick:   make(chan struct{}, 1),
		done:    make(chan struct{}),
		ended:   make(chan struct{}),
		sess:    NewSession(opts.Session),
		codec:   codec,
		dict:    opts.Dict,
		bodies:  map[uint64]outMsg{},
		pin:     pin,
	}
	c.closing, c.cancelClose = context.WithCancel(context.Background())
	for _, o := range opts.Outbox {
		if err := c.restore(o); err != nil {
			return nil, err
		}
	}
	fr, w, err := c.connect(ctx)
	for err != nil {
		delay, again, moved := c.closed(codeOf(err), true)
		if moved && ctx.Err() == nil {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("%w (redirected to %s)", ctx.Err(), c.target)
			}
			fr, w, err = c.connect(ctx)
			continue
		}
		if !opts.KeepTrying || ctx.Err() != nil {
			return nil, err
		}
		c.offline(err, delay) // what Status says from the start, not "logging in"
		go c.keepTrying(err, delay, again)
		go c.timers()
		go c.writer()
		return c, nil
	}
	c.welcomed(w)
	go c.run(fr)
	go c.timers()
	go c.writer()
	return c, nil
}

// closed tells the session that the connection or the attempt ended with
// code (failed: before WELCOME), and picks the address of the next attempt:
// the one a GOAWAY MOVED named; after a failed attempt, addr; otherwise the
// address of the connection that ended. moved reports a redirect.
func (c *Conn) closed(code protocol.Code, failed bool) (delay time.Duration, again, moved bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delay, again = c.sess.Closed(code, c.now())
	next, moved := c.sess.Redirect()
	switch {
	case moved:
		c.target = next
	case failed:
		c.target = c.addr
	}
	return delay, again, moved
}

func (c *Conn) now() time.Duration { return time.Since(c.start) }

// connect dials, writes the preface and LOGIN and reads WELCOME.
func (c *Conn) connect(ctx context.Context) (*protocol.FrameReader, *protocol.Welcome, error) {
	c.mu.Lock()
	c.state = StateLogin // c.err still says why the last connection ended
	c.notify()
	c.mu.Unlock()
	tok, err := c.opts.Token(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("client: token: %w", err)
	}
	raw, err := c.opts.Dialer.DialContext(ctx, "tcp", c.target)
	if err != nil {
		return nil, nil, fmt.Errorf("client: dial %s: %w", c.target, err)
	}
	// What cuts the login short at ctx's end holds the socket itself: nc
	// becomes the Noise connection on it, or nil when the handshake fails.
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	nc := raw
	ping := uint32((c.opts.Ping + time.Second - 1) / time.Second)
	c.mu.Lock()
	dict := c.dict
	login := c.sess.AppendLogin(nil, protocol.Login{Token: tok, Ping: ping, Dict: dict})
	c.mu.Unlock()
	if c.opts.Noise != nil {
		if nc, err = c.handshake(nc, login[protocol.PrefaceLen:]); err != nil {
			return nil, nil, err
		}
	} else if _, err := nc.Write(login); err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("client: write login: %w", err)
	}
	fr := protocol.NewFrameReader(nc)
	f, err := fr.Next()
	var refused *noise.RefusedError
	switch {
	case err == nil:
		err = loginAnswer(f, c.sess, dict)
	case errors.As(err, &refused): // the server refused the last handshake message
		err = c.refusal(refused)
	}
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("client: login to %s: %w", c.target, err)
	}
	w := new(protocol.Welcome)
	w.Decode(f) // checked by loginAnswer
	nc.SetDeadline(time.Time{})
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isClosed() {
		nc.Close()
		return nil, nil, ErrClosed
	}
	c.nc, c.out = nc, c.out[:0]
	return fr, w, nil
}

// handshake runs the Noise handshake over nc with the LOGIN frame login,
// under IK when a server key is pinned, and pins the key it proves. It
// returns the connection to read and write frames on; on an error nc is
// closed. A handshake the server refused with a plain ERROR or GOAWAY
// (PROTOCOL.md 3.1: too many handshakes in progress, or no Noise on that
// server) is recorded in the session as the same frame after LOGIN would
// be, and the error wraps its *protocol.Error.
func (c *Conn) handshake(nc net.Conn, login []byte) (net.Conn, error) {
	c.mu.Lock()
	cfg := noise.ClientConfig{Static: c.opts.Noise.Static, Server: c.pin, Random: c.opts.Noise.Random}
	c.mu.Unlock()
	sc, res, err := noise.Dial(nc, cfg, protocol.Version, login)
	if err != nil {
		nc.Close()
		var refused *noise.RefusedError
		if errors.As(err, &refused) {
			err = c.refusal(refused)
		}
		return nil, fmt.Errorf("client: Noise handshake with %s: %w", c.target, err)
	}
	c.mu.Lock()
	c.pin, c.shake = res.Peer[:], res.Pattern
	c.mu.Unlock()
	return sc, nil
}

// refusal returns the error of a handshake refused with the plain frame
// in r: the *protocol.Error of its ERROR or GOAWAY, which the session has
// recorded as loginAnswer does.
func (c *Conn) refusal(r *noise.RefusedError) error {
	f, _, err := protocol.ReadFrame(r.Frame, len(r.Frame))
	if err != nil {
		return fmt.Errorf("%w (%w)", r, err)
	}
	if f.Type != protocol.TypeError && f.Type != protocol.TypeGoAway {
		return fmt.Errorf("%w: %v refusing a handshake", protocol.ErrMalformed, f.Type)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return loginAnswer(f, c.sess, c.dict)
}

// ServerKey returns the server's Noise static public key that the last
// handshake proved (or Options.Noise.Server before the first one), for
// the application to persist and hand back in Options.Noise.Server next
// run; nil without Noise or before any key is known. The slice is the
// caller's.
func (c *Conn) ServerKey() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.pin)
}

// loginAnswer checks the first frame the server sent: WELCOME, or an ERROR
// or GOAWAY refusing the login (recorded in s). A WELCOME may name no
// dictionary or the one offered, dict.
func loginAnswer(f protocol.Frame, s *Session, dict uint32) error {
	switch f.Type {
	case protocol.TypeWelcome:
		var w protocol.Welcome
		if err := w.Decode(f); err != nil {
			return err
		}
		if w.Version == 0 || w.Version > protocol.Version {
			return fmt.Errorf("%w: server chose version %d", protocol.ErrUnsupportedVersion, w.Version)
		}
		if w.Dict != 0 && w.Dict != dict {
			return fmt.Errorf("%w: server chose dictionary %d, client offered %d", protocol.ErrMalformed, w.Dict, dict)
		}
		return nil
	case protocol.TypeError:
		e := new(protocol.Error)
		if err := e.Decode(f); err != nil {
			return err
		}
		return e
	case protocol.TypeGoAway:
		var g protocol.GoAway
		if err := g.Decode(f); err != nil {
			return err
		}
		s.GoAway(&g)
		return &protocol.Error{Code: g.Code, Reason: fmt.Sprintf("GOAWAY before WELCOME, retry after %dms", g.After)}
	}
	return fmt.Errorf("%w: %v before WELCOME", protocol.ErrMalformed, f.Type)
}

// welcomed completes a login: the session is ready and the outbox goes out.
func (c *Conn) welcomed(w *protocol.Welcome) {
	defer c.writeOut()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sess.Welcome(w, c.now())
	c.offset = time.Until(time.UnixMilli(int64(w.Time)))
	c.maxFrame.Store(int64(w.MaxFrame))
	c.ping = time.Duration(w.Ping) * time.Second
	c.heard.Store(int64(c.now()))
	c.pinged = 0
	c.last = w.Last
	c.state = StateResuming
	if c.sess.Resume() >= w.Last {
		c.state = StateCaughtUp // nothing waits past what the device has
	}
	c.err = nil
	c.flushLocked()
	c.notify()
	c.wake() // the keepalive's schedule starts again
}

// run reads frames from fr until the connection ends, then reconnects
// after the session's delay, until Close or a close the session does not
// retry.
func (c *Conn) run(fr *protocol.FrameReader) {
	defer close(c.ended)
	for {
		code, err := c.read(fr)
		c.mu.Lock()
		if c.cut != nil && errors.Is(err, net.ErrClosed) {
			err = c.cut // the read failed because this side closed, and why
		}
		c.cut = nil
		if nc := c.nc; nc != nil {
			if code == 0 && brokeProtocol(err) {
				// The server's bytes broke the protocol: say so before the
				// close (PROTOCOL.md 8.9), best effort.
				e := protocol.Error{Code: protocol.CodeOf(err), Reason: err.Error()}
				c.queueLocked(e.Append(c.out))
				c.mu.Unlock()
				c.writeOutWithin(lastWordTimeout)
				c.mu.Lock()
			}
			nc.Close()
		}
		c.nc, c.out = nil, c.out[:0]
		if code == protocol.CodeDecompression || errors.Is(err, protocol.ErrDecompress) {
			c.dict = 0 // PROTOCOL.md 10: log in again without compression
		}
		var tooLarge Event
		if code == protocol.CodeBodyTooLarge {
			tooLarge = c.failLargestLocked()
		}
		c.mu.Unlock()
		if tooLarge != nil {
			select {
			case c.events <- tooLarge:
			case <-c.done:
			}
		}
		delay, again, _ := c.closed(code, false)
		if c.isClosed() {
			c.end(ErrClosed)
			return
		}
		if !again {
			c.end(fmt.Errorf("%w: %w", ErrClosed, err))
			return
		}
		if fr = c.reconnect(err, delay); fr == nil {
			return
		}
	}
}

// keepTrying is run for a Conn whose first attempt failed with err (Dial with
// Options.KeepTrying): it reconnects after delay, if again, then runs.
func (c *Conn) keepTrying(err error, delay time.Duration, again bool) {
	if !again {
		defer close(c.ended)
		c.end(fmt.Errorf("%w: %w", ErrClosed, err))
		return
	}
	fr := c.reconnect(err, delay)
	if fr == nil {
		close(c.ended)
		return
	}
	c.run(fr)
}

// reconnect waits delay, then dials until a login succeeds, waiting the
// session's delay between attempts, and returns the new connection's
// reader. It returns nil once the Conn ended (Close, or a refusal the
// session does not retry): c.cause is then set.
func (c *Conn) reconnect(err error, delay time.Duration) *protocol.FrameReader {
	c.offline(err, delay)
	for {
		t := time.NewTimer(delay)
		select {
		case <-c.done:
			t.Stop()
			c.end(ErrClosed)
			return nil
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(c.closing, 10*time.Second)
		fr, w, err := c.connect(ctx)
		cancel()
		if err == nil {
			c.welcomed(w)
			select {
			case c.events <- &Reconnected{Welcome: *w}:
			case <-c.done:
			}
			return fr
		}
		var again bool
		delay, again, _ = c.closed(codeOf(err), true)
		if !again {
			c.end(fmt.Errorf("%w: %w", ErrClosed, err))
			return nil
		}
		c.offline(err, delay)
	}
}

// codeOf returns the code of the server's ERROR (or GOAWAY) that err wraps,
// or 0.
func codeOf(err error) protocol.Code {
	var e *protocol.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

func (c *Conn) isClosed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// read handles frames until the connection ends, and returns the code of
// the server's ERROR or GOAWAY (0 for none) and why it ended.
func (c *Conn) read(fr *protocol.FrameReader) (protocol.Code, error) {
	var goaway *protocol.GoAway // the GOAWAY the server sent before it closed; nil: none
	for {
		f, err := fr.Next()
		if err != nil {
			if goaway != nil {
				err = fmt.Errorf("client: GOAWAY %v, then %w", goaway.Code, err)
			}
			return 0, err
		}
		c.heard.Store(int64(c.now()))
		// Events own their memory: an inflated frame has its own, a plain
		// one is copied out of the reader's buffer.
		if f.Has(protocol.FlagCompressed) {
			if c.codec == nil {
				return 0, fmt.Errorf("%w: compressed %v with no dictionary", protocol.ErrDecompress, f.Type)
			}
			if f, err = c.codec.Inflate(f, nil, protocol.MaxServerFrame); err != nil {
				return 0, fmt.Errorf("client: inflate: %w", err)
			}
		} else {
			f.Payload = append([]byte(nil), f.Payload...)
		}
		var evs []Event
		switch f.Type {
		case protocol.TypeError:
			e := new(protocol.Error)
			if err := e.Decode(f); err != nil {
				return 0, err
			}
			return e.Code, e
		case protocol.TypeGoAway:
			var g protocol.GoAway
			if err := g.Decode(f); err != nil {
				return 0, err
			}
			c.mu.Lock()
			c.sess.GoAway(&g)
			c.mu.Unlock()
			goaway = &g
			continue
		case protocol.TypePong:
			continue
		}
		pevs, err := protocol.DecodeEvents(f, nil)
		if err != nil {
			return 0, err
		}
		evs = make([]Event, len(pevs))
		for i, ev := range pevs {
			evs[i] = ev
		}
		c.mu.Lock()
		for i, ev := range evs {
			switch ev := ev.(type) {
			case *protocol.Accept:
				c.sess.Accepted(ev)
				for id := ev.MsgID; id-ev.MsgID <= ev.More; id++ {
					delete(c.bodies, id)
				}
			case *protocol.Refuse:
				if !c.sess.Refused(ev, c.now()) {
					delete(c.bodies, ev.MsgID)
				}
			default:
				seq := EntrySeq(ev)
				if seq == 0 {
					break
				}
				if !c.sess.Entry(seq) || seq <= c.queued {
					// A redelivery the application has, or that waits in
					// c.events from an earlier connection, or that Recv
					// returned and the application has yet to process.
					evs[i] = nil
					break
				}
				c.queued = seq
				c.stamp(ev)
			}
		}
		c.mu.Unlock()
		c.wake()
		for _, ev := range evs {
			if ev == nil {
				continue
			}
			select {
			case c.events <- ev:
				continue
			default:
			}
			// Events is full: the reader waits for the application, and
			// what the server sends meanwhile (a PONG too) waits unread.
			// That silence is not a dead connection.
			c.waiting.Store(true)
			select {
			case c.events <- ev:
				c.waiting.Store(false)
			case <-c.done:
				return 0, ErrClosed
			}
		}
	}
}

// Recv returns the next Event, waiting until one arrives or ctx is done. A
// mailbox entry counts as received once Recv returned it: it is then
// acknowledged (coalesced with others) and the resume point moves past it;
// with Options.ManualAck, once it is passed to Processed instead.
func (c *Conn) Recv(ctx context.Context) (Event, error) {
	select {
	case ev := <-c.events:
		if !c.opts.ManualAck {
			c.processed(ev)
		}
		return ev, nil
	case <-c.ended:
		return nil, c.cause
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Send queues body for user to (or, with group, for group to) under the next
// msg_id, writes it if the session lets it go now, and returns the id: its
// ACCEPT or REFUSE comes from Recv. The message stays in the outbox, and is
// resent with flag B after a reconnect or a REFUSE's retry_after, until it is
// accepted or refused for good. body is copied. A body over the server's
// limit (ERROR BODY_TOO_LARGE, which closes the connection and names no
// message) comes back from Recv as a REFUSE of the outbox's largest message
// with code protocol.CodeBodyTooLarge and retry_after 0.
func (c *Conn) Send(to uint64, group bool, body []byte) (msgID uint64, err error) {
	if m := c.maxBody(); len(body) > m {
		return 0, fmt.Errorf("client: body of %d bytes, over %d", len(body), m)
	}
	return c.enqueue(0, outMsg{to: to, group: group, body: append([]byte(nil), body...)})
}

// enqueue puts m in the outbox under the next msg_id, or under id when it
// is not 0 (at or above the counter), writes what the session lets go, and
// returns the id.
func (c *Conn) enqueue(id uint64, m outMsg) (uint64, error) {
	select {
	case <-c.ended:
		return 0, c.cause
	default:
	}
	defer c.writeOut()
	c.mu.Lock()
	defer c.mu.Unlock()
	if id == 0 {
		id = c.sess.Queue()
	} else {
		if id < c.sess.NextMsgID() {
			return 0, fmt.Errorf("%w: msg id %d below the counter's %d", ErrMsgIDOrder, id, c.sess.NextMsgID())
		}
		if err := c.sess.Add(id, false); err != nil {
			return 0, err
		}
	}
	c.bodies[id] = m
	c.flushLocked()
	return id, nil
}

// processed moves the resume point to ev's seq, if ev is a mailbox entry,
// and writes the ACK if one is due now; the timer goroutine writes it later
// otherwise.
func (c *Conn) processed(ev Event) {
	seq := EntrySeq(ev)
	if seq == 0 {
		return
	}
	defer c.writeOut()
	c.mu.Lock()
	if c.sess.Processed(seq, entrySize(ev), c.now()) {
		c.queueLocked(c.sess.AppendAck(c.out))
	}
	if c.state == StateResuming && c.sess.Resume() >= c.last {
		c.state = StateCaughtUp
		c.notify()
	}
	c.mu.Unlock()
	c.wake()
}

// Session state the application persists: see Session.NextMsgID, Resume and
// Outbox.

// NextMsgID returns the msg_id the next Send takes.
func (c *Conn) NextMsgID() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess.NextMsgID()
}

// Resume returns the resume point: the highest seq processed, that is
// returned by Recv or, with Options.ManualAck, passed to Processed.
func (c *Conn) Resume() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess.Resume()
}

// Pending returns how many messages and GROUP requests wait for their
// ACCEPT.
func (c *Conn) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess.Pending()
}

// Close ends the connection and the session. It first writes the ACK
// still owed for entries already processed (coalesced, so at most
// Config.AckDelay old), waiting at most lastWordTimeout for the socket to
// take it. Events not yet received are dropped; what was not acknowledged
// is sent again to the next session.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.isClosed() {
		c.mu.Unlock()
		<-c.ended
		return nil
	}
	close(c.done)
	c.cancelClose()
	nc := c.nc
	if _, owed := c.sess.AckDue(); owed && nc != nil {
		c.queueLocked(c.sess.AppendAck(c.out))
	}
	c.mu.Unlock()
	if nc != nil {
		c.writeOutWithin(lastWordTimeout) // best effort: an ACK lost costs a redelivery
		nc.Close()                        // and ends a write that stalled
	}
	<-c.ended
	return nil
}

// flushLocked queues every SEND the session lets go now; the caller
// writes them with writeOut once it has let go of c.mu.
func (c *Conn) flushLocked() {
	if c.nc == nil {
		return
	}
	now := c.now()
	b := c.out
	for {
		id, retry, ok := c.sess.NextSend(now)
		if !ok {
			break
		}
		m := c.bodies[id]
		if m.op != 0 {
			// GROUP has no flag B: the server looks every request up.
			g := protocol.Group{MsgID: id, Op: m.op, Group: m.to, Members: m.mem}
			b = g.Append(b)
			continue
		}
		s := protocol.Send{MsgID: id, To: m.to, Group: m.group, Retry: retry, Body: m.body}
		b = s.Append(b)
	}
	c.queueLocked(b)
}

// queueLocked takes b, c.out with frames appended, as the queue for the
// current connection; without one, what was appended is dropped (c.out is
// empty then). c.mu held; the caller writes the queue with writeOut once
// it has let go of c.mu.
func (c *Conn) queueLocked(b []byte) {
	if c.nc == nil {
		c.out = b[:0]
		return
	}
	if len(b) > len(c.out) {
		c.wrote = c.now()
	}
	c.out = b
}

// writeOut has the writer goroutine write what is queued; it never waits.
func (c *Conn) writeOut() {
	select {
	case c.wkick <- struct{}{}:
	default: // a wake-up is pending: the writer takes the queue as it is then
	}
}

// writer writes the queue whenever writeOut wakes it, until the Conn ends.
// It takes c.mu only to take the queue, never while writing, so a socket
// that takes nothing holds it alone, for up to WriteTimeout; a failed
// write closes the connection, and the read goroutine reconnects.
func (c *Conn) writer() {
	for {
		select {
		case <-c.wkick:
		case <-c.ended:
			return
		}
		c.wsem <- struct{}{}
		c.writeQueued(c.opts.WriteTimeout)
	}
}

// writeOutWithin writes the queue on the caller's goroutine, for a
// connection about to be closed: it waits at most d for a write in
// progress, and gives each write d.
func (c *Conn) writeOutWithin(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case c.wsem <- struct{}{}:
		c.writeQueued(d)
	case <-t.C:
	}
}

// writeQueued writes the queue until it is empty, each write within limit,
// and lets go of c.wsem, which the caller holds. The queue's bytes and the
// connection are taken together under c.mu, and the queue is emptied
// whenever the connection changes, so no frame reaches a connection it was
// not made for.
func (c *Conn) writeQueued(limit time.Duration) {
	for {
		c.mu.Lock()
		nc, b := c.nc, c.out
		if nc == nil || len(b) == 0 {
			<-c.wsem // under c.mu: whoever queues next finds no writer, and writes
			c.mu.Unlock()
			return
		}
		c.out, c.spare = c.spare[:0], nil
		c.mu.Unlock()
		nc.SetWriteDeadline(time.Now().Add(limit))
		_, err := nc.Write(b)
		c.mu.Lock()
		if err != nil && nc == c.nc && c.cut == nil {
			c.cut = fmt.Errorf("client: write: %w", err)
			nc.Close()
		}
		c.spare = b[:0]
		c.mu.Unlock()
	}
}

// failLargestLocked answers ERROR BODY_TOO_LARGE, which does not name the
// message (PROTOCOL.md 10: mark it failed, do not resend it): the largest
// message of the outbox is at least as large as the one refused, so over
// the server's limit too, and is refused for good, as a REFUSE with
// retry_after 0 would; it returns that REFUSE, for Recv. Were the refused
// one smaller, the next login's resend is refused in turn, one message a
// login. Resending it instead would be refused at every login for ever.
// c.mu held.
func (c *Conn) failLargestLocked() Event {
	var id uint64
	size := -1
	for i, m := range c.bodies {
		if m.op == 0 && (len(m.body) > size || len(m.body) == size && i < id) {
			id, size = i, len(m.body)
		}
	}
	if size < 0 {
		return nil
	}
	r := &protocol.Refuse{MsgID: id, Code: protocol.CodeBodyTooLarge, Reason: fmt.Sprintf("a body of %d bytes, over the server's limit", size)}
	c.sess.Refused(r, c.now())
	delete(c.bodies, id)
	return r
}

// brokeProtocol reports whether err is the frame reader's or a decoder's
// refusal of what the server sent, which the client answers with an ERROR
// of its code (UNKNOWN_TYPE, FRAME_TOO_LARGE, DECOMPRESSION, PROTOCOL).
func brokeProtocol(err error) bool {
	return errors.Is(err, protocol.ErrUnknownType) || errors.Is(err, protocol.ErrFrameTooLarge) ||
		errors.Is(err, protocol.ErrDecompress) || errors.Is(err, protocol.ErrMalformed)
}

// stamp gives a DELIVER or GROUP_EVENT that came without a time (the
// server leaves it out of what it sends live) the server's clock now, as
// this host estimates it from WELCOME (PROTOCOL.md 8.1). c.mu held.
func (c *Conn) stamp(ev Event) {
	now := protocol.Stamp(time.Now().Add(c.offset))
	switch ev := ev.(type) {
	case *protocol.Deliver:
		if ev.Time == 0 {
			ev.Time = now
		}
	case *protocol.GroupEvent:
		if ev.Time == 0 {
			ev.Time = now
		}
	}
}

func (c *Conn) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// timers sends what the session schedules (coalesced ACKs, resends after a
// retry_after or a hold) and keepalive PINGs, until the Conn ends.
func (c *Conn) timers() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		c.mu.Lock()
		now := c.now()
		if at, ok := c.sess.AckDue(); ok && at <= now {
			c.queueLocked(c.sess.AppendAck(c.out))
		}
		c.flushLocked()
		if c.nc != nil && c.ping > 0 && now-c.wrote >= c.ping {
			c.queueLocked(protocol.AppendPing(c.out))
			if c.pinged == 0 {
				c.pinged = now
			}
		}
		if c.pinged != 0 && (time.Duration(c.heard.Load()) >= c.pinged || c.waiting.Load()) {
			c.pinged = 0
		}
		if c.nc != nil && c.pinged != 0 && now-c.pinged >= c.opts.DeadAfter {
			// Nothing since the PING: the read goroutine sees the close
			// and reconnects.
			c.cut = fmt.Errorf("client: no answer to a PING for %v", c.opts.DeadAfter)
			c.nc.Close()
			c.pinged = 0
		}
		next := c.nextWakeLocked(now)
		c.mu.Unlock()
		c.writeOut()
		t.Reset(next - now)
		select {
		case <-t.C:
		case <-c.kick:
		case <-c.ended:
			return
		}
	}
}

// nextWakeLocked returns when the timer loop next has work, at least a
// millisecond after now and at most an hour: an ACK or a retry the session
// has due, and while connected the keepalive PING and the wait for its
// answer. Offline there is no keepalive: wrote+ping is long past and would
// wake the loop every millisecond for the whole backoff. c.mu held.
func (c *Conn) nextWakeLocked(now time.Duration) time.Duration {
	next := now + time.Hour
	if at, ok := c.sess.NextWake(now); ok {
		next = min(next, at)
	}
	if c.nc != nil && c.ping > 0 {
		next = min(next, c.wrote+c.ping)
	}
	if c.nc != nil && c.pinged != 0 {
		next = min(next, c.pinged+c.opts.DeadAfter)
	}
	return max(next, now+time.Millisecond)
}

// EntrySeq returns the mailbox seq of an Event that is a mailbox entry (a
// DELIVER, RECEIPT or GROUP_EVENT), and 0 for every other Event.
func EntrySeq(ev Event) uint64 {
	switch ev := ev.(type) {
	case *protocol.Deliver:
		return ev.Seq
	case *protocol.Receipt:
		return ev.Seq
	case *protocol.GroupEvent:
		return ev.Seq
	}
	return 0
}

// entrySize approximates an entry's size for the ACK's byte threshold.
func entrySize(ev Event) int {
	if d, ok := ev.(*protocol.Deliver); ok {
		return len(d.Body) + 16
	}
	return 16
}
