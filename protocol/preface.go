package protocol

import "fmt"

// The connection preface: the first four bytes a client sends.
//
//	+------+------+---------+-----------+
//	| 0x53 | 0x57 | version | transport |
//	+------+------+---------+-----------+
//	  'S'    'W'
//
// Version is the highest protocol version the client speaks; the server
// answers in WELCOME with the version it chose (never higher). Transport
// selects how the frames that follow travel.
const (
	PrefaceLen = 4
	Version    = 1 // the protocol version this package speaks
)

// Transport modes of the preface.
const (
	TransportPlain   byte = 0 // frames follow in the clear (on trusted networks, or under TLS)
	TransportNoiseXX byte = 1 // a Noise_XX handshake, then encrypted frames (package noise)
	TransportNoiseIK byte = 2 // a Noise_IK handshake (XXfallback if it fails), then encrypted frames
)

var (
	// ErrUnsupportedVersion means the preface asks for version 0.
	ErrUnsupportedVersion = fmt.Errorf("protocol: unsupported version")
	// ErrUnsupportedTransport means the preface asks for a transport the peer does not offer.
	ErrUnsupportedTransport = fmt.Errorf("protocol: unsupported transport")
)

// AppendPreface appends the connection preface.
func AppendPreface(dst []byte, version, transport byte) []byte {
	return append(dst, 'S', 'W', version, transport)
}

// ReadPreface parses the preface at the front of b. It returns ErrIncomplete
// while fewer than PrefaceLen bytes are there and ErrBadPreface when the magic
// is wrong. It does not judge the transport: the server decides what it offers.
func ReadPreface(b []byte) (version, transport byte, err error) {
	for i := 0; i < len(b) && i < 2; i++ {
		if b[i] != "SW"[i] {
			return 0, 0, ErrBadPreface
		}
	}
	if len(b) < PrefaceLen {
		return 0, 0, ErrIncomplete
	}
	if b[2] == 0 {
		return 0, 0, ErrUnsupportedVersion
	}
	return b[2], b[3], nil
}
