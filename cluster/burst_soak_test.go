//go:build soak

package cluster

import "testing"

// TestBurstSoak sends 2,000,000 payloads in one burst (make soak): twice
// the handler's pending limit, so it passes only while the handler keeps
// up and nothing on the way cuts a connection.
func TestBurstSoak(t *testing.T) { burst(t, 2_000_000) }
