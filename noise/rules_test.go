package noise

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"

	flynn "github.com/flynn/noise"
	"golang.org/x/crypto/chacha20poly1305"

	"switchboard/protocol"
)

// rulesKeypair returns a fresh random key pair.
func rulesKeypair(t *testing.T) Keypair {
	t.Helper()
	k, err := NewKeypair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// rulesKey returns 32 random bytes, a transport key.
func rulesKey(t *testing.T) [32]byte {
	t.Helper()
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		t.Fatal(err)
	}
	return k
}

// rulesPair returns two sessions that reach each other: a's sending key is
// b's receiving key and the other way round, both counters at 0.
func rulesPair(t *testing.T) (a, b *Session) {
	t.Helper()
	k1, k2 := rulesKey(t), rulesKey(t)
	a, err := Resume(State{SendKey: k1, RecvKey: k2})
	if err != nil {
		t.Fatal(err)
	}
	b, err = Resume(State{SendKey: k2, RecvKey: k1})
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

// rulesStart starts an XX handshake: the client, its first framed message,
// and the server.
func rulesStart(t *testing.T) (*ClientHandshake, []byte, *ServerHandshake) {
	t.Helper()
	preface := protocol.AppendPreface(nil, protocol.Version, protocol.TransportNoiseXX)
	c, msg, err := NewClient(ClientConfig{Static: rulesKeypair(t)}, preface, []byte("LOGIN"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(ServerConfig{Keys: []Keypair{rulesKeypair(t)}}, preface)
	if err != nil {
		t.Fatal(err)
	}
	return c, msg, s
}

// rulesUnframe returns the kind and body of one framed handshake message.
func rulesUnframe(t *testing.T, msg []byte) (byte, []byte) {
	t.Helper()
	kind, body, n, err := ReadHandshake(msg)
	if err != nil || n != len(msg) {
		t.Fatalf("handshake framing: %v (%d of %d bytes)", err, n, len(msg))
	}
	return kind, body
}

// TestSealFramesCutAtOneOverLimit: frames that total MaxPlaintext+1 bytes
// do not fit one transport message. SealFrames cuts them at the frame
// boundary into two messages (the first exactly MaxPlaintext-1 bytes of
// frames, the second a 2-byte PONG), each opening to whole frames, rather
// than sealing one message a byte too long and failing.
func TestSealFramesCutAtOneOverLimit(t *testing.T) {
	pong := protocol.AppendFrame(nil, protocol.TypePong, 0, nil)
	if len(pong) != 2 {
		t.Fatalf("PONG frame of %d bytes, want 2", len(pong))
	}
	// A DELIVER-typed frame of MaxPlaintext-1 bytes: a 3-byte length
	// prefix, the header byte, and the payload.
	payload := bytes.Repeat([]byte{0x5a}, MaxPlaintext-1-4)
	deliver := protocol.AppendFrame(nil, protocol.TypeDeliver, 0, payload)
	if len(deliver) != MaxPlaintext-1 || protocol.FrameLen(len(payload)) != len(deliver) {
		t.Fatalf("DELIVER frame of %d bytes, want %d", len(deliver), MaxPlaintext-1)
	}
	frames := append(append([]byte(nil), deliver...), pong...)
	if len(frames) != MaxPlaintext+1 {
		t.Fatalf("frames total %d bytes, want MaxPlaintext+1 = %d", len(frames), MaxPlaintext+1)
	}

	a, b := rulesPair(t)
	wire, err := a.SealFrames(nil, frames)
	if err != nil {
		t.Fatalf("SealFrames of %d bytes (MaxPlaintext+1) in whole frames: %v", len(frames), err)
	}
	var got [][]byte
	for rest := wire; len(rest) > 0; {
		ct, n, err := ReadTransport(rest)
		if err != nil {
			t.Fatalf("transport message %d: %v", len(got), err)
		}
		pt, err := b.Open(append([]byte(nil), ct...))
		if err != nil {
			t.Fatalf("transport message %d does not open: %v", len(got), err)
		}
		if len(pt) > MaxPlaintext {
			t.Fatalf("transport message %d carries %d bytes, over MaxPlaintext", len(got), len(pt))
		}
		for fr := pt; len(fr) > 0; {
			_, fn, err := protocol.ReadFrame(fr, protocol.MaxServerFrame)
			if err != nil {
				t.Fatalf("transport message %d ends inside a frame: %v", len(got), err)
			}
			fr = fr[fn:]
		}
		got = append(got, pt)
		rest = rest[n:]
	}
	if len(got) != 2 {
		t.Fatalf("%d transport messages, want 2", len(got))
	}
	if !bytes.Equal(got[0], deliver) || !bytes.Equal(got[1], pong) {
		t.Fatalf("messages of %d and %d bytes, want the DELIVER (%d) then the PONG (%d)",
			len(got[0]), len(got[1]), len(deliver), len(pong))
	}
	if st := a.State(); st.SendN != 2 {
		t.Fatalf("send counter %d after two messages, want 2", st.SendN)
	}
}

// TestSealSendCounterExhausted: the send counter is the nonce; at its
// last value (math.MaxUint64, which Noise reserves) Seal refuses rather
// than wrap to 0 and reuse a nonce, appends nothing, and leaves the
// counter where it was. One below it still seals.
func TestSealSendCounterExhausted(t *testing.T) {
	a, err := Resume(State{SendKey: rulesKey(t), RecvKey: rulesKey(t), SendN: math.MaxUint64 - 1})
	if err != nil {
		t.Fatal(err)
	}
	wire, err := a.Seal(nil, []byte("frames"))
	if err != nil || len(wire) != LengthLen+len("frames")+TagLen {
		t.Fatalf("sealing at counter MaxUint64-1: %d bytes, %v", len(wire), err)
	}
	if n := a.State().SendN; n != math.MaxUint64 {
		t.Fatalf("send counter %d after sealing at MaxUint64-1, want MaxUint64", n)
	}

	s, err := Resume(State{SendKey: rulesKey(t), RecvKey: rulesKey(t), SendN: math.MaxUint64})
	if err != nil {
		t.Fatal(err)
	}
	dst := []byte("kept")
	for i := range 2 {
		out, err := s.Seal(dst, []byte("frames"))
		if err == nil {
			t.Fatalf("Seal %d with the send counter at MaxUint64 succeeded (%d bytes): a nonce would be reused", i, len(out))
		}
		if !bytes.Equal(out, []byte("kept")) {
			t.Fatalf("Seal %d with the send counter exhausted appended to dst: % x", i, out)
		}
		if n := s.State().SendN; n != math.MaxUint64 {
			t.Fatalf("send counter moved to %d after a refused Seal, want MaxUint64", n)
		}
	}
	if _, err := s.SealFrames(nil, protocol.AppendFrame(nil, protocol.TypePong, 0, nil)); err == nil {
		t.Fatal("SealFrames with the send counter at MaxUint64 succeeded")
	}
}

// rulesSealAt seals plaintext under key at counter n exactly as a peer's
// Session would (Noise's ChaChaPoly nonce: 4 zero bytes, the counter
// little-endian), without going through Session's counter checks.
func rulesSealAt(t *testing.T, key [32]byte, n uint64, plaintext []byte) []byte {
	t.Helper()
	aead, err := chacha20poly1305.New(key[:])
	if err != nil {
		t.Fatal(err)
	}
	var nonce [chacha20poly1305.NonceSize]byte
	binary.LittleEndian.PutUint64(nonce[4:], n)
	return aead.Seal(nil, nonce[:], plaintext, nil)
}

// TestOpenRecvCounterExhausted: at the receive counter's last value
// (math.MaxUint64) Open refuses with ErrDecrypt ("receive counter
// exhausted") even a message genuinely sealed at that nonce, and the
// counter does not wrap. One below it, a genuine message opens.
func TestOpenRecvCounterExhausted(t *testing.T) {
	key := rulesKey(t)
	frames := []byte("whole frames")

	below, err := Resume(State{SendKey: rulesKey(t), RecvKey: key, RecvN: math.MaxUint64 - 1})
	if err != nil {
		t.Fatal(err)
	}
	pt, err := below.Open(rulesSealAt(t, key, math.MaxUint64-1, frames))
	if err != nil || !bytes.Equal(pt, frames) {
		t.Fatalf("opening at counter MaxUint64-1: %q, %v", pt, err)
	}
	if n := below.State().RecvN; n != math.MaxUint64 {
		t.Fatalf("receive counter %d after opening at MaxUint64-1, want MaxUint64", n)
	}

	s, err := Resume(State{SendKey: rulesKey(t), RecvKey: key, RecvN: math.MaxUint64})
	if err != nil {
		t.Fatal(err)
	}
	ct := rulesSealAt(t, key, math.MaxUint64, frames)
	pt, err = s.Open(append([]byte(nil), ct...))
	if err == nil {
		t.Fatalf("Open with the receive counter at MaxUint64 decrypted %q: the counter would wrap", pt)
	}
	if !errors.Is(err, ErrDecrypt) || !strings.Contains(err.Error(), "exhausted") {
		t.Fatalf("Open with the receive counter at MaxUint64: %v, want ErrDecrypt (receive counter exhausted)", err)
	}
	if n := s.State().RecvN; n != math.MaxUint64 {
		t.Fatalf("receive counter moved to %d after a refused Open, want MaxUint64", n)
	}
	// The counter did not wrap: a message at nonce 0 does not open either.
	if _, err := s.Open(rulesSealAt(t, key, 0, frames)); err == nil {
		t.Fatal("Open of a message at nonce 0 succeeded after the counter was exhausted")
	}
}

// TestStepAfterHandshakeDone: once a server's XX handshake has finished,
// any further Step is ErrUnexpected, never a panic (the handshake state
// is gone) and never a new handshake.
func TestStepAfterHandshakeDone(t *testing.T) {
	c, msg, s := rulesStart(t)
	for toServer := true; c.Want() != 0 || s.Want() != 0; toServer = !toServer {
		if msg == nil {
			t.Fatalf("no message to pass on; client wants %#x, server %#x", c.Want(), s.Want())
		}
		kind, body := rulesUnframe(t, msg)
		var err error
		if toServer {
			msg, err = s.Step(kind, body)
		} else {
			msg, err = c.Step(kind, body)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	res := s.Result()
	if res.Session == nil || string(res.Login) != "LOGIN" {
		t.Fatalf("handshake did not finish: %+v", res)
	}
	for _, kind := range []byte{KindXX1, KindXX3, KindIK1, KindFB2, 0} {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("Step(%#x) after the handshake ended panicked: %v", kind, r)
				}
			}()
			reply, err := s.Step(kind, make([]byte, 32))
			if !errors.Is(err, ErrUnexpected) {
				t.Errorf("Step(%#x) after the handshake ended: %v (reply % x), want ErrUnexpected", kind, err, reply)
			}
			if reply != nil {
				t.Errorf("Step(%#x) after the handshake ended replied % x", kind, reply)
			}
		}()
		if s.Want() != 0 {
			t.Fatalf("Step(%#x) after the handshake ended: Want %#x, want 0", kind, s.Want())
		}
	}
	if got := s.Result(); got.Session != res.Session || got.Pattern != PatternXX {
		t.Fatalf("a Step after the end changed the result: %+v", got)
	}
}

// TestXX1PayloadRefused: XX's first message is cleartext, so it carries
// no payload (a client putting its LOGIN there would leak its token): a
// genuine first message with one byte appended is ErrHandshake.
func TestXX1PayloadRefused(t *testing.T) {
	_, msg, s := rulesStart(t)
	kind, body := rulesUnframe(t, msg)
	if kind != KindXX1 || len(body) != dhLen {
		t.Fatalf("client's first message: kind %#x, %d bytes", kind, len(body))
	}
	long := append(append([]byte(nil), body...), 'L')
	reply, err := s.Step(KindXX1, long)
	if !errors.Is(err, ErrHandshake) {
		t.Fatalf("XX message 1 with a 1-byte payload: %v (reply of %d bytes), want ErrHandshake", err, len(reply))
	}
	if reply != nil {
		t.Fatalf("XX message 1 with a payload was answered: % x", reply)
	}

	// The same message without the byte is accepted by a fresh server.
	_, msg, s = rulesStart(t)
	_, body = rulesUnframe(t, msg)
	if reply, err := s.Step(KindXX1, body); err != nil || reply == nil {
		t.Fatalf("genuine XX message 1: %v", err)
	}
}

// TestXXFinishNeedsLogin: the client's last XX message must carry its
// LOGIN; a server handed one with an empty payload ends the handshake
// with ErrHandshake and no Session.
func TestXXFinishNeedsLogin(t *testing.T) {
	c, msg, s := rulesStart(t)
	c.login = nil // the client sends no LOGIN in its last message
	kind, body := rulesUnframe(t, msg)
	msg, err := s.Step(kind, body)
	if err != nil {
		t.Fatal(err)
	}
	kind, body = rulesUnframe(t, msg)
	msg, err = c.Step(kind, body)
	if err != nil || msg == nil {
		t.Fatalf("client's last message: %v", err)
	}
	kind, body = rulesUnframe(t, msg)
	if kind != KindXX3 {
		t.Fatalf("client's last message of kind %#x", kind)
	}
	reply, err := s.Step(kind, body)
	if !errors.Is(err, ErrHandshake) || !strings.Contains(err.Error(), "LOGIN") {
		t.Fatalf("XX message 3 without a LOGIN: %v, want ErrHandshake (no LOGIN)", err)
	}
	if reply != nil {
		t.Fatalf("reply % x", reply)
	}
	if s.Want() == 0 || s.Result().Session != nil {
		t.Fatalf("server finished a handshake with no LOGIN: Want %#x, result %+v", s.Want(), s.Result())
	}
}

// TestIKFinishNeedsLogin: an IK first message that opens under the
// server's key but carries no LOGIN ends the handshake with ErrHandshake,
// no reply and no Session, as under XX.
func TestIKFinishNeedsLogin(t *testing.T) {
	server := rulesKeypair(t)
	preface := protocol.AppendPreface(nil, protocol.Version, protocol.TransportNoiseIK)
	hs, err := flynn.NewHandshakeState(flynn.Config{
		CipherSuite: suite, Pattern: flynn.HandshakeIK, Initiator: true,
		Prologue: preface, StaticKeypair: rulesKeypair(t).dh(), PeerStatic: server.Public[:],
	})
	if err != nil {
		t.Fatal(err)
	}
	msg, _, _, err := hs.WriteMessage(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(ServerConfig{Keys: []Keypair{server}}, preface)
	if err != nil {
		t.Fatal(err)
	}
	reply, err := s.Step(KindIK1, msg)
	if !errors.Is(err, ErrHandshake) || !strings.Contains(err.Error(), "LOGIN") || reply != nil {
		t.Fatalf("IK message 1 without a LOGIN: reply % x, error %v; want ErrHandshake (no LOGIN)", reply, err)
	}
	if s.Want() == 0 || s.Result().Session != nil {
		t.Fatalf("server finished a handshake with no LOGIN: Want %#x, result %+v", s.Want(), s.Result())
	}
}

// TestClientRefusesServerPayload: the server's handshake messages carry
// no payload (the client has nothing to read in them); XX's second
// message, IK's second or XXfallback's first carrying one byte is
// ErrHandshake, and the client sends no LOGIN after it.
func TestClientRefusesServerPayload(t *testing.T) {
	server, lost := rulesKeypair(t), rulesKeypair(t)
	for _, tc := range []struct {
		name  string
		known []byte // the server key the client knows: nil for XX
		kind  byte   // the server's answer
	}{
		{"XX message 2", nil, KindXX2},
		{"IK message 2", server.Public[:], KindIK2},
		{"XXfallback message 1", lost.Public[:], KindFB1},
	} {
		cfg := ClientConfig{Static: rulesKeypair(t), Server: tc.known}
		preface := protocol.AppendPreface(nil, protocol.Version, cfg.Transport())
		c, first, err := NewClient(cfg, preface, []byte("LOGIN"))
		if err != nil {
			t.Fatal(err)
		}
		_, body := rulesUnframe(t, first)
		s, err := NewServer(ServerConfig{Keys: []Keypair{server}}, preface)
		if err != nil {
			t.Fatal(err)
		}
		// The server's side as Step runs it, with a payload written in.
		var hs *flynn.HandshakeState
		switch tc.kind {
		case KindXX2:
			hs = s.hs
			_, _, _, err = hs.ReadMessage(nil, body)
		case KindIK2:
			if hs, err = s.state(flynn.HandshakeIK, false, server, nil); err == nil {
				_, _, _, err = hs.ReadMessage(nil, body)
			}
		case KindFB1:
			hs, err = s.state(flynn.HandshakeXXfallback, true, server, body[:dhLen])
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		msg, _, _, err := hs.WriteMessage(nil, []byte("x"))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		reply, err := c.Step(tc.kind, msg)
		if !errors.Is(err, ErrHandshake) || reply != nil {
			t.Errorf("%s with a payload: reply of %d bytes, error %v; want ErrHandshake and no reply", tc.name, len(reply), err)
		}
	}
}
