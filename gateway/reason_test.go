package gateway_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"switchboard/gateway"
	"switchboard/internal/testutil"
	"switchboard/protocol"
	"switchboard/token"
)

// TestErrorReasons: every ERROR the gateway sends carries a reason that
// names the check that failed. Each case provokes one and checks its code
// and that the reason holds the words naming the check.
func TestErrorReasons(t *testing.T) {
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) {
		c.HandshakeTimeout = time.Second
		c.PartialFrameTimeout = time.Second
		c.PingMin = time.Second
		c.MaxBody = 1024
		c.RateLimit = 20
	}})
	preface := protocol.AppendPreface(nil, protocol.Version, protocol.TransportPlain)
	login := func(token []byte) []byte {
		lg := protocol.Login{Token: token}
		return lg.Append(bytes.Clone(preface))
	}
	send := func(body []byte) []byte {
		s := protocol.Send{MsgID: 1, To: 2, Body: body}
		return s.Append(nil)
	}
	mint := func(secret []byte, c token.Claims) []byte {
		c.Device = 1
		if c.Expiry.IsZero() {
			c.Expiry = time.Now().Add(time.Hour)
		}
		return token.Mint(secret, c)
	}
	expired := mint(ts.secret, token.Claims{KeyID: 1, User: 9, Expiry: time.Now().Add(-time.Minute)})

	tests := []struct {
		name     string
		loggedIn bool   // log in before writing
		ping     uint32 // with loggedIn: the ping asked for
		write    []byte
		want     protocol.Code
		reason   string // the reason must contain this
	}{
		{name: "oversized frame", loggedIn: true, write: binary.AppendUvarint(nil, protocol.MaxFrame+2),
			want: protocol.CodeFrameTooLarge, reason: "over the limit of"},
		{name: "oversized first frame", write: binary.AppendUvarint(bytes.Clone(preface), protocol.MaxLoginFrame+1),
			want: protocol.CodeFrameTooLarge, reason: "frame of 1025 bytes over the limit of 1024"},
		{name: "READ over 1,024 ids", loggedIn: true, write: (&protocol.Read{To: 2, MsgID: 1, More: protocol.MaxReadIDs}).Append(nil),
			want: protocol.CodeProtocol, reason: "READ of msg ids 1 to 1+1024"},
		{name: "unknown type", loggedIn: true, write: []byte{0x01, 0x1f},
			want: protocol.CodeUnknownType, reason: "frame type 0x1f unknown"},
		{name: "zero-length frame", loggedIn: true, write: []byte{0x00},
			want: protocol.CodeProtocol, reason: "zero length"},
		{name: "flag not allowed", loggedIn: true, write: protocol.AppendFrame(nil, protocol.TypePing, protocol.FlagA, nil),
			want: protocol.CodeProtocol, reason: "flags"},
		{name: "malformed SEND", loggedIn: true, write: protocol.AppendFrame(nil, protocol.TypeSend, 0, []byte{0x81, 0x00, 0x02, 'h', 'i'}),
			want: protocol.CodeProtocol, reason: "SEND"},
		{name: "PING with a payload", loggedIn: true, write: protocol.AppendFrame(nil, protocol.TypePing, 0, []byte{1}),
			want: protocol.CodeProtocol, reason: "PING"},
		{name: "server-only frame", loggedIn: true, write: protocol.AppendFrame(nil, protocol.TypePong, 0, nil),
			want: protocol.CodeProtocol, reason: "PONG is a server-to-client frame"},
		{name: "LEAVE naming members", loggedIn: true, write: (&protocol.Group{MsgID: 1, Group: 1 << 30, Op: protocol.GroupLeave, Members: []uint64{5}}).Append(nil),
			want: protocol.CodeProtocol, reason: "LEAVE"},
		{name: "frame before login", write: protocol.AppendPing(bytes.Clone(preface)),
			want: protocol.CodeNotLoggedIn, reason: "PING before LOGIN"},
		{name: "bad preface", write: []byte("GET / HTTP/1.1\r\n\r\n"),
			want: protocol.CodeProtocol, reason: "preface"},
		{name: "preface version 0", write: []byte{'S', 'W', 0, 0},
			want: protocol.CodeUnsupportedVersion, reason: "preface"},
		{name: "preface transport", write: []byte{'S', 'W', 1, protocol.TransportNoiseXX},
			want: protocol.CodeUnsupportedTransport, reason: "transport"},
		{name: "second login", loggedIn: true, write: (&protocol.Login{Token: ts.Token(9)}).Append(nil),
			want: protocol.CodeAlreadyLoggedIn, reason: "second LOGIN"},
		{name: "malformed token", write: login([]byte("not a token at all, not at all")),
			want: protocol.CodeBadToken, reason: "malformed"},
		{name: "forged token", write: login(mint(bytes.Repeat([]byte{9}, 32), token.Claims{KeyID: 1, User: 9})),
			want: protocol.CodeBadToken, reason: "MAC"},
		{name: "unknown key", write: login(mint(ts.secret, token.Claims{KeyID: 7, User: 9})),
			want: protocol.CodeBadToken, reason: "unknown key id"},
		{name: "user 0", write: login(mint(ts.secret, token.Claims{KeyID: 1, User: 0})),
			want: protocol.CodeBadToken, reason: "user 0"},
		{name: "expired token", write: login(expired),
			want: protocol.CodeTokenExpired, reason: "LOGIN token expired at"},
		{name: "body over the limit", loggedIn: true, write: send(make([]byte, 1025)),
			want: protocol.CodeBodyTooLarge, reason: "SEND body of 1025 bytes over the limit of 1024"},
		{name: "compressed without a dictionary", loggedIn: true, write: protocol.AppendFrame(nil, protocol.TypeSend, protocol.FlagCompressed, []byte{1, 2, 3, 4, 5, 6}),
			want: protocol.CodeDecompression, reason: "dictionary"},
		{name: "ack beyond delivered", loggedIn: true, write: (&protocol.Ack{Seq: 17}).Append(nil),
			want: protocol.CodeBadAck, reason: "ACK 17 beyond last delivered 0"},
		{name: "flood", loggedIn: true, write: bytes.Repeat(protocol.AppendPing(nil), 100),
			want: protocol.CodeRateLimited, reason: "over the rate of 20 frames/s"},
		{name: "handshake timeout", write: preface,
			want: protocol.CodeHandshakeTimeout, reason: "no LOGIN before the handshake deadline"},
		{name: "idle timeout", loggedIn: true, ping: 1,
			want: protocol.CodeIdleTimeout, reason: "s or more (1.5 × ping 1s)"},
		{name: "partial frame", loggedIn: true, write: send(bytes.Repeat([]byte("a"), 100))[:20],
			want: protocol.CodePartialFrameTimeout, reason: "frame incomplete"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // several wait out a one-second timeout
			var r *rawConn
			if tt.loggedIn {
				r = ts.rawLoginPing(t, uint64(100+i), tt.ping)
			} else {
				r = ts.rawFor(t)
			}
			if len(tt.write) > 0 {
				r.write(tt.write)
			}
			e := r.expectErrorFrame(5 * time.Second)
			if e.Code != tt.want || !strings.Contains(e.Reason, tt.reason) {
				t.Fatalf("ERROR %v %q, want %v with a reason containing %q", e.Code, e.Reason, tt.want, tt.reason)
			}
			t.Logf("%v: %s", e.Code, e.Reason)
		})
	}

	// Closes a worker asks for: a second login of the same user replaces
	// the first.
	t.Run("replaced", func(t *testing.T) {
		first := ts.rawLoginPing(t, 500, 0)
		ts.rawLoginPing(t, 500, 0)
		e := first.expectErrorFrame(5 * time.Second)
		if e.Code != protocol.CodeReplaced || !strings.Contains(e.Reason, "newer login") {
			t.Fatalf("ERROR %v %q, want REPLACED naming the newer login", e.Code, e.Reason)
		}
	})
}

// TestErrorReasonServerFull: the connection over the cap is told the cap.
func TestErrorReasonServerFull(t *testing.T) {
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) { c.MaxConns = 1 }})
	ts.rawLogin(1)
	e := ts.raw().expectErrorFrame(5 * time.Second)
	if e.Code != protocol.CodeServerFull || !strings.Contains(e.Reason, "connection cap of 1") {
		t.Fatalf("ERROR %v %q, want SERVER_FULL naming the cap", e.Code, e.Reason)
	}
}

// expectErrorFrame reads frames until an ERROR and returns it; it fails the
// test if the connection ends or d passes first.
func (r *rawConn) expectErrorFrame(d time.Duration) protocol.Error {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for {
		f, err := r.tryNext(time.Until(deadline))
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				r.t.Fatalf("no ERROR within %v", d)
			}
			r.t.Fatalf("connection ended without an ERROR: %v", err)
		}
		if f.Type == protocol.TypeError {
			var e protocol.Error
			if err := e.Decode(f); err != nil {
				r.t.Fatalf("bad ERROR frame: %v", err)
			}
			return e
		}
	}
}

// TestCloseLogged: every close is logged at debug level with its user,
// code and reason.
func TestCloseLogged(t *testing.T) {
	var logs testutil.Buffer
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}})
	r := ts.rawLogin(42)
	r.write((&protocol.Ack{Seq: 17}).Append(nil))
	r.expectErrorFrame(5 * time.Second)
	want := `msg="gateway: connection closed" user=42 code=BAD_ACK reason="ACK 17 beyond last delivered 0"`
	eventually(t, 5*time.Second, "the close logged", func() bool { return strings.Contains(logs.String(), want) })
}
