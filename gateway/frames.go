package gateway

import (
	"errors"
	"strings"
	"time"

	"switchboard/delivery"
	"switchboard/protocol"
	"switchboard/token"
)

// Frames, one by type: what a client may send, what each asks of the
// router, and the refusals the gateway answers by itself.

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
			taken = l.srv.router().Send(c.session(), delivery.Message{From: delivery.To(c.user), To: m.To, Group: true, MsgID: m.MsgID, Retry: m.Retry, Record: record})
		} else {
			taken = l.srv.router().Send(c.session(), delivery.Message{From: delivery.To(c.user), To: m.To, MsgID: m.MsgID, Retry: m.Retry, Record: record})
		}
		if !taken {
			l.refuse(c, m.MsgID, protocol.CodeRetryLater, l.srv.router().BusyRetryAfter(), reasonQueueFull)
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
		if l.srv.router().Ack(c.session(), delivery.To(c.user), a.Seq) {
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
		if err := l.srv.router().Read(delivery.ReadReceipt{Reader: delivery.To(c.user), Sender: delivery.To(r.To), MsgID: r.MsgID, More: r.More}); errors.Is(err, delivery.ErrReadRange) {
			return l.rejectf(protocol.CodeProtocol, "READ of msg ids %d to %d+%d: more than %d ids, or past 2^64-1", r.MsgID, r.MsgID, r.More, delivery.MaxReadRun)
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
			l.srv.router().SignalGroup(delivery.To(c.user), s.Group, s.Kind)
		} else {
			l.srv.router().Signal(delivery.To(c.user), delivery.To(s.Peer), s.Kind)
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
		if !l.srv.router().GroupOp(c.session(), delivery.To(c.user), &g) {
			l.refuse(c, g.MsgID, protocol.CodeRetryLater, l.srv.router().BusyRetryAfter(), reasonQueueFull)
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
	var key []byte // the device key a Noise handshake proved
	if c.has(noiseOn) {
		key = l.secure[c].hs.peer[:]
	}
	claims, err := l.verifier.VerifyKey(lg.Token, key, cfg.Now())
	switch {
	case errors.Is(err, token.ErrExpired):
		return l.rejectf(protocol.CodeTokenExpired, "LOGIN token expired at %s", claims.Expiry.UTC().Format(time.RFC3339))
	case err != nil:
		return l.reject(protocol.CodeBadToken, "LOGIN "+strings.TrimPrefix(err.Error(), "token: "))
	case key != nil && !claims.Bound && !cfg.NoiseUnboundTokens:
		return l.reject(protocol.CodeBadToken, reasonUnbound)
	}
	if cfg.HomeAddr != nil {
		if addr := cfg.HomeAddr(claims.User); addr != "" {
			c.user = claims.User // for the close's log line; never registered
			return l.redirectLogin(c, addr)
		}
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
	if !l.srv.router().Login(c.session(), delivery.To(c.user), lg.Ack) {
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

// redirectLogin answers c's LOGIN with GOAWAY MOVED naming addr, the client
// address of the user's home node, and closes c: the client connects there
// within redirectAfter ms, keeping its session (PROTOCOL.md 8.10). c is never
// registered with the router. An addr that cannot go in a GOAWAY is this
// node's misconfiguration: the client is told INTERNAL, and backs off.
// Loop-only.
func (l *loop) redirectLogin(c *conn, addr string) protocol.Code {
	if err := protocol.CheckAddr(addr); err != nil {
		return l.rejectf(protocol.CodeInternal, "home node address of %d bytes unusable in GOAWAY MOVED", len(addr))
	}
	c.closeCode = uint8(protocol.CodeMoved)
	g := protocol.GoAway{After: redirectAfter, Code: protocol.CodeMoved, Addr: addr}
	l.wbuf = g.Append(l.wbuf)
	return l.reject(closeQuietly, reasonRedirected)
}

// redirectAfter is the GOAWAY MOVED delay, in milliseconds: clients connect
// to their home within a random 0–100 ms, which spreads the logins a node
// list change sends elsewhere without delaying one noticeably.
const redirectAfter = 100

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
