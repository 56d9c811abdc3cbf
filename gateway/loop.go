package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/panjf2000/gnet/v2"

	"switchboard/delivery"
	"switchboard/protocol"
	"switchboard/token"
)

// maxBatchRecords bounds the record bytes packed into one BATCH, well under
// protocol.MaxServerFrame so a batch never needs splitting after encoding.
const maxBatchRecords = 64 << 10

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
	verifier *token.Verifier // token MACs, reused

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
	l := &loop{srv: s, el: el, verifier: token.NewVerifier(s.cfg.Keys)}
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
		joining := c.state == stateJoining
		if c.gc.InboundBuffered() > 0 && !l.srv.stopping.Load() {
			if code := l.read(c); code != 0 {
				return l.fail(c, code)
			}
		}
		if code := l.flush(c); code != 0 {
			return l.fail(c, code)
		}
		// Frames pipelined behind LOGIN wait until the router welcomed c.
		if !joining || c.state != stateReady || c.gc.InboundBuffered() == 0 {
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
		e := protocol.Error{Code: code, Reason: reason}
		l.wbuf = e.Append(l.wbuf)
	}
	l.closedConn, l.closedWhy = c, reason
	if len(l.wbuf) > 0 {
		l.write(c, l.wbuf) // never left for the loop's next connection
	}
	return gnet.Close
}

// busyLoginRetry is the GOAWAY delay, in milliseconds, for a login its
// shard was too busy to take: a few shard queues' worth of work.
const busyLoginRetry = 500

// maxLoginFrame is the largest frame accepted before login (header byte
// included): the largest LOGIN is 535 bytes (a 512-byte token, its length,
// and the widest ping, dict and ack varints), so 1 KiB leaves room for a
// longer token field without letting each half-sent login pin a 66 KB
// buffer (1.2 GiB at 19,000 connections).
const maxLoginFrame = 1 << 10

// closeQuietly closes without an ERROR: the peer sent one, or went away.
const closeQuietly protocol.Code = 0xffff

// closeNow closes c from a runnable (not a gnet callback). Loop-only.
func (l *loop) closeNow(c *conn, code protocol.Code) {
	l.fail(c, code)
	_ = l.el.Close(c.gc)
}

// read parses every complete frame buffered on c and returns a close code,
// or 0. Loop-only.
func (l *loop) read(c *conn) protocol.Code {
	buf, _ := c.gc.Peek(-1)
	now := l.wheel.now
	c.lastRecv = now
	l.nowMicros = uint32(l.srv.cfg.Now().Sub(l.srv.start) / time.Microsecond)
	if c.state == statePreface {
		c.rateAt = l.nowMicros // a full bucket, within the comparison's range
	}
	off := 0
	var code protocol.Code
	for off < len(buf) && code == 0 {
		if c.state == statePreface {
			version, transport, err := protocol.ReadPreface(buf[off:])
			switch {
			case errors.Is(err, protocol.ErrIncomplete):
			case err != nil:
				code = l.rejectErr("preface", err)
			case transport != protocol.TransportPlain:
				code = l.rejectf(protocol.CodeUnsupportedTransport, "preface transport %d not offered (plain only)", transport)
			default:
				_ = version // every version speaks at least 1, which we answer in WELCOME
				off += protocol.PrefaceLen
				c.state = stateLogin
				continue
			}
			break
		}
		if c.state == stateJoining {
			if len(buf)-off > 4*l.srv.cfg.MaxFrame {
				code = l.rejectf(protocol.CodeRateLimited, "over %d bytes pipelined behind LOGIN", 4*l.srv.cfg.MaxFrame)
			}
			break
		}
		limit := l.srv.cfg.MaxFrame
		if c.state == stateLogin {
			limit = maxLoginFrame // refused from its header, before it is buffered
		}
		f, n, err := protocol.ReadFrame(buf[off:], limit)
		if errors.Is(err, protocol.ErrIncomplete) {
			break
		}
		if err != nil {
			code = l.rejectFrame(buf[off:], err, l.srv.cfg.MaxFrame)
			break
		}
		off += n
		// ACKs are charged in frame, and only when they do not advance:
		// how many a client sends follows how fast the server sends. The
		// LOGIN is not charged: it is one per connection, and a client
		// that reconnects gets its whole burst for its resends.
		l.overRate = 0
		if f.Type != protocol.TypeAck && c.state == stateReady && !l.charge(c) {
			code = l.rejectf(protocol.CodeRateLimited, "over the rate of %d frames/s, burst %d", l.srv.cfg.RateLimit, l.srv.cfg.RateBurst)
			break
		}
		l.srv.stats.FramesIn.Add(1)
		code = l.frame(c, f)
	}
	l.overRate = 0
	if code != 0 {
		return code
	}
	if off > 0 {
		// Not Discard(0): gnet takes n <= 0 to mean "everything", which
		// would drop the start of a frame that is still arriving.
		_, _ = c.gc.Discard(off)
	}
	switch {
	case off == len(buf) || c.state == stateJoining:
		c.partialSince = 0
	case c.partialSince == 0 || off > 0:
		// The frame left incomplete started in this read.
		first := c.partialSince == 0
		c.partialSince = now
		if first {
			// c's next check may be far off (the handshake deadline, or 1.5
			// × the ping interval): bring it forward to the partial-frame
			// deadline.
			l.checkBy(c, now+uint32(l.srv.cfg.PartialFrameTimeout/time.Second)+stampSlack)
		}
	}
	return 0
}

// partialDue returns the second by which c's incomplete frame must have
// made progress: PartialFrameTimeout after the last byte arrived, or, if
// sooner, when the frame's bytes so far fall behind PartialFrameMinRate
// averaged since it started, with one PartialFrameTimeout of grace. Bytes
// only add to the second term, so a deadline computed earlier is never
// later than one computed now. Loop-only.
func (l *loop) partialDue(c *conn) uint32 {
	cfg := &l.srv.cfg
	timeout := uint32(cfg.PartialFrameTimeout / time.Second)
	stalled := c.lastRecv + timeout
	// InboundBuffered is the incomplete frame alone: read consumed every
	// complete one before it.
	slow := uint64(c.partialSince) + uint64(timeout) + uint64(c.gc.InboundBuffered()/cfg.PartialFrameMinRate)
	return uint32(min(uint64(stalled), slow)) + stampSlack
}

// charge charges one frame to c's token bucket (rate.go) and reports
// whether c may stay open. A frame over the rate sets l.overRate to the
// milliseconds until a token is there, for frame to refuse it. Loop-only.
func (l *loop) charge(c *conn) bool {
	verdict, retry := l.srv.rate.charge(&c.rateAt, l.nowMicros)
	switch verdict {
	case rateClose:
		return false
	case rateOver:
		l.overRate = retry
		l.srv.stats.OverRate.Add(1)
	}
	return true
}

// frame handles one frame from c and returns a close code, or 0. Slices of
// f alias gnet's buffer: anything kept is copied here. Loop-only.
func (l *loop) frame(c *conn, f protocol.Frame) protocol.Code {
	cfg := &l.srv.cfg
	if f.Has(protocol.FlagCompressed) {
		var codec *protocol.Codec
		if c.has(dictOn) {
			codec = l.srv.codec
		}
		var err error
		if f, err = codec.Inflate(f, l.inflate[:0], cfg.MaxFrame); err != nil {
			return l.reject(protocol.CodeDecompression, strings.TrimPrefix(err.Error(), "protocol: "))
		}
		l.inflate = f.Payload[:0]
	}
	if c.state == stateLogin {
		if f.Type != protocol.TypeLogin {
			return l.rejectf(protocol.CodeNotLoggedIn, "%v before LOGIN", f.Type)
		}
		return l.login(c, f)
	}
	switch f.Type {
	case protocol.TypeSend:
		var m protocol.Send
		if err := m.Decode(f); err != nil {
			return l.rejectErr("SEND", err)
		}
		if len(m.Body) > cfg.MaxBody {
			return l.rejectf(protocol.CodeBodyTooLarge, "SEND body of %d bytes over the limit of %d", len(m.Body), cfg.MaxBody)
		}
		if l.overRate != 0 {
			l.refuse(c, m.MsgID, protocol.CodeRetryLater, l.overRate, reasonOverRate)
			return 0
		}
		d := protocol.Deliver{From: c.user, MsgID: m.MsgID, Time: protocol.Stamp(cfg.Now()), Body: m.Body}
		if m.Group {
			d.Group = m.To
		}
		record := d.AppendRecord(make([]byte, 0, 32+len(m.Body))) // the one copy of the body
		var taken bool
		if m.Group {
			taken = l.srv.router.Send(c.session(), delivery.Message{From: delivery.To(c.user), To: m.To, Group: true, MsgID: m.MsgID, Retry: m.Retry, Record: record})
		} else {
			taken = l.srv.router.Send(c.session(), delivery.Message{From: delivery.To(c.user), To: m.To, MsgID: m.MsgID, Retry: m.Retry, Record: record})
		}
		if !taken {
			l.refuse(c, m.MsgID, protocol.CodeRetryLater, l.srv.router.BusyRetryAfter(), reasonQueueFull)
		}
	case protocol.TypeAck:
		var a protocol.Ack
		if err := a.Decode(f); err != nil {
			return l.rejectErr("ACK", err)
		}
		if a.Seq > c.delivered {
			return l.rejectf(protocol.CodeBadAck, "ACK %d beyond last delivered %d", a.Seq, c.delivered)
		}
		if a.Seq <= c.acked {
			if !l.charge(c) {
				return l.rejectf(protocol.CodeRateLimited, "over %d frames in one second (ACKs that advance nothing)", cfg.RateLimit)
			}
			return 0
		}
		c.acked = a.Seq
		if l.srv.router.Ack(c.session(), delivery.To(c.user), a.Seq) {
			c.setFlag(ackPending, false)
		} else {
			// The shard is busy: check offers it again each second, from
			// the next one on, not at c's idle deadline minutes away (its
			// receipts wait for it).
			c.setFlag(ackPending, true)
			l.checkBy(c, l.wheel.now+1)
		}
	case protocol.TypeRead:
		var r protocol.Read
		if err := r.Decode(f); err != nil {
			return l.rejectErr("READ", err)
		}
		// The receipt names c.user whatever r.Group says; a busy router
		// drops it (counted): READ has no answer to refuse it with.
		if err := l.srv.router.Read(delivery.ReadReceipt{Reader: delivery.To(c.user), Sender: delivery.To(r.To), MsgID: r.MsgID, More: r.More}); errors.Is(err, delivery.ErrReadRange) {
			return protocol.CodeProtocol
		}
	case protocol.TypeSignal:
		var s protocol.Signal
		if err := s.Decode(f); err != nil {
			return l.rejectErr("SIGNAL", err)
		}
		if l.overRate != 0 {
			return 0 // dropped: signals are never acknowledged or retried
		}
		if s.Group != 0 {
			l.srv.router.SignalGroup(delivery.To(c.user), s.Group, s.Kind)
		} else {
			l.srv.router.Signal(delivery.To(c.user), delivery.To(s.Peer), s.Kind)
		}
	case protocol.TypePing:
		if err := protocol.CheckEmpty(f); err != nil {
			return l.rejectErr("PING", err)
		}
		l.wbuf = protocol.AppendPong(l.wbuf)
	case protocol.TypeGroup:
		var g protocol.Group
		if err := g.Decode(f); err != nil {
			return l.rejectErr("GROUP", err)
		}
		if len(g.Members) > 0 && g.Op == protocol.GroupLeave {
			return l.rejectf(protocol.CodeProtocol, "GROUP LEAVE names %d members, want none", len(g.Members))
		}
		if l.overRate != 0 {
			l.refuse(c, g.MsgID, protocol.CodeRetryLater, l.overRate, reasonOverRate)
			return 0
		}
		if !l.srv.router.GroupOp(c.session(), delivery.To(c.user), &g) {
			l.refuse(c, g.MsgID, protocol.CodeRetryLater, l.srv.router.BusyRetryAfter(), reasonQueueFull)
		}
	case protocol.TypeLogin:
		return l.reject(protocol.CodeAlreadyLoggedIn, "second LOGIN on a logged-in connection")
	case protocol.TypeError:
		return l.reject(closeQuietly, reasonPeerError)
	default:
		return l.rejectf(protocol.CodeProtocol, "%v is a server-to-client frame", f.Type)
	}
	return 0
}

// login verifies a LOGIN and hands the connection to the router, which
// answers with OutWelcome. Loop-only.
func (l *loop) login(c *conn, f protocol.Frame) protocol.Code {
	cfg := &l.srv.cfg
	var lg protocol.Login
	if err := lg.Decode(f); err != nil {
		return l.rejectErr("LOGIN", err)
	}
	claims, err := l.verifier.Verify(lg.Token, cfg.Now())
	switch {
	case errors.Is(err, token.ErrExpired):
		return l.rejectf(protocol.CodeTokenExpired, "LOGIN token expired at %s", claims.Expiry.UTC().Format(time.RFC3339))
	case err != nil:
		return l.reject(protocol.CodeBadToken, "LOGIN "+strings.TrimPrefix(err.Error(), "token: "))
	}
	ping := time.Duration(lg.Ping) * time.Second
	if lg.Ping == 0 {
		ping = cfg.PingDefault
	}
	ping = min(max(ping, cfg.PingMin), cfg.PingMax)
	c.user, c.ping = claims.User, uint16(ping/time.Second)
	c.expires = l.srv.second(claims.Expiry)
	c.setFlag(dictOn, lg.Dict != 0 && lg.Dict == l.srv.codec.ID())
	c.delivered, c.acked = lg.Ack, lg.Ack
	c.state = stateJoining
	if !l.srv.router.Login(c.session(), delivery.To(c.user), lg.Ack) {
		// The user's shard is too busy to take the login: ask the client to
		// come back shortly rather than call the server full.
		c.state = stateLogin // not registered: OnClose must not log it out
		c.closeCode = uint8(protocol.CodeRetryLater)
		g := protocol.GoAway{After: busyLoginRetry, Code: protocol.CodeRetryLater}
		l.wbuf = g.Append(l.wbuf)
		return l.reject(closeQuietly, reasonLoginBusy)
	}
	l.preLogin--
	l.srv.live.login()
	l.srv.stats.Logins.Add(1)
	return 0
}

// reasonQueueFull is the reason of a request refused at the edge because
// its shard's or group worker's queue was full.
const reasonQueueFull = "routing queue full"

// reasonOverRate is the reason of a request refused because its connection
// is over its frame rate; retry_after is the wait for the next token.
const reasonOverRate = "connection over its frame rate"

// refuse answers one request with REFUSE. Loop-only.
func (l *loop) refuse(c *conn, msgID uint64, code protocol.Code, retryAfter uint32, reason string) {
	r := protocol.Refuse{MsgID: msgID, Code: code, RetryAfter: retryAfter, Reason: reason}
	l.wbuf = r.Append(l.wbuf)
}

// flush encodes what was pushed to c after what read answered, writes it,
// and returns the close code a worker asked for, or 0. Loop-only.
func (l *loop) flush(c *conn) protocol.Code {
	items, closing := c.take(l.items[:0])
	l.encode(c, items)
	clear(items)
	l.items = items[:0]
	if c.has(ackPending) {
		c.setFlag(ackPending, !l.srv.router.Ack(c.session(), delivery.To(c.user), c.acked))
	}
	if len(l.wbuf) > 0 {
		l.write(c, l.wbuf)
	}
	code := l.requested(closing)
	if code == 0 && c.gc.OutboundBuffered() > l.srv.cfg.OutboundCap {
		code = l.overWriteBuffer(c.gc.OutboundBuffered())
	}
	return code
}

// write writes b to c; b is copied, so the caller may reuse it. Loop-only.
func (l *loop) write(c *conn, b []byte) {
	n, _ := c.gc.Write(b)
	l.srv.stats.BytesOut.Add(uint64(n))
	l.wbuf = b[:0]
}

// encode appends the frames for items to l.wbuf, coalescing runs: entries
// with consecutive seqs into one BATCH, ACCEPTs of consecutive ids into one.
func (l *loop) encode(c *conn, items []delivery.Outbound) {
	now := l.srv.cfg.Now()
	for i := 0; i < len(items); {
		o := &items[i]
		j := i + 1
		switch o.Kind {
		case delivery.OutEntry:
			size := len(o.Record)
			for j < len(items) && items[j].Kind == delivery.OutEntry && items[j].Seq == items[j-1].Seq+1 && size < maxBatchRecords {
				size += len(items[j].Record)
				j++
			}
			l.entries(c, items[i:j], now)
			c.delivered = max(c.delivered, items[j-1].Seq)
		case delivery.OutAccept:
			for j < len(items) && items[j].Kind == delivery.OutAccept && items[j].MsgID == items[j-1].MsgID+1 && o.Ref == 0 && items[j].Ref == 0 {
				j++
			}
			a := protocol.Accept{MsgID: o.MsgID, More: uint64(j - i - 1), Ref: o.Ref}
			l.wbuf = a.Append(l.wbuf)
		case delivery.OutRefuse:
			l.refuse(c, o.MsgID, o.Code, o.RetryAfter, o.Reason)
		case delivery.OutSignal:
			s := protocol.Signal{Peer: o.Peer, Kind: uint32(o.MsgID), Group: o.Ref}
			l.wbuf = s.Append(l.wbuf)
		case delivery.OutWelcome:
			w := protocol.Welcome{
				Version: protocol.Version, User: c.user, Time: uint64(now.UnixMilli()),
				Ping: uint32(c.ping), MaxFrame: uint32(l.srv.cfg.MaxFrame), Dict: l.dictOf(c),
				Window: uint32(l.srv.router.Window()), Last: o.Seq,
			}
			l.wbuf = w.Append(l.wbuf)
			// Seqs up to last may be acknowledged, delivered or not: some
			// expired or were never stored (PROTOCOL.md, "Seqs may skip").
			c.delivered = max(c.delivered, o.Seq)
			c.state = stateReady
			// c waits on the wheel for its handshake deadline; with a short
			// ping the idle deadline can come first.
			l.checkBy(c, c.lastRecv+uint32(c.ping)*3/2+stampSlack)
			l.checkBy(c, c.expires)
		}
		l.srv.stats.FramesOut.Add(1)
		i = j
	}
}

// entries appends one DELIVER (or RECEIPT, GROUP_EVENT) frame, or a BATCH
// for several consecutive entries. A delivery made within a second of its
// acceptance goes without its timestamp (the client knows the time).
func (l *loop) entries(c *conn, items []delivery.Outbound, now time.Time) {
	// Time is left out of an entry sent within about a second of its
	// acceptance (protocol.Live), whichever path it took.
	var d protocol.Deliver
	var g protocol.GroupEvent
	if len(items) == 1 {
		o := &items[0]
		f, err := protocol.ParseRecord(o.Record)
		switch {
		case err != nil:
			l.badRecord(o, err)
		case f.Type == protocol.TypeDeliver:
			if err := d.DecodeRecord(f, o.Seq); err != nil {
				l.badRecord(o, err)
				return
			}
			if protocol.Live(d.Time, now) {
				d.Time = 0
			}
			l.wbuf = d.Append(l.wbuf)
		case f.Type == protocol.TypeGroupEvent:
			if err := g.DecodeRecord(f, o.Seq); err != nil {
				l.badRecord(o, err)
				return
			}
			if protocol.Live(g.Time, now) {
				g.Time = 0
			}
			l.wbuf = g.Append(l.wbuf)
		default:
			l.wbuf = protocol.AppendRecordFrame(l.wbuf, f, o.Seq)
		}
		return
	}
	l.batch.Reset(items[0].Seq)
	for k := range items {
		o := &items[k]
		f, err := protocol.ParseRecord(o.Record)
		if err == nil && f.Type == protocol.TypeDeliver {
			if err = d.DecodeRecord(f, o.Seq); err == nil {
				if protocol.Live(d.Time, now) {
					d.Time = 0
				}
				l.batch.Deliver(&d)
				continue
			}
		}
		if err == nil && f.Type == protocol.TypeGroupEvent {
			if err = g.DecodeRecord(f, o.Seq); err == nil {
				if protocol.Live(g.Time, now) {
					g.Time = 0
				}
				l.batch.GroupEvent(&g)
				continue
			}
		}
		if err == nil {
			err = l.batch.Record(f, o.Seq)
		}
		if err != nil {
			// A record that does not parse cannot be sent; keep the batch's
			// seqs consecutive by ending it here and skipping this one.
			l.badRecord(o, err)
			l.appendBatch(c)
			if k+1 < len(items) {
				l.entries(c, items[k+1:], now)
			}
			return
		}
	}
	l.appendBatch(c)
}

// appendBatch appends the batch being built, compressed when c negotiated a
// dictionary and it pays: backlogs of plaintext compress about 2×.
func (l *loop) appendBatch(c *conn) {
	if l.batch.Count() == 0 {
		return
	}
	var codec *protocol.Codec
	if c.has(dictOn) {
		codec = l.srv.codec
	}
	l.wbuf = codec.AppendFrame(l.wbuf, protocol.TypeBatch, 0, l.batch.Payload())
}

// dictOf returns the dictionary id c's WELCOME names.
func (l *loop) dictOf(c *conn) uint32 {
	if c.has(dictOn) {
		return l.srv.codec.ID()
	}
	return protocol.DictNone
}

func (l *loop) badRecord(o *delivery.Outbound, err error) {
	l.srv.cfg.Logger.Error("gateway: unreadable stored record skipped", "seq", o.Seq, "err", err)
}

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
			l.closeNow(c, l.rejectf(protocol.CodeIdleTimeout, "nothing received for %ds (1.5 × ping %ds)", now-c.lastRecv, c.ping))
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
		c.setFlag(ackPending, !l.srv.router.Ack(c.session(), delivery.To(c.user), c.acked))
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

// goAway writes what is queued and a GOAWAY to every connection of the
// loop, and closes them. Loop-only.
func (l *loop) goAway() {
	var all []*conn
	l.wheel.each(func(c *conn) { all = append(all, c) })
	g := protocol.GoAway{After: uint32(l.srv.cfg.GoAwayAfter / time.Millisecond), Code: protocol.CodeShuttingDown}
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

// gnetLogger sends gnet's logs to slog.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(format string, args ...any) { g.l.Debug(fmt.Sprintf(format, args...)) }
func (g gnetLogger) Infof(format string, args ...any)  { g.l.Info(fmt.Sprintf(format, args...)) }
func (g gnetLogger) Warnf(format string, args ...any)  { g.l.Warn(fmt.Sprintf(format, args...)) }
func (g gnetLogger) Errorf(format string, args ...any) { g.l.Error(fmt.Sprintf(format, args...)) }
func (g gnetLogger) Fatalf(format string, args ...any) { g.l.Error(fmt.Sprintf(format, args...)) }
