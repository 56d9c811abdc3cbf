package bench

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"switchboard/protocol"
)

// TestHousekeepPing: a logged-in connection that wrote nothing for more
// than half its keepalive interval sends a PING, once, so the server does
// not close an idle held connection; one that wrote within it sends none.
func TestHousekeepPing(t *testing.T) {
	l := testLoop(1)
	a, b := l.conns[0], l.conns[1]
	a.ping = int64(20 * time.Second)
	l.now = int64(10 * time.Second) // half the interval since the last write, not more
	l.housekeep()
	if len(a.obuf) != 0 {
		t.Fatalf("wrote %x after half the interval, want nothing yet", a.obuf)
	}
	l.now++
	l.housekeep()
	l.housekeep()
	if want := protocol.AppendPing(nil); !bytes.Equal(a.obuf, want) || len(b.obuf) != 0 {
		t.Errorf("wrote %x and %x (no keepalive asked), want one PING %x and nothing", a.obuf, b.obuf, want)
	}
}

// TestHousekeepLoginTimeout: a connection still logging in after the
// handshake timeout is closed, and with no retries left the run records
// that the user could not log in, and why.
func TestHousekeepLoginTimeout(t *testing.T) {
	l := testLoop(1)
	l.e.spec.HandshakeTimeout = 10 * time.Second
	l.e.spec.Servers = []Target{{Addr: "127.0.0.1:7070"}}
	a := l.conns[0]
	a.state = stateHandshake
	l.now = int64(10 * time.Second)
	l.housekeep()
	if a.state != stateHandshake || len(l.res.Failures) != 0 {
		t.Fatalf("state %v, failures %q at the timeout: want the login still waited for", a.state, l.res.Failures)
	}
	l.now++
	l.housekeep()
	want := []string{"user 100 could not log in to 127.0.0.1:7070: login timed out after 10s"}
	if a.state != stateClosed || !slices.Equal(l.res.Failures, want) {
		t.Errorf("state %v, failures %q; want closed and %q", a.state, l.res.Failures, want)
	}
}

// TestLoopNextWake: the loop sleeps until its next deadline, never past
// housekeeping: the end of a warm-up, the next slot (or the end of a
// RETRY_LATER hold, when every sender is held), the end of the sending when
// no slot is due before it, and in the phone regime the end of the
// catch-up.
func TestLoopNextWake(t *testing.T) {
	const house, sec = int64(time.Second), int64(time.Second)
	idle := traffic{active: true, rate: 1, interval: float64(10 * sec), k: 1} // next slot 10 s away
	tests := []struct {
		name    string
		now     int64
		warmup  int64 // measureFrom; 0: no warm-up
		traffic traffic
		want    int64
	}{
		{name: "idle", want: house},
		{name: "the warm-up ends", warmup: sec / 2, want: sec / 2},
		{name: "a slot is due", traffic: traffic{active: true, rate: 10, interval: float64(sec / 10), k: 1}, want: sec / 10},
		{name: "every sender held by a RETRY_LATER", traffic: traffic{active: true, rate: 10, interval: float64(sec / 10), k: 1, blockedUntil: sec / 2}, want: sec / 2},
		{name: "the sending ends", traffic: func() traffic { t := idle; t.deadline = sec / 4; return t }(), want: sec / 4},
		{name: "the catch-up ends", now: sec / 2,
			traffic: func() traffic { t := idle; t.deadline, t.phone, t.catchUp = sec/4, true, sec/2; return t }(), want: 3 * sec / 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := testLoop(1)
			l.now, l.traffic = tt.now, tt.traffic
			l.warming, l.measureFrom = tt.warmup > 0, tt.warmup
			if got := l.next(house); got != tt.want {
				t.Errorf("next wake at %v, want %v", time.Duration(got), time.Duration(tt.want))
			}
		})
	}
}
