package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Type is a frame type: the low five bits of the header byte.
type Type uint8

// Frame types. The direction is who sends it: C→S (client to server), S→C, or both.
// Each type's payload layout is documented on its struct and in docs/PROTOCOL.md.
const (
	TypeLogin      Type = 0x01 // C→S: token and session options; must be the first frame
	TypeWelcome    Type = 0x02 // S→C: login accepted, with the session's limits
	TypeSend       Type = 0x03 // C→S: a message to a user or a group
	TypeAccept     Type = 0x04 // S→C: a send (or group request) is durable; may cover a run of ids
	TypeRefuse     Type = 0x05 // S→C: a send was refused, typed, connection stays open
	TypeDeliver    Type = 0x06 // S→C: one mailbox entry: a message
	TypeBatch      Type = 0x07 // S→C: several consecutive mailbox entries in one frame
	TypeAck        Type = 0x08 // C→S: cumulative: "I have every entry up to seq N"
	TypeReceipt    Type = 0x09 // S→C: one mailbox entry: delivered or read receipt
	TypeRead       Type = 0x0A // C→S: "I have read these messages of that sender"
	TypeSignal     Type = 0x0B // both: ephemeral (typing…), never stored
	TypeGroup      Type = 0x0C // C→S: create a group, add or remove members, leave…
	TypeGroupEvent Type = 0x0D // S→C: one mailbox entry: a change to a group
	TypePing       Type = 0x0E // C→S: keepalive
	TypePong       Type = 0x0F // S→C: keepalive answer
	TypeGoAway     Type = 0x10 // S→C: reconnect after a delay; the server closes next
	TypeError      Type = 0x11 // both: fatal error with a code; the sender closes next

	typeMax = TypeError
)

// Header flag bits. FlagA and FlagB mean something different for each type
// (see allowedFlags); FlagCompressed means the payload is a compressed block.
const (
	FlagA          byte = 0x20
	FlagB          byte = 0x40
	FlagCompressed byte = 0x80

	typeMask byte = 0x1f
)

// allowedFlags lists, by type, the flag bits a frame may carry. Any other bit set
// is a protocol error: it keeps every frame's encoding unique and leaves room to
// give the bits a meaning in a later version.
var allowedFlags = [typeMax + 1]byte{
	TypeLogin:      0,
	TypeWelcome:    0,
	TypeSend:       FlagA | FlagB | FlagCompressed, // A: To is a group; B: a retry
	TypeAccept:     FlagA,                          // A: More follows (a run of ids)
	TypeRefuse:     0,
	TypeDeliver:    FlagA | FlagB | FlagCompressed, // A: Group follows; B: Time follows
	TypeBatch:      FlagCompressed,
	TypeAck:        0,
	TypeReceipt:    FlagA | FlagB, // A: read (else delivered); B: More follows
	TypeRead:       FlagA | FlagB, // A: a group message; B: More follows
	TypeSignal:     FlagA,         // A: Group follows
	TypeGroup:      FlagCompressed,
	TypeGroupEvent: FlagB | FlagCompressed, // B: Time follows
	TypePing:       0,
	TypePong:       0,
	TypeGoAway:     0,
	TypeError:      0,
}

var typeNames = [typeMax + 1]string{
	TypeLogin: "LOGIN", TypeWelcome: "WELCOME", TypeSend: "SEND", TypeAccept: "ACCEPT",
	TypeRefuse: "REFUSE", TypeDeliver: "DELIVER", TypeBatch: "BATCH", TypeAck: "ACK",
	TypeReceipt: "RECEIPT", TypeRead: "READ", TypeSignal: "SIGNAL", TypeGroup: "GROUP",
	TypeGroupEvent: "GROUP_EVENT", TypePing: "PING", TypePong: "PONG", TypeGoAway: "GOAWAY",
	TypeError: "ERROR",
}

// Valid reports whether t is a frame type of this protocol version.
func (t Type) Valid() bool { return t >= TypeLogin && t <= typeMax }

func (t Type) String() string {
	if t.Valid() {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(0x%02x)", uint8(t))
}

// Limits. Each is the default of a configurable limit, checked before any
// buffer is sized from a peer's claim.
const (
	// MaxBody is the largest message body a server accepts by default. Chat
	// messages are small; media travels by reference through a media store.
	MaxBody = 64 << 10

	// MaxFrame is the largest frame (header byte and payload, compressed or
	// not) a server accepts from a client by default: MaxBody plus room for the
	// ids in front of it.
	MaxFrame = MaxBody + 1<<10

	// MaxServerFrame is the largest frame a server ever sends, and the largest a
	// client must accept, compressed or decompressed. It bounds a BATCH: large
	// enough that a backlog drains in few frames, small enough for a phone.
	MaxServerFrame = 256 << 10

	// MaxToken is the longest login token accepted.
	MaxToken = 512

	// MaxLoginFrame is the largest frame a server accepts before login (the
	// LOGIN frame, or whatever a client sent in its place), header byte and
	// payload. The longest LOGIN, a MaxToken token with every varint at its
	// widest, takes 535; a client whose token has not verified yet cannot
	// make the server hold more than this.
	MaxLoginFrame = 1 << 10

	// WindowBytes is the byte half of the flow window: the server sends at
	// most about this many bytes of entries (each record plus 16) after the
	// last ACK that covered everything sent, then waits, as it does after
	// WELCOME.Window entries. WELCOME does not announce it: it is fixed by
	// the protocol version (131,072 in version 1), and one entry larger than
	// it still goes, alone. Half the outbound cap of a connection.
	WindowBytes = 128 << 10

	// MaxReason is the longest reason text an ERROR frame carries.
	MaxReason = 256

	// MaxAddr is the longest address a GOAWAY carries: a length that fits
	// one byte, ample for an IPv6 literal with its port (47 bytes at most)
	// or a DNS name of up to 249 bytes with one.
	MaxAddr = 255

	// MaxFrameHeader is the most bytes a length prefix and header byte take
	// for any frame up to MaxServerFrame.
	MaxFrameHeader = 4
)

// Errors returned by decoders. Each maps to a Code with CodeOf.
var (
	// ErrIncomplete means the input holds only the beginning of a frame:
	// read more bytes and call again with all of them.
	ErrIncomplete = errors.New("protocol: incomplete frame")
	// ErrFrameTooLarge means a frame declared a length over the limit. It is
	// reported as soon as the length prefix shows it, before the frame arrives.
	ErrFrameTooLarge = errors.New("protocol: frame too large")
	// ErrUnknownType means a header byte names no frame type of this version.
	ErrUnknownType = errors.New("protocol: unknown frame type")
	// ErrMalformed means a frame is not encoded as its layout requires: a bad
	// or non-minimal varint, a missing or extra field, a flag not defined for
	// its type, a zero id.
	ErrMalformed = errors.New("protocol: malformed frame")
	// ErrBadPreface means the connection did not start with the preface.
	ErrBadPreface = errors.New("protocol: bad connection preface")
	// ErrDecompress means a compressed payload is corrupt, claims more than
	// the limit, or arrived before a dictionary was negotiated.
	ErrDecompress = errors.New("protocol: bad compressed payload")
)

// Frame is one frame as read off the wire.
type Frame struct {
	Type  Type
	Flags byte // the header's flag bits (FlagA, FlagB, FlagCompressed)
	// Payload is everything after the header byte. It aliases the buffer the
	// frame was read from and is valid only as long as that buffer is.
	Payload []byte
}

// Has reports whether flag is set on f.
func (f Frame) Has(flag byte) bool { return f.Flags&flag != 0 }

// ReadFrame parses the frame at the front of b and returns it with the number
// of bytes it occupies. It never blocks and never allocates.
//
// It returns ErrIncomplete while b holds only part of a frame. It returns
// ErrFrameTooLarge as soon as the length prefix shows a length over max
// (header byte plus payload), even before the prefix is complete, so a caller
// never buffers an oversized frame. It checks the type and flags as soon as
// the header byte is there. Its verdict on a prefix of a stream is either
// ErrIncomplete or the verdict on the whole stream.
func ReadFrame(b []byte, max int) (f Frame, n int, err error) {
	// The length prefix is parsed byte by byte so that every verdict depends
	// only on the bytes seen so far: a stream cut anywhere gets the same error
	// as the whole, and a length that must exceed max (a minimal varint's last
	// byte is never zero, so k continuation bytes mean at least 1<<(7k)) is
	// refused before its prefix is even complete.
	var length uint64
	ln := 0
	for shift := uint(0); ; shift += 7 {
		if ln == len(b) {
			return Frame{}, 0, ErrIncomplete
		}
		c := b[ln]
		ln++
		length |= uint64(c&0x7f) << shift
		if c < 0x80 {
			if c == 0 && ln > 1 {
				return Frame{}, 0, fmt.Errorf("%w: non-minimal length prefix", ErrMalformed)
			}
			break
		}
		if ln == binary.MaxVarintLen32 {
			return Frame{}, 0, fmt.Errorf("%w: length prefix too long", ErrMalformed)
		}
		if length+1<<(shift+7) > uint64(max) {
			return Frame{}, 0, ErrFrameTooLarge
		}
	}
	switch {
	case length == 0:
		return Frame{}, 0, fmt.Errorf("%w: zero length", ErrMalformed)
	case length > uint64(max):
		return Frame{}, 0, ErrFrameTooLarge
	}
	if len(b) == ln {
		return Frame{}, 0, ErrIncomplete
	}
	h := b[ln]
	f.Type, f.Flags = Type(h&typeMask), h&^typeMask
	if !f.Type.Valid() {
		return Frame{}, 0, ErrUnknownType
	}
	if f.Flags&^allowedFlags[f.Type] != 0 {
		return Frame{}, 0, fmt.Errorf("%w: flags 0x%02x not allowed on %v", ErrMalformed, f.Flags, f.Type)
	}
	end := ln + int(length)
	if len(b) < end {
		return Frame{}, 0, ErrIncomplete
	}
	f.Payload = b[ln+1 : end : end]
	return f, end, nil
}

// AppendFrame appends a frame of type t with the given flags and payload.
func AppendFrame(dst []byte, t Type, flags byte, payload []byte) []byte {
	dst = appendHeader(dst, t, flags, len(payload))
	return append(dst, payload...)
}

// appendHeader appends the length prefix and header byte of a frame whose
// payload is n bytes long.
func appendHeader(dst []byte, t Type, flags byte, n int) []byte {
	dst = binary.AppendUvarint(dst, uint64(n)+1)
	return append(dst, byte(t)|flags)
}

// FrameLen returns the encoded length of a frame whose payload is n bytes.
func FrameLen(n int) int { return uvarintLen(uint64(n)+1) + 1 + n }
