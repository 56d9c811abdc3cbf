package gateway_test

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"switchboard/protocol"
)

// TestLoginFrameLimit: before login a frame over 1 KiB (header byte
// included) is refused from its length prefix, before its payload arrives,
// with FRAME_TOO_LARGE; a frame of exactly 1 KiB is read (and, not being a
// valid LOGIN, refused as PROTOCOL).
func TestLoginFrameLimit(t *testing.T) {
	ts := startServer(t, serverOptions{})
	preface := protocol.AppendPreface(nil, protocol.Version, protocol.TransportPlain)
	header := func(length int) []byte {
		b := binary.AppendUvarint(bytes.Clone(preface), uint64(length))
		return append(b, byte(protocol.TypeLogin))
	}
	tests := []struct {
		name  string
		write []byte
		want  protocol.Code
	}{
		{name: "1025 bytes, only the header sent", write: header(1025), want: protocol.CodeFrameTooLarge},
		{name: "66 KB, half sent", write: append(header(66_000), make([]byte, 30_000)...), want: protocol.CodeFrameTooLarge},
		{name: "1024 bytes, whole", write: append(header(1024), make([]byte, 1023)...), want: protocol.CodeProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ts.rawFor(t)
			r.write(tt.write)
			// Well before the partial-frame and handshake timeouts (10 s).
			if got := r.expectClose(3 * time.Second); got != tt.want {
				t.Fatalf("closed with %v, want %v", got, tt.want)
			}
		})
	}
	ts.roundTrip(t, 1, 2)
}
