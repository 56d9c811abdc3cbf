package bench

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"switchboard/internal/testutil"
	"switchboard/protocol"
)

// TestCollectCountsEveryFailure: a loop lists its first 20 failures and
// collect counts the rest as not listed, so the report's total is every
// failure; the notes give the entries of earlier runs and the read
// receipts that arrived. The next collect counts from zero.
func TestCollectCountsEveryFailure(t *testing.T) {
	e, err := newEngine(Spec{Servers: []Target{{Addr: "127.0.0.1:7071"}}, Units: 1, UnitSize: 2, Loops: 1, Size: bodyHeaderLen})
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	l := e.loops[0]
	done := make(chan struct{})
	l.submit(func() {
		for i := range 25 {
			l.failure(fmt.Sprintf("failure %d", i))
		}
		l.stale, l.readReceipts = 3, 2
		close(done)
	})
	<-done
	r := e.collect()
	if len(r.Failures) != maxFailureLines || r.Failures[0] != "failure 0" || r.Failures[maxFailureLines-1] != "failure 19" {
		t.Errorf("failures listed %q, want failure 0 to failure 19", r.Failures)
	}
	if r.FailuresNotListed != 5 || r.FailureCount() != 25 {
		t.Errorf("%d failures not listed, %d in all; want 5 and 25", r.FailuresNotListed, r.FailureCount())
	}
	want := []string{
		"3 entries of earlier runs (messages, receipts) were waiting in the mailboxes; acknowledged and ignored",
		"2 read receipts arrived, though the bench sends no READ; not counted as delivered receipts",
	}
	if !slices.Equal(r.Notes, want) {
		t.Errorf("notes %q, want %q", r.Notes, want)
	}
	if r := e.collect(); r.FailureCount() != 0 || len(r.Notes) != 0 {
		t.Errorf("the next collect: failures %q and %d more, notes %q; want none", r.Failures, r.FailuresNotListed, r.Notes)
	}
}

// TestNewEngineRefusesBadSpecs: a spec the engine cannot run is refused
// before any connection, with an error naming what is wrong, and leaves
// no loop's descriptors open.
func TestNewEngineRefusesBadSpecs(t *testing.T) {
	v4, v6 := Target{Addr: "127.0.0.1:7071"}, Target{Addr: "[::1]:7072"}
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{"no server", Spec{}, "bench: the spec names no server"},
		{"IPv4 and IPv6 servers", Spec{Servers: []Target{v4, v6}},
			"bench: servers 127.0.0.1:7071 and [::1]:7072 are of different address families"},
		{"an IPv4 source for an IPv6 server", Spec{Servers: []Target{v6}, Source: "127.0.0.2"},
			`bench: source address "127.0.0.2" does not suit server [::1]:7072`},
		{"a source that is no address", Spec{Servers: []Target{v4}, Source: "localhost"},
			`bench: source address "localhost" does not suit server 127.0.0.1:7071`},
		{"a user homed past the last server", Spec{Servers: []Target{v4, {Addr: "127.0.0.1:7072"}}, Users: []uint64{1, 2}, Homes: []int{0, 2}},
			"bench: the spec homes a user on server #2 of 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.Units, tt.spec.UnitSize, tt.spec.Size, tt.spec.Loops = 1, 2, bodyHeaderLen, 2
			before := loopFiles(t)
			e, err := newEngine(tt.spec)
			if err == nil {
				e.close()
				t.Fatalf("no error, want %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("error %q, want %q", err, tt.want)
			}
			if after := loopFiles(t); after > before {
				t.Errorf("%d epoll and eventfd descriptors open after the refusal, %d before", after, before)
			}
		})
	}
}

// loopFiles counts this process's epoll and eventfd descriptors, which
// each of the engine's loops opens.
func loopFiles(t *testing.T) int {
	t.Helper()
	n := 0
	for _, target := range testutil.OpenFiles(t) {
		if target == "anon_inode:[eventpoll]" || target == "anon_inode:[eventfd]" {
			n++
		}
	}
	return n
}

// TestDialIPv6: a run dials an IPv6 server, named by --addr or by the
// redirect of a run on IPv4, and writes it the preface.
func TestDialIPv6(t *testing.T) {
	for _, tt := range []struct {
		name     string
		redirect bool // the run's server is on IPv4; a redirect names the IPv6 one
	}{{name: "an IPv6 server"}, {name: "a redirect to IPv6", redirect: true}} {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp6", "[::1]:0")
			if err != nil {
				t.Skipf("no IPv6 loopback: %v", err)
			}
			defer ln.Close()
			addr := ln.Addr().String()
			if tt.redirect {
				addr = "127.0.0.1:1"
			}
			e, err := newEngine(Spec{Servers: []Target{{Addr: addr}}, Units: 1, UnitSize: 2, Loops: 1, Size: bodyHeaderLen})
			if err != nil {
				t.Fatal(err)
			}
			defer e.close()
			l, c := e.loops[0], e.loops[0].conns[0]
			defer l.submit(c.drop)
			l.submit(func() {
				if tt.redirect {
					c.redirect = sockaddr(netip.MustParseAddrPort(ln.Addr().String()))
				}
				c.dial()
			})
			ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
			s, err := ln.Accept()
			if err != nil {
				t.Fatalf("no connection at the IPv6 server: %v", err)
			}
			defer s.Close()
			s.SetReadDeadline(time.Now().Add(10 * time.Second))
			got := make([]byte, protocol.PrefaceLen)
			if _, err := io.ReadFull(s, got); err != nil {
				t.Fatal(err)
			}
			if want := protocol.AppendPreface(nil, protocol.Version, protocol.TransportPlain); !bytes.Equal(got, want) {
				t.Errorf("the server read % x, want the preface % x", got, want)
			}
		})
	}
}
