package cluster

import "testing"

// TestBurst is the embedded-NATS trap of a burst, on the shipped
// configuration: 200,000 small payloads from one node to another, all
// delivered in order, none cut as a slow consumer. (In-process pipe
// connections lost 46% of a 500,000 burst; TestBurstFull, behind the soak
// tag, sends that many.)
func TestBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	burst(t, 200_000)
}
