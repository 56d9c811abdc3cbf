package client_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"switchboard/client"
	"switchboard/noise"
	"switchboard/protocol"
	"switchboard/token"
)

// dialNoise logs user in over Noise with device key kp and a token bound to
// it, to addr (the node's, or a cutter's in front of it).
func (tn *testNode) dialNoise(t *testing.T, addr string, user uint64, kp noise.Keypair, opts client.Options) *client.Conn {
	t.Helper()
	opts.Noise = &client.NoiseOptions{Static: kp}
	opts.Token = func(context.Context) ([]byte, error) {
		c := token.Claims{KeyID: 1, User: user, Device: 1, Expiry: time.Now().Add(time.Hour)}
		return token.MintBound(tn.secret, c, kp.Public[:]), nil
	}
	opts.Session.MinBackoff = 20 * time.Millisecond
	opts.Session.MaxBackoff = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// serverKey returns the node's current Noise static public key, from its
// keys file.
func (tn *testNode) serverKey(t *testing.T) []byte {
	t.Helper()
	keys, err := noise.LoadKeys(filepath.Join(tn.dir, noise.KeysFileName), false)
	if err != nil {
		t.Fatal(err)
	}
	return keys[0].Public[:]
}

// TestConnNoise: a Noise session learns the server's key under XX, sends
// and receives; after its TCP connection is cut it logs in again under IK
// with the pinned key and gets what was sent meanwhile; after the server
// restarts with a new key it falls back (XXfallback) and pins the new key.
func TestConnNoise(t *testing.T) {
	tn := newTestNode(t)
	cut := newCutter(t, tn.addr)
	const alice, bob = 61, 62
	ka, kb := newKeypair(t), newKeypair(t)
	a := tn.dialNoise(t, cut.addr(), alice, ka, client.Options{})
	b := tn.dialNoise(t, tn.addr, bob, kb, client.Options{})

	first := tn.serverKey(t)
	if st := a.Status(); st.Handshake != noise.PatternXX || !bytes.Equal(a.ServerKey(), first) {
		t.Fatalf("first connection: handshake %q, server key %x; want %s and %x", st.Handshake, a.ServerKey(), noise.PatternXX, first)
	}
	roundTrip(t, a, b, bob, "over XX")

	cut.cut()
	next[*client.Reconnected](t, a, nil)
	if st := a.Status(); st.Handshake != noise.PatternIK {
		t.Fatalf("after the cut: handshake %q, want %s with the pinned key", st.Handshake, noise.PatternIK)
	}
	roundTrip(t, b, a, alice, "over IK")
	if n := cut.accepted.Load(); n != 2 {
		t.Fatalf("%d connections through the cutter, want 2", n)
	}

	// A new key, the old one gone: IK under the pinned key cannot open.
	tn.stop()
	if err := os.Remove(filepath.Join(tn.dir, noise.KeysFileName)); err != nil {
		t.Fatal(err)
	}
	tn.start()
	second := tn.serverKey(t)
	if bytes.Equal(first, second) {
		t.Fatal("the restarted node kept its key")
	}
	next[*client.Reconnected](t, a, nil)
	next[*client.Reconnected](t, b, nil)
	if st := a.Status(); st.Handshake != noise.PatternXXfallback || !bytes.Equal(a.ServerKey(), second) {
		t.Fatalf("after the rotation: handshake %q, server key %x; want %s and %x", st.Handshake, a.ServerKey(), noise.PatternXXfallback, second)
	}
	roundTrip(t, a, b, bob, "after the fallback")

	if _, err := a.Send(bob, false, make([]byte, client.MaxNoiseBody+1)); err == nil {
		t.Fatalf("Send of a %d-byte body over Noise: no error", client.MaxNoiseBody+1)
	}

	// An unbound token over Noise is refused after the handshake.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	unbound := func(context.Context) ([]byte, error) {
		return token.Mint(tn.secret, token.Claims{KeyID: 1, User: 63, Device: 1, Expiry: time.Now().Add(time.Hour)}), nil
	}
	_, err := client.Dial(ctx, tn.addr, client.Options{Token: unbound, Noise: &client.NoiseOptions{Static: newKeypair(t)}})
	var perr *protocol.Error
	if !errors.As(err, &perr) || perr.Code != protocol.CodeBadToken {
		t.Fatalf("an unbound token over Noise: %v, want BAD_TOKEN", err)
	}
}

// roundTrip sends body from one user to user to (on c), and checks that to
// gets exactly it.
func roundTrip(t *testing.T, from, to *client.Conn, toUser uint64, body string) {
	t.Helper()
	id, err := from.Send(toUser, false, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	next(t, from, func(x *protocol.Accept) bool { return x.MsgID <= id && id <= x.MsgID+x.More })
	if d := next[*protocol.Deliver](t, to, nil); d.MsgID != id || string(d.Body) != body {
		t.Fatalf("got msg %d %q, want %d %q", d.MsgID, d.Body, id, body)
	}
}

// TestConnNoiseRefused: a handshake refused with a plain GOAWAY RETRY_LATER
// (kind 0x7f) is backed off as a GOAWAY after LOGIN is, by the delay its
// random source draws in [0, after] (here the top: after itself), and the
// next attempt asks for a token again; one refused with ERROR
// BAD_TOKEN ends the session with that code. The same holds when the
// server refuses the client's last handshake message (XX 3), where the
// client reads its first transport message.
func TestConnNoiseRefused(t *testing.T) {
	for _, last := range []bool{false, true} {
		t.Run(map[bool]string{false: "at XX 1", true: "at XX 3"}[last], func(t *testing.T) { testConnNoiseRefused(t, last) })
	}
}

func testConnNoiseRefused(t *testing.T, last bool) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const after = 50 // ms
	refusals := [][]byte{
		(&protocol.GoAway{After: after, Code: protocol.CodeRetryLater}).Append(nil),
		(&protocol.Error{Code: protocol.CodeBadToken, Reason: "MAC does not verify"}).Append(nil),
	}
	serverKey := newKeypair(t)
	var refusedAt, secondAt time.Time // when the GOAWAY went, when the next attempt came
	served := make(chan error, 1)
	go func() {
		for i, refusal := range refusals {
			nc, err := ln.Accept()
			if err != nil {
				served <- err
				return
			}
			if i == 1 {
				secondAt = time.Now()
			}
			// Read the preface and the whole message refused before
			// answering, so that closing does not reset the connection
			// under the answer.
			preface := make([]byte, protocol.PrefaceLen)
			if _, err := io.ReadFull(nc, preface); err != nil {
				served <- err
				return
			}
			kind, msg, err := readHandshakeMessage(nc)
			if err == nil && last {
				var hs *noise.ServerHandshake
				var reply []byte
				if hs, err = noise.NewServer(noise.ServerConfig{Keys: []noise.Keypair{serverKey}}, preface); err == nil {
					reply, err = hs.Step(kind, msg)
				}
				if err == nil {
					_, err = nc.Write(reply)
				}
				if err == nil && hs.Want() != 0 {
					_, _, err = readHandshakeMessage(nc) // XX 3; the second attempt is IK, pinned by the first
				}
			}
			if err != nil {
				served <- err
				return
			}
			if i == 0 {
				refusedAt = time.Now()
			}
			nc.Write(noise.AppendHandshake(nil, noise.KindPlain, refusal))
			nc.Close()
		}
		served <- nil
	}()

	var tokens atomic.Int32
	opts := client.Options{
		Token: func(context.Context) ([]byte, error) {
			tokens.Add(1)
			return []byte("token"), nil
		},
		Noise:      &client.NoiseOptions{Static: newKeypair(t)},
		KeepTrying: true,
	}
	opts.Session.MinBackoff, opts.Session.MaxBackoff = time.Millisecond, 2*time.Millisecond
	opts.Session.Rand = func(n int64) int64 { return n - 1 }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, ln.Addr().String(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Recv(ctx)
	var perr *protocol.Error
	if !errors.Is(err, client.ErrClosed) || !errors.As(err, &perr) || perr.Code != protocol.CodeBadToken {
		t.Fatalf("Recv after the refusals: %v, want ErrClosed with BAD_TOKEN", err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if n := tokens.Load(); n != 2 {
		t.Fatalf("Token called %d times, want 2: once per attempt", n)
	}
	if wait := secondAt.Sub(refusedAt); wait < after*time.Millisecond {
		t.Fatalf("the attempt after GOAWAY RETRY_LATER (after %d ms) came %v later", after, wait)
	}
	if st := c.Status(); st.State != client.StateClosed {
		t.Fatalf("status %v after BAD_TOKEN, want closed", st.State)
	}
}

// readHandshakeMessage reads one framed handshake message.
func readHandshakeMessage(r io.Reader) (kind byte, msg []byte, err error) {
	hdr := make([]byte, noise.HeaderLen)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return 0, nil, err
	}
	msg = make([]byte, binary.BigEndian.Uint16(hdr[1:]))
	_, err = io.ReadFull(r, msg)
	return hdr[0], msg, err
}

func newKeypair(t *testing.T) noise.Keypair {
	t.Helper()
	k, err := noise.NewKeypair(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// cutter is a TCP proxy in front of a server whose connections a test cuts
// at once, as a network that drops them would.
type cutter struct {
	ln       net.Listener
	to       string
	accepted atomic.Int32

	mu    sync.Mutex // guards conns
	conns []net.Conn // both ends of every proxied connection
}

func newCutter(t *testing.T, to string) *cutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutter{ln: ln, to: to}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.cut()
	})
	return p
}

func (p *cutter) addr() string { return p.ln.Addr().String() }

func (p *cutter) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		out, err := net.Dial("tcp", p.to)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		go func() { io.Copy(out, in); out.Close() }()
		go func() { io.Copy(in, out); in.Close() }()
	}
}

// cut closes every connection proxied so far.
func (p *cutter) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestCloseDuringNoiseHandshake: a Conn closed while its Noise handshake
// waits for the server cuts the handshake short (the connection's deadline)
// and returns, closed; the handshake that fails because of it does not
// race with, or panic in, what cut it. A server that takes the connection
// and never answers holds the handshake: the second, since Dial makes the
// first attempt itself (the server closes that one at once).
func TestCloseDuringNoiseHandshake(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if nc, err := ln.Accept(); err == nil {
			nc.Close()
		}
		if nc, err := ln.Accept(); err == nil {
			accepted <- nc // read nothing, answer nothing
		}
	}()
	opts := client.Options{
		Token:      func(context.Context) ([]byte, error) { return []byte("token"), nil },
		Noise:      &client.NoiseOptions{Static: newKeypair(t)},
		KeepTrying: true,
	}
	opts.Session.MinBackoff, opts.Session.MaxBackoff = time.Millisecond, 2*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, ln.Addr().String(), opts)
	if err != nil {
		t.Fatal(err)
	}
	var nc net.Conn
	select {
	case nc = <-accepted:
		defer nc.Close()
	case <-ctx.Done():
		t.Fatal("no connection")
	}
	// The preface and XX's first message: the client now waits for the
	// second.
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(nc, make([]byte, protocol.PrefaceLen+noise.HeaderLen)); err != nil {
		t.Fatalf("the client's first handshake message: %v", err)
	}
	if err := c.Close(); err != nil && !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Close: %v", err)
	}
	if st := c.Status(); st.State != client.StateClosed {
		t.Fatalf("status %v after Close, want closed", st.State)
	}
}

// TestCloseAsNoiseHandshakeFails: Close lands, many times over, just as a
// handshake fails because the server hung up: what cuts a handshake short
// at Close must never find the connection it cuts gone (a panic in the
// caller's process).
func TestCloseAsNoiseHandshakeFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const rounds = 40
	hungUp, done := make(chan struct{}), make(chan struct{})
	defer close(done)
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			// The first attempt of each round (Dial's own) closes at once;
			// the second reads the client's first message, then hangs up.
			nc.Close()
			if nc, err = ln.Accept(); err != nil {
				return
			}
			nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			io.ReadFull(nc, make([]byte, protocol.PrefaceLen+noise.HeaderLen))
			nc.Close()
			select {
			case hungUp <- struct{}{}:
			case <-done:
				return
			}
		}
	}()
	for range rounds {
		opts := client.Options{
			Token:      func(context.Context) ([]byte, error) { return []byte("token"), nil },
			Noise:      &client.NoiseOptions{Static: newKeypair(t)},
			KeepTrying: true,
		}
		opts.Session.MinBackoff, opts.Session.MaxBackoff = time.Millisecond, 2*time.Millisecond
		c, err := client.Dial(context.Background(), ln.Addr().String(), opts)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-hungUp:
		case <-time.After(10 * time.Second):
			t.Fatal("no second attempt")
		}
		c.Close()
		if st := c.Status(); st.State != client.StateClosed {
			t.Fatalf("status %v after Close, want closed", st.State)
		}
	}
}

// TestConnNoiseRefusalIsErrorOrGoAway: a handshake answered with a plain
// frame other than ERROR or GOAWAY (here a WELCOME, which only an encrypted
// session may carry) is a broken server, not a login: Dial fails with
// protocol.ErrMalformed.
func TestConnNoiseRefusalIsErrorOrGoAway(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		// Read the preface and the first message before answering, so that
		// closing does not reset the connection under the answer.
		hdr := make([]byte, protocol.PrefaceLen+noise.HeaderLen)
		if _, err := io.ReadFull(nc, hdr); err != nil {
			return
		}
		if _, err := io.ReadFull(nc, make([]byte, binary.BigEndian.Uint16(hdr[protocol.PrefaceLen+1:]))); err != nil {
			return
		}
		w := protocol.Welcome{Version: protocol.Version, User: 7, Ping: 600, MaxFrame: protocol.MaxFrame, Window: 256}
		nc.Write(noise.AppendHandshake(nil, noise.KindPlain, w.Append(nil)))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, ln.Addr().String(), client.Options{
		Token: func(context.Context) ([]byte, error) { return []byte("token"), nil },
		Noise: &client.NoiseOptions{Static: newKeypair(t)},
	})
	if err == nil {
		c.Close()
	}
	if !errors.Is(err, protocol.ErrMalformed) {
		t.Fatalf("Dial refused with a plain WELCOME: %v, want ErrMalformed", err)
	}
}
