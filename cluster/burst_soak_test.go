//go:build soak

package cluster

import "testing"

// TestBurstFull sends the full 500,000-payload burst (make soak).
func TestBurstFull(t *testing.T) { burst(t, 500_000) }
