package node

import (
	"strings"
	"testing"
)

// TestGoAwayRateSetting: --goaway-rate (and its variable) sets
// gateway.Config.GoAwayRate, the default is 10,000 logins a second, and a
// value below 1 is refused naming the setting.
func TestGoAwayRateSetting(t *testing.T) {
	c, err := load(t, []string{"--goaway-rate", "250"}, nil)
	if err != nil || c.Gateway.GoAwayRate != 250 {
		t.Fatalf("--goaway-rate 250: %d, %v", c.Gateway.GoAwayRate, err)
	}
	c, err = load(t, nil, []string{"SWITCHBOARD_GOAWAY_RATE=40"})
	if err != nil || c.Gateway.GoAwayRate != 40 {
		t.Fatalf("SWITCHBOARD_GOAWAY_RATE=40: %d, %v", c.Gateway.GoAwayRate, err)
	}
	if got := Default().WithDefaults().Gateway.GoAwayRate; got != 10000 {
		t.Fatalf("default goaway-rate %d, want 10000", got)
	}
	for _, v := range []string{"-1", "-10000"} {
		c, err := load(t, []string{"--goaway-rate", v}, nil)
		if err != nil {
			t.Fatalf("--goaway-rate %s: %v", v, err)
		}
		want := "gateway.goaway-rate (--goaway-rate): --goaway-rate " + v + " must be positive"
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--goaway-rate %s: Validate says %v, want %q", v, err, want)
		}
	}
}
