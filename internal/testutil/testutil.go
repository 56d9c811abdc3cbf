package testutil

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"testing"
)

// FreeAddrs returns n distinct loopback addresses (127.0.0.1:port) whose
// ports were free a moment ago: all are held open at once, then released
// together, so none is handed out twice. For servers a test must name
// before they start, such as the nodes of a cluster, which list each
// other's addresses.
//
// The ports come from below the kernel's ephemeral range
// (ip_local_port_range), not from a listen on port 0, which draws from
// inside it: between the release and the server's bind, any connection a
// parallel test opens could take such a port as its source port (a
// cluster test failed so with "address already in use").
func FreeAddrs(t testing.TB, n int) []string {
	t.Helper()
	lo := ephemeralLow()
	const floor = 10000
	out := make([]string, 0, n)
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for tries := 0; len(out) < n; tries++ {
		if tries == 100*n {
			t.Fatalf("no %d free ports in %d-%d after %d tries", n, floor, lo-1, tries)
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", floor+rand.IntN(lo-floor)))
		if err != nil {
			continue // taken: draw another
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	return out
}

// ephemeralLow returns the first port of the kernel's ephemeral range, or
// Linux's default 32768 when it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	var lo, hi int
	if err != nil {
		return 32768
	}
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil || lo <= 10001 {
		return 32768
	}
	return lo
}
