package gateway_test

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"switchboard/gateway"
	"switchboard/protocol"
	"switchboard/token"
)

// TestBadInput: each bad input gets its ERROR code and the connection is
// closed; the server counts the close, and another session on the same
// server still works afterwards.
func TestBadInput(t *testing.T) {
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) {
		c.HandshakeTimeout = time.Second
		c.PartialFrameTimeout = time.Second
		c.PingMin = time.Second
		c.MaxBody = 1024
		c.RateLimit = 20
	}})
	preface := protocol.AppendPreface(nil, protocol.Version, protocol.TransportPlain)
	login := func(token []byte, ping uint32) []byte {
		lg := protocol.Login{Token: token, Ping: ping}
		return lg.Append(bytes.Clone(preface))
	}
	send := func(to uint64, body []byte) []byte {
		s := protocol.Send{MsgID: 1, To: to, Body: body}
		return s.Append(nil)
	}
	expired := token.Mint(ts.secret, token.Claims{KeyID: 1, User: 9, Device: 1, Expiry: time.Now().Add(-time.Minute)})
	forged := token.Mint(bytes.Repeat([]byte{9}, 32), token.Claims{KeyID: 1, User: 9, Device: 1, Expiry: time.Now().Add(time.Hour)})

	tests := []struct {
		name     string
		loggedIn bool          // log in (ping 0) before writing
		ping     uint32        // with loggedIn: the ping asked for
		write    []byte        // bytes written (after the login, if any)
		within   time.Duration // the close must come within this
		want     protocol.Code
	}{
		{name: "oversized frame", loggedIn: true,
			write: binary.AppendUvarint(nil, protocol.MaxFrame+1+1), want: protocol.CodeFrameTooLarge},
		{name: "truncated frame then silence", loggedIn: true,
			write: send(2, bytes.Repeat([]byte("a"), 100))[:20], within: 4 * time.Second, want: protocol.CodePartialFrameTimeout},
		{name: "non-minimal varint in SEND", loggedIn: true,
			write: protocol.AppendFrame(nil, protocol.TypeSend, 0, []byte{0x81, 0x00, 0x02, 'h', 'i'}), want: protocol.CodeProtocol},
		{name: "zero-length frame", loggedIn: true, write: []byte{0x00}, want: protocol.CodeProtocol},
		{name: "flag not allowed", loggedIn: true,
			write: protocol.AppendFrame(nil, protocol.TypePing, protocol.FlagA, nil), want: protocol.CodeProtocol},
		{name: "server-only frame from the client", loggedIn: true,
			write: protocol.AppendFrame(nil, protocol.TypePong, 0, nil), want: protocol.CodeProtocol},
		{name: "unknown type", loggedIn: true, write: []byte{0x01, 0x1f}, want: protocol.CodeUnknownType},
		{name: "frame before login", write: protocol.AppendPing(bytes.Clone(preface)), want: protocol.CodeNotLoggedIn},
		{name: "bad preface", write: []byte("GET / HTTP/1.1\r\n\r\n"), want: protocol.CodeProtocol},
		{name: "preface version 0", write: []byte{'S', 'W', 0, 0}, want: protocol.CodeUnsupportedVersion},
		{name: "preface noise transport", write: []byte{'S', 'W', 1, protocol.TransportNoiseXX}, want: protocol.CodeUnsupportedTransport},
		{name: "second login", loggedIn: true, write: (&protocol.Login{Token: ts.Token(9)}).Append(nil), want: protocol.CodeAlreadyLoggedIn},
		{name: "bad token", write: login([]byte("not a token at all, not at all"), 0), want: protocol.CodeBadToken},
		{name: "forged token", write: login(forged, 0), want: protocol.CodeBadToken},
		{name: "expired token", write: login(expired, 0), want: protocol.CodeTokenExpired},
		{name: "body over the limit", loggedIn: true, write: send(2, make([]byte, 1025)), want: protocol.CodeBodyTooLarge},
		{name: "compressed frame without a dictionary", loggedIn: true,
			write: protocol.AppendFrame(nil, protocol.TypeSend, protocol.FlagCompressed, []byte{1, 2, 3, 4, 5, 6}), want: protocol.CodeDecompression},
		{name: "ack beyond what was delivered", loggedIn: true,
			write: (&protocol.Ack{Seq: 5}).Append(nil), want: protocol.CodeBadAck},
		{name: "ack of seq 0", loggedIn: true,
			write: protocol.AppendFrame(nil, protocol.TypeAck, 0, []byte{0}), want: protocol.CodeProtocol},
		{name: "read of msg id 0", loggedIn: true,
			write: protocol.AppendFrame(nil, protocol.TypeRead, 0, []byte{2, 0}), want: protocol.CodeProtocol},
		{name: "signal to no one", loggedIn: true,
			write: protocol.AppendFrame(nil, protocol.TypeSignal, 0, []byte{0, 7}), want: protocol.CodeProtocol},
		{name: "group create naming a group", loggedIn: true,
			write: protocol.AppendFrame(nil, protocol.TypeGroup, 0, []byte{1, byte(protocol.GroupCreate), 5}), want: protocol.CodeProtocol},
		{name: "flood over the rate limit", loggedIn: true,
			write: bytes.Repeat(protocol.AppendPing(nil), 100), want: protocol.CodeRateLimited},
		{name: "handshake timeout", write: preface, within: 4 * time.Second, want: protocol.CodeHandshakeTimeout},
		{name: "handshake timeout, silent", within: 4 * time.Second, want: protocol.CodeHandshakeTimeout},
		{name: "idle timeout", loggedIn: true, ping: 1, within: 5 * time.Second, want: protocol.CodeIdleTimeout},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := ts.Srv.Stats().Closes[tt.want].Load()
			user := uint64(100 + i)
			var r *rawConn
			if tt.loggedIn {
				r = ts.rawLoginPing(t, user, tt.ping)
			} else {
				r = ts.rawFor(t)
			}
			if len(tt.write) > 0 {
				r.write(tt.write)
			}
			within := tt.within
			if within == 0 {
				within = 3 * time.Second
			}
			start := time.Now()
			if got := r.expectClose(within); got != tt.want {
				t.Fatalf("closed with %v, want %v", got, tt.want)
			}
			took := time.Since(start)
			t.Logf("closed with %v after %v", tt.want, took.Round(time.Millisecond))
			if tt.within != 0 && took < 900*time.Millisecond {
				t.Fatalf("a 1 s timeout fired after %v", took)
			}
			eventually(t, 5*time.Second, "the close counted", func() bool {
				return ts.Srv.Stats().Closes[tt.want].Load() > before
			})
			ts.roundTrip(t, 1000+2*user, 1001+2*user)
		})
	}
}

// rawFor is raw for a subtest.
func (ts *testServer) rawFor(t *testing.T) *rawConn {
	r := ts.raw()
	r.t = t
	return r
}

// rawLoginPing logs user in on a raw connection asking for ping seconds.
func (ts *testServer) rawLoginPing(t *testing.T, user uint64, ping uint32) *rawConn {
	t.Helper()
	r := ts.rawFor(t)
	lg := protocol.Login{Token: ts.Token(user), Ping: ping}
	r.write(lg.Append(protocol.AppendPreface(nil, protocol.Version, protocol.TransportPlain)))
	f := r.next(5 * time.Second)
	if f.Type != protocol.TypeWelcome {
		t.Fatalf("raw login: got %v, want WELCOME", f.Type)
	}
	var w protocol.Welcome
	if err := w.Decode(f); err != nil || (ping != 0 && w.Ping != ping) {
		t.Fatalf("WELCOME %+v (%v), want ping %d", w, err, ping)
	}
	return r
}

// TestPartialFrameTimeoutOnTime: a frame left half-sent is closed after
// PartialFrameTimeout, not at the connection's next scheduled check (the
// handshake deadline here, then 1.5 × the ping interval).
func TestPartialFrameTimeoutOnTime(t *testing.T) {
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) {
		c.PartialFrameTimeout = time.Second // HandshakeTimeout stays 10 s, the ping 120 s
	}})
	r := ts.rawLoginPing(t, 1, 0)
	s := protocol.Send{MsgID: 1, To: 2, Body: bytes.Repeat([]byte("a"), 100)}
	r.write(s.Append(nil)[:20])
	start := time.Now()
	if got := r.expectClose(4 * time.Second); got != protocol.CodePartialFrameTimeout {
		t.Fatalf("closed with %v, want PARTIAL_FRAME_TIMEOUT", got)
	}
	t.Logf("closed after %v", time.Since(start).Round(time.Millisecond))
}

// TestTimeoutsNeverEarly: a connection that logs in within HandshakeTimeout
// is not closed, wherever its open falls between two ticks of the loop's
// one-second clock. Eight connections, opened 125 ms apart, each log in
// 700 ms after opening, with a 1 s timeout.
func TestTimeoutsNeverEarly(t *testing.T) {
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) { c.HandshakeTimeout = time.Second }})
	errs := make(chan error, 8)
	for i := range 8 {
		time.Sleep(125 * time.Millisecond) // spread the opens over a tick
		r := ts.rawFor(t)
		go func() {
			time.Sleep(700 * time.Millisecond) // slow, but within the timeout
			lg := protocol.Login{Token: ts.Token(uint64(i + 1))}
			r.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := r.Write(lg.Append(protocol.AppendPreface(nil, protocol.Version, protocol.TransportPlain))); err != nil {
				errs <- err
				return
			}
			f, err := r.tryNext(5 * time.Second)
			if err == nil && f.Type != protocol.TypeWelcome {
				var e protocol.Error
				e.Decode(f)
				err = &e
			}
			errs <- err
		}()
	}
	for i := range 8 {
		if err := <-errs; err != nil {
			t.Errorf("login %d: %v", i, err)
		}
	}
}

// TestFrameSplitAcrossReads: a frame that arrives in pieces, with nothing
// complete before it, is put together, not dropped: a SEND split at several
// points (each piece a separate read), and a SEND pipelined behind LOGIN in
// pieces while the login is still being registered.
func TestFrameSplitAcrossReads(t *testing.T) {
	ts := startServer(t, serverOptions{})
	b := ts.Dial(2, protocol.ClientOptions{})
	frame := func(id uint64) []byte {
		s := protocol.Send{MsgID: id, To: 2, Body: bytes.Repeat([]byte{byte('a' + id)}, 300)}
		return s.Append(nil)
	}
	r := ts.rawLoginPing(t, 1, 0)
	n := len(frame(1))
	for i, cut := range []int{1, 2, 3, n / 2, n - 1} {
		id := uint64(i + 1)
		f := frame(id)
		r.write(f[:cut])
		time.Sleep(50 * time.Millisecond) // a separate read for each piece
		r.write(f[cut:])
		got := r.next(5 * time.Second)
		var a protocol.Accept
		if got.Type != protocol.TypeAccept || a.Decode(got) != nil || a.MsgID != id {
			t.Fatalf("split at %d: got %v %x, want ACCEPT of %d", cut, got.Type, got.Payload, id)
		}
		d := recvDelivers(t, b, 1, 5*time.Second)[0]
		if d.MsgID != id || !bytes.Equal(d.Body, bytes.Repeat([]byte{byte('a' + id)}, 300)) {
			t.Fatalf("split at %d: delivered %d %q", cut, d.MsgID, d.Body)
		}
	}

	// Pipelined behind LOGIN, in pieces.
	p := ts.rawFor(t)
	lg := protocol.Login{Token: ts.Token(3)}
	first := append(lg.Append(protocol.AppendPreface(nil, protocol.Version, protocol.TransportPlain)), frame(10)[:5]...)
	p.write(first)
	time.Sleep(50 * time.Millisecond)
	p.write(frame(10)[5:])
	if f := p.next(5 * time.Second); f.Type != protocol.TypeWelcome {
		t.Fatalf("got %v, want WELCOME", f.Type)
	}
	got := p.next(5 * time.Second)
	var a protocol.Accept
	if got.Type != protocol.TypeAccept || a.Decode(got) != nil || a.MsgID != 10 {
		t.Fatalf("pipelined SEND: got %v %x, want ACCEPT of 10", got.Type, got.Payload)
	}
}

// TestKeepaliveHoldsTheConnection: with a 1 s ping interval, a client that
// pings every 400 ms stays connected well past the idle deadline (1.5 s
// after its last frame), and one that stops is closed with IDLE_TIMEOUT.
func TestKeepaliveHoldsTheConnection(t *testing.T) {
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) { c.PingMin = time.Second }})
	r := ts.rawLoginPing(t, 1, 1)
	for range 10 { // 4 s
		r.write(protocol.AppendPing(nil))
		if f := r.next(2 * time.Second); f.Type != protocol.TypePong {
			var e protocol.Error
			_ = e.Decode(f)
			t.Fatalf("got %v %v %q, want PONG", f.Type, e.Code, e.Reason)
		}
		time.Sleep(400 * time.Millisecond)
	}
	if got := r.expectClose(5 * time.Second); got != protocol.CodeIdleTimeout {
		t.Fatalf("closed with %v, want IDLE_TIMEOUT", got)
	}
}
