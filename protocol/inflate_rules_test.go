package protocol_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"switchboard/protocol"
)

// TestInflateNothingAfterFrame: a compressed payload is exactly one zstd
// frame. Bytes after it, whether a zstd skippable frame (which a zstd
// decoder would otherwise skip) or a single zero byte, are ErrDecompress,
// reported as bytes after the frame.
func TestInflateNothingAfterFrame(t *testing.T) {
	c := codecV1(t)
	plain := []byte(strings.Repeat("Are we still on for dinner tonight? I can bring the wine. ", 20))
	good := compressedPayload(t, c, plain)
	inflate := func(p []byte) (protocol.Frame, error) {
		return c.Inflate(protocol.Frame{Type: protocol.TypeDeliver, Flags: protocol.FlagCompressed, Payload: p}, nil, protocol.MaxServerFrame)
	}
	if f, err := inflate(good); err != nil || !bytes.Equal(f.Payload, plain) {
		t.Fatalf("the payload itself: %v", err)
	}
	for _, tc := range []struct {
		name  string
		extra []byte
	}{
		{"skippable frame", []byte{0x50, 0x2A, 0x4D, 0x18, 0, 0, 0, 0}},
		{"trailing zero byte", []byte{0x00}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := append(bytes.Clone(good), tc.extra...)
			f, err := inflate(p)
			if err == nil {
				t.Fatalf("payload with %d bytes after the zstd frame inflated to %d bytes", len(tc.extra), len(f.Payload))
			}
			if !errors.Is(err, protocol.ErrDecompress) {
				t.Fatalf("%v, want ErrDecompress", err)
			}
			if !strings.Contains(err.Error(), "after the zstd frame") {
				t.Fatalf("%v, want an error about bytes after the zstd frame", err)
			}
		})
	}
}
