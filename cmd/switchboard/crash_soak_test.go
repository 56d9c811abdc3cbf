//go:build soak

package main

import (
	"testing"
	"time"
)

// TestSoakCrashKill9 is TestCrashKill9 with five kills, each after 5 s of
// storm, on one data folder. Run with `make soak`.
func TestSoakCrashKill9(t *testing.T) {
	runCrash(t, 5, 5*time.Second)
}
