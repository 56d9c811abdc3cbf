package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard/internal/testutil"
	"switchboard/protocol"
	"switchboard/token"
)

// TestTopOnceShowsALogin runs `switchboard top --once` against a node built
// in the test's process: after one client logs in, the screen shows one
// connection, logged in, and the server up.
func TestTopOnceShowsALogin(t *testing.T) {
	secret := make([]byte, token.SecretLen)
	for i := range secret {
		secret[i] = byte(i*7 + 1)
	}
	n := startConfig(t, nodeConfig(t.TempDir(), token.Keys{1: secret}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok := token.Mint(secret, token.Claims{KeyID: 1, User: 7, Device: 1, Expiry: time.Now().Add(time.Hour)})
	cl, err := protocol.Dial(ctx, n.Addr().String(), protocol.ClientOptions{Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	var screen string
	field := func(label string) string {
		for l := range strings.SplitSeq(screen, "\n") {
			if strings.HasPrefix(l, label) {
				return strings.Join(strings.Fields(strings.TrimPrefix(l, label)), " ")
			}
		}
		return ""
	}
	testutil.Eventually(t, 10*time.Second, "top to show one logged-in connection", func() bool {
		var out bytes.Buffer
		if err := runTop([]string{"--addr", n.AdminAddr().String(), "--once", "--every", "100ms"}, &out); err != nil {
			t.Fatal(err)
		}
		screen = out.String()
		return field("  logged in") == "1"
	}, func() string { return screen })
	want := map[string]string{
		"state":         "up",
		"  pre-login":   "0",
		"  closing":     "0",
		"messages in/s": "0.0",
		"commit queue":  "0 / 4096",
		"store":         "0 B / 16.0 GiB",
		"store errors":  "0",
	}
	if got := field("connections"); !strings.HasPrefix(got, "1 / ") {
		t.Errorf("connections %q, want 1 / the cap\n%s", got, screen)
	}
	for label, w := range want {
		if got := field(label); got != w {
			t.Errorf("%s: %q, want %q\n%s", label, got, w, screen)
		}
	}
	// A nearly full disk is marked " !" after the share.
	if got := field("disk free"); !strings.HasSuffix(strings.TrimSuffix(got, " !"), "%") {
		t.Errorf("disk free %q, want bytes and a share\n%s", got, screen)
	}
	// Nothing is over its limit on an idle server (but the test's disk,
	// which may well be nearly full).
	for l := range strings.SplitSeq(screen, "\n") {
		if strings.Contains(l, "!") && !strings.HasPrefix(l, "disk free") {
			t.Errorf("an idle server shows something over its limit: %q\n%s", l, screen)
		}
	}
}

// -h prints the flags and exits 0; a flag or value top cannot run with
// exits 2 (a usageError, which main reports).
func TestTopFlags(t *testing.T) {
	var out bytes.Buffer
	if err := runTop([]string{"-h"}, &out); !errors.Is(err, errHelp) || !strings.Contains(out.String(), "--once") {
		t.Errorf("-h: %v, help %q; want errHelp and the flags", err, out.String())
	}
	for _, args := range [][]string{{"--every", "1ms"}, {"--every", "0"}, {"--nope"}, {"extra"}, {"--addr", ""}} {
		var ue usageError
		if err := runTop(args, &out); !errors.As(err, &ue) {
			t.Errorf("%q: %v, want a usage error (exit 2)", args, err)
		}
	}
}

// --once takes its two scrapes --every apart: a counter that grows by 100
// between them grew over 100 ms at least, so at most 1,000 a second, never
// the rate of two scrapes made back to back.
func TestTopOnceWaitsEvery(t *testing.T) {
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		v := 100 * n
		mu.Unlock()
		fmt.Fprintf(w, "# TYPE switchboard_accepted_total counter\nswitchboard_accepted_total %d\n", v)
	}))
	defer srv.Close()
	var out bytes.Buffer
	if err := runTop([]string{"--addr", srv.Listener.Addr().String(), "--once", "--every", "100ms"}, &out); err != nil {
		t.Fatal(err)
	}
	for l := range strings.SplitSeq(out.String(), "\n") {
		if rest, ok := strings.CutPrefix(l, "messages in/s"); ok {
			rate, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil || rate <= 0 || rate > 1000 {
				t.Errorf("messages in/s %q, want 100 over at least 100 ms: at most 1000\n%s", strings.TrimSpace(rest), out.String())
			}
			return
		}
	}
	t.Fatalf("no messages in/s line:\n%s", out.String())
}
