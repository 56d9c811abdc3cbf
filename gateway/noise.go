package gateway

import (
	"errors"
	"fmt"

	"switchboard/noise"
	"switchboard/protocol"
)

// The Noise transport (PROTOCOL.md 3.1, package noise). A connection whose
// preface names it goes through stateHandshake before stateLogin:
//
//   - Each handshake message is read on the loop, and its step (a few
//     Diffie-Hellman operations, about 0.3-0.4 ms of CPU) runs on a
//     handshake worker. A handshake's first message (XX 1, IK 1) is
//     refused with GOAWAY RETRY_LATER while Config.MaxHandshakes steps
//     wait or run; its later ones (XX 3, XXfallback 2) are not refused for
//     that, and the workers take them before any first step: once a
//     handshake has started, it is finished, since a refusal after the
//     client's last message would come when the client already expects
//     transport messages. The worker hands the reply back through the
//     connection's mutex and wakes the loop, which writes it.
//   - The last step gives the LOGIN frame, which the loop handles as a
//     plain connection's, and the transport session. From then on every
//     read decrypts whole transport messages in socket order, and every
//     write seals what is queued, cut at frame boundaries into messages of
//     at most noise.MaxPlaintext bytes.
//
// A plain connection pays nothing for this: its state lives in a per-loop
// map, found through the conn's noiseOn flag.

// NoiseMaxFrame is the largest frame a Noise connection may send or be
// sent: one transport message's plaintext, less room for the fields a
// DELIVER adds to its SEND's body.
const NoiseMaxFrame = noise.MaxPlaintext - 64

// noiseBatchRecords bounds the record bytes of one BATCH sent to a Noise
// connection, so the frame fits one transport message.
const noiseBatchRecords = noise.MaxPlaintext - 1024

// secure is a Noise connection's state: 16 bytes once it is logged in,
// since every idle Noise connection keeps one.
type secure struct {
	// Owned by the event loop.
	sess *noise.Session // once the handshake ended
	hs   *handshake     // until the LOGIN is verified
}

// handshake is a Noise connection's handshake in progress.
type handshake struct {
	// Owned by the event loop.
	hs      *noise.ServerHandshake
	peer    [32]byte // the device key the handshake proved, for the LOGIN
	busy    bool     // a step is with a worker
	started bool     // its first step was taken: the later ones are not refused

	// Guarded by the conn's mu: the worker's answer to the step.
	ready bool
	reply []byte
	err   error
}

// hsJob is one handshake step for a worker.
type hsJob struct {
	c    *conn
	sec  *handshake
	kind byte
	msg  []byte // a copy: the loop's buffer moves on
}

// handshakes runs handshake steps until stop is closed: the later steps of
// handshakes in progress first, then first steps.
func (s *Server) handshakes(first, later <-chan hsJob, stop <-chan struct{}) {
	for {
		var j hsJob
		select {
		case j = <-later:
		default:
			select {
			case j = <-later:
			case j = <-first:
			case <-stop:
				return
			}
		}
		reply, err := s.step(j)
		j.c.mu.Lock()
		j.sec.ready, j.sec.reply, j.sec.err = true, reply, err
		wake := !j.c.closed && j.c.wakeLocked()
		j.c.mu.Unlock()
		s.live.handshakes.Add(-1)
		if wake {
			j.c.wake()
		}
	}
}

// step runs one handshake step; a panic in it fails that handshake only.
func (s *Server) step(j hsJob) (reply []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.panicked("handshake", 0, p)
			reply, err = nil, fmt.Errorf("panic in a handshake step: %v", p)
		}
	}()
	s.hook("handshake", 0)
	return j.sec.hs.Step(j.kind, j.msg)
}

// startHandshake makes c a Noise connection for preface. Loop-only.
func (l *loop) startHandshake(c *conn, preface []byte) protocol.Code {
	hs, err := noise.NewServer(noise.ServerConfig{Keys: l.srv.cfg.NoiseKeys}, preface)
	if err != nil {
		return l.rejectf(protocol.CodeProtocol, "Noise handshake: %v", err)
	}
	l.secure[c] = &secure{hs: &handshake{hs: hs}}
	c.setFlag(noiseOn, true)
	c.state = stateHandshake
	return 0
}

// readHandshake takes the next handshake message in buf, if it is whole and
// no step is with a worker, and hands it to one. It returns the bytes it
// consumed. Loop-only.
func (l *loop) readHandshake(c *conn, buf []byte) (int, protocol.Code) {
	sec := l.secure[c].hs
	if sec.busy {
		return 0, 0
	}
	kind, msg, n, err := noise.ReadHandshake(buf)
	switch {
	case errors.Is(err, noise.ErrIncomplete):
		return 0, 0
	case err != nil:
		return 0, l.rejectf(protocol.CodeProtocol, "Noise handshake: %v", err)
	case kind != sec.hs.Want():
		return 0, l.rejectf(protocol.CodeProtocol, "Noise handshake message of kind %#x, want %#x", kind, sec.hs.Want())
	}
	jobs := l.srv.hsJobs
	if sec.started {
		jobs = l.srv.hsLater
		l.srv.live.handshakes.Add(1)
	} else if l.srv.live.handshakes.Add(1) > int64(l.srv.cfg.MaxHandshakes) {
		l.srv.live.handshakes.Add(-1)
		return 0, l.refuseHandshake(c)
	}
	select {
	case jobs <- hsJob{c: c, sec: sec, kind: kind, msg: append([]byte(nil), msg...)}:
	default:
		// Reached only by a later step, when more wait than connections
		// can be waiting to log in, with MaxHandshakes to spare for those
		// evicted meanwhile (Server.hsLater). The refusal reaches the
		// client where it reads its first transport message, which
		// clients take as a refusal too (PROTOCOL.md 3.1).
		l.srv.live.handshakes.Add(-1)
		return 0, l.refuseHandshake(c)
	}
	sec.busy, sec.started = true, true
	return n, 0
}

// refuseHandshake turns c away while too many handshakes are in progress:
// GOAWAY RETRY_LATER, the client backs off and comes again. Loop-only.
func (l *loop) refuseHandshake(c *conn) protocol.Code {
	l.srv.stats.HandshakesRefused.Add(1)
	c.closeCode = uint8(protocol.CodeRetryLater)
	g := protocol.GoAway{After: busyLoginRetry, Code: protocol.CodeRetryLater}
	l.wbuf = g.Append(l.wbuf)
	return l.reject(closeQuietly, reasonHandshakesBusy)
}

// handshakeStep takes a worker's answer to c's handshake step, if one came:
// it writes the reply, and once the handshake is done installs the session
// and handles the LOGIN it carried. Loop-only.
func (l *loop) handshakeStep(c *conn) protocol.Code {
	s := l.secure[c]
	if s == nil || s.hs == nil || !s.hs.busy {
		return 0
	}
	sec := s.hs
	c.mu.Lock()
	ready, reply, err := sec.ready, sec.reply, sec.err
	sec.ready, sec.reply, sec.err = false, nil, nil
	c.mu.Unlock()
	if !ready {
		return 0
	}
	sec.busy = false
	if err != nil {
		l.srv.stats.HandshakesFailed.Add(1)
		return l.rejectf(protocol.CodeProtocol, "Noise handshake: %v", err)
	}
	if len(reply) > 0 {
		n, _ := c.gc.Write(reply)
		l.srv.stats.BytesOut.Add(uint64(n))
	}
	if sec.hs.Want() != 0 {
		return 0
	}
	res := sec.hs.Result()
	sec.hs, sec.peer, s.sess = nil, res.Peer, res.Session
	l.srv.stats.Handshakes.Add(1)
	c.state = stateLogin
	f, n, err := protocol.ReadFrame(res.Login, maxLoginFrame)
	switch {
	case err != nil:
		return l.rejectErr("LOGIN", err)
	case n != len(res.Login):
		return l.rejectf(protocol.CodeProtocol, "%d bytes after the LOGIN in the last handshake message", len(res.Login)-n)
	}
	code := l.frame(c, f)
	s.hs = nil // the LOGIN used its key: only the session stays
	return code
}

// readTransport decrypts and handles every whole transport message in buf,
// stopping at a message that is incomplete or once c waits for its
// welcome. It returns the bytes it consumed. Loop-only.
func (l *loop) readTransport(c *conn, buf []byte) (int, protocol.Code) {
	sec := l.secure[c]
	off := 0
	for off < len(buf) && c.state != stateJoining {
		ct, n, err := noise.ReadTransport(buf[off:])
		if errors.Is(err, noise.ErrIncomplete) {
			break
		}
		if err != nil {
			return off, l.rejectf(protocol.CodeProtocol, "Noise transport: %v", err)
		}
		frames, err := sec.sess.Open(ct)
		if err != nil {
			return off, l.rejectf(protocol.CodeProtocol, "Noise transport: %v", err)
		}
		off += n
		for len(frames) > 0 {
			f, fn, err := protocol.ReadFrame(frames, l.srv.cfg.MaxFrame)
			if errors.Is(err, protocol.ErrIncomplete) {
				return off, l.rejectf(protocol.CodeProtocol, "a Noise transport message ends inside a frame (%d bytes left)", len(frames))
			}
			if err != nil {
				return off, l.rejectFrame(frames, err, l.srv.cfg.MaxFrame)
			}
			frames = frames[fn:]
			if code := l.takeFrame(c, f); code != 0 {
				return off, code
			}
		}
	}
	return off, 0
}

// writeSecure writes b, whole frames, to Noise connection c: sealed in
// transport messages cut at frame boundaries, or during the handshake (an
// ERROR or GOAWAY refusing it) as one KindPlain message. Loop-only.
func (l *loop) writeSecure(c *conn, b []byte) {
	sec := l.secure[c]
	out := l.sbuf[:0]
	if sec.sess == nil {
		out = noise.AppendHandshake(out, noise.KindPlain, b)
	} else {
		var err error
		if out, err = sec.sess.SealFrames(out, b); err != nil {
			// A frame longer than one transport message (one stored
			// before max-frame was lowered) cannot be sent.
			if errors.Is(err, noise.ErrTooLarge) {
				l.srv.stats.NoiseFrameTooLarge.Add(1)
			}
			l.srv.cfg.Logger.Error("gateway: sealing for a Noise connection; closing", "user", c.user, "err", err)
			_ = l.el.Close(c.gc)
		}
	}
	n, _ := c.gc.Write(out)
	l.srv.stats.BytesOut.Add(uint64(n))
	l.sbuf = out[:0]
}

// maxFrameOf is the largest frame c may send, as its WELCOME says.
func (l *loop) maxFrameOf(c *conn) int {
	if c.has(noiseOn) {
		return min(l.srv.cfg.MaxFrame, NoiseMaxFrame)
	}
	return l.srv.cfg.MaxFrame
}

// forgetSecure drops c's Noise state when it closes. Loop-only.
func (l *loop) forgetSecure(c *conn) {
	if c.has(noiseOn) {
		delete(l.secure, c)
	}
}
