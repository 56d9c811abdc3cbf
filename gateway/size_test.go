package gateway

import (
	"testing"
	"unsafe"
)

// TestConnSize: every connection, idle or not, holds one conn, so it must
// stay within the 112-byte allocation size class.
func TestConnSize(t *testing.T) {
	if n := unsafe.Sizeof(conn{}); n > 112 {
		t.Fatalf("conn is %d bytes, want at most 112", n)
	}
}
