package gateway_test

import (
	"testing"

	"switchboard/gateway"
	"switchboard/protocol"
)

// TestPortZeroReachesEveryLoop: with port 0, every loop listens on the
// port Addr reports, so connections spread over all of them.
func TestPortZeroReachesEveryLoop(t *testing.T) {
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) { c.Loops = 2 }})
	for i := range 32 {
		ts.Dial(uint64(i+1), protocol.ClientOptions{})
	}
	if got := ts.Srv.LoopsInUse(); got != 2 {
		t.Fatalf("connections reached %d of 2 loops", got)
	}
}
