package protocol

import (
	"bytes"
	"encoding/binary"
	"strings"
	"unicode/utf8"
)

// Signal is an ephemeral notice such as "typing" (SIGNAL, 0x0B). It is never
// stored: if the peer is offline it is dropped.
//
//	peer varint | kind varint | [group varint, if FlagA]
//
// From a client, Peer is the user it is for (0 when Group is set); from the
// server, Peer is the user it comes from.
type Signal struct {
	Peer  uint64
	Kind  uint32 // SignalTyping…; other values pass through unchanged
	Group uint64 // 0: a 1:1 signal
}

// Signal kinds the reference clients use.
const (
	SignalTyping    uint32 = 1
	SignalPaused    uint32 = 2
	SignalRecording uint32 = 3
)

// Append appends s as a frame.
func (s *Signal) Append(dst []byte) []byte {
	var flags byte
	n := uvarintLen(s.Peer) + uvarintLen(uint64(s.Kind))
	if s.Group != 0 {
		flags = FlagA
		n += uvarintLen(s.Group)
	}
	dst = appendHeader(dst, TypeSignal, flags, n)
	dst = binary.AppendUvarint(dst, s.Peer)
	dst = binary.AppendUvarint(dst, uint64(s.Kind))
	if s.Group != 0 {
		dst = binary.AppendUvarint(dst, s.Group)
	}
	return dst
}

// Decode fills s from f, which must be a SIGNAL frame.
func (s *Signal) Decode(f Frame) error {
	r := reader{b: f.Payload}
	s.Peer = r.uvarint()
	s.Kind = r.u32()
	s.Group = 0
	if f.Has(FlagA) {
		s.Group = r.id("group")
	}
	if err := r.end(); err != nil {
		return err
	}
	if s.Peer == 0 && s.Group == 0 {
		return errZeroPeer
	}
	return nil
}

var errZeroPeer = wrapMalformed("signal to no one")

// AppendPing appends a PING (0x0E): an empty payload.
func AppendPing(dst []byte) []byte { return appendHeader(dst, TypePing, 0, 0) }

// AppendPong appends a PONG (0x0F): an empty payload.
func AppendPong(dst []byte) []byte { return appendHeader(dst, TypePong, 0, 0) }

// CheckEmpty returns ErrMalformed if f (a PING or PONG) has a payload.
func CheckEmpty(f Frame) error {
	r := reader{b: f.Payload}
	return r.end()
}

// GoAway asks the client to reconnect later, or elsewhere; the server closes
// after sending it (GOAWAY, 0x10).
//
//	after varint | code varint | [addr_len varint | addr, if present]
//
// Addr is present only when not empty, so a GOAWAY without one has the
// bytes it always had. CodeMoved requires it.
type GoAway struct {
	After uint32 // milliseconds: the reconnect window; clients wait a random delay in [0, After] (8.10)
	Code  Code   // why: CodeShuttingDown, CodeServerFull, CodeMoved…
	Addr  string // host:port to connect to instead (CodeMoved); "" none. At most MaxAddr bytes, UTF-8, no NUL
}

// Append appends g as a frame. An Addr that CheckAddr refuses goes out as
// it is and the peer refuses the frame: a sender checks it first.
func (g *GoAway) Append(dst []byte) []byte {
	n := uvarintLen(uint64(g.After)) + uvarintLen(uint64(g.Code))
	if g.Addr != "" {
		n += uvarintLen(uint64(len(g.Addr))) + len(g.Addr)
	}
	dst = appendHeader(dst, TypeGoAway, 0, n)
	dst = binary.AppendUvarint(dst, uint64(g.After))
	dst = binary.AppendUvarint(dst, uint64(g.Code))
	if g.Addr != "" {
		dst = binary.AppendUvarint(dst, uint64(len(g.Addr)))
		dst = append(dst, g.Addr...)
	}
	return dst
}

// Decode fills g from f, which must be a GOAWAY frame. Addr is a copy: it
// does not alias f.
func (g *GoAway) Decode(f Frame) error {
	r := reader{b: f.Payload}
	g.After = r.u32()
	g.Code = r.code()
	g.Addr = ""
	if r.more() {
		b := r.bytes(MaxAddr)
		if r.err == nil {
			if err := checkAddr(b); err != nil {
				return err
			}
			g.Addr = string(b)
		}
	}
	if err := r.end(); err != nil {
		return err
	}
	if g.Code == CodeMoved && g.Addr == "" {
		return errMovedNoAddr
	}
	return nil
}

// CheckAddr returns nil if addr may be a GOAWAY's Addr: 1 to MaxAddr bytes,
// UTF-8, no NUL. It does not check that addr is a host:port; the client's
// dial does.
func CheckAddr(addr string) error {
	if len(addr) > MaxAddr {
		return errBadAddr
	}
	return checkAddr([]byte(addr))
}

func checkAddr(b []byte) error {
	if len(b) == 0 || len(b) > MaxAddr || !utf8.Valid(b) || bytes.IndexByte(b, 0) >= 0 {
		return errBadAddr
	}
	return nil
}

var (
	errBadAddr     = wrapMalformed("GOAWAY addr empty, over 255 bytes, not UTF-8 or with a NUL")
	errMovedNoAddr = wrapMalformed("GOAWAY MOVED without an addr")
)

// Error reports a fatal error; its sender closes the connection next
// (ERROR, 0x11). Its layout is the same in every protocol version, so a
// client can read the error that refuses its version.
//
//	code varint | reason (UTF-8, the rest, at most MaxReason bytes)
type Error struct {
	Code   Code
	Reason string // for people and logs; programs act on Code
}

// Append appends e as a frame; invalid UTF-8 in the reason is replaced and a
// reason over MaxReason bytes is cut, so the frame always decodes.
func (e *Error) Append(dst []byte) []byte {
	reason := sendableReason(e.Reason)
	dst = appendHeader(dst, TypeError, 0, uvarintLen(uint64(e.Code))+len(reason))
	dst = binary.AppendUvarint(dst, uint64(e.Code))
	return append(dst, reason...)
}

// Decode fills e from f, which must be an ERROR frame.
func (e *Error) Decode(f Frame) error {
	r := reader{b: f.Payload}
	e.Code = r.code()
	if e.Code == 0 && r.err == nil {
		r.err = wrapMalformed("zero code")
	}
	e.Reason = r.reason()
	return r.err
}

// sendableReason returns reason as ERROR and REFUSE carry it: invalid UTF-8
// replaced, cut to at most MaxReason bytes on a character boundary.
func sendableReason(reason string) string {
	if !utf8.ValidString(reason) {
		reason = strings.ToValidUTF8(reason, "\uFFFD")
	}
	if len(reason) > MaxReason {
		reason = reason[:MaxReason]
		for !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	return reason
}

// reason reads the rest of the payload as a reason: UTF-8, at most
// MaxReason bytes. It allocates only when the reason is not empty.
func (r *reader) reason() string {
	b := r.rest()
	if r.err != nil {
		return ""
	}
	if len(b) > MaxReason || !utf8.Valid(b) {
		r.err = errBadReason
		return ""
	}
	return string(b)
}

var errBadReason = wrapMalformed("reason too long or not UTF-8")

func (e *Error) Error() string { return "protocol: peer error " + e.Code.String() + ": " + e.Reason }
