package gateway_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"switchboard/gateway"
	"switchboard/protocol"
)

// TestLoginRedirectedHome: a LOGIN of a user that Config.HomeAddr homes on
// another node is answered GOAWAY MOVED with that node's address and
// closed without an ERROR, before the router sees it; a user homed here
// logs in; an address that cannot go in a GOAWAY is ERROR INTERNAL.
func TestLoginRedirectedHome(t *testing.T) {
	const home = "10.0.2.7:7000"
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) {
		c.HomeAddr = func(user uint64) string {
			switch user {
			case 2:
				return home
			case 3:
				return strings.Repeat("h", protocol.MaxAddr) + ":7000"
			}
			return ""
		}
	}})
	ts.rawLogin(1)

	r := ts.raw()
	r.write((&protocol.Login{Token: ts.Token(2), Ack: 4320}).Append(protocol.AppendPreface(nil, protocol.Version, protocol.TransportPlain)))
	f := r.next(5 * time.Second)
	got := protocol.AppendFrame(nil, f.Type, f.Flags, f.Payload)
	if want := (&protocol.GoAway{After: 100, Code: protocol.CodeMoved, Addr: home}).Append(nil); !bytes.Equal(got, want) {
		t.Fatalf("answer to LOGIN away from home: % x, want GOAWAY MOVED % x", got, want)
	}
	if code := r.expectClose(5 * time.Second); code != 0 {
		t.Fatalf("closed with ERROR %v after GOAWAY MOVED, want no ERROR", code)
	}
	eventually(t, 5*time.Second, "the close counted as MOVED", func() bool {
		return ts.Srv.Stats().Closes[protocol.CodeMoved].Load() == 1
	})
	if n := ts.Srv.Stats().Logins.Load(); n != 1 {
		t.Fatalf("%d logins, want 1: the redirected one must not log in", n)
	}

	bad := ts.raw()
	bad.write((&protocol.Login{Token: ts.Token(3)}).Append(protocol.AppendPreface(nil, protocol.Version, protocol.TransportPlain)))
	if code := bad.expectClose(5 * time.Second); code != protocol.CodeInternal {
		t.Fatalf("home address over %d bytes: closed with %v, want INTERNAL", protocol.MaxAddr, code)
	}
}
