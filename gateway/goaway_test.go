package gateway_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"switchboard/gateway"
	"switchboard/internal/testutil"
	"switchboard/protocol"
	"switchboard/token"
)

// TestShutdownGoAwayWindow: a stop sizes the GOAWAY's reconnect window to
// the connections open when it began (PROTOCOL.md 8.10). With 5 open and
// GoAwayRate 2 logins a second, every client reads GOAWAY(2500 ms,
// SHUTTING_DOWN) off its socket, above GoAwayAfter (2 s) and nothing else
// after it, and the stop's log line names the window.
func TestShutdownGoAwayWindow(t *testing.T) {
	const conns, rate = 5, 2
	var logs testutil.Buffer
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) {
		c.GoAwayRate = rate
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	}})
	var raws []*rawConn
	for u := range conns {
		raws = append(raws, ts.rawLogin(uint64(u+1)))
	}
	if err := ts.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	want := (&protocol.GoAway{After: conns * 1000 / rate, Code: protocol.CodeShuttingDown}).Append(nil)
	for i, r := range raws {
		f := r.next(5 * time.Second)
		for f.Type != protocol.TypeGoAway {
			f = r.next(5 * time.Second)
		}
		if got := protocol.AppendFrame(nil, f.Type, f.Flags, f.Payload); !bytes.Equal(got, want) {
			t.Errorf("client %d: GOAWAY % x, want % x (after %d ms)", i+1, got, want, conns*1000/rate)
		}
		if code := r.expectClose(5 * time.Second); code != 0 {
			t.Errorf("client %d: ERROR %v after the GOAWAY", i+1, code)
		}
	}
	if line := "gateway: telling 5 clients to reconnect within 2.5s"; !strings.Contains(logs.String(), line) {
		t.Errorf("the stop's log does not say %q:\n%s", line, logs.String())
	}
}

// TestGoAwayRateValidated: a GoAwayRate below 1 and a GoAwayAfter outside
// [1ms, 10m] are refused, each naming its field; zero takes the default.
func TestGoAwayRateValidated(t *testing.T) {
	keys := gateway.Config{Keys: token.Keys{1: make([]byte, token.SecretLen)}}
	for _, tc := range []struct {
		name string
		set  func(*gateway.Config)
		want string // "" for valid
	}{
		{"defaults", func(*gateway.Config) {}, ""},
		{"rate 1", func(c *gateway.Config) { c.GoAwayRate = 1 }, ""},
		{"negative rate", func(c *gateway.Config) { c.GoAwayRate = -5 }, "gateway: GoAwayRate -5 must be positive"},
		{"after over the cap", func(c *gateway.Config) { c.GoAwayAfter = 11 * time.Minute }, "gateway: GoAwayAfter 11m0s must be in [1ms, 10m0s]"},
		{"negative after", func(c *gateway.Config) { c.GoAwayAfter = -time.Second }, "gateway: GoAwayAfter -1s must be in [1ms, 10m0s]"},
	} {
		c := keys
		tc.set(&c)
		err := c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	if got := keys.WithDefaults().GoAwayRate; got != 10000 {
		t.Errorf("default GoAwayRate %d, want 10000", got)
	}
}
