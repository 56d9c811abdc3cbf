package testutil

import (
	"net"
	"strconv"
	"testing"
)

// TestFreeAddrs: distinct loopback addresses, each free to bind, with
// ports below the ephemeral range, where no connection's source port is
// drawn.
func TestFreeAddrs(t *testing.T) {
	lo := ephemeralLow()
	addrs := FreeAddrs(t, 50)
	seen := map[string]bool{}
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil || host != "127.0.0.1" {
			t.Fatalf("address %q: %v", a, err)
		}
		p, _ := strconv.Atoi(port)
		if p < 10000 || p >= lo {
			t.Errorf("port %d outside [10000, %d): inside the ephemeral range or below the floor", p, lo)
		}
		if seen[a] {
			t.Errorf("%s handed out twice", a)
		}
		seen[a] = true
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Errorf("%s not free: %v", a, err)
			continue
		}
		ln.Close()
	}
}
