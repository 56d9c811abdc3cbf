package handover

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Version is the format of the records and messages. A process refuses a
// handover in another version: the old one keeps serving.
const Version = 1

// Conn states a record may carry, as package gateway numbers them.
const (
	StatePreface uint8 = iota // the four-byte preface has not all arrived
	_                         // a Noise handshake: never handed over
	StateLogin                // waiting for LOGIN (the transport is set up)
	StateJoining              // LOGIN verified, the router's WELCOME not yet written
	StateReady                // logged in
)

// Record flags.
const (
	FlagDict  uint8 = 1 << iota // the client negotiated the server's dictionary
	FlagNoise                   // the Noise transport: Send/Recv keys and counters follow
	FlagPeer                    // the device key the handshake proved (before LOGIN)
)

// Conn is one connection's session state: everything the new process needs
// to carry on where the old one stopped, beside the socket itself.
type Conn struct {
	State uint8
	Flags uint8
	Ping  uint16 // granted ping interval, seconds
	User  uint64
	// Delivered is the highest seq written to the connection (or
	// WELCOME.last): what an ACK may name. Acked is the highest it acked.
	Delivered, Acked uint64
	// Expires is when the login token expires, in Unix milliseconds; 0:
	// not logged in.
	Expires int64
	// Noise keys and counters (FlagNoise).
	SendKey, RecvKey [32]byte
	SendN, RecvN     uint64
	// Peer is the device key a Noise handshake proved (FlagPeer).
	Peer [32]byte
	// Inbound is what arrived and was not yet read: part of a frame, or
	// frames (ciphertext under Noise) that came after reading stopped.
	Inbound []byte
}

// Has reports whether every flag in f is set.
func (c *Conn) Has(f uint8) bool { return c.Flags&f == f }

// MaxInbound bounds Conn.Inbound: a connection never holds more unread
// than four of the largest frames (what may wait behind a LOGIN).
const MaxInbound = 4 << 16

// ErrRecord means a record did not decode.
var ErrRecord = errors.New("handover: bad connection record")

// Append appends c's encoding to dst.
func (c *Conn) Append(dst []byte) []byte {
	dst = append(dst, c.State, c.Flags)
	dst = binary.LittleEndian.AppendUint16(dst, c.Ping)
	dst = binary.AppendUvarint(dst, c.User)
	dst = binary.AppendUvarint(dst, c.Delivered)
	dst = binary.AppendUvarint(dst, c.Acked)
	dst = binary.AppendVarint(dst, c.Expires)
	if c.Has(FlagNoise) {
		dst = append(dst, c.SendKey[:]...)
		dst = append(dst, c.RecvKey[:]...)
		dst = binary.AppendUvarint(dst, c.SendN)
		dst = binary.AppendUvarint(dst, c.RecvN)
	}
	if c.Has(FlagPeer) {
		dst = append(dst, c.Peer[:]...)
	}
	dst = binary.AppendUvarint(dst, uint64(len(c.Inbound)))
	return append(dst, c.Inbound...)
}

// Decode decodes one record from b into c and returns the bytes it took.
// c.Inbound aliases b.
func (c *Conn) Decode(b []byte) (int, error) {
	d := decoder{b: b}
	if len(b) < 4 {
		return 0, fmt.Errorf("%w: %d bytes", ErrRecord, len(b))
	}
	*c = Conn{State: b[0], Flags: b[1], Ping: binary.LittleEndian.Uint16(b[2:])}
	d.off = 4
	switch c.State {
	case StatePreface, StateLogin, StateJoining, StateReady:
	default:
		return 0, fmt.Errorf("%w: state %d", ErrRecord, c.State)
	}
	if c.Flags&^(FlagDict|FlagNoise|FlagPeer) != 0 {
		return 0, fmt.Errorf("%w: flags %#x", ErrRecord, c.Flags)
	}
	c.User = d.uvarint()
	c.Delivered = d.uvarint()
	c.Acked = d.uvarint()
	c.Expires = d.varint()
	if c.Has(FlagNoise) {
		d.bytes(c.SendKey[:])
		d.bytes(c.RecvKey[:])
		c.SendN = d.uvarint()
		c.RecvN = d.uvarint()
	}
	if c.Has(FlagPeer) {
		d.bytes(c.Peer[:])
	}
	n := d.uvarint()
	if d.err == nil && (n > MaxInbound || n > uint64(len(b)-d.off)) {
		d.err = fmt.Errorf("%w: %d inbound bytes", ErrRecord, n)
	}
	if d.err != nil {
		return 0, d.err
	}
	if n > 0 {
		c.Inbound = b[d.off : d.off+int(n)]
	}
	return d.off + int(n), nil
}

type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.err = fmt.Errorf("%w: varint at %d", ErrRecord, d.off)
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.err = fmt.Errorf("%w: varint at %d", ErrRecord, d.off)
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) bytes(dst []byte) {
	if d.err != nil {
		return
	}
	if len(d.b)-d.off < len(dst) {
		d.err = fmt.Errorf("%w: %d bytes at %d, %d left", ErrRecord, len(dst), d.off, len(d.b)-d.off)
		return
	}
	d.off += copy(dst, d.b[d.off:])
}
