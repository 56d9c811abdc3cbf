package gateway_test

import (
	"sync"
	"testing"
	"time"

	"switchboard/delivery"
	"switchboard/gateway"
	"switchboard/protocol"
)

// nullConn takes everything pushed to a session of the test's own
// (testServer.session), for requests made on the router directly.
type nullConn struct {
	mu  sync.Mutex
	got []delivery.Outbound
}

func (c *nullConn) Push(o delivery.Outbound) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, o)
	return true
}

func (c *nullConn) has(kind delivery.OutKind) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, o := range c.got {
		if o.Kind == kind {
			return true
		}
	}
	return false
}

// TestGauges: Gauges counts connections before login, logged in, and
// asked to close, and the bytes pushed that their loop has not taken,
// through logins, a router's close and a hung loop; all return to zero.
func TestGauges(t *testing.T) {
	ts := startServer(t, serverOptions{byHand: true, gw: func(c *gateway.Config) { c.Loops = 1 }}) // sessions of its own
	want := func(what string, w gateway.Gauges) {
		t.Helper()
		eventually(t, 5*time.Second, what, func() bool { return ts.Srv.Gauges() == w })
	}
	want("nothing at start", gateway.Gauges{})
	raw := ts.raw()
	want("one connection before login", gateway.Gauges{PreLogin: 1})
	a := ts.Dial(1, protocol.ClientOptions{})
	ts.Dial(2, protocol.ClientOptions{})
	want("two logged in", gateway.Gauges{PreLogin: 1, LoggedIn: 2})

	// With the loop hung, an entry pushed to user 2 waits in its queue,
	// and a newer login of user 2 (on the router) asks it to close.
	release := ts.hangLoop()
	d := protocol.Deliver{MsgID: 1, From: 9, Body: []byte("waiting in the outbox")}
	record := d.AppendRecord(nil)
	sender := &nullConn{}
	if !ts.Router.Send(ts.session(sender), delivery.Message{From: delivery.To(9), To: 2, MsgID: 1, Record: record}) {
		t.Fatal("router busy")
	}
	want("the entry queued", gateway.Gauges{PreLogin: 1, LoggedIn: 2, OutboundBytes: int64(len(record) + 16)})
	newer := &nullConn{}
	if !ts.Router.Login(ts.session(newer), delivery.To(2), 0) {
		t.Fatal("router busy")
	}
	eventually(t, 5*time.Second, "the newer login welcomed", func() bool { return newer.has(delivery.OutWelcome) })
	want("the replaced one closing", gateway.Gauges{PreLogin: 1, LoggedIn: 1, Closing: 1, OutboundBytes: int64(len(record) + 16)})
	release()
	want("the replaced one closed", gateway.Gauges{PreLogin: 1, LoggedIn: 1})

	raw.Close()
	a.Close()
	want("all closed", gateway.Gauges{})
	ts.Srv.Drain()
	want("draining", gateway.Gauges{Draining: true})
}
