package client

import (
	"net"
	"testing"
	"time"
)

// TestNextWakeOfflineHasNoKeepalive: connected, the timer loop wakes for
// the keepalive PING (wrote+ping) and for the wait on its answer; offline,
// with the last write long past, it waits for what the session has due
// (here nothing: an hour), not a millisecond at a time for the whole
// backoff.
func TestNextWakeOfflineHasNoKeepalive(t *testing.T) {
	c := &Conn{sess: NewSession(Config{}), opts: Options{DeadAfter: 20 * time.Second}}
	c.ping, c.wrote = 30*time.Second, 5*time.Second
	now := 100 * time.Second

	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	c.nc = client
	if got := c.nextWakeLocked(20 * time.Second); got != 35*time.Second {
		t.Errorf("connected, 15 s after the last write: wake at %v, want the PING's 35s", got)
	}
	c.pinged, c.wrote = 36*time.Second, 36*time.Second // the PING was the last write
	if got := c.nextWakeLocked(40 * time.Second); got != 56*time.Second {
		t.Errorf("connected, PING unanswered: wake at %v, want its deadline 56s", got)
	}

	c.nc = nil
	if got := c.nextWakeLocked(now); got != now+time.Hour {
		t.Errorf("offline, last write 95 s ago: wake at %v, want %v (nothing due)", got, now+time.Hour)
	}
}
