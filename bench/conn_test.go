package bench

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"switchboard/client"
	"switchboard/protocol"
)

// TestResendCarriesFlagB checks the bytes of a first send and of both kinds
// of resend, after a REFUSE's retry_after and after a reconnect, both
// driven by the connection's client.Session: only a resend carries flag B
// (0x40 in the header byte), so the server looks up only those.
func TestResendCarriesFlagB(t *testing.T) {
	tests := []struct {
		name  string
		group uint64 // 0: a pair, a sends to b (user 11 = 0b)
		// The first bytes of each frame: length 68 (header byte, two bytes
		// of msg_id 1000 = e8 07, one of the recipient, a 64-byte body) and
		// the header byte.
		first, resend string
	}{
		{name: "1:1", first: "44 03 e807 0b", resend: "44 43 e807 0b"},
		{name: "group", group: 500, first: "45 23 e807 f403", resend: "45 63 e807 f403"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, a, _ := checkerFixture(0)
			l.body = make([]byte, l.e.spec.Size)
			a.unit.group = tt.group
			a.send(1)
			a.refused(&protocol.Refuse{MsgID: 1000, Code: protocol.CodeStorage, RetryAfter: 10})
			l.now = int64(10 * time.Millisecond)
			l.timers() // the retry_after has passed
			a.sess.Closed(0, time.Duration(l.now))
			a.sess.AppendLogin(nil, protocol.Login{})
			a.welcomed(&protocol.Welcome{Version: 1, User: a.user, Window: 256})
			frames := splitFrames(t, a.obuf)
			if len(frames) != 3 {
				t.Fatalf("wrote %d frames, want 3: %x", len(frames), a.obuf)
			}
			for i, want := range []string{tt.first, tt.resend, tt.resend} {
				w, _ := hex.DecodeString(strings.ReplaceAll(want, " ", ""))
				if !bytes.HasPrefix(frames[i], w) || len(frames[i]) != 1+int(w[0]) {
					t.Errorf("frame %d is %x, want %x then the %d-byte body", i, frames[i], w, len(l.body))
				}
			}
		})
	}
}

// splitFrames splits b into whole frames.
func splitFrames(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for len(b) > 0 {
		_, n, err := protocol.ReadFrame(b, protocol.MaxFrame)
		if err != nil {
			t.Fatalf("%x: %v", b, err)
		}
		out, b = append(out, b[:n]), b[n:]
	}
	return out
}

// TestConnSessionAcksAndGoAway: a bench connection runs on a
// client.Session: entries are acknowledged once coalesced, LOGIN.ack on the
// next connection is the last entry processed, and a GOAWAY's reconnect
// waits a random delay in [0, after] (PROTOCOL.md 8.10), here at the top
// of that range.
func TestConnSessionAcksAndGoAway(t *testing.T) {
	l := testLoop(1)
	c := l.conns[0]
	c.autoRedial = true
	c.sess = *client.NewSession(client.Config{AckEvery: 2, Rand: func(n int64) int64 { return n - 1 }})
	c.sess.AppendLogin(nil, protocol.Login{})
	c.sess.Welcome(&protocol.Welcome{Version: 1, User: c.user, Window: 256}, 0)
	l.now = int64(time.Second)
	for seq := uint64(1); seq <= 3; seq++ {
		ev := protocol.GroupEvent{Seq: seq, Group: 9, Actor: 1, Op: protocol.GroupAdd, Members: []uint64{2}}
		f, _, err := protocol.ReadFrame(ev.Append(nil), protocol.MaxServerFrame)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.frame(f); err != nil {
			t.Fatal(err)
		}
		c.afterRead()
	}
	// Two entries make an ACK at once; the third waits for the delay.
	if got, want := c.obuf, (&protocol.Ack{Seq: 2}).Append(nil); !bytes.Equal(got, want) {
		t.Fatalf("wrote % x, want ACK 2: % x", got, want)
	}
	g := protocol.GoAway{After: 1000, Code: protocol.CodeShuttingDown}
	f, _, _ := protocol.ReadFrame(g.Append(nil), protocol.MaxServerFrame)
	if err := c.frame(f); err != nil {
		t.Fatal(err)
	}
	if want := l.now + int64(time.Second); c.reconnectAt != want {
		t.Fatalf("reconnect at %v, want %v (the top of the window, after = 1 s)", time.Duration(c.reconnectAt), time.Duration(want))
	}
	var login protocol.Login
	lf, _, _ := protocol.ReadFrame(c.sess.AppendLogin(nil, protocol.Login{Token: []byte{1}})[protocol.PrefaceLen:], protocol.MaxLoginFrame)
	if err := login.Decode(lf); err != nil || login.Ack != 3 {
		t.Fatalf("next LOGIN.ack = %d (%v), want 3: every entry was processed", login.Ack, err)
	}
}

// TestConnFollowsRedirect: a GOAWAY MOVED in answer to LOGIN sends the
// connection to the address it names (the run's own sockaddr when it is one
// of --addr, a new one for another IP address and port) after the
// session's delay, without counting a failed attempt; a failed attempt
// there sends it back to its server of the run.
func TestConnFollowsRedirect(t *testing.T) {
	l := testLoop(1)
	l.e.spec.Retries = 5
	l.e.spec.Servers = []Target{{Addr: "localhost:7000"}, {Addr: "10.0.0.2:7000"}}
	l.e.servers = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:7000"), netip.MustParseAddrPort("10.0.0.2:7000")}
	for _, ap := range l.e.servers {
		l.servers = append(l.servers, sockaddr(ap))
	}
	c := l.conns[0]
	c.autoRedial = true
	c.sess = *client.NewSession(client.Config{Rand: func(n int64) int64 { return n - 1 }})
	l.now = int64(time.Second)
	moved := func(addr string) {
		t.Helper()
		c.sess.AppendLogin(nil, protocol.Login{})
		c.state = stateHandshake
		g := protocol.GoAway{After: 100, Code: protocol.CodeMoved, Addr: addr}
		f, _, _ := protocol.ReadFrame(g.Append(nil), protocol.MaxServerFrame)
		if err := c.frame(f); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		addr string
		want unix.Sockaddr
	}{
		{"10.0.0.2:7000", l.servers[1]},  // as --addr spells it
		{"127.0.0.1:7000", l.servers[0]}, // as --addr resolves
		{"[2001:db8::7]:7001", &unix.SockaddrInet6{Port: 7001, Addr: netip.MustParseAddr("2001:db8::7").As16()}},
	}
	for _, tt := range tests {
		moved(tt.addr)
		if c.redirect == nil || !reflect.DeepEqual(c.redirect, tt.want) {
			t.Fatalf("redirect to %s: dials %#v, want %#v", tt.addr, c.redirect, tt.want)
		}
		if _, ok := tt.want.(*unix.SockaddrInet6); !ok && c.redirect != tt.want {
			t.Fatalf("redirect to %s: a new sockaddr, not the run's", tt.addr)
		}
		if want := l.now + int64(100*time.Millisecond); c.reconnectAt != want || c.attempts != 0 {
			t.Fatalf("redirect to %s: reconnect at %v after %d failed attempts, want %v and 0",
				tt.addr, time.Duration(c.reconnectAt), c.attempts, time.Duration(want))
		}
		login(t, c) // a WELCOME: the redirects in a row start again
	}
	// The attempt at the redirected address fails: back to the run's server.
	c.fail("connect: connection refused")
	if c.redirect != nil || c.attempts != 1 {
		t.Fatalf("after a failed attempt: redirect %#v, %d attempts; want none and 1", c.redirect, c.attempts)
	}
	// A name that is not one of --addr is not resolved on the loop: a
	// failure, and the run's server.
	moved("home.example:7000")
	if c.redirect != nil || c.attempts != 2 || len(l.res.Failures) != 1 {
		t.Fatalf("redirect to a name: %#v, %d attempts, failures %q", c.redirect, c.attempts, l.res.Failures)
	}
}

// login puts c's session through LOGIN and WELCOME.
func login(t *testing.T, c *conn) {
	t.Helper()
	c.sess.AppendLogin(nil, protocol.Login{})
	c.sess.Welcome(&protocol.Welcome{Version: 1, User: c.user, Window: 256}, time.Duration(c.l.now))
}
