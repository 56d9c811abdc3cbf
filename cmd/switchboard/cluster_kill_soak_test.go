//go:build soak

package main

import "testing"

// TestSoakClusterKill9 is TestClusterKill9 with node 2 killed five times,
// each after 3,000 more messages were ACCEPTed. Run with `make soak`.
func TestSoakClusterKill9(t *testing.T) {
	runClusterKill(t, 5, 3000)
}
