package bench

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"switchboard/noise"
	"switchboard/protocol"
	"switchboard/token"
)

// The Noise transport (PROTOCOL.md 3.1), with --noise xx or ik. Each
// connection runs the client's side of a handshake on its loop after the
// TCP connect, LOGIN riding in its last message, then seals what it writes
// and opens what it reads:
//
//   - Device keys: each user's static key is derived at each dial from
//     the run id and the user id (SHA-256, then one X25519 base-point
//     multiplication), and its login token is bound to it
//     (token.MintBound). Deriving it again costs about 30 µs beside the
//     handshake's Diffie-Hellman operations (about 0.3 ms), and keeps no
//     key per connection: memory per connection stays the session's.
//     Per connection, not one per process, so the server sees as many
//     device keys as devices, as it would in production.
//   - The handshake's cost falls on the loop, like the server's on its
//     workers; the connect step is over before traffic starts, so it is
//     not in any message's time. A reconnect during traffic delays its
//     loop by one handshake, charged to the messages as the reconnect is.
//   - Writes: the frames a connection queued in an iteration go out in as
//     few transport messages as fit (noise.MaxPlaintext each), sealed into
//     a loop buffer. Reads: whole transport messages are opened in place
//     in the loop's read buffer and their frames handled as plain ones.
//     Neither allocates.

// Transports of Spec.Noise and Config.Noise.
const (
	NoiseXX = "xx" // first contact: Noise_XX
	NoiseIK = "ik" // the server's key known: Noise_IK (XXfallback when it changed)
)

// noiseState is a Noise connection's transport. Owned by the loop.
type noiseState struct {
	hs   *noise.ClientHandshake // until the handshake ends
	sess *noise.Session         // once it has
}

// deviceKey returns user's static key in run runID: the same at every dial
// of the run, and a different one in every run.
func deviceKey(runID, user uint64) noise.Keypair {
	var seed [32]byte
	copy(seed[:], "switchboard bench device key")
	binary.BigEndian.PutUint64(seed[16:], runID)
	binary.BigEndian.PutUint64(seed[24:], user)
	k, _ := noise.KeypairFrom(sha256.Sum256(seed[:])) // fails only for a key of the wrong length
	return k
}

// handshakeNames are Result.Handshakes' keys, by pattern.
var handshakeNames = map[string]string{
	noise.PatternXX:         "XX",
	noise.PatternIK:         "IK",
	noise.PatternXXfallback: "XXfallback",
}

// startNoise writes the preface and the first handshake message, LOGIN in
// it under IK, with a token bound to the user's device key. Loop-only.
func (c *conn) startNoise(expiry time.Time) {
	l := c.l
	spec := &l.e.spec
	kp := deviceKey(spec.RunID, c.user)
	k := spec.Servers[c.home].Key
	l.tok = token.AppendBound(l.tok[:0], k.Secret, token.Claims{KeyID: k.ID, User: c.user, Device: 1, Expiry: expiry}, kp.Public[:])
	login := protocol.Login{Token: l.tok, Ping: uint32(spec.Ping / time.Second)}
	frame := c.sess.AppendLogin(nil, login)[protocol.PrefaceLen:]
	cfg := noise.ClientConfig{Static: kp}
	if spec.Noise == NoiseIK {
		cfg.Server = spec.Servers[c.home].NoiseKey
	}
	preface := protocol.AppendPreface(nil, protocol.Version, cfg.Transport())
	hs, first, err := noise.NewClient(cfg, preface, frame)
	if err != nil {
		l.e.fatal(fmt.Errorf("bench: user %d: Noise handshake: %w", c.user, err))
		return
	}
	c.nz = &noiseState{hs: hs}
	c.lastWrite = l.now
	c.writeOut(append(preface, first...))
}

// noiseInput handles what a Noise connection read: handshake messages
// until the handshake ends, then transport messages, each opened in place
// and its frames handled. It returns the bytes used; the rest is an
// incomplete message.
func (c *conn) noiseInput(b []byte) int {
	off := 0
	for off < len(b) && c.fd >= 0 {
		if c.nz.hs != nil {
			n, more := c.handshakeInput(b[off:])
			off += n
			if !more {
				break
			}
			continue
		}
		if b[off] == noise.KindPlain && c.nz.sess.State().RecvN == 0 {
			// The server refused the last handshake message where its
			// first transport message would be (PROTOCOL.md 3.1).
			n := c.refusedHandshake(b[off:])
			off += n
			break
		}
		ct, n, err := noise.ReadTransport(b[off:])
		if errors.Is(err, noise.ErrIncomplete) {
			break
		}
		var frames []byte
		if err == nil {
			frames, err = c.nz.sess.Open(ct)
		}
		if err == nil {
			if used := c.frames(frames); c.fd >= 0 && used < len(frames) {
				err = fmt.Errorf("%w: a Noise transport message ends in part of a frame", protocol.ErrMalformed)
			}
		}
		if err != nil {
			c.protocolError(err)
			return off
		}
		off += n
	}
	return off
}

// refusedHandshake takes the KindPlain message at the front of b, if it
// is whole: the server refused the handshake with ERROR or GOAWAY (too many
// in progress, a step that failed, its timeout), handled as the same frame
// answering LOGIN. It returns the bytes used.
func (c *conn) refusedHandshake(b []byte) int {
	_, msg, n, err := noise.ReadHandshake(b)
	if errors.Is(err, noise.ErrIncomplete) {
		return 0
	}
	var f protocol.Frame
	var fn int
	if err == nil {
		if f, fn, err = protocol.ReadFrame(msg, len(msg)); err == nil && fn != len(msg) {
			err = fmt.Errorf("%w: %d bytes after the frame refusing the handshake", protocol.ErrMalformed, len(msg)-fn)
		}
	}
	if err == nil {
		err = c.frame(f)
	}
	if err != nil {
		c.protocolError(err)
	}
	return n
}

// handshakeInput takes the server's next handshake message at the front
// of b, writes the answer, and installs the session once the handshake is
// done. It returns the bytes used and whether more may follow.
func (c *conn) handshakeInput(b []byte) (int, bool) {
	switch b[0] {
	case noise.KindXX2, noise.KindIK2, noise.KindFB1, noise.KindPlain:
	default:
		// A plain frame: a server without Noise refusing the preface
		// (ERROR UNSUPPORTED_TRANSPORT), handled as a refused login.
		return c.frames(b), false
	}
	if b[0] == noise.KindPlain {
		return c.refusedHandshake(b), false
	}
	kind, msg, n, err := noise.ReadHandshake(b)
	if errors.Is(err, noise.ErrIncomplete) {
		return 0, false
	}
	var reply []byte
	if err == nil {
		reply, err = c.nz.hs.Step(kind, msg)
	}
	if err != nil {
		c.protocolError(fmt.Errorf("%w: Noise handshake: %w", protocol.ErrMalformed, err))
		return n, false
	}
	if reply != nil {
		c.lastWrite = c.l.now
		c.writeOut(reply)
		if c.fd < 0 {
			return n, false
		}
	}
	if c.nz.hs.Want() == 0 {
		res := c.nz.hs.Result()
		c.nz.hs, c.nz.sess = nil, res.Session
		if c.l.res.Handshakes == nil {
			c.l.res.Handshakes = map[string]uint64{}
		}
		c.l.res.Handshakes[handshakeNames[res.Pattern]]++
	}
	return n, true
}

// writeFrames writes whole frames b to the socket: as they are on the
// plain transport, sealed into as few transport messages as fit under
// Noise.
func (c *conn) writeFrames(b []byte) {
	if c.nz == nil {
		c.writeOut(b)
		return
	}
	if c.nz.sess == nil {
		// Not reached: nothing is queued before WELCOME, which comes after
		// the handshake.
		c.l.failure(fmt.Sprintf("user %d: %d bytes of frames queued during the Noise handshake", c.user, len(b)))
		return
	}
	c.writeOut(c.seal(b))
}

// seal returns whole frames b sealed into as few transport messages as fit
// (noise.Session.SealFrames), in the loop's buffer (valid until the next
// seal).
func (c *conn) seal(b []byte) []byte {
	out, err := c.nz.sess.SealFrames(c.l.sbuf[:0], b)
	if err != nil {
		// Not reached: --size keeps every frame under MaxPlaintext.
		panic(fmt.Sprintf("bench: user %d: %v", c.user, err))
	}
	c.l.sbuf = out
	return out
}

// noiseKeys returns the server's Noise static public key for each target,
// for --noise ik: from keyHex (comma-separated in --addr's order, or one
// for all), else from the noise-keys file beside each target's token keys
// file (the server's data folder).
func noiseKeys(ts []target, keyHex string) ([][]byte, error) {
	out := make([][]byte, len(ts))
	if hexes := splitList(keyHex); len(hexes) > 0 {
		if len(hexes) != 1 && len(hexes) != len(ts) {
			return nil, fmt.Errorf("bench: --noise-key lists %d keys for %d servers: give one per server in --addr's order, or one for all", len(hexes), len(ts))
		}
		for i := range ts {
			k, err := hex.DecodeString(hexes[min(i, len(hexes)-1)])
			if err != nil || len(k) != 32 {
				return nil, fmt.Errorf("bench: --noise-key %q: want 64 hex digits, a Curve25519 public key (switchboard noise-key prints it)", hexes[min(i, len(hexes)-1)])
			}
			out[i] = k
		}
		return out, nil
	}
	for i, t := range ts {
		path := filepath.Join(filepath.Dir(t.keys), noise.KeysFileName)
		keys, err := noise.LoadKeys(path, false)
		if err != nil {
			return nil, fmt.Errorf("bench: --noise ik needs the server's Noise key: %w (or give --noise-key)", err)
		}
		out[i] = keys[0].Public[:]
	}
	return out, nil
}
