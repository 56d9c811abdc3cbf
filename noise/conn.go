package noise

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"

	"switchboard/protocol"
)

// Conn is a client's connection after its handshake: what it writes (whole
// frames) is sealed into transport messages, and what it reads is the
// frames the server's messages carried. For blocking clients (package
// client, tests); a server seals and opens on its event loops instead.
// Read and Write may be called from different goroutines, each by one at a
// time.
type Conn struct {
	net.Conn
	sess *Session

	// Owned by Read.
	in    []byte // bytes of the next message read so far
	plain []byte // frames opened and not yet returned

	// Owned by Write.
	out []byte
}

// RefusedError is a server's refusal of the handshake: the plain ERROR or
// GOAWAY frame it sent (KindPlain), or that a server without Noise
// answered the preface with.
type RefusedError struct {
	Frame []byte // the whole frame
}

func (e *RefusedError) Error() string {
	f, _, err := protocol.ReadFrame(e.Frame, len(e.Frame))
	if err != nil {
		return "noise: the server refused the handshake"
	}
	switch f.Type {
	case protocol.TypeError:
		var x protocol.Error
		if x.Decode(f) == nil {
			return fmt.Sprintf("noise: the server refused the handshake: ERROR %v: %s", x.Code, x.Reason)
		}
	case protocol.TypeGoAway:
		var g protocol.GoAway
		if g.Decode(f) == nil {
			return fmt.Sprintf("noise: the server refused the handshake: GOAWAY %v after %d ms", g.Code, g.After)
		}
	}
	return fmt.Sprintf("noise: the server refused the handshake with a %v frame", f.Type)
}

// Dial runs the client's side of a handshake over nc: it writes the
// preface (version, and cfg's transport) with the first handshake message,
// reads the server's messages and answers them, login riding in the last.
// It returns the Conn to read and write frames on, and what the handshake
// gave (the server's static key: keep it, to use IK next time). The
// caller sets nc's deadlines.
func Dial(nc net.Conn, cfg ClientConfig, version byte, login []byte) (*Conn, Result, error) {
	preface := protocol.AppendPreface(nil, version, cfg.Transport())
	h, first, err := NewClient(cfg, preface, login)
	if err != nil {
		return nil, Result{}, err
	}
	if _, err := nc.Write(append(preface, first...)); err != nil {
		return nil, Result{}, err
	}
	var hdr [HeaderLen]byte
	for h.Want() != 0 {
		if _, err := io.ReadFull(nc, hdr[:1]); err != nil {
			return nil, Result{}, err
		}
		switch hdr[0] {
		case KindXX2, KindIK2, KindFB1, KindPlain:
		default:
			return nil, Result{}, refusedPlain(nc, hdr[0])
		}
		if _, err := io.ReadFull(nc, hdr[1:]); err != nil {
			return nil, Result{}, err
		}
		msg := make([]byte, int(hdr[1])<<8|int(hdr[2]))
		if len(msg) > MaxHandshake {
			return nil, Result{}, fmt.Errorf("%w: handshake message of %d bytes", ErrTooLarge, len(msg))
		}
		if _, err := io.ReadFull(nc, msg); err != nil {
			return nil, Result{}, err
		}
		if hdr[0] == KindPlain {
			return nil, Result{}, &RefusedError{Frame: msg}
		}
		reply, err := h.Step(hdr[0], msg)
		if err != nil {
			return nil, Result{}, err
		}
		if reply != nil {
			if _, err := nc.Write(reply); err != nil {
				return nil, Result{}, err
			}
		}
	}
	res := h.Result()
	return &Conn{Conn: nc, sess: res.Session}, res, nil
}

// refusedPlain reads the rest of the plain frame whose first byte is b: a
// server without Noise refusing the preface.
func refusedPlain(nc net.Conn, b byte) error {
	frame := []byte{b}
	buf := make([]byte, 256)
	for {
		if _, n, err := protocol.ReadFrame(frame, protocol.MaxServerFrame); err == nil {
			return &RefusedError{Frame: frame[:n]}
		} else if !errors.Is(err, protocol.ErrIncomplete) {
			return fmt.Errorf("noise: the server answered with %#x, neither a handshake message nor a frame", b)
		}
		n, err := nc.Read(buf)
		if err != nil {
			return fmt.Errorf("noise: the server answered with a plain frame, cut: %w", err)
		}
		frame = append(frame, buf[:n]...)
	}
}

// Read returns frames the server sent, as many bytes as p holds. A
// server that refused the client's last handshake message (an ERROR or
// GOAWAY in a KindPlain message where its first transport message would
// be) is a *RefusedError.
func (c *Conn) Read(p []byte) (int, error) {
	for len(c.plain) == 0 {
		if len(c.in) > 0 && c.in[0] == KindPlain && c.sess.ctr[1].count() == 0 {
			_, msg, _, err := ReadHandshake(c.in)
			if err == nil {
				return 0, &RefusedError{Frame: bytes.Clone(msg)}
			}
			if !errors.Is(err, ErrIncomplete) {
				return 0, err
			}
		} else if ct, n, err := ReadTransport(c.in); err == nil {
			plain, err := c.sess.Open(ct)
			if err != nil {
				return 0, err
			}
			c.plain = append(c.plain[:0], plain...)
			c.in = c.in[:copy(c.in, c.in[n:])]
			continue
		} else if !errors.Is(err, ErrIncomplete) {
			return 0, err
		}
		if cap(c.in)-len(c.in) < 4096 {
			c.in = append(make([]byte, 0, 2*cap(c.in)+4096), c.in...)
		}
		m, err := c.Conn.Read(c.in[len(c.in):cap(c.in)])
		c.in = c.in[:len(c.in)+m]
		if m == 0 && err != nil {
			return 0, err
		}
	}
	n := copy(p, c.plain)
	c.plain = c.plain[n:]
	return n, nil
}

// Write seals p, which must be whole frames, into transport messages cut
// at frame boundaries (Session.SealFrames), and writes them.
func (c *Conn) Write(p []byte) (int, error) {
	out, err := c.sess.SealFrames(c.out[:0], p)
	c.out = out
	if err != nil {
		return 0, err
	}
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}
