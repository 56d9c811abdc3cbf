package main

import (
	"strings"
	"syscall"
	"testing"
)

// TestHangupStopsGracefully: SIGHUP, which a closing terminal sends, stops
// the server as SIGTERM does (exit 0, the store closed), rather than
// killing it with every client cut at once.
func TestHangupStopsGracefully(t *testing.T) {
	c := startChild(t, t.TempDir(), 0)
	// The serving line says what it offers: both, on loopback by default.
	if !strings.Contains(c.log(), `transport="noise and plain"`) {
		t.Errorf("the serving line does not name the transports:\n%s", c.log())
	}
	c.stopWith(t, syscall.SIGHUP)
	if !strings.Contains(c.log(), `msg=stopped`) {
		t.Fatalf("no graceful stop logged after SIGHUP:\n%s", c.log())
	}
}
