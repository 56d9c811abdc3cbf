package noise_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"

	"switchboard/noise"
	"switchboard/protocol"
)

func keypair(t testing.TB) noise.Keypair {
	t.Helper()
	k, err := noise.NewKeypair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// handshake runs a whole handshake between a client and a server in
// memory and returns both results. It fails the test on any error.
func handshake(t testing.TB, ccfg noise.ClientConfig, scfg noise.ServerConfig, login []byte) (client, server noise.Result) {
	t.Helper()
	preface := protocol.AppendPreface(nil, protocol.Version, ccfg.Transport())
	c, msg, err := noise.NewClient(ccfg, preface, login)
	if err != nil {
		t.Fatal(err)
	}
	s, err := noise.NewServer(scfg, preface)
	if err != nil {
		t.Fatal(err)
	}
	for toServer := true; c.Want() != 0 || s.Want() != 0; toServer = !toServer {
		if msg == nil {
			t.Fatalf("no message to pass on; client wants %#x, server %#x", c.Want(), s.Want())
		}
		kind, body, n, err := noise.ReadHandshake(msg)
		if err != nil || n != len(msg) {
			t.Fatalf("framing: %v (%d of %d bytes)", err, n, len(msg))
		}
		if toServer {
			msg, err = s.Step(kind, body)
		} else {
			msg, err = c.Step(kind, body)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if msg != nil {
		t.Fatalf("a message left over after both sides finished: % x", msg)
	}
	return c.Result(), s.Result()
}

// exchange checks that a and b reach each other through their sessions,
// several messages each way.
func exchange(t *testing.T, a, b *noise.Session) {
	t.Helper()
	for i := range 3 {
		for _, dir := range []struct{ from, to *noise.Session }{{a, b}, {b, a}} {
			frames := bytes.Repeat([]byte{byte(i)}, 10+i)
			wire, err := dir.from.Seal(nil, frames)
			if err != nil {
				t.Fatal(err)
			}
			ct, n, err := noise.ReadTransport(wire)
			if err != nil || n != len(wire) || len(wire) != noise.LengthLen+len(frames)+noise.TagLen {
				t.Fatalf("transport framing: %v, %d of %d bytes", err, n, len(wire))
			}
			got, err := dir.to.Open(ct)
			if err != nil || !bytes.Equal(got, frames) {
				t.Fatalf("opened % x (%v), want % x", got, err, frames)
			}
		}
	}
}

// TestHandshakes: XX for first contact, IK with the server's current key,
// IK with its previous key during a rotation's overlap, and IK with a key
// the server no longer has, which falls back to XXfallback. Each ends with
// the LOGIN delivered, each side holding the other's static key, and
// sessions that reach each other both ways.
func TestHandshakes(t *testing.T) {
	server, old, gone, device := keypair(t), keypair(t), keypair(t), keypair(t)
	login := []byte("LOGIN frame")
	scfg := noise.ServerConfig{Keys: []noise.Keypair{server, old}}
	for _, tc := range []struct {
		name    string
		known   []byte
		pattern string
	}{
		{"XX", nil, noise.PatternXX},
		{"IK", server.Public[:], noise.PatternIK},
		{"IK with the previous key", old.Public[:], noise.PatternIK},
		{"IK with a key the server lost", gone.Public[:], noise.PatternXXfallback},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s := handshake(t, noise.ClientConfig{Static: device, Server: tc.known}, scfg, login)
			if c.Pattern != tc.pattern || s.Pattern != tc.pattern {
				t.Fatalf("patterns %s / %s, want %s", c.Pattern, s.Pattern, tc.pattern)
			}
			if !bytes.Equal(s.Login, login) {
				t.Fatalf("server got LOGIN %q", s.Login)
			}
			if s.Peer != device.Public {
				t.Fatalf("server sees client key %x, want %x", s.Peer, device.Public)
			}
			want := server.Public
			if tc.known != nil && bytes.Equal(tc.known, old.Public[:]) {
				want = old.Public
			}
			if c.Peer != want {
				t.Fatalf("client sees server key %x, want %x", c.Peer, want)
			}
			exchange(t, c.Session, s.Session)
		})
	}
}

// TestPrologueBindsPreface: a server that saw another preface than the
// client sent (a downgrade of the version in transit) fails the handshake.
func TestPrologueBindsPreface(t *testing.T) {
	server, device := keypair(t), keypair(t)
	for _, transport := range []byte{protocol.TransportNoiseXX, protocol.TransportNoiseIK} {
		ccfg := noise.ClientConfig{Static: device}
		if transport == protocol.TransportNoiseIK {
			ccfg.Server = server.Public[:]
		}
		c, msg, err := noise.NewClient(ccfg, protocol.AppendPreface(nil, 2, transport), []byte("L"))
		if err != nil {
			t.Fatal(err)
		}
		s, err := noise.NewServer(noise.ServerConfig{Keys: []noise.Keypair{server}}, protocol.AppendPreface(nil, 1, transport))
		if err != nil {
			t.Fatal(err)
		}
		failed := false
		for i := 0; i < 3 && !failed && msg != nil; i++ {
			kind, body, _, _ := noise.ReadHandshake(msg)
			if i%2 == 0 {
				msg, err = s.Step(kind, body)
			} else {
				msg, err = c.Step(kind, body)
			}
			failed = err != nil
			if transport == protocol.TransportNoiseIK && i == 0 && err == nil {
				// IK's first message fails under every key: the server
				// falls back, and the fallback fails on the prologue.
				if k, _, _, _ := noise.ReadHandshake(msg); k != noise.KindFB1 {
					t.Fatalf("server answered kind %#x, want a fallback", k)
				}
			}
		}
		if !failed {
			t.Fatalf("transport %d: the handshake succeeded across different prefaces", transport)
		}
	}
}

// TestTransportRejects: a forged tag, a replayed message, a reordered one
// and a cut one all fail to open (ErrDecrypt), as does a message shorter
// than a tag; more than MaxPlaintext bytes do not seal.
func TestTransportRejects(t *testing.T) {
	c, s := handshake(t, noise.ClientConfig{Static: keypair(t)}, noise.ServerConfig{Keys: []noise.Keypair{keypair(t)}}, []byte("L"))
	seal := func(p string) []byte {
		w, err := c.Session.Seal(nil, []byte(p))
		if err != nil {
			t.Fatal(err)
		}
		ct, _, err := noise.ReadTransport(w)
		if err != nil {
			t.Fatal(err)
		}
		return ct
	}
	open := func(ct []byte) error {
		_, err := s.Session.Open(append([]byte(nil), ct...))
		return err
	}
	m1, m2, m3 := seal("one"), seal("two"), seal("three")
	forged := append([]byte(nil), m1...)
	forged[len(forged)-1] ^= 1
	for _, tc := range []struct {
		name string
		ct   []byte
	}{{"forged tag", forged}, {"reordered", m2}, {"cut", m1[:len(m1)-1]}} {
		if err := open(tc.ct); !errors.Is(err, noise.ErrDecrypt) {
			t.Fatalf("%s: %v, want ErrDecrypt", tc.name, err)
		}
	}
	if err := open(m1); err != nil {
		t.Fatalf("the genuine first message after the rejects: %v", err)
	}
	if err := open(m1); !errors.Is(err, noise.ErrDecrypt) {
		t.Fatalf("replayed: %v, want ErrDecrypt", err)
	}
	if err := open(m2); err != nil {
		t.Fatal(err)
	}
	if err := open(m3); err != nil {
		t.Fatal(err)
	}
	if _, _, err := noise.ReadTransport([]byte{0, 15, 1, 2}); !errors.Is(err, noise.ErrDecrypt) {
		t.Fatalf("a 15-byte message: %v, want ErrDecrypt", err)
	}
	if _, err := c.Session.Seal(nil, make([]byte, noise.MaxPlaintext+1)); !errors.Is(err, noise.ErrTooLarge) {
		t.Fatalf("sealing %d bytes: %v, want ErrTooLarge", noise.MaxPlaintext+1, err)
	}
	if _, err := c.Session.Seal(nil, make([]byte, noise.MaxPlaintext)); err != nil {
		t.Fatalf("sealing %d bytes: %v", noise.MaxPlaintext, err)
	}
}

// TestHandshakeRejects: messages of the wrong kind, too long, or that do
// not verify end the server's handshake with an error.
func TestHandshakeRejects(t *testing.T) {
	server := keypair(t)
	scfg := noise.ServerConfig{Keys: []noise.Keypair{server}}
	xx := protocol.AppendPreface(nil, 1, protocol.TransportNoiseXX)
	s, err := noise.NewServer(scfg, xx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Step(noise.KindXX3, make([]byte, 64)); !errors.Is(err, noise.ErrUnexpected) {
		t.Fatalf("XX3 first: %v, want ErrUnexpected", err)
	}
	if _, err := s.Step(noise.KindXX1, make([]byte, 40)); !errors.Is(err, noise.ErrHandshake) {
		t.Fatalf("XX1 with a payload: %v, want ErrHandshake", err)
	}
	s, _ = noise.NewServer(scfg, xx)
	if _, err := s.Step(noise.KindXX1, make([]byte, 32)); !errors.Is(err, noise.ErrHandshake) {
		t.Fatalf("XX1 with a low-order key: %v, want ErrHandshake", err)
	}
	s, _ = noise.NewServer(scfg, xx)
	e := keypair(t)
	if _, err := s.Step(noise.KindXX1, e.Public[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Step(noise.KindXX3, make([]byte, 100)); !errors.Is(err, noise.ErrHandshake) {
		t.Fatalf("XX3 of noise: %v, want ErrHandshake", err)
	}
	if _, _, _, err := noise.ReadHandshake([]byte{noise.KindIK1, 0xff, 0xff}); !errors.Is(err, noise.ErrTooLarge) {
		t.Fatalf("a 65535-byte handshake message: %v, want ErrTooLarge", err)
	}
	if _, err := noise.NewServer(scfg, protocol.AppendPreface(nil, 1, protocol.TransportPlain)); err == nil {
		t.Fatal("a Noise handshake for a plain preface")
	}
}

// TestReadSplit: a framed handshake or transport message cut anywhere is
// ErrIncomplete, never an error or a wrong message.
func TestReadSplit(t *testing.T) {
	hs := noise.AppendHandshake(nil, noise.KindXX1, bytes.Repeat([]byte{7}, 32))
	tr := append([]byte{0, 20}, bytes.Repeat([]byte{9}, 20)...)
	for i := range len(hs) {
		if _, _, _, err := noise.ReadHandshake(hs[:i]); !errors.Is(err, noise.ErrIncomplete) {
			t.Fatalf("handshake cut at %d: %v", i, err)
		}
	}
	for i := range len(tr) {
		if _, _, err := noise.ReadTransport(tr[:i]); !errors.Is(err, noise.ErrIncomplete) {
			t.Fatalf("transport cut at %d: %v", i, err)
		}
	}
}

// TestSessionAllocs: sealing and opening allocate nothing once the buffer
// has room.
func TestSessionAllocs(t *testing.T) {
	c, s := handshake(t, noise.ClientConfig{Static: keypair(t)}, noise.ServerConfig{Keys: []noise.Keypair{keypair(t)}}, []byte("L"))
	frames := make([]byte, 200)
	buf := make([]byte, 0, 512)
	allocs := testing.AllocsPerRun(100, func() {
		w, err := c.Session.Seal(buf[:0], frames)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Session.Open(w[noise.LengthLen:]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per sealed and opened message, want 0", allocs)
	}
}

// TestSessionDirectionsConcurrent: one goroutine seals on a Session while
// another opens on it, as a blocking client's writer and reader do: the
// two directions share nothing they write, so every message opens, in
// order, with its own bytes (a shared nonce buffer made some seal under
// the other direction's counter, or fail to open).
func TestSessionDirectionsConcurrent(t *testing.T) {
	c, s := handshake(t, noise.ClientConfig{Static: keypair(t)}, noise.ServerConfig{Keys: []noise.Keypair{keypair(t)}}, []byte("L"))
	const n = 20000
	pipe := func(from, to *noise.Session, tag byte, errs chan<- error) {
		msgs := make(chan []byte, 64)
		go func() { // the sealing side: from's writer
			defer close(msgs)
			for i := range n {
				w, err := from.Seal(nil, []byte{tag, byte(i), byte(i >> 8)})
				if err != nil {
					errs <- err
					return
				}
				msgs <- w
			}
		}()
		go func() { // the opening side: to's reader
			i := 0
			for w := range msgs {
				pt, err := to.Open(w[noise.LengthLen:])
				if err != nil {
					errs <- fmt.Errorf("message %d from %c: %w", i, tag, err)
					return
				}
				if !bytes.Equal(pt, []byte{tag, byte(i), byte(i >> 8)}) {
					errs <- fmt.Errorf("message %d from %c opened as %x", i, tag, pt)
					return
				}
				i++
			}
			errs <- nil
		}()
	}
	errs := make(chan error, 4)
	pipe(c.Session, s.Session, 'c', errs) // c seals while c opens what s sealed
	pipe(s.Session, c.Session, 's', errs)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestResume: a session carried on from its State (a handover) keeps its
// counters: the peer opens what it seals next.
func TestResume(t *testing.T) {
	c, s := handshake(t, noise.ClientConfig{Static: keypair(t)}, noise.ServerConfig{Keys: []noise.Keypair{keypair(t)}}, []byte("L"))
	exchange(t, c.Session, s.Session)
	moved, err := noise.Resume(s.Session.State())
	if err != nil {
		t.Fatal(err)
	}
	if st := moved.State(); st.SendN != 3 || st.RecvN != 3 {
		t.Fatalf("resumed counters %d/%d, want 3/3", st.SendN, st.RecvN)
	}
	exchange(t, c.Session, moved)
}

// FuzzServerHandshake: whatever a client sends, the server's handshake
// never panics, and only a message that verifies moves it on.
func FuzzServerHandshake(f *testing.F) {
	server := keypair(f)
	f.Add([]byte{protocol.TransportNoiseXX}, noise.AppendHandshake(nil, noise.KindXX1, make([]byte, 32)))
	f.Add([]byte{protocol.TransportNoiseIK}, noise.AppendHandshake(nil, noise.KindIK1, make([]byte, 96)))
	f.Add([]byte{protocol.TransportNoiseXX}, []byte{noise.KindXX1, 0, 32})
	f.Fuzz(func(t *testing.T, transport []byte, in []byte) {
		if len(transport) == 0 {
			return
		}
		s, err := noise.NewServer(noise.ServerConfig{Keys: []noise.Keypair{server}}, protocol.AppendPreface(nil, 1, transport[0]))
		if err != nil {
			return
		}
		for len(in) > 0 && s.Want() != 0 {
			kind, msg, n, err := noise.ReadHandshake(in)
			if err != nil {
				return
			}
			in = in[n:]
			if _, err := s.Step(kind, msg); err != nil {
				return
			}
		}
		if s.Want() == 0 {
			t.Fatalf("random bytes completed a handshake: % x", in)
		}
	})
}

// FuzzClientHandshake: whatever a server answers, XX or IK, the client's
// handshake refuses it with an error, never a panic, and random bytes
// never complete it: only a server with the static key can.
func FuzzClientHandshake(f *testing.F) {
	static, server := keypair(f), keypair(f)
	f.Add(false, noise.AppendHandshake(nil, noise.KindXX2, make([]byte, 96)))
	f.Add(true, noise.AppendHandshake(nil, noise.KindIK2, make([]byte, 48)))
	f.Add(true, noise.AppendHandshake(nil, noise.KindFB1, make([]byte, 96)))
	f.Add(true, []byte{noise.KindPlain, 0, 3, 2, 0x11, 1})
	f.Fuzz(func(t *testing.T, ik bool, in []byte) {
		cfg := noise.ClientConfig{Static: static}
		transport := protocol.TransportNoiseXX
		if ik {
			cfg.Server, transport = server.Public[:], protocol.TransportNoiseIK
		}
		c, _, err := noise.NewClient(cfg, protocol.AppendPreface(nil, 1, transport), []byte("LOGIN"))
		if err != nil {
			t.Fatal(err)
		}
		for len(in) > 0 && c.Want() != 0 {
			kind, msg, n, err := noise.ReadHandshake(in)
			if err != nil {
				return
			}
			in = in[n:]
			if _, err := c.Step(kind, msg); err != nil {
				return
			}
		}
		if c.Want() == 0 {
			t.Fatalf("random bytes completed the client's handshake")
		}
	})
}

// FuzzOpen: no ciphertext but the genuine one opens, and nothing panics.
func FuzzOpen(f *testing.F) {
	f.Add([]byte{0, 16}, 0)
	f.Add(make([]byte, 40), 3)
	_, s := handshake(f, noise.ClientConfig{Static: keypair(f)}, noise.ServerConfig{Keys: []noise.Keypair{keypair(f)}}, []byte("L"))
	f.Fuzz(func(t *testing.T, in []byte, _ int) {
		ct, _, err := noise.ReadTransport(in)
		if err != nil {
			return
		}
		if _, err := s.Session.Open(ct); err == nil {
			t.Fatalf("random bytes opened: % x", in)
		}
	})
}

// TestSealFrames: after a session's first message, frames that fit one
// transport message go as one; more
// are cut at frame boundaries into messages of at most MaxPlaintext bytes,
// each opening to whole frames; a frame longer than a message alone is
// ErrTooLarge, and bytes that must be cut but are not whole frames are
// refused.
func TestSealFrames(t *testing.T) {
	c, s := handshake(t, noise.ClientConfig{Static: keypair(t)}, noise.ServerConfig{Keys: []noise.Keypair{keypair(t)}}, []byte("L"))
	frame := func(size int) []byte {
		p := protocol.Send{To: 2, MsgID: 1, Body: make([]byte, size)}
		return p.Append(nil)
	}
	var frames []byte
	for range 7 {
		frames = append(frames, frame(20_000)...)
	}
	messages := func(wire []byte) (n int, plain []byte) {
		for len(wire) > 0 {
			ct, k, err := noise.ReadTransport(wire)
			if err != nil {
				t.Fatal(err)
			}
			pt, err := s.Session.Open(append([]byte(nil), ct...))
			if err != nil || len(pt) > noise.MaxPlaintext {
				t.Fatalf("message %d: %d bytes (%v)", n, len(pt), err)
			}
			for rest := pt; len(rest) > 0; {
				_, fn, err := protocol.ReadFrame(rest, protocol.MaxServerFrame)
				if err != nil {
					t.Fatalf("message %d ends inside a frame: %v", n, err)
				}
				rest = rest[fn:]
			}
			plain, wire, n = append(plain, pt...), wire[k:], n+1
		}
		return n, plain
	}
	// The session's first message is held shorter (TestFirstMessageShort).
	wire, err := c.Session.SealFrames(nil, frame(10))
	if n, _ := messages(wire); err != nil || n != 1 {
		t.Fatalf("the first message: %d messages (%v)", n, err)
	}
	wire, err = c.Session.SealFrames(nil, frames[:3*len(frame(20_000))])
	if n, plain := messages(wire); err != nil || n != 1 || !bytes.Equal(plain, frames[:len(plain)]) {
		t.Fatalf("three frames: %d messages (%v), want 1", n, err)
	}
	wire, err = c.Session.SealFrames(nil, frames)
	if n, plain := messages(wire); err != nil || n != 3 || !bytes.Equal(plain, frames) {
		t.Fatalf("seven frames of 20 KB: %d messages (%v), want 3 carrying them all", n, err)
	}
	if _, err := c.Session.SealFrames(nil, frame(noise.MaxPlaintext)); !errors.Is(err, noise.ErrTooLarge) {
		t.Fatalf("a frame over a message: %v, want ErrTooLarge", err)
	}
	if _, err := c.Session.SealFrames(nil, append([]byte{0xff, 0xff, 0xff}, frames...)); err == nil {
		t.Fatal("bytes that are not whole frames were cut into messages")
	}
}

// TestNewKeypairShortRandom: a source that runs dry before 32 bytes is an
// error, never a key made of the few bytes it gave and zeros.
func TestNewKeypairShortRandom(t *testing.T) {
	if k, err := noise.NewKeypair(bytes.NewReader(make([]byte, 31))); err == nil {
		t.Fatalf("31 random bytes made key %x", k.Public)
	}
}

// TestNewServerRefuses: a server with no static key, or a preface of
// another length than PrefaceLen, is an error before any message is read.
func TestNewServerRefuses(t *testing.T) {
	keys := []noise.Keypair{keypair(t)}
	xx := protocol.AppendPreface(nil, protocol.Version, protocol.TransportNoiseXX)
	for _, tc := range []struct {
		name    string
		keys    []noise.Keypair
		preface []byte
	}{
		{"no key", nil, xx},
		{"a preface one byte long", keys, append(xx, 0)},
		{"a preface one byte short", keys, []byte{'S', 'W', protocol.TransportNoiseXX}},
	} {
		if _, err := noise.NewServer(noise.ServerConfig{Keys: tc.keys}, tc.preface); err == nil {
			t.Errorf("%s: the server started a handshake", tc.name)
		}
	}
}

// TestNewClientRefuses: a client sends no first message when its preface
// names another transport than its config (IK with a known key, XX
// without), or its LOGIN is empty or over MaxLogin bytes; MaxLogin bytes
// go.
func TestNewClientRefuses(t *testing.T) {
	server, device := keypair(t), keypair(t)
	xx := protocol.AppendPreface(nil, protocol.Version, protocol.TransportNoiseXX)
	ik := protocol.AppendPreface(nil, protocol.Version, protocol.TransportNoiseIK)
	for _, tc := range []struct {
		name    string
		known   []byte
		preface []byte
		login   int
		ok      bool
	}{
		{"XX with a LOGIN of MaxLogin bytes", nil, xx, noise.MaxLogin, true},
		{"IK with a LOGIN of MaxLogin bytes", server.Public[:], ik, noise.MaxLogin, true},
		{"a LOGIN one byte over", server.Public[:], ik, noise.MaxLogin + 1, false},
		{"an empty LOGIN", nil, xx, 0, false},
		{"a known key under an XX preface", server.Public[:], xx, 5, false},
		{"no key under an IK preface", nil, ik, 5, false},
	} {
		_, msg, err := noise.NewClient(noise.ClientConfig{Static: device, Server: tc.known}, tc.preface, make([]byte, tc.login))
		if (err == nil) != tc.ok || (msg != nil) != tc.ok {
			t.Errorf("%s: first message of %d bytes, error %v; want accepted %v", tc.name, len(msg), err, tc.ok)
		}
	}
}

// TestIKRejects: an IK first message shorter than an ephemeral key, or
// whose ephemeral key is of low order, ends the server's handshake with
// ErrHandshake and no reply (never a panic, never a fallback answer).
func TestIKRejects(t *testing.T) {
	ik := protocol.AppendPreface(nil, protocol.Version, protocol.TransportNoiseIK)
	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"31 bytes", make([]byte, 31)},
		{"a low-order ephemeral key", make([]byte, 96)},
	} {
		s, err := noise.NewServer(noise.ServerConfig{Keys: []noise.Keypair{keypair(t)}}, ik)
		if err != nil {
			t.Fatal(err)
		}
		reply, err := s.Step(noise.KindIK1, tc.msg)
		if !errors.Is(err, noise.ErrHandshake) || reply != nil {
			t.Errorf("%s: reply % x, error %v; want ErrHandshake and no reply", tc.name, reply, err)
		}
	}
}

// TestClientUnexpectedKind: a client answers only the kinds its pattern
// allows: an XX client refuses IK's answer and a fallback, an IK client
// refuses XX's second message, each with ErrUnexpected.
func TestClientUnexpectedKind(t *testing.T) {
	server, device := keypair(t), keypair(t)
	for _, tc := range []struct {
		name  string
		known []byte
		kind  byte
	}{
		{"XX client given IK2", nil, noise.KindIK2},
		{"XX client given FB1", nil, noise.KindFB1},
		{"IK client given XX2", server.Public[:], noise.KindXX2},
	} {
		ccfg := noise.ClientConfig{Static: device, Server: tc.known}
		c, _, err := noise.NewClient(ccfg, protocol.AppendPreface(nil, protocol.Version, ccfg.Transport()), []byte("L"))
		if err != nil {
			t.Fatal(err)
		}
		e := keypair(t)
		if _, err := c.Step(tc.kind, append(e.Public[:], make([]byte, 64)...)); !errors.Is(err, noise.ErrUnexpected) {
			t.Errorf("%s: %v, want ErrUnexpected", tc.name, err)
		}
	}
}
