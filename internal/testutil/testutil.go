package testutil

import (
	"net"
	"testing"
)

// FreeAddrs returns n distinct loopback addresses (127.0.0.1:port) whose
// ports were free a moment ago: all are held open at once, then released
// together, so none is handed out twice. For servers a test must name
// before they start, such as the nodes of a cluster, which list each
// other's addresses.
func FreeAddrs(t testing.TB, n int) []string {
	t.Helper()
	out := make([]string, 0, n)
	lns := make([]net.Listener, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}
