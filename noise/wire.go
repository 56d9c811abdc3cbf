package noise

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Handshake message kinds: the first byte of each framed handshake message.
const (
	KindXX1 byte = 0x01 // client → server: Noise_XX message 1 (e)
	KindXX2 byte = 0x02 // server → client: Noise_XX message 2 (e, ee, s, es)
	KindXX3 byte = 0x03 // client → server: Noise_XX message 3 (s, se), payload LOGIN
	KindIK1 byte = 0x11 // client → server: Noise_IK message 1 (e, es, s, ss), payload LOGIN
	KindIK2 byte = 0x12 // server → client: Noise_IK message 2 (e, ee, se)
	KindFB1 byte = 0x21 // server → client: Noise_XXfallback message 1 (e, ee, s, se): IK failed
	KindFB2 byte = 0x22 // client → server: Noise_XXfallback message 2 (s, es), payload LOGIN
	// KindPlain carries one plain frame, ERROR or GOAWAY, with which the
	// server refuses the handshake (too many in progress, a bad message).
	KindPlain byte = 0x7f
)

// ServerKind reports whether b is the kind of a handshake message a server
// sends (KindXX2, KindIK2, KindFB1, KindPlain): a client that asked for
// Noise reads the first byte from the server as one. A plain frame the
// server sends before it knows the transport (a refusal at connect, or of
// a preface it does not offer) must not begin with one (PROTOCOL.md 3.1).
func ServerKind(b byte) bool {
	return b == KindXX2 || b == KindIK2 || b == KindFB1 || b == KindPlain
}

// Sizes of the wire.
const (
	// HeaderLen is the framing of a handshake message: kind and length.
	HeaderLen = 3
	// LengthLen is the framing of a transport message: its length.
	LengthLen = 2
	// TagLen is the authentication tag at the end of every ciphertext.
	TagLen = 16
	// MaxMessage is the largest Noise message, handshake or transport
	// (the Noise specification's limit).
	MaxMessage = 65535
	// MaxPlaintext is the most frame bytes one transport message carries.
	MaxPlaintext = MaxMessage - TagLen
	// MaxFirstPlaintext is the most frame bytes a side's first transport
	// message carries, unless its first frame alone is longer: a server's
	// first frame is its answer to LOGIN, far shorter, so its first
	// message's length is below 0x7f00 and never begins with KindPlain.
	// A client reading its first message after its last handshake message
	// tells by that byte whether the server refused that message instead
	// (PROTOCOL.md 3.1).
	MaxFirstPlaintext = int(KindPlain)<<8 - 1 - TagLen
	// MaxHandshake is the largest handshake message either side accepts:
	// the longest pattern's keys and tags, and a LOGIN of at most
	// MaxLogin bytes.
	MaxHandshake = 3*dhLen + 3*TagLen + MaxLogin
	// MaxLogin is the longest payload of a handshake message: the LOGIN
	// frame, which a server takes up to 1,024 bytes of (PROTOCOL.md).
	MaxLogin = 1024

	dhLen = 32
)

var (
	// ErrIncomplete means more bytes are needed to read the message.
	ErrIncomplete = errors.New("noise: incomplete message")
	// ErrTooLarge is a message whose declared length is over the limit.
	ErrTooLarge = errors.New("noise: message too large")
	// ErrUnexpected is a handshake message of a kind this step does not
	// take.
	ErrUnexpected = errors.New("noise: unexpected handshake message")
	// ErrHandshake is a handshake message that does not decrypt or
	// verify.
	ErrHandshake = errors.New("noise: handshake failed")
	// ErrDecrypt is a transport message that does not decrypt: a forged,
	// replayed, reordered or truncated message.
	ErrDecrypt = errors.New("noise: transport message does not decrypt")
)

// AppendHandshake appends handshake message msg of kind, framed.
func AppendHandshake(dst []byte, kind byte, msg []byte) []byte {
	dst = append(dst, kind)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(msg)))
	return append(dst, msg...)
}

// ReadHandshake parses the framed handshake message at the front of b. It
// returns ErrIncomplete while b is short, and ErrTooLarge as soon as the
// header declares more than MaxHandshake bytes. msg aliases b.
func ReadHandshake(b []byte) (kind byte, msg []byte, n int, err error) {
	if len(b) < HeaderLen {
		return 0, nil, 0, ErrIncomplete
	}
	l := int(binary.BigEndian.Uint16(b[1:]))
	if l > MaxHandshake {
		return 0, nil, 0, fmt.Errorf("%w: handshake message of %d bytes, at most %d", ErrTooLarge, l, MaxHandshake)
	}
	if len(b) < HeaderLen+l {
		return 0, nil, 0, ErrIncomplete
	}
	return b[0], b[HeaderLen : HeaderLen+l], HeaderLen + l, nil
}

// ReadTransport parses the framed transport message at the front of b: its
// ciphertext, tag included, aliasing b. It returns ErrIncomplete while b
// is short, and ErrDecrypt for a message shorter than a tag.
func ReadTransport(b []byte) (ciphertext []byte, n int, err error) {
	if len(b) < LengthLen {
		return nil, 0, ErrIncomplete
	}
	l := int(binary.BigEndian.Uint16(b))
	if l < TagLen {
		return nil, 0, fmt.Errorf("%w: %d bytes, shorter than the tag", ErrDecrypt, l)
	}
	if len(b) < LengthLen+l {
		return nil, 0, ErrIncomplete
	}
	return b[LengthLen : LengthLen+l], LengthLen + l, nil
}
