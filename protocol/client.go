package protocol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Client is a small blocking client for tests, tools and simple benchmarks:
// it dials, logs in, writes frames on the caller's goroutine and reads frames
// on one goroutine of its own, which decodes them into Events. It keeps no
// outbox, does not reconnect and acknowledges only when told: the test
// decides every frame. Applications use package client (client.Conn), which
// does all of that.
//
// Every method may be called from any goroutine. Writes are serialised by a
// mutex. Events come out of Recv in the order the server sent them; a BATCH
// comes out as one Event per entry.
type Client struct {
	// Immutable after Dial.
	conn    net.Conn
	opts    ClientOptions
	welcome Welcome
	inflate inflater // nil unless WELCOME named a dictionary

	// events carries decoded frames from the read loop (the only sender, which
	// closes it when it ends) to Recv. Its bound is ClientOptions.Events; when
	// it is full the read loop stops reading, and the server sees a slow
	// consumer: that is how tests produce one.
	events chan Event
	done   chan struct{} // closed by Close: the read loop stops
	ended  chan struct{} // closed by the read loop when it ends, after cause is set
	cause  error         // why reading stopped; written once before ended is closed

	// Atomic; shared by the callers and the read loop.
	nextID   atomic.Uint64 // the next msg id Send and Group use
	seq      atomic.Uint64 // the highest seq returned to the caller
	acked    atomic.Uint64 // the highest seq acknowledged (at login or with ACK)
	errShown atomic.Bool   // Recv returned the server's *Error once

	// What AckAll may acknowledge, guarded by ackMu: the caller may Recv on
	// one goroutine and AckAll on another.
	ackMu   sync.Mutex
	ackable uint64 // the highest seq returned to the caller below gap
	gap     uint64 // the lowest seq RecvDeliver or WaitAccept dropped since the last Ack that covered it; 0: none

	closeOnce sync.Once // runs Close's first call

	mu   sync.Mutex // serialises writes to conn
	wbuf []byte     // guarded by mu
}

// ClientOptions configures Dial. The zero value logs in with an empty token
// and the server's defaults.
type ClientOptions struct {
	Token []byte // the login token; read only during Dial

	// Ping is the keepalive interval asked for at login, rounded up to whole
	// seconds. 0 asks for the server's default.
	Ping time.Duration
	// Keepalive makes the client send a PING every interval WELCOME grants,
	// for tools that sit idle. Off by default: tests ping when they want to.
	Keepalive bool

	// Dict is the compression dictionary the client offers (DictV1…); 0, the
	// default, means none. With a dictionary, the client inflates the
	// compressed frames the server sends, each bounded by MaxServerFrame; it
	// sends its own frames uncompressed. Dial fails on an unknown id.
	Dict uint32
	// Ack resumes a session: every mailbox entry up to it was received by an
	// earlier connection, and the server deletes them at login.
	Ack uint64
	// AutoAck acknowledges each frame's entries as soon as they are read,
	// before Recv returns them, in one ACK per frame. Off by default: tests
	// ack explicitly, and a crash of a tool with AutoAck loses what it had
	// not processed.
	AutoAck bool

	// FirstMsgID is the id of the first message Send and Group write. 0
	// means microseconds since Epoch: the server drops a message whose id it
	// has seen from the same user as a retry, and a clock-based start keeps a
	// new Client of the same user clear of its predecessors' ids, unless they
	// sent faster than one message per microsecond. Set 1 to measure bytes.
	FirstMsgID uint64

	// Events is the capacity of the event channel; 0 means 1024, enough for a
	// test's backlog to arrive without the client stalling. The read loop
	// stops while it is full (see Client).
	Events int
	// HandshakeTimeout bounds Dial from connect to WELCOME on top of ctx; 0
	// means 10s, long enough for a loaded CI box, short enough that a
	// silent server fails a test instead of hanging it.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds each write; 0 means 10s for the same reason, and a
	// negative value means no deadline (to let a test block on a server that
	// stops reading).
	WriteTimeout time.Duration
	// Dialer dials the TCP connection; nil means a zero net.Dialer. Set
	// LocalAddr on it to spread many clients over source addresses.
	Dialer *net.Dialer

	// inflaterFor looks up a dictionary; nil means clientInflater. Tests set it.
	inflaterFor func(dict uint32) inflater
}

const (
	defaultClientEvents  = 1024
	defaultClientTimeout = 10 * time.Second
)

// ErrClosed means the client is closed: Close was called, or the connection
// ended (the error then also wraps the reason, such as io.EOF or the
// server's *Error).
var ErrClosed = errors.New("protocol: client closed")

// RefusedError is returned by WaitAccept when the server refused the message.
type RefusedError struct{ Refuse }

func (e *RefusedError) Error() string {
	msg := fmt.Sprintf("protocol: msg %d refused: %v (retry after %dms)", e.MsgID, e.Code, e.RetryAfter)
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// Event is one thing the server told the client: a *Deliver, *Receipt,
// *GroupEvent, *Accept, *Refuse, *Signal, *GoAway or Pong. Every Event is
// freshly allocated and owned by the receiver; the entries of one BATCH share
// one backing array for their bodies.
type Event interface{ clientEvent() }

// Pong is the Event for a PONG frame.
type Pong struct{}

func (*Deliver) clientEvent()    {}
func (*Receipt) clientEvent()    {}
func (*GroupEvent) clientEvent() {}
func (*Accept) clientEvent()     {}
func (*Refuse) clientEvent()     {}
func (*Signal) clientEvent()     {}
func (*GoAway) clientEvent()     {}
func (Pong) clientEvent()        {}

// inflater turns a compressed frame into an uncompressed one whose payload
// lives in dst (a new array when dst is nil), refusing a frame that would
// inflate past frameLimit (header byte and payload). *Codec implements it;
// tests substitute a fake.
type inflater interface {
	Inflate(f Frame, dst []byte, frameLimit int) (Frame, error)
}

// clientInflater returns the shared Codec of a dictionary id, or nil when
// this build holds no such dictionary.
func clientInflater(dict uint32) inflater {
	if c, ok := Lookup(dict); ok {
		return c
	}
	return nil
}

// Dial connects to addr, writes the preface and LOGIN, and waits for WELCOME.
// If the server answers with ERROR, the returned error wraps its *Error, so
// errors.As gives the Code (CodeBadToken…). A GOAWAY before WELCOME is
// reported the same way, as an *Error with the GOAWAY's code.
func Dial(ctx context.Context, addr string, opts ClientOptions) (*Client, error) {
	opts.ensureDefaults()
	var inf inflater
	if opts.Dict != 0 {
		if inf = opts.inflaterFor(opts.Dict); inf == nil {
			return nil, fmt.Errorf("protocol: dial %s: no dictionary %d in this build", addr, opts.Dict)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, opts.HandshakeTimeout)
	defer cancel()
	d := opts.Dialer
	if d == nil {
		d = &net.Dialer{}
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("protocol: dial %s: %w", addr, err)
	}
	c := &Client{
		conn:   conn,
		opts:   opts,
		events: make(chan Event, opts.Events),
		done:   make(chan struct{}),
		ended:  make(chan struct{}),
	}
	c.nextID.Store(opts.FirstMsgID)
	c.acked.Store(opts.Ack)
	fr := NewFrameReader(conn)
	if err := c.handshake(ctx, fr); err != nil {
		conn.Close()
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("protocol: dial %s: %w", addr, err)
	}
	if c.welcome.Dict != 0 {
		if c.welcome.Dict != opts.Dict {
			conn.Close()
			return nil, fmt.Errorf("protocol: dial %s: server chose dictionary %d, client offered %d", addr, c.welcome.Dict, opts.Dict)
		}
		c.inflate = inf
	}
	go c.readLoop(fr)
	if opts.Keepalive && c.welcome.Ping > 0 {
		go c.keepalive(time.Duration(c.welcome.Ping) * time.Second)
	}
	return c, nil
}

func (o *ClientOptions) ensureDefaults() {
	if o.FirstMsgID == 0 {
		o.FirstMsgID = uint64(time.Since(Epoch).Microseconds())
	}
	if o.Events <= 0 {
		o.Events = defaultClientEvents
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = defaultClientTimeout
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = defaultClientTimeout
	}
	if o.inflaterFor == nil {
		o.inflaterFor = clientInflater
	}
}

// handshake writes the preface and LOGIN and reads until WELCOME.
func (c *Client) handshake(ctx context.Context, fr *FrameReader) error {
	// ctx ends the handshake by moving the deadline into the past; ctx.Err is
	// set by then, so Dial reports it rather than an i/o timeout.
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	ping := (c.opts.Ping + time.Second - 1) / time.Second
	login := Login{Token: c.opts.Token, Ping: uint32(ping), Dict: c.opts.Dict, Ack: c.opts.Ack}
	if _, err := c.conn.Write(login.Append(AppendPreface(nil, Version, TransportPlain))); err != nil {
		return fmt.Errorf("write login: %w", err)
	}
	f, err := fr.Next()
	if err != nil {
		return fmt.Errorf("read welcome: %w", err)
	}
	switch f.Type {
	case TypeWelcome:
		if err := c.welcome.Decode(f); err != nil {
			return fmt.Errorf("read welcome: %w", err)
		}
		if v := c.welcome.Version; v == 0 || v > Version {
			return fmt.Errorf("%w: server chose version %d", ErrUnsupportedVersion, v)
		}
	case TypeError:
		e := new(Error)
		if err := e.Decode(f); err != nil {
			return fmt.Errorf("read welcome: %w", err)
		}
		return fmt.Errorf("login: %w", e)
	case TypeGoAway:
		var g GoAway
		if err := g.Decode(f); err != nil {
			return fmt.Errorf("read welcome: %w", err)
		}
		reason := fmt.Sprintf("GOAWAY before WELCOME, retry after %dms", g.After)
		if g.Addr != "" {
			reason += " at " + g.Addr
		}
		return fmt.Errorf("login: %w", &Error{Code: g.Code, Reason: reason})
	default:
		return fmt.Errorf("%w: %v before WELCOME", ErrMalformed, f.Type)
	}
	if !stop() {
		return ctx.Err()
	}
	return c.conn.SetDeadline(time.Time{})
}

// Welcome returns the server's WELCOME.
func (c *Client) Welcome() Welcome { return c.welcome }

// Recv returns the next Event, waiting until one arrives or ctx is done.
//
// After Close it returns ErrClosed. Once the connection has ended and every
// Event was returned: if the server ended it with ERROR, the first call
// returns that *Error itself; every other call returns an error wrapping
// ErrClosed and the reason (io.EOF, the *Error, a malformed frame…).
func (c *Client) Recv(ctx context.Context) (Event, error) {
	ev, err := c.next(ctx)
	if err == nil {
		c.received(seqOf(ev))
	}
	return ev, err
}

// next returns the next Event without counting it as received.
func (c *Client) next(ctx context.Context) (Event, error) {
	select {
	case <-c.done:
		return nil, ErrClosed
	default:
	}
	select {
	case ev, ok := <-c.events:
		if !ok {
			return nil, c.endErr()
		}
		return ev, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// received records that the caller got the entry seq (0: not an entry).
func (c *Client) received(seq uint64) {
	if seq == 0 {
		return
	}
	storeMax(&c.seq, seq)
	c.ackMu.Lock()
	if c.gap == 0 || seq < c.gap {
		c.ackable = max(c.ackable, seq)
	}
	c.ackMu.Unlock()
}

// dropped records that RecvDeliver or WaitAccept discarded the entry seq:
// the caller never saw it, so AckAll stops below it.
func (c *Client) dropped(seq uint64) {
	if seq == 0 {
		return
	}
	c.ackMu.Lock()
	if c.gap == 0 && seq > c.acked.Load() {
		c.gap = seq
	}
	c.ackMu.Unlock()
}

// RecvDeliver returns the next DELIVER, discarding any other Event before it.
// A discarded entry (RECEIPT, GROUP_EVENT) was not received: AckAll does not
// acknowledge it, nor anything after it.
func (c *Client) RecvDeliver(ctx context.Context) (*Deliver, error) {
	for {
		ev, err := c.next(ctx)
		if err != nil {
			return nil, err
		}
		if d, ok := ev.(*Deliver); ok {
			c.received(d.Seq)
			return d, nil
		}
		c.dropped(seqOf(ev))
	}
}

// WaitAccept waits for the ACCEPT covering msgID and returns it, discarding
// other Events before it. A REFUSE of msgID returns a *RefusedError. A
// discarded mailbox entry was not received: AckAll does not acknowledge it,
// nor anything after it.
func (c *Client) WaitAccept(ctx context.Context, msgID uint64) (*Accept, error) {
	for {
		ev, err := c.next(ctx)
		if err != nil {
			return nil, err
		}
		switch ev := ev.(type) {
		case *Accept:
			if ev.MsgID <= msgID && msgID-ev.MsgID <= ev.More {
				return ev, nil
			}
		case *Refuse:
			if ev.MsgID == msgID {
				return nil, &RefusedError{*ev}
			}
		default:
			c.dropped(seqOf(ev))
		}
	}
}

// Seq returns the highest mailbox seq returned to the caller, by Recv or
// RecvDeliver; 0 if none. Entries RecvDeliver and WaitAccept discarded do
// not count.
func (c *Client) Seq() uint64 { return c.seq.Load() }

// NextMsgID returns the id the next Send will use.
func (c *Client) NextMsgID() uint64 { return c.nextID.Load() }

func seqOf(ev Event) uint64 {
	switch ev := ev.(type) {
	case *Deliver:
		return ev.Seq
	case *Receipt:
		return ev.Seq
	case *GroupEvent:
		return ev.Seq
	}
	return 0
}

// endErr is what Recv returns once the events are drained.
func (c *Client) endErr() error {
	var e *Error
	if errors.As(c.cause, &e) && c.errShown.CompareAndSwap(false, true) {
		return e
	}
	return c.stopped()
}

// stopped returns nil while the client runs, ErrClosed after Close, and
// ErrClosed wrapping the cause after the connection ended.
func (c *Client) stopped() error {
	select {
	case <-c.done:
		return ErrClosed
	default:
	}
	select {
	case <-c.ended:
		if c.cause == ErrClosed {
			return ErrClosed
		}
		return fmt.Errorf("%w: %w", ErrClosed, c.cause)
	default:
		return nil
	}
}

// Send sends body to user to with the next msg id and returns that id.
// Body is copied into the frame before Send returns.
func (c *Client) Send(to uint64, body []byte) (msgID uint64, err error) {
	msgID = c.nextID.Add(1) - 1
	return msgID, c.SendID(msgID, to, body, false)
}

// SendGroup sends body to group with the next msg id and returns that id.
func (c *Client) SendGroup(group uint64, body []byte) (msgID uint64, err error) {
	msgID = c.nextID.Add(1) - 1
	return msgID, c.SendID(msgID, group, body, true)
}

// SendID sends body with a chosen msg id, to a user or (group) a group, as a
// first transmission: without flag B, so the server does not look the id up.
// Use it to write exact bytes; send a message again with Resend.
func (c *Client) SendID(msgID, to uint64, body []byte, group bool) error {
	s := Send{MsgID: msgID, To: to, Group: group, Body: body}
	return c.write("SEND", s.Append)
}

// Resend sends body again under msgID, with flag B (Send.Retry) set so the
// server recognises the id if it already took the message: after a REFUSE
// that allows a retry, or on a new connection for a message the last one did
// not see ACCEPTed. The Client keeps no outbox; the caller decides what to
// resend.
func (c *Client) Resend(msgID, to uint64, body []byte, group bool) error {
	s := Send{MsgID: msgID, To: to, Group: group, Retry: true, Body: body}
	return c.write("SEND", s.Append)
}

// Ack acknowledges every mailbox entry up to seq.
func (c *Client) Ack(seq uint64) error {
	a := Ack{Seq: seq}
	if err := c.write("ACK", a.Append); err != nil {
		return err
	}
	storeMax(&c.acked, seq)
	c.ackMu.Lock()
	if c.gap != 0 && seq >= c.gap {
		c.gap = 0 // the caller acknowledged what was discarded
	}
	c.ackMu.Unlock()
	return nil
}

// storeMax raises a to v if v is larger.
func storeMax(a *atomic.Uint64, v uint64) {
	for old := a.Load(); v > old && !a.CompareAndSwap(old, v); old = a.Load() {
	}
}

// AckAll acknowledges every entry returned to the caller, unless that is
// acknowledged already: up to Seq, or, when RecvDeliver or WaitAccept
// discarded an entry, up to the last returned below it (an ACK is
// cumulative, and covering an entry the caller never saw would delete it).
func (c *Client) AckAll() error {
	c.ackMu.Lock()
	s := c.ackable
	c.ackMu.Unlock()
	if s > c.acked.Load() {
		return c.Ack(s)
	}
	return nil
}

// MarkRead sends READ: the user has read messages of r.To.
func (c *Client) MarkRead(r Read) error { return c.write("READ", r.Append) }

// Signal sends an ephemeral SIGNAL such as "typing".
func (c *Client) Signal(s Signal) error { return c.write("SIGNAL", s.Append) }

// Group sends a GROUP request. A zero g.MsgID takes the next msg id; the id
// used is returned, for WaitAccept (whose Ref names a created group).
func (c *Client) Group(g Group) (msgID uint64, err error) {
	if g.MsgID == 0 {
		g.MsgID = c.nextID.Add(1) - 1
	}
	return g.MsgID, c.write("GROUP", g.Append)
}

// Ping sends a PING; the server answers with a Pong Event.
func (c *Client) Ping() error { return c.write("PING", AppendPing) }

// WriteRaw writes b as it is, for tests of bad input.
func (c *Client) WriteRaw(b []byte) error {
	return c.write("raw bytes", func(dst []byte) []byte { return append(dst, b...) })
}

// write appends a frame (named what, for errors) with appendFn and writes it
// under mu. A failed write closes the connection.
func (c *Client) write(what string, appendFn func([]byte) []byte) error {
	if err := c.stopped(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wbuf = appendFn(c.wbuf[:0])
	if c.opts.WriteTimeout > 0 {
		c.conn.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout))
	}
	if _, err := c.conn.Write(c.wbuf); err != nil {
		if err := c.stopped(); err != nil {
			return err
		}
		// Part of the frame may have gone out: nothing written after it
		// could be parsed, so the connection ends here.
		c.conn.Close()
		return fmt.Errorf("protocol: client write %s: %w", what, err)
	}
	return nil
}

// Close closes the connection and waits for the read loop to end. Events not
// yet received are dropped. It returns the error of closing the socket the
// first time, if any, and nil after.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.done)
		if err = c.conn.Close(); errors.Is(err, net.ErrClosed) {
			err = nil // the read loop closed it when the server did
		}
	})
	<-c.ended
	return err
}

func (c *Client) keepalive(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if c.Ping() != nil {
				return
			}
		case <-c.ended:
			return
		}
	}
}

// readLoop reads frames until the connection ends, then records why, closes
// the connection and the event channel.
func (c *Client) readLoop(fr *FrameReader) {
	err := c.readFrames(fr)
	select {
	case <-c.done:
		err = ErrClosed
	default:
		if errors.Is(err, ErrMalformed) || errors.Is(err, ErrDecompress) ||
			errors.Is(err, ErrFrameTooLarge) || errors.Is(err, ErrUnknownType) {
			// Tell the server why, as the protocol asks of the side that closes.
			e := Error{Code: CodeOf(err), Reason: err.Error()}
			c.write("ERROR", e.Append)
		}
	}
	c.conn.Close()
	c.cause = err
	close(c.ended)
	close(c.events)
}

func (c *Client) readFrames(fr *FrameReader) error {
	var evs []Event
	for {
		f, err := fr.Next()
		if err != nil {
			return fmt.Errorf("protocol: client read: %w", err)
		}
		evs, err = c.decode(f, evs[:0])
		if err != nil {
			return err
		}
		var top uint64
		for i, ev := range evs {
			top = max(top, seqOf(ev))
			select {
			case c.events <- ev:
			case <-c.done:
				return ErrClosed
			}
			evs[i] = nil // the receiver owns it now
		}
		if c.opts.AutoAck && top > 0 {
			if err := c.Ack(top); err != nil {
				return err
			}
		}
	}
}

// decode appends the Events of f to evs. f aliases the read buffer: decode
// copies (or inflates) its payload so that the Events own their memory.
func (c *Client) decode(f Frame, evs []Event) ([]Event, error) {
	if f.Has(FlagCompressed) {
		if c.inflate == nil {
			return evs, fmt.Errorf("%w: compressed %v with no dictionary", ErrDecompress, f.Type)
		}
		u, err := c.inflate.Inflate(f, nil, MaxServerFrame)
		if err != nil {
			return evs, fmt.Errorf("protocol: client inflate %v: %w", f.Type, err)
		}
		f = u
	} else {
		f.Payload = append([]byte(nil), f.Payload...)
	}
	if f.Type == TypeError {
		e := new(Error)
		if err := e.Decode(f); err != nil {
			return evs, err
		}
		return evs, e // the read loop ends with it
	}
	return DecodeEvents(f, evs)
}

// DecodeEvents appends the Events of f, a frame from the server other than
// ERROR, to evs: one for an answer, a signal, a GOAWAY or a PONG, one per
// entry for a BATCH. f must be uncompressed; the Events alias its payload.
func DecodeEvents(f Frame, evs []Event) ([]Event, error) {
	var ev interface {
		Event
		Decode(Frame) error
	}
	switch f.Type {
	case TypeDeliver:
		ev = new(Deliver)
	case TypeReceipt:
		ev = new(Receipt)
	case TypeGroupEvent:
		ev = new(GroupEvent)
	case TypeAccept:
		ev = new(Accept)
	case TypeRefuse:
		ev = new(Refuse)
	case TypeSignal:
		ev = new(Signal)
	case TypeGoAway:
		ev = new(GoAway)
	case TypePong:
		return append(evs, Pong{}), CheckEmpty(f)
	case TypeBatch:
		return decodeBatch(f, evs)
	default:
		return evs, fmt.Errorf("%w: unexpected %v from the server", ErrMalformed, f.Type)
	}
	return append(evs, ev), ev.Decode(f)
}

func decodeBatch(f Frame, evs []Event) ([]Event, error) {
	var br BatchReader
	br.Reset(f)
	for br.Next() {
		switch br.Type() {
		case TypeDeliver:
			d := new(Deliver)
			br.Deliver(d)
			evs = append(evs, d)
		case TypeReceipt:
			x := new(Receipt)
			br.Receipt(x)
			evs = append(evs, x)
		case TypeGroupEvent:
			g := new(GroupEvent)
			br.GroupEvent(g)
			evs = append(evs, g)
		}
	}
	return evs, br.Err()
}

// FrameReader splits the frames a server sends off a connection, for
// clients. buf[r:w] holds bytes read and not yet returned; it grows to the
// largest frame a server may send.
type FrameReader struct {
	conn io.Reader
	buf  []byte
	r, w int
}

// NewFrameReader returns a FrameReader of conn.
func NewFrameReader(conn io.Reader) *FrameReader {
	return &FrameReader{conn: conn, buf: make([]byte, 4<<10)}
}

// Next returns the next frame. Its payload aliases the buffer and is valid
// until the next call.
func (fr *FrameReader) Next() (Frame, error) {
	for {
		if fr.r < fr.w {
			f, n, err := ReadFrame(fr.buf[fr.r:fr.w], MaxServerFrame)
			if err == nil {
				fr.r += n
				return f, nil
			}
			if err != ErrIncomplete {
				return Frame{}, err
			}
		}
		if fr.r > 0 {
			fr.w = copy(fr.buf, fr.buf[fr.r:fr.w])
			fr.r = 0
		}
		if fr.w == len(fr.buf) {
			// A frame that ReadFrame let through fits MaxServerFrame+MaxFrameHeader.
			nb := make([]byte, min(2*len(fr.buf), MaxServerFrame+MaxFrameHeader))
			copy(nb, fr.buf[:fr.w])
			fr.buf = nb
		}
		n, err := fr.conn.Read(fr.buf[fr.w:])
		fr.w += n
		if err != nil && n == 0 {
			if err == io.EOF && fr.w > 0 {
				err = io.ErrUnexpectedEOF
			}
			return Frame{}, err
		}
	}
}
