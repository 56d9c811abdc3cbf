package gateway_test

import (
	"strings"
	"testing"

	"switchboard/gateway"
	"switchboard/noise"
	"switchboard/protocol"
)

// TestPlainRefusalsAreNotHandshakeKinds: a client that asked for Noise
// tells a plain frame the server sent before it knew the transport (a
// refusal at connect, or of a preface it does not offer) from a handshake
// message by the first byte alone (PROTOCOL.md 3.1). An ERROR's first byte
// is its length, so some reasons would make it 0x02, 0x12, 0x21 or 0x7f:
// "at the connection cap of 100000" makes 0x21. Every reason length is
// tried with each code that goes out that way, and the frame must still
// decode to its code and reason (the padding space aside).
func TestPlainRefusalsAreNotHandshakeKinds(t *testing.T) {
	codes := []protocol.Code{protocol.CodeServerFull, protocol.CodeShuttingDown, protocol.CodeUnsupportedTransport, protocol.CodeProtocol}
	padded := 0
	for _, code := range codes {
		for n := 0; n <= protocol.MaxReason+4; n++ {
			reason := strings.Repeat("r", n)
			b := gateway.AppendError([]byte{0xee}, protocol.Error{Code: code, Reason: reason})
			if b[0] != 0xee {
				t.Fatal("AppendError changed what it appended to")
			}
			b = b[1:]
			if noise.ServerKind(b[0]) {
				t.Errorf("code %v, reason of %d bytes: first byte %#02x is a handshake kind", code, n, b[0])
			}
			f, m, err := protocol.ReadFrame(b, protocol.MaxServerFrame)
			if err != nil || m != len(b) {
				t.Fatalf("code %v, reason of %d bytes: %v (%d of %d bytes read)", code, n, err, m, len(b))
			}
			var e protocol.Error
			if err := e.Decode(f); err != nil || e.Code != code || strings.TrimSuffix(e.Reason, " ") != reason[:min(n, protocol.MaxReason)] {
				t.Fatalf("code %v, reason of %d bytes: decoded %v %q, %v", code, n, e.Code, e.Reason, err)
			}
			if e.Reason != reason[:min(n, protocol.MaxReason)] {
				padded++
			}
		}
	}
	if padded == 0 {
		t.Error("no reason needed the padding: the test no longer reaches a handshake kind")
	}
	// The reason the issue was found with.
	b := gateway.AppendError(nil, protocol.Error{Code: protocol.CodeServerFull, Reason: "at the connection cap of 100000"})
	if noise.ServerKind(b[0]) {
		t.Errorf("SERVER_FULL at a cap of 100000 begins %#02x", b[0])
	}
	// The GOAWAY of a connection refused during a handover has no reason
	// to pad: its first byte is fixed.
	g := protocol.GoAway{After: gateway.HandoverRetry, Code: protocol.CodeRetryLater}
	if b := g.Append(nil); noise.ServerKind(b[0]) {
		t.Errorf("GOAWAY RETRY_LATER begins %#02x, a handshake kind", b[0])
	}
}
