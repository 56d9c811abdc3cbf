package gateway

import (
	"errors"
	"time"

	"switchboard/protocol"
)

// Reading, in two layers. read takes what gnet buffered for a connection
// and cuts it into frames: the frame limit (1 KiB before login), the rate
// limit, how long a frame may stay incomplete and how slowly it may come.
// frame then handles one frame by type (frames.go).

// maxLoginFrame is the largest frame accepted before login (header byte
// included): the largest LOGIN is 535 bytes (a 512-byte token, its length,
// and the widest ping, dict and ack varints), so 1 KiB leaves room for a
// longer token field without letting each half-sent login pin a 66 KB
// buffer (1.2 GiB at 19,000 connections).
const maxLoginFrame = 1 << 10

// read parses every complete frame buffered on c and returns a close code,
// or 0. Loop-only.
func (l *loop) read(c *conn) protocol.Code {
	buf := l.inbound(c)
	now := l.wheel.now
	c.lastRecv = now
	l.nowMicros = uint32(l.srv.cfg.Now().Sub(l.srv.start) / time.Microsecond)
	if c.state == statePreface {
		c.rateAt = l.nowMicros // a full bucket, within the comparison's range
	}
	off := 0
	var code protocol.Code
	for off < len(buf) && code == 0 {
		if c.state == statePreface {
			version, transport, err := protocol.ReadPreface(buf[off:])
			switch {
			case errors.Is(err, protocol.ErrIncomplete):
			case err != nil:
				code = l.rejectErr("preface", err)
			case transport != protocol.TransportPlain:
				code = l.noisePreface(c, buf[off:off+protocol.PrefaceLen], transport)
				off += protocol.PrefaceLen
				continue
			case l.srv.cfg.RefusePlain:
				code = l.rejectf(protocol.CodeUnsupportedTransport, "preface transport 0 not offered (Noise only)")
			default:
				_ = version // every version speaks at least 1, which we answer in WELCOME
				off += protocol.PrefaceLen
				c.state = stateLogin
				continue
			}
			break
		}
		if c.state == stateHandshake {
			var n int
			n, code = l.readHandshake(c, buf[off:])
			off += n
			break // the next message waits for this one's reply
		}
		if c.state == stateJoining {
			if len(buf)-off > 4*l.srv.cfg.MaxFrame {
				code = l.rejectf(protocol.CodeRateLimited, "over %d bytes pipelined behind LOGIN", 4*l.srv.cfg.MaxFrame)
			}
			break
		}
		if c.has(noiseOn) {
			var n int
			n, code = l.readTransport(c, buf[off:])
			off += n
			break
		}
		limit := l.srv.cfg.MaxFrame
		if c.state == stateLogin {
			limit = maxLoginFrame // refused from its header, before it is buffered
		}
		f, n, err := protocol.ReadFrame(buf[off:], limit)
		if errors.Is(err, protocol.ErrIncomplete) {
			break
		}
		if err != nil {
			code = l.rejectFrame(buf[off:], err, limit)
			break
		}
		off += n
		code = l.takeFrame(c, f)
	}
	l.overRate = 0
	if code != 0 {
		return code
	}
	l.consume(c, off)
	switch {
	case off == len(buf) || c.state == stateJoining:
		c.partialSince = 0
	case c.partialSince == 0 || off > 0:
		// The frame left incomplete started in this read.
		first := c.partialSince == 0
		c.partialSince = now
		if first {
			// c's next check may be far off (the handshake deadline, or 1.5
			// × the ping interval): bring it forward to the partial-frame
			// deadline.
			l.checkBy(c, now+uint32(l.srv.cfg.PartialFrameTimeout/time.Second)+stampSlack)
		}
	}
	return 0
}

// noisePreface starts the Noise handshake a preface with transport asks
// for, or refuses it. Loop-only.
func (l *loop) noisePreface(c *conn, preface []byte, transport byte) protocol.Code {
	switch {
	case transport != protocol.TransportNoiseXX && transport != protocol.TransportNoiseIK:
		return l.rejectf(protocol.CodeUnsupportedTransport, "preface transport %d not offered", transport)
	case len(l.srv.cfg.NoiseKeys) == 0:
		return l.rejectf(protocol.CodeUnsupportedTransport, "preface transport %d not offered (plain only)", transport)
	}
	return l.startHandshake(c, preface)
}

// takeFrame charges frame f to c's rate and handles it. Loop-only.
func (l *loop) takeFrame(c *conn, f protocol.Frame) protocol.Code {
	// ACKs are charged in frame, and only when they do not advance: how
	// many a client sends follows how fast the server sends. The LOGIN is
	// not charged: it is one per connection, and a client that reconnects
	// gets its whole burst for its resends.
	l.overRate = 0
	if f.Type != protocol.TypeAck && c.state == stateReady && !l.charge(c) {
		return l.rejectf(protocol.CodeRateLimited, "over the rate of %d frames/s, burst %d", l.srv.cfg.RateLimit, l.srv.cfg.RateBurst)
	}
	l.srv.stats.FramesIn.Add(1)
	return l.frame(c, f)
}

// partialDue returns the second by which c's incomplete frame must have
// made progress: PartialFrameTimeout after the last byte arrived, or, if
// sooner, when the frame's bytes so far fall behind PartialFrameMinRate
// averaged since it started, with one PartialFrameTimeout of grace. Bytes
// only add to the second term, so a deadline computed earlier is never
// later than one computed now. Loop-only.
func (l *loop) partialDue(c *conn) uint32 {
	cfg := &l.srv.cfg
	timeout := uint32(cfg.PartialFrameTimeout / time.Second)
	stalled := c.lastRecv + timeout
	// InboundBuffered is the incomplete frame alone: read consumed every
	// complete one before it.
	slow := uint64(c.partialSince) + uint64(timeout) + uint64(c.gc.InboundBuffered()/cfg.PartialFrameMinRate)
	return uint32(min(uint64(stalled), slow)) + stampSlack
}

// charge charges one frame to c's token bucket (rate.go) and reports
// whether c may stay open. A frame over the rate sets l.overRate to the
// milliseconds until a token is there, for frame to refuse it. Loop-only.
func (l *loop) charge(c *conn) bool {
	verdict, retry := l.srv.rate.charge(&c.rateAt, l.nowMicros)
	switch verdict {
	case rateClose:
		return false
	case rateOver:
		l.overRate = retry
		l.srv.stats.OverRate.Add(1)
	}
	return true
}
