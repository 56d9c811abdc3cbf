package noise

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"

	flynn "github.com/flynn/noise"
	"golang.org/x/crypto/curve25519"

	"switchboard/protocol"
)

// suite is the one cipher suite Switchboard speaks (see the package doc).
var suite = flynn.NewCipherSuite(flynn.DH25519, flynn.CipherChaChaPoly, flynn.HashSHA256)

// Pattern names, as a Session's handshake reports them.
const (
	PatternXX         = "Noise_XX_25519_ChaChaPoly_SHA256"
	PatternIK         = "Noise_IK_25519_ChaChaPoly_SHA256"
	PatternXXfallback = "Noise_XXfallback_25519_ChaChaPoly_SHA256"
)

// Keypair is a Curve25519 key pair: a server's or a device's static key.
type Keypair struct {
	Private, Public [32]byte
}

// NewKeypair makes a key pair from 32 bytes of rng (nil: crypto/rand).
func NewKeypair(rng io.Reader) (Keypair, error) {
	if rng == nil {
		rng = rand.Reader
	}
	var k Keypair
	if _, err := io.ReadFull(rng, k.Private[:]); err != nil {
		return Keypair{}, err
	}
	return KeypairFrom(k.Private)
}

// KeypairFrom returns the key pair of private key priv.
func KeypairFrom(priv [32]byte) (Keypair, error) {
	pub, err := curve25519.X25519(priv[:], curve25519.Basepoint)
	if err != nil {
		return Keypair{}, err
	}
	k := Keypair{Private: priv}
	copy(k.Public[:], pub)
	return k, nil
}

func (k Keypair) dh() flynn.DHKey {
	return flynn.DHKey{Private: append([]byte(nil), k.Private[:]...), Public: append([]byte(nil), k.Public[:]...)}
}

// Result is what a finished handshake gives.
type Result struct {
	Pattern string   // PatternXX, PatternIK or PatternXXfallback
	Peer    [32]byte // the peer's static public key, authenticated by the handshake
	Login   []byte   // the client's LOGIN frame (the server's side only)
	Session *Session
}

// ServerConfig is a server's side of every handshake.
type ServerConfig struct {
	// Keys are the server's static keys, the current one first: it is the
	// one XX and XXfallback prove. An IK handshake is accepted under any
	// of them, so that clients pinned to the previous key still connect
	// in one round trip while a rotation overlaps. At least one.
	Keys []Keypair
	// Random is the source of ephemeral keys; nil: crypto/rand. Tests
	// set it to make golden vectors.
	Random io.Reader
}

// ServerHandshake is a server's side of one handshake, from the preface to
// the Session. Not safe for concurrent use.
type ServerHandshake struct {
	cfg      ServerConfig
	prologue []byte
	hs       *flynn.HandshakeState
	want     byte // the kind of message the next Step takes; 0: done
	result   Result
}

// NewServer starts the server's side of a handshake for a connection whose
// preface (4 bytes) names a Noise transport.
func NewServer(cfg ServerConfig, preface []byte) (*ServerHandshake, error) {
	if len(cfg.Keys) == 0 {
		return nil, errors.New("noise: a server needs a static key")
	}
	h := &ServerHandshake{cfg: cfg, prologue: append([]byte(nil), preface...)}
	switch transport(preface) {
	case protocol.TransportNoiseXX:
		hs, err := h.state(flynn.HandshakeXX, false, cfg.Keys[0], nil)
		if err != nil {
			return nil, err
		}
		h.hs, h.want, h.result.Pattern = hs, KindXX1, PatternXX
	case protocol.TransportNoiseIK:
		h.want, h.result.Pattern = KindIK1, PatternIK
	default:
		return nil, fmt.Errorf("noise: preface % x names no Noise transport", preface)
	}
	return h, nil
}

func transport(preface []byte) byte {
	if len(preface) != protocol.PrefaceLen {
		return 0xff
	}
	return preface[3]
}

func (h *ServerHandshake) state(p flynn.HandshakePattern, initiator bool, key Keypair, peerE []byte) (*flynn.HandshakeState, error) {
	return flynn.NewHandshakeState(flynn.Config{
		CipherSuite: suite, Random: h.cfg.Random, Pattern: p, Initiator: initiator,
		Prologue: h.prologue, StaticKeypair: key.dh(), PeerEphemeral: peerE,
	})
}

// Want returns the kind of handshake message the next Step takes, 0 once
// the handshake is done.
func (h *ServerHandshake) Want() byte { return h.want }

// Step takes the client's next handshake message, of kind, and returns the
// framed message to send back (nil when there is none). Any error ends
// the handshake: the connection is to be closed.
func (h *ServerHandshake) Step(kind byte, msg []byte) (reply []byte, err error) {
	if h.want == 0 || kind != h.want {
		return nil, fmt.Errorf("%w: kind %#x, want %#x", ErrUnexpected, kind, h.want)
	}
	switch kind {
	case KindXX1:
		if _, _, _, err := h.hs.ReadMessage(nil, msg); err != nil {
			return nil, fmt.Errorf("%w: XX message 1: %v", ErrHandshake, err)
		}
		if len(msg) != dhLen {
			return nil, fmt.Errorf("%w: XX message 1 of %d bytes, want %d (no payload)", ErrHandshake, len(msg), dhLen)
		}
		out, _, _, err := h.hs.WriteMessage(nil, nil)
		if err != nil { // e.g. a low-order ephemeral key
			return nil, fmt.Errorf("%w: XX message 2: %v", ErrHandshake, err)
		}
		h.want = KindXX3
		return AppendHandshake(nil, KindXX2, out), nil
	case KindXX3, KindFB2:
		login, c1, c2, err := h.hs.ReadMessage(nil, msg)
		if err != nil || c1 == nil {
			return nil, fmt.Errorf("%w: message %#x: %v", ErrHandshake, kind, err)
		}
		if kind == KindXX3 {
			c1, c2 = c2, c1 // XX's initiator is the client: the server sends with the second
		}
		return nil, h.finish(login, c1, c2)
	case KindIK1:
		return h.ik(msg)
	}
	return nil, fmt.Errorf("%w: kind %#x", ErrUnexpected, kind)
}

// ik takes IK's first message under each of the server's keys; if none
// opens it (the client knew an older key), it falls back to XXfallback
// with the client's ephemeral key.
func (h *ServerHandshake) ik(msg []byte) ([]byte, error) {
	if len(msg) < dhLen {
		return nil, fmt.Errorf("%w: IK message 1 of %d bytes", ErrHandshake, len(msg))
	}
	for _, key := range h.cfg.Keys {
		hs, err := h.state(flynn.HandshakeIK, false, key, nil)
		if err != nil {
			return nil, err
		}
		login, _, _, err := hs.ReadMessage(nil, msg)
		if err != nil {
			continue
		}
		out, c1, c2, err := hs.WriteMessage(nil, nil)
		if err != nil {
			return nil, fmt.Errorf("%w: IK message 2: %v", ErrHandshake, err)
		}
		h.hs = hs
		if err := h.finish(login, c2, c1); err != nil { // IK's initiator is the client
			return nil, err
		}
		return AppendHandshake(nil, KindIK2, out), nil
	}
	hs, err := h.state(flynn.HandshakeXXfallback, true, h.cfg.Keys[0], msg[:dhLen])
	if err != nil {
		return nil, err
	}
	out, _, _, err := hs.WriteMessage(nil, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: XXfallback message 1: %v", ErrHandshake, err)
	}
	h.hs, h.want, h.result.Pattern = hs, KindFB2, PatternXXfallback
	return AppendHandshake(nil, KindFB1, out), nil
}

// finish ends the handshake with the client's LOGIN and the two transport
// ciphers, the server's sending one first.
func (h *ServerHandshake) finish(login []byte, send, recv *flynn.CipherState) error {
	if len(login) == 0 {
		return fmt.Errorf("%w: no LOGIN in the client's last handshake message", ErrHandshake)
	}
	s, err := Resume(State{SendKey: send.UnsafeKey(), RecvKey: recv.UnsafeKey()})
	if err != nil {
		return err
	}
	copy(h.result.Peer[:], h.hs.PeerStatic())
	h.result.Login, h.result.Session, h.want = login, s, 0
	h.hs = nil
	return nil
}

// Result returns what the handshake gave; valid once Want returns 0.
func (h *ServerHandshake) Result() Result { return h.result }

// ClientConfig is a client's side of a handshake.
type ClientConfig struct {
	// Static is the device's key; the server learns its public half, and
	// the login token is bound to it (PROTOCOL.md).
	Static Keypair
	// Server is the server's static public key when the client knows it:
	// the handshake is then IK, one round trip. nil: XX.
	Server []byte
	// Random is the source of ephemeral keys; nil: crypto/rand.
	Random io.Reader
}

// Transport returns the preface's transport for cfg: IK when the server's
// key is known, XX otherwise.
func (cfg ClientConfig) Transport() byte {
	if cfg.Server != nil {
		return protocol.TransportNoiseIK
	}
	return protocol.TransportNoiseXX
}

// ClientHandshake is a client's side of one handshake. Not safe for
// concurrent use.
type ClientHandshake struct {
	cfg      ClientConfig
	prologue []byte
	hs       *flynn.HandshakeState
	e        flynn.DHKey // IK's ephemeral key, for a fallback
	login    []byte
	want     byte
	result   Result
}

// NewClient starts the client's side of a handshake; preface is the one
// the client sends (its transport must be cfg.Transport()). It returns the
// first handshake message, framed, which carries login under IK.
func NewClient(cfg ClientConfig, preface, login []byte) (*ClientHandshake, []byte, error) {
	if transport(preface) != cfg.Transport() {
		return nil, nil, fmt.Errorf("noise: preface % x does not name transport %d", preface, cfg.Transport())
	}
	if len(login) == 0 || len(login) > MaxLogin {
		return nil, nil, fmt.Errorf("noise: a LOGIN of %d bytes, want 1 to %d", len(login), MaxLogin)
	}
	h := &ClientHandshake{cfg: cfg, prologue: append([]byte(nil), preface...), login: append([]byte(nil), login...)}
	var err error
	if cfg.Server == nil {
		h.hs, err = h.state(flynn.HandshakeXX, flynn.DHKey{}, true)
		if err != nil {
			return nil, nil, err
		}
		out, _, _, err := h.hs.WriteMessage(nil, nil)
		if err != nil {
			return nil, nil, err
		}
		h.want, h.result.Pattern = KindXX2, PatternXX
		return h, AppendHandshake(nil, KindXX1, out), nil
	}
	h.hs, err = flynn.NewHandshakeState(flynn.Config{
		CipherSuite: suite, Random: cfg.Random, Pattern: flynn.HandshakeIK, Initiator: true,
		Prologue: h.prologue, StaticKeypair: cfg.Static.dh(), PeerStatic: cfg.Server,
	})
	if err != nil {
		return nil, nil, err
	}
	out, _, _, err := h.hs.WriteMessage(nil, h.login)
	if err != nil {
		return nil, nil, err
	}
	h.e = h.hs.LocalEphemeral()
	h.want, h.result.Pattern = KindIK2, PatternIK
	return h, AppendHandshake(nil, KindIK1, out), nil
}

func (h *ClientHandshake) state(p flynn.HandshakePattern, e flynn.DHKey, initiator bool) (*flynn.HandshakeState, error) {
	return flynn.NewHandshakeState(flynn.Config{
		CipherSuite: suite, Random: h.cfg.Random, Pattern: p, Initiator: initiator,
		Prologue: h.prologue, StaticKeypair: h.cfg.Static.dh(), EphemeralKeypair: e,
	})
}

// Want returns the kind of message the next Step takes: under IK it is
// KindIK2, but the server may answer KindFB1 instead. 0: done.
func (h *ClientHandshake) Want() byte { return h.want }

// Step takes the server's next handshake message and returns the framed
// message to send back (nil when there is none). Any error ends the
// handshake.
func (h *ClientHandshake) Step(kind byte, msg []byte) (reply []byte, err error) {
	switch {
	case h.want == KindXX2 && kind == KindXX2:
		payload, _, _, err := h.hs.ReadMessage(nil, msg)
		if err != nil || len(payload) != 0 {
			return nil, fmt.Errorf("%w: XX message 2: %v", ErrHandshake, err)
		}
		out, c1, c2, err := h.hs.WriteMessage(nil, h.login)
		if err != nil {
			return nil, err
		}
		return AppendHandshake(nil, KindXX3, out), h.finish(c1, c2)
	case h.want == KindIK2 && kind == KindIK2:
		payload, c1, c2, err := h.hs.ReadMessage(nil, msg)
		if err != nil || c1 == nil || len(payload) != 0 {
			return nil, fmt.Errorf("%w: IK message 2: %v", ErrHandshake, err)
		}
		return nil, h.finish(c1, c2)
	case h.want == KindIK2 && kind == KindFB1:
		// The server's key is not the one we knew: XXfallback, the server
		// initiating with our ephemeral key from IK's first message.
		hs, err := h.state(flynn.HandshakeXXfallback, h.e, false)
		if err != nil {
			return nil, err
		}
		payload, _, _, err := hs.ReadMessage(nil, msg)
		if err != nil || len(payload) != 0 {
			return nil, fmt.Errorf("%w: XXfallback message 1: %v", ErrHandshake, err)
		}
		out, c1, c2, err := hs.WriteMessage(nil, h.login)
		if err != nil {
			return nil, err
		}
		h.hs, h.result.Pattern = hs, PatternXXfallback
		return AppendHandshake(nil, KindFB2, out), h.finish(c2, c1) // the server initiated
	}
	return nil, fmt.Errorf("%w: kind %#x, want %#x", ErrUnexpected, kind, h.want)
}

func (h *ClientHandshake) finish(send, recv *flynn.CipherState) error {
	if send == nil || recv == nil {
		return fmt.Errorf("%w: handshake did not end", ErrHandshake)
	}
	s, err := Resume(State{SendKey: send.UnsafeKey(), RecvKey: recv.UnsafeKey()})
	if err != nil {
		return err
	}
	copy(h.result.Peer[:], h.hs.PeerStatic())
	h.result.Session, h.want, h.hs = s, 0, nil
	return nil
}

// Result returns what the handshake gave; valid once Want returns 0.
func (h *ClientHandshake) Result() Result { return h.result }
