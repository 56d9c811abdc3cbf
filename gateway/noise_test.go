package gateway_test

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard/gateway"
	"switchboard/internal/testutil"
	"switchboard/noise"
	"switchboard/protocol"
)

func noiseKey(t testing.TB) noise.Keypair {
	t.Helper()
	k, err := noise.NewKeypair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// noiseServer starts a server offering the Noise transport under keys,
// current first.
func noiseServer(t testing.TB, keys []noise.Keypair, more ...func(*gateway.Config)) *testServer {
	return startServer(t, serverOptions{gw: func(c *gateway.Config) {
		c.NoiseKeys = keys
		for _, f := range more {
			f(c)
		}
	}})
}

// noiseDial runs a handshake for user with cfg (a fresh device key if
// cfg.Static is zero) and returns the connection, as a rawConn reading
// frames, and what the handshake gave; it fails the test on an error.
func (ts *testServer) noiseDial(user uint64, cfg noise.ClientConfig) (*rawConn, noise.Result) {
	ts.t.Helper()
	r, res, err := ts.tryNoiseDial(user, cfg)
	if err != nil {
		ts.t.Fatalf("Noise handshake: %v", err)
	}
	return r, res
}

func (ts *testServer) tryNoiseDial(user uint64, cfg noise.ClientConfig) (*rawConn, noise.Result, error) {
	ts.t.Helper()
	if cfg.Static == (noise.Keypair{}) {
		cfg.Static = noiseKey(ts.t)
	}
	return ts.noiseLogin(cfg, ts.BoundToken(user, cfg.Static.Public[:]))
}

// noiseLogin runs a handshake with cfg whose LOGIN carries tok.
func (ts *testServer) noiseLogin(cfg noise.ClientConfig, tok []byte) (*rawConn, noise.Result, error) {
	ts.t.Helper()
	lg := protocol.Login{Token: tok}
	return ts.noiseHello(cfg, lg.Append(nil))
}

// noiseHello runs a handshake with cfg whose last message carries login,
// the bytes of a LOGIN frame or anything else.
func (ts *testServer) noiseHello(cfg noise.ClientConfig, login []byte) (*rawConn, noise.Result, error) {
	ts.t.Helper()
	nc, err := net.DialTimeout("tcp", ts.Addr, 5*time.Second)
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	c, res, err := noise.Dial(nc, cfg, protocol.Version, login)
	nc.SetDeadline(time.Time{})
	if err != nil {
		return nil, res, err
	}
	return &rawConn{t: ts.t, Conn: c}, res, nil
}

// welcome reads r's WELCOME.
func welcome(t testing.TB, r *rawConn) protocol.Welcome {
	t.Helper()
	f := r.next(5 * time.Second)
	var w protocol.Welcome
	if f.Type != protocol.TypeWelcome || w.Decode(f) != nil {
		t.Fatalf("got %v, want WELCOME", f.Type)
	}
	return w
}

// TestNoiseSession: a user logs in over XX, another over IK, a third in
// the plain; messages go between all three, each way, and WELCOME tells
// the Noise clients the largest frame that fits a transport message.
func TestNoiseSession(t *testing.T) {
	key := noiseKey(t)
	ts := noiseServer(t, []noise.Keypair{key})
	alice, res := ts.noiseDial(1, noise.ClientConfig{})
	if res.Pattern != noise.PatternXX || res.Peer != key.Public {
		t.Fatalf("XX gave %s with server key %x, want %x", res.Pattern, res.Peer, key.Public)
	}
	if w := welcome(t, alice); w.User != 1 || w.MaxFrame != gateway.NoiseMaxFrame {
		t.Fatalf("WELCOME %+v, want user 1 and max_frame %d", w, gateway.NoiseMaxFrame)
	}
	bob, res := ts.noiseDial(2, noise.ClientConfig{Server: key.Public[:]})
	if res.Pattern != noise.PatternIK {
		t.Fatalf("pattern %s, want IK", res.Pattern)
	}
	welcome(t, bob)
	carol := ts.rawLogin(3)

	send := func(from *rawConn, to, msgID uint64, body string) {
		t.Helper()
		s := protocol.Send{To: to, MsgID: msgID, Body: []byte(body)}
		from.write(s.Append(nil))
	}
	expect := func(r *rawConn, typ protocol.Type) protocol.Frame {
		t.Helper()
		for {
			f := r.next(5 * time.Second)
			if f.Type == typ {
				return f
			}
		}
	}
	for i, tc := range []struct {
		from     *rawConn
		to       *rawConn
		toUser   uint64
		fromUser uint64
	}{{alice, bob, 2, 1}, {bob, carol, 3, 2}, {carol, alice, 1, 3}, {bob, alice, 1, 2}} {
		body := "noise " + string(rune('a'+i))
		send(tc.from, tc.toUser, uint64(10+i), body)
		var d protocol.Deliver
		if err := d.Decode(expect(tc.to, protocol.TypeDeliver)); err != nil || d.From != tc.fromUser || string(d.Body) != body {
			t.Fatalf("message %d: got %+v (%v), want %q from %d", i, d, err, body, tc.fromUser)
		}
		var a protocol.Accept
		if err := a.Decode(expect(tc.from, protocol.TypeAccept)); err != nil || a.MsgID != uint64(10+i) {
			t.Fatalf("message %d: ACCEPT %+v (%v)", i, a, err)
		}
	}
	if got := ts.Srv.Stats().Handshakes.Load(); got != 2 {
		t.Fatalf("%d handshakes counted, want 2", got)
	}
}

// TestNoiseRotation: with a new key current and the old one kept, a client
// that pinned the old key still logs in over IK; one that pinned a key the
// server no longer has falls back to XXfallback and learns the new key.
func TestNoiseRotation(t *testing.T) {
	newKey, oldKey, gone := noiseKey(t), noiseKey(t), noiseKey(t)
	ts := noiseServer(t, []noise.Keypair{newKey, oldKey})
	r, res := ts.noiseDial(1, noise.ClientConfig{Server: oldKey.Public[:]})
	if res.Pattern != noise.PatternIK || res.Peer != oldKey.Public {
		t.Fatalf("pinned old key: %s with %x, want IK with the old key", res.Pattern, res.Peer)
	}
	welcome(t, r)
	r, res = ts.noiseDial(2, noise.ClientConfig{Server: gone.Public[:]})
	if res.Pattern != noise.PatternXXfallback || res.Peer != newKey.Public {
		t.Fatalf("pinned a lost key: %s with %x, want XXfallback with the new key", res.Pattern, res.Peer)
	}
	welcome(t, r)
}

// TestNoiseBadInput: a handshake message that does not verify, one that
// declares more than the limit, and a forged or truncated transport
// message after login each close that connection only, with a PROTOCOL
// error the client can read; the server goes on serving.
func TestNoiseBadInput(t *testing.T) {
	ts := noiseServer(t, []noise.Keypair{noiseKey(t)})
	refused := func(what string, write []byte) {
		t.Helper()
		r := ts.raw()
		r.write(write)
		r.SetReadDeadline(time.Now().Add(5 * time.Second))
		var hdr [noise.HeaderLen]byte
		if _, err := readFull(r, hdr[:]); err != nil || hdr[0] != noise.KindPlain {
			t.Fatalf("%s: read % x (%v), want a KindPlain message", what, hdr, err)
		}
		body := make([]byte, int(hdr[1])<<8|int(hdr[2]))
		if _, err := readFull(r, body); err != nil {
			t.Fatal(err)
		}
		f, _, err := protocol.ReadFrame(body, len(body))
		var e protocol.Error
		if err != nil || f.Type != protocol.TypeError || e.Decode(f) != nil || e.Code != protocol.CodeProtocol {
			t.Fatalf("%s: got %v %+v, want ERROR PROTOCOL", what, f.Type, e)
		}
	}
	xx := protocol.AppendPreface(nil, protocol.Version, protocol.TransportNoiseXX)
	refused("a low-order ephemeral key", noise.AppendHandshake(bytes.Clone(xx), noise.KindXX1, make([]byte, 32)))
	refused("a 65535-byte handshake message", append(bytes.Clone(xx), noise.KindXX1, 0xff, 0xff))
	refused("a message of the wrong kind", noise.AppendHandshake(bytes.Clone(xx), noise.KindIK1, make([]byte, 96)))

	for _, tc := range []struct {
		what  string
		write []byte
	}{
		{"a forged transport message", append([]byte{0, 40}, make([]byte, 40)...)},
		{"a transport message shorter than its tag", append([]byte{0, 5}, make([]byte, 5)...)},
	} {
		r, _ := ts.noiseDial(1, noise.ClientConfig{})
		welcome(t, r)
		nc := r.Conn.(*noise.Conn).Conn
		if _, err := nc.Write(tc.write); err != nil {
			t.Fatal(err)
		}
		if code := r.expectClose(5 * time.Second); code != protocol.CodeProtocol {
			t.Fatalf("%s: closed with %v, want PROTOCOL", tc.what, code)
		}
	}
	ts.roundTrip(t, 5, 6)
}

// TestNoiseHandshakeCap: past MaxHandshakes steps waiting or running, a
// handshake is refused with GOAWAY RETRY_LATER (sent as KindPlain); the
// one in progress finishes once its worker is free.
func TestNoiseHandshakeCap(t *testing.T) {
	ts := noiseServer(t, []noise.Keypair{noiseKey(t)}, func(c *gateway.Config) { c.MaxHandshakes, c.HandshakeWorkers = 1, 1 })
	release, entered := make(chan struct{}), make(chan struct{}, 8)
	ts.Srv.SetPanicHook(func(point string, _ uint64) {
		if point == "handshake" {
			entered <- struct{}{}
			<-release
		}
	})
	first := make(chan error, 1)
	go func() {
		r, _, err := ts.tryNoiseDial(1, noise.ClientConfig{})
		if err == nil {
			f, ferr := r.tryNext(5 * time.Second)
			if ferr == nil && f.Type != protocol.TypeWelcome {
				ferr = errors.New("no WELCOME")
			}
			err = ferr
		}
		first <- err
	}()
	select { // the first handshake's step holds the only place
	case <-entered:
	case err := <-first:
		t.Fatalf("the first handshake ended before its step ran: %v", err)
	}
	_, _, err := ts.tryNoiseDial(2, noise.ClientConfig{})
	var re *noise.RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("second handshake: %v, want a refusal", err)
	}
	f, _, _ := protocol.ReadFrame(re.Frame, len(re.Frame))
	var g protocol.GoAway
	if f.Type != protocol.TypeGoAway || g.Decode(f) != nil || g.Code != protocol.CodeRetryLater || g.After == 0 {
		t.Fatalf("refusal %v %+v, want GOAWAY RETRY_LATER with a delay", f.Type, g)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("the first handshake: %v", err)
	}
	if got := ts.Srv.Stats().HandshakesRefused.Load(); got != 1 {
		t.Fatalf("HandshakesRefused %d, want 1", got)
	}
}

// TestNoiseNotOffered: a server without keys answers a Noise preface with
// a plain ERROR UNSUPPORTED_TRANSPORT, which the client reads as a refusal.
func TestNoiseNotOffered(t *testing.T) {
	ts := startServer(t, serverOptions{})
	_, _, err := ts.tryNoiseDial(1, noise.ClientConfig{})
	refusedWithError(t, err, protocol.CodeUnsupportedTransport)
}

// refusedWithError fails the test unless err is a handshake refused with
// a plain ERROR of code.
func refusedWithError(t *testing.T, err error, code protocol.Code) {
	t.Helper()
	var re *noise.RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("handshake: %v, want a refusal", err)
	}
	f, _, _ := protocol.ReadFrame(re.Frame, len(re.Frame))
	var e protocol.Error
	if f.Type != protocol.TypeError || e.Decode(f) != nil || e.Code != code {
		t.Fatalf("refusal %v %+v, want ERROR %v", f.Type, e, code)
	}
}

// TestNoiseBacklog: a backlog larger than one transport message reaches a
// Noise client whole: the server's BATCHes are cut to fit, every message
// arrives once, in order.
func TestNoiseBacklog(t *testing.T) {
	ts := noiseServer(t, []noise.Keypair{noiseKey(t)})
	sender := ts.rawLogin(7)
	const n = 300
	body := bytes.Repeat([]byte{'x'}, 1000)
	for i := range n {
		s := protocol.Send{To: 8, MsgID: uint64(i + 1), Body: body}
		sender.write(s.Append(nil))
	}
	accepted := 0
	for accepted < n {
		f := sender.next(10 * time.Second)
		if f.Type == protocol.TypeAccept {
			var a protocol.Accept
			if err := a.Decode(f); err != nil {
				t.Fatal(err)
			}
			accepted += int(a.More) + 1
		}
	}
	r, _ := ts.noiseDial(8, noise.ClientConfig{})
	welcome(t, r)
	var got []uint64
	var seq uint64
	for len(got) < n {
		if seq > 0 { // acknowledge what came, so the window lets the rest go
			a := protocol.Ack{Seq: seq}
			r.write(a.Append(nil))
		}
		f := r.next(10 * time.Second)
		switch f.Type {
		case protocol.TypeDeliver:
			var d protocol.Deliver
			if err := d.Decode(f); err != nil {
				t.Fatal(err)
			}
			got, seq = append(got, d.MsgID), d.Seq
		case protocol.TypeBatch:
			var br protocol.BatchReader
			br.Reset(f)
			for br.Next() {
				var d protocol.Deliver
				if br.Type() == protocol.TypeDeliver && br.Deliver(&d) == nil {
					got, seq = append(got, d.MsgID), d.Seq
				}
			}
			if br.Err() != nil {
				t.Fatal(br.Err())
			}
		}
	}
	for i, id := range got {
		if id != uint64(i+1) {
			t.Fatalf("message %d is msg %d, want %d", i, id, i+1)
		}
	}
}

// readFull reads exactly len(b) bytes of r.
func readFull(r *rawConn, b []byte) (int, error) { return io.ReadFull(r.Conn, b) }

// TestNoiseBoundTokens: over Noise a token logs in only when it is bound
// to the device key the handshake proved: a token bound to another device
// (a stolen one) and an unbound token are refused BAD_TOKEN, saying why; a
// bound token is refused over the plain transport; with
// NoiseUnboundTokens an unbound token logs in over Noise.
func TestNoiseBoundTokens(t *testing.T) {
	ts := noiseServer(t, []noise.Keypair{noiseKey(t)})
	badToken := func(what string, r *rawConn, err error, reason string) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: handshake: %v", what, err)
		}
		f := r.next(5 * time.Second)
		var e protocol.Error
		if f.Type != protocol.TypeError || e.Decode(f) != nil || e.Code != protocol.CodeBadToken || !strings.Contains(e.Reason, reason) {
			t.Fatalf("%s: got %v %+v, want ERROR BAD_TOKEN saying %q", what, f.Type, e, reason)
		}
	}
	device, thief := noiseKey(t), noiseKey(t)
	r, _, err := ts.noiseLogin(noise.ClientConfig{Static: thief}, ts.BoundToken(1, device.Public[:]))
	badToken("a token bound to another device", r, err, "MAC")
	r, _, err = ts.noiseLogin(noise.ClientConfig{Static: device}, ts.Token(1))
	badToken("an unbound token", r, err, "not bound")
	r, _, err = ts.noiseLogin(noise.ClientConfig{Static: device}, ts.BoundToken(1, device.Public[:]))
	if err != nil {
		t.Fatal(err)
	}
	welcome(t, r)

	plain := ts.raw()
	lg := protocol.Login{Token: ts.BoundToken(2, device.Public[:])}
	plain.write(lg.Append(protocol.AppendPreface(nil, protocol.Version, protocol.TransportPlain)))
	if code := plain.expectClose(5 * time.Second); code != protocol.CodeBadToken {
		t.Fatalf("a bound token over plain: closed with %v, want BAD_TOKEN", code)
	}

	open := noiseServer(t, []noise.Keypair{noiseKey(t)}, func(c *gateway.Config) { c.NoiseUnboundTokens = true })
	r, _, err = open.noiseLogin(noise.ClientConfig{Static: device}, open.Token(3))
	if err != nil {
		t.Fatal(err)
	}
	welcome(t, r)
}

// TestNoiseFrameTooLarge: a stored message too large for one transport
// message (sent while the node served the plain transport alone, whose
// frames may be larger) cannot reach its Noise recipient: the connection
// is closed and counted in NoiseFrameTooLarge.
func TestNoiseFrameTooLarge(t *testing.T) {
	plain := startServer(t, serverOptions{})
	a := plain.Dial(1, protocol.ClientOptions{})
	id, err := a.Send(2, make([]byte, noise.MaxPlaintext))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.WaitAccept(ctxFor(t, 10*time.Second), id); err != nil {
		t.Fatalf("accept: %v", err)
	}
	plain.Stop()
	ts := startServer(t, serverOptions{dir: plain.Dir, gw: func(c *gateway.Config) { c.NoiseKeys = []noise.Keypair{noiseKey(t)} }})
	r, _ := ts.noiseDial(2, noise.ClientConfig{})
	r.expectClose(10 * time.Second)
	if n := ts.Srv.Stats().NoiseFrameTooLarge.Load(); n != 1 {
		t.Fatalf("NoiseFrameTooLarge %d, want 1", n)
	}
}

// TestNoiseBadFrames: a transport message that decrypts but whose frames
// are bad closes that connection only, with the code the plain transport
// would give: a message ending inside a frame (frames never span two),
// a frame declaring more than MaxFrame, a frame of an unknown type, a
// frame only the server may send.
func TestNoiseBadFrames(t *testing.T) {
	ts := noiseServer(t, []noise.Keypair{noiseKey(t)})
	send := (&protocol.Send{To: 2, MsgID: 1, Body: []byte("cut in half")}).Append(nil)
	for _, tc := range []struct {
		name  string
		write []byte
		code  protocol.Code
	}{
		{name: "half a frame", write: send[:len(send)/2], code: protocol.CodeProtocol},
		{name: "over MaxFrame", write: append(binary.AppendUvarint(nil, protocol.MaxFrame+1), byte(protocol.TypeSend)), code: protocol.CodeFrameTooLarge},
		{name: "unknown type", write: []byte{1, 0x1f}, code: protocol.CodeUnknownType},
		{name: "server-only frame", write: protocol.AppendPong(nil), code: protocol.CodeProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := ts.noiseDial(1, noise.ClientConfig{})
			welcome(t, r)
			r.write(tc.write)
			if code := r.expectClose(5 * time.Second); code != tc.code {
				t.Fatalf("closed with %v, want %v", code, tc.code)
			}
		})
	}
	ts.roundTrip(t, 5, 6)
}

// TestNoiseOnlyRefusesPlain: a server that serves Noise only answers a
// plain preface with ERROR UNSUPPORTED_TRANSPORT and closes it, while a
// Noise client logs in.
func TestNoiseOnlyRefusesPlain(t *testing.T) {
	ts := startServer(t, serverOptions{byHand: true, gw: func(c *gateway.Config) {
		c.NoiseKeys = []noise.Keypair{noiseKey(t)}
		c.RefusePlain = true
	}})
	r := ts.raw()
	r.write((&protocol.Login{Token: ts.Token(1)}).Append(protocol.AppendPreface(nil, protocol.Version, protocol.TransportPlain)))
	if code := r.expectClose(5 * time.Second); code != protocol.CodeUnsupportedTransport {
		t.Fatalf("a plain login: closed with %v, want UNSUPPORTED_TRANSPORT", code)
	}
	n, _ := ts.noiseDial(2, noise.ClientConfig{})
	welcome(t, n)
}

// TestNoiseUnknownTransport: a preface naming a transport that does not
// exist is refused with a plain ERROR UNSUPPORTED_TRANSPORT, even by a
// server that offers Noise.
func TestNoiseUnknownTransport(t *testing.T) {
	ts := noiseServer(t, []noise.Keypair{noiseKey(t)})
	r := ts.raw()
	r.write(protocol.AppendPreface(nil, protocol.Version, protocol.TransportNoiseIK+1))
	if code := r.expectClose(5 * time.Second); code != protocol.CodeUnsupportedTransport {
		t.Fatalf("closed with %v, want UNSUPPORTED_TRANSPORT", code)
	}
}

// TestNoiseHandshakeSplit: a handshake message that arrives in two reads
// is taken once whole.
func TestNoiseHandshakeSplit(t *testing.T) {
	ts := noiseServer(t, []noise.Keypair{noiseKey(t)})
	r := ts.raw()
	e := noiseKey(t)
	msg := noise.AppendHandshake(protocol.AppendPreface(nil, protocol.Version, protocol.TransportNoiseXX), noise.KindXX1, e.Public[:])
	r.write(msg[:protocol.PrefaceLen+10])
	eventually(t, 5*time.Second, "the first piece to arrive", func() bool { return ts.Srv.Buffered(0) == 10 })
	r.write(msg[protocol.PrefaceLen+10:])
	r.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [noise.HeaderLen]byte
	if _, err := readFull(r, hdr[:]); err != nil || hdr[0] != noise.KindXX2 {
		t.Fatalf("read % x (%v), want XX 2", hdr, err)
	}
}

// TestNoiseHandshakePanic: a panic in a handshake step fails that
// handshake only, with ERROR PROTOCOL in a KindPlain message; the next
// handshake succeeds.
func TestNoiseHandshakePanic(t *testing.T) {
	ts := noiseServer(t, []noise.Keypair{noiseKey(t)})
	var once sync.Once
	ts.Srv.SetPanicHook(func(point string, _ uint64) {
		if point == "handshake" {
			once.Do(func() { panic("a handshake step") })
		}
	})
	_, _, err := ts.tryNoiseDial(1, noise.ClientConfig{})
	refusedWithError(t, err, protocol.CodeProtocol)
	r, _ := ts.noiseDial(2, noise.ClientConfig{})
	welcome(t, r)
}

// handXX is a client's XX handshake run by hand, a message at a time.
type handXX struct {
	t  testing.TB
	nc net.Conn
	hs *noise.ClientHandshake
}

// startXX dials ts and writes the preface and XX 1 for user.
func (ts *testServer) startXX(user uint64) *handXX {
	ts.t.Helper()
	nc, err := net.DialTimeout("tcp", ts.Addr, 5*time.Second)
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.t.Cleanup(func() { nc.Close() })
	cfg := noise.ClientConfig{Static: noiseKey(ts.t)}
	login := protocol.Login{Token: ts.BoundToken(user, cfg.Static.Public[:])}
	preface := protocol.AppendPreface(nil, protocol.Version, cfg.Transport())
	hs, first, err := noise.NewClient(cfg, preface, login.Append(nil))
	if err != nil {
		ts.t.Fatal(err)
	}
	if _, err := nc.Write(append(preface, first...)); err != nil {
		ts.t.Fatal(err)
	}
	return &handXX{t: ts.t, nc: nc, hs: hs}
}

// step reads the server's XX 2 and returns XX 3, not yet sent.
func (x *handXX) step() []byte {
	x.t.Helper()
	x.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, noise.HeaderLen)
	if _, err := io.ReadFull(x.nc, hdr); err != nil {
		x.t.Fatalf("reading XX 2: %v", err)
	}
	msg := make([]byte, int(hdr[1])<<8|int(hdr[2]))
	if _, err := io.ReadFull(x.nc, msg); err != nil {
		x.t.Fatalf("reading XX 2: %v", err)
	}
	reply, err := x.hs.Step(hdr[0], msg)
	if err != nil || x.hs.Want() != 0 {
		x.t.Fatalf("XX 2 (kind %#x): %v; the client wants %#x next", hdr[0], err, x.hs.Want())
	}
	return reply
}

// first reads the server's first transport message after the handshake
// and returns its first frame.
func (x *handXX) first() protocol.Frame {
	x.t.Helper()
	x.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n := make([]byte, noise.LengthLen)
	if _, err := io.ReadFull(x.nc, n); err != nil {
		x.t.Fatalf("reading the first transport message: %v", err)
	}
	ct := make([]byte, int(n[0])<<8|int(n[1]))
	if _, err := io.ReadFull(x.nc, ct); err != nil {
		x.t.Fatalf("reading the first transport message: %v", err)
	}
	frames, err := x.hs.Result().Session.Open(ct)
	if err != nil {
		x.t.Fatalf("the first transport message (length bytes % x): %v", n, err)
	}
	f, _, err := protocol.ReadFrame(frames, protocol.MaxServerFrame)
	if err != nil {
		x.t.Fatal(err)
	}
	return f
}

// TestNoiseHandshakeFinishes: a handshake that has started is finished.
// With the workers' places all taken (one step running, a new handshake's
// first step waiting), a client's XX 3 is not refused: it waits in a queue
// of its own, which the worker takes first, so the client gets WELCOME
// while the new handshake still waits. A refusal there would come after
// the client's last handshake message, where it reads transport messages.
func TestNoiseHandshakeFinishes(t *testing.T) {
	ts := noiseServer(t, []noise.Keypair{noiseKey(t)}, func(c *gateway.Config) { c.MaxHandshakes, c.HandshakeWorkers = 2, 1 })
	entered, release := make(chan struct{}), make(chan struct{})
	ts.Srv.SetPanicHook(func(point string, _ uint64) {
		if point == "handshake" {
			entered <- struct{}{}
			<-release
		}
	})
	step := func() { <-entered; release <- struct{}{} }

	a := ts.startXX(1)
	step() // a's XX 1
	xx3 := a.step()
	b := ts.startXX(2)
	<-entered // b's XX 1 holds the worker
	c := ts.startXX(3)
	testutil.Eventually(t, 5*time.Second, "c's XX 1 to wait for the worker", func() bool { return ts.Srv.HandshakeSteps() == 2 })
	if _, err := a.nc.Write(xx3); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "a's XX 3 to wait for the worker", func() bool { return ts.Srv.HandshakeSteps() == 3 })
	release <- struct{}{} // b's XX 1 done
	step()                // the next step taken: a's XX 3, not c's XX 1
	<-entered             // the one after it waits
	if f := a.first(); f.Type != protocol.TypeWelcome {
		t.Fatalf("a's first frame after the handshake: %v, want WELCOME", f.Type)
	}
	release <- struct{}{} // c's XX 1
	c.step()
	b.step()
	if got := ts.Srv.Stats().HandshakesRefused.Load(); got != 0 {
		t.Errorf("HandshakesRefused %d, want 0", got)
	}
}

// TestNoiseHandshakeOneStepAtATime: a handshake message that arrives while
// the connection's previous step is with a worker stays unread until that
// step is answered: two steps of one handshake never run at once. Here it
// is an XX 3 sent before XX 2 came, which then fails: the server refuses
// it in a KindPlain message.
func TestNoiseHandshakeOneStepAtATime(t *testing.T) {
	ts := noiseServer(t, []noise.Keypair{noiseKey(t)})
	entered, release := make(chan struct{}, 1), make(chan struct{})
	var once sync.Once
	ts.Srv.SetPanicHook(func(point string, _ uint64) {
		if point == "handshake" {
			once.Do(func() { entered <- struct{}{}; <-release })
		}
	})
	a := ts.startXX(1)
	<-entered // XX 1 is with the worker
	early := noise.AppendHandshake(nil, noise.KindXX3, make([]byte, 64))
	if _, err := a.nc.Write(early); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the early XX 3 to arrive and wait", func() bool { return ts.Srv.Buffered(0) == len(early) })
	if n := ts.Srv.HandshakeSteps(); n != 1 {
		t.Fatalf("%d handshake steps with the workers, want XX 1 alone", n)
	}
	close(release)
	a.step() // XX 2
	r := &rawConn{t: t, Conn: a.nc}
	r.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [noise.HeaderLen]byte
	if _, err := readFull(r, hdr[:]); err != nil || hdr[0] != noise.KindPlain {
		t.Fatalf("after the early XX 3: read % x (%v), want a KindPlain ERROR", hdr, err)
	}
}

// TestHandshakeStepsCountedOut: every handshake step is counted out of
// Config.MaxHandshakes when it is done or refused, first and later steps
// alike: after a refusal and a whole XX handshake none is counted, and
// new handshakes are taken up to the cap again. The refused one's state
// is dropped with it.
func TestHandshakeStepsCountedOut(t *testing.T) {
	ts := noiseServer(t, []noise.Keypair{noiseKey(t)}, func(c *gateway.Config) { c.MaxHandshakes, c.HandshakeWorkers = 1, 1 })
	release, entered := make(chan struct{}), make(chan struct{}, 8)
	hold := true
	var mu sync.Mutex
	ts.Srv.SetPanicHook(func(point string, _ uint64) {
		mu.Lock()
		h := hold
		mu.Unlock()
		if point == "handshake" && h {
			entered <- struct{}{}
			<-release
		}
	})
	welcomed := func(r *rawConn, err error) error {
		if err != nil {
			return err
		}
		f, err := r.tryNext(5 * time.Second)
		if err == nil && f.Type != protocol.TypeWelcome {
			err = fmt.Errorf("got %v, want WELCOME", f.Type)
		}
		return err
	}
	first := make(chan error, 1)
	go func() {
		r, _, err := ts.tryNoiseDial(1, noise.ClientConfig{})
		first <- welcomed(r, err)
	}()
	select { // the first handshake's XX 1 holds the only place
	case <-entered:
	case err := <-first:
		t.Fatalf("the first handshake ended before its step ran: %v", err)
	}
	var re *noise.RefusedError
	if _, _, err := ts.tryNoiseDial(2, noise.ClientConfig{}); !errors.As(err, &re) {
		t.Fatalf("second handshake: %v, want a refusal", err)
	}
	mu.Lock()
	hold = false
	mu.Unlock()
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("the first handshake: %v", err)
	}
	eventually(t, 5*time.Second, "no handshake step counted", func() bool { return ts.Srv.HandshakeSteps() == 0 })
	for u := range uint64(3) {
		r, _, err := ts.tryNoiseDial(10+u, noise.ClientConfig{})
		if err := welcomed(r, err); err != nil {
			t.Fatalf("handshake %d after the refusal: %v", u+1, err)
		}
		eventually(t, 5*time.Second, "no handshake step counted", func() bool { return ts.Srv.HandshakeSteps() == 0 })
	}
	if got := ts.Srv.Stats().HandshakesRefused.Load(); got != 1 {
		t.Fatalf("HandshakesRefused %d, want 1", got)
	}
	if got := ts.Srv.Stats().Closes[protocol.CodeRetryLater].Load(); got != 1 {
		t.Fatalf("Closes[RETRY_LATER] %d, want the refused one", got)
	}
	// The refused connection's Noise state went with it.
	eventually(t, 5*time.Second, "4 Noise states, of the 4 open", func() bool { return ts.Srv.NoiseStates() == 4 })
}
