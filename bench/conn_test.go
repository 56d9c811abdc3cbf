package bench

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"switchboard/protocol"
)

// TestResendCarriesFlagB checks the bytes of a first send and of both kinds
// of resend: only a resend carries flag B (0x40 in the header byte), so the
// server looks up only those.
func TestResendCarriesFlagB(t *testing.T) {
	tests := []struct {
		name  string
		group uint64 // 0: a pair, a sends to b (user 11 = 0b)
		// The first bytes of each frame: length 68 (header byte, two bytes
		// of msg_id 1000 = e8 07, one of the recipient, a 64-byte body) and
		// the header byte.
		first, resend string
	}{
		{name: "1:1", first: "44 03 e807 0b", resend: "44 43 e807 0b"},
		{name: "group", group: 500, first: "45 23 e807 f403", resend: "45 63 e807 f403"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, a, _ := checkerFixture(0)
			l.body = make([]byte, l.e.spec.Size)
			a.unit.group = tt.group
			a.send(1)
			a.resend(1000) // after a REFUSE with retry_after
			a.resendUnconfirmed()
			frames := splitFrames(t, a.obuf)
			if len(frames) != 3 {
				t.Fatalf("wrote %d frames, want 3: %x", len(frames), a.obuf)
			}
			for i, want := range []string{tt.first, tt.resend, tt.resend} {
				w, _ := hex.DecodeString(strings.ReplaceAll(want, " ", ""))
				if !bytes.HasPrefix(frames[i], w) || len(frames[i]) != 1+int(w[0]) {
					t.Errorf("frame %d is %x, want %x then the %d-byte body", i, frames[i], w, len(l.body))
				}
			}
		})
	}
}

// splitFrames splits b into whole frames.
func splitFrames(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for len(b) > 0 {
		_, n, err := protocol.ReadFrame(b, protocol.MaxFrame)
		if err != nil {
			t.Fatalf("%x: %v", b, err)
		}
		out, b = append(out, b[:n]), b[n:]
	}
	return out
}
