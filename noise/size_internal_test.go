package noise

import (
	"testing"
	"unsafe"
)

// TestSessionSize: an idle Noise connection holds its Session for as long
// as it lives; it stays in the 128-byte size class (BENCHMARKS.md, "The
// Noise transport": about 300 B more than a plain connection).
func TestSessionSize(t *testing.T) {
	if n := unsafe.Sizeof(Session{}); n > 128 {
		t.Fatalf("Session is %d bytes, want at most 128", n)
	}
}
