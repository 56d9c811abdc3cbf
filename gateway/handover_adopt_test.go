package gateway_test

import (
	"bytes"
	"fmt"
	"net"
	"testing"
	"time"

	"switchboard/delivery"
	"switchboard/gateway"
	"switchboard/handover"
	"switchboard/node"
	"switchboard/protocol"
)

// adoptPairs adopts one socket per record into ts and returns the clients'
// ends, in the records' order.
func adoptPairs(t *testing.T, ts *testServer, recs []handover.Conn) []*rawConn {
	t.Helper()
	fds := make([]int, len(recs))
	clients := make([]*rawConn, len(recs))
	for i := range recs {
		var nc net.Conn
		fds[i], nc = tcpPair(t)
		clients[i] = &rawConn{t: t, Conn: nc}
	}
	if n, err := ts.Srv.Adopt(ctxFor(t, 10*time.Second), recs, fds); err != nil || n != len(recs) {
		t.Fatalf("Adopt: %d of %d, %v", n, len(recs), err)
	}
	return clients
}

// TestDetachKeepsEachCarriedBytes: two connections on one loop, adopted
// with half a SEND each that their clients have not finished writing, are
// handed over again (as after a handover that failed and took them back):
// each record carries its own half, not the other's, and adopted from
// those records, each client's rest completes its own SEND.
func TestDetachKeepsEachCarriedBytes(t *testing.T) {
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) { c.Loops = 1 }})
	// Of one length: the second's half, joined in the loop's scratch,
	// lands where the first's was.
	sends := [][]byte{
		(&protocol.Send{MsgID: 7, To: 3, Body: []byte("from user one")}).Append(nil),
		(&protocol.Send{MsgID: 8, To: 3, Body: []byte("from user two")}).Append(nil),
	}
	half := len(sends[0]) / 2
	recs := make([]handover.Conn, len(sends))
	for i, s := range sends {
		recs[i] = handover.Conn{State: handover.StateReady, User: uint64(i + 1), Ping: 60, Inbound: append([]byte(nil), s[:half]...)}
	}
	clients := adoptPairs(t, ts, recs)

	ctx := ctxFor(t, 10*time.Second)
	ts.Srv.Pause()
	ts.Srv.Flush(ctx)
	again, fds, letGo, err := ts.Srv.Detach(ctx)
	if err != nil || letGo != 0 || len(again) != 2 {
		closeAllFDs(fds)
		t.Fatalf("Detach: %d records, %d let go, %v; want 2, 0", len(again), letGo, err)
	}
	for _, r := range again {
		if r.User != 1 && r.User != 2 {
			closeAllFDs(fds)
			t.Fatalf("a record of user %d, want 1 and 2", r.User)
		}
		if own := sends[r.User-1][:half]; !bytes.Equal(r.Inbound, own) {
			closeAllFDs(fds)
			t.Fatalf("user %d's record carries % x, want its own half SEND % x", r.User, r.Inbound, own)
		}
	}
	ts.Srv.Unpause()
	if n, err := ts.Srv.Adopt(ctx, again, fds); err != nil || n != 2 {
		t.Fatalf("Adopt again: %d, %v", n, err)
	}
	for i, c := range clients {
		c.write(sends[i][half:])
		var a protocol.Accept
		if f := c.next(5 * time.Second); f.Type != protocol.TypeAccept || a.Decode(f) != nil || a.MsgID != uint64(7+i) {
			t.Fatalf("user %d: got %v %+v, want ACCEPT of %d", i+1, f.Type, a, 7+i)
		}
	}
}

// TestAdoptTakesTheInheritedPlaces: the places New held for the sockets a
// successor inherited (Config.Inherited) become those connections' once
// adopted, not places besides them: with a cap of 3 and 2 inherited, after
// both are adopted one new client logs in and the next is refused
// SERVER_FULL.
func TestAdoptTakesTheInheritedPlaces(t *testing.T) {
	ts := startServer(t, serverOptions{byHand: true, gw: func(c *gateway.Config) {
		c.MaxConns = 3
		c.Inherited = 2
	}})
	if got := ts.Srv.Conns(); got != 2 {
		t.Fatalf("before Adopt: Conns = %d, want 2 (the inherited sockets' places)", got)
	}
	adoptPairs(t, ts, []handover.Conn{
		{State: handover.StateReady, User: 1, Ping: 60},
		{State: handover.StateReady, User: 2, Ping: 60},
	})
	if got := ts.Srv.Conns(); got != 2 {
		t.Errorf("after adopting the 2 inherited: Conns = %d, want 2", got)
	}
	ts.rawLogin(3)
	if code := ts.raw().expectClose(5 * time.Second); code != protocol.CodeServerFull {
		t.Errorf("a fourth connection under a cap of 3: closed with %v, want SERVER_FULL", code)
	}
}

// heldLogins is the router as the gateway sees it, taking every login and
// answering none (a shard far behind): no WELCOME ever comes.
type heldLogins struct{ gateway.Delivery }

func (heldLogins) Login(delivery.Session, delivery.Addressee, uint64) bool { return true }

func (heldLogins) Logout(delivery.Session, delivery.Addressee) {} // it never had them

// TestAdoptJoiningTimesOut: an adopted connection that was joining, whose
// login the new router takes but does not answer, is closed with
// HANDSHAKE_TIMEOUT once the handshake timeout passes, as a fresh login
// would be; it does not hold its place for ever. Time is a fake clock.
func TestAdoptJoiningTimesOut(t *testing.T) {
	clock := newFakeClock()
	ts := startServer(t, serverOptions{
		gw:       func(c *gateway.Config) { c.Now = clock.Now; c.HandshakeTimeout = 5 * time.Second },
		delivery: func(d gateway.Delivery) gateway.Delivery { return heldLogins{d} },
	})
	r := adoptPairs(t, ts, []handover.Conn{{State: handover.StateJoining, User: 1, Ping: 60}})[0]
	for range 7 { // the timeout, its second of slack, and one more
		clock.Advance(time.Second)
		ts.Srv.Tick()
	}
	if code := r.expectClose(5 * time.Second); code != protocol.CodeHandshakeTimeout {
		t.Fatalf("a joining connection never welcomed: closed with %v, want HANDSHAKE_TIMEOUT", code)
	}
	eventually(t, 5*time.Second, "the connection counted out", func() bool { return ts.Srv.Conns() == 0 })
}

// TestAdoptGauges: adopted connections count in the gauges as their
// records left them: logged in and joining ones as LoggedIn, one before
// LOGIN as PreLogin; closed, they are counted out.
func TestAdoptGauges(t *testing.T) {
	ts := startServer(t, serverOptions{})
	clients := adoptPairs(t, ts, []handover.Conn{
		{State: handover.StateReady, User: 1, Ping: 60},
		{State: handover.StateJoining, User: 2, Ping: 60},
		{State: handover.StateLogin},
	})
	welcome(t, clients[1])
	want := gateway.Gauges{PreLogin: 1, LoggedIn: 2}
	eventually(t, 5*time.Second, fmt.Sprintf("the gauges at %+v", want), func() bool { return ts.Srv.Gauges() == want })
	for _, c := range clients {
		c.Close()
	}
	eventually(t, 5*time.Second, "the gauges back at zero", func() bool {
		return ts.Srv.Conns() == 0 && ts.Srv.Gauges() == gateway.Gauges{}
	})
}

// refusingUser is the router as the gateway sees it, too busy to take one
// user's login.
type refusingUser struct {
	gateway.Delivery
	user uint64
}

func (r refusingUser) Login(s delivery.Session, to delivery.Addressee, ack uint64) bool {
	return to.User != r.user && r.Delivery.Login(s, to, ack)
}

// TestAdoptPreLoginShare: adopted connections take their loop's share of
// connections before login (Config.MaxPreLogin) as they are: one waiting
// for its LOGIN holds a place, a logged-in one and one whose login the
// router refused (closed) hold none. With a share of 4, three silent
// sockets then fit beside the adopted one, and the fourth evicts the
// oldest waiting, the adopted one, with HANDSHAKE_TIMEOUT. Time is a fake
// clock that does not move, so no handshake deadline passes.
func TestAdoptPreLoginShare(t *testing.T) {
	clock := newFakeClock()
	ts := startServer(t, serverOptions{
		gw: func(c *gateway.Config) {
			c.Now = clock.Now
			c.Loops = 1
			c.MaxPreLogin = 4
		},
		delivery: func(d gateway.Delivery) gateway.Delivery { return refusingUser{d, 1} },
	})
	clients := adoptPairs(t, ts, []handover.Conn{
		{State: handover.StateJoining, User: 1, Ping: 60},
		{State: handover.StateJoining, User: 2, Ping: 60},
		{State: handover.StateLogin},
	})
	if code := clients[0].expectClose(5 * time.Second); code != 0 {
		t.Fatalf("the refused login: ERROR %v, want GOAWAY and a close", code)
	}
	welcome(t, clients[1])
	eventually(t, 5*time.Second, "the refused one counted out", func() bool { return ts.Srv.Conns() == 2 })

	for i := range 4 {
		ts.raw()
		eventually(t, 5*time.Second, "the silent socket accepted", func() bool { return ts.Srv.Stats().Accepted.Load() == uint64(i+1) })
		ts.Srv.Tick() // runs after its OnOpen: the admission is done
		want := uint64(0)
		if i == 3 {
			want = 1
		}
		if got := ts.Srv.Stats().PreLoginEvicted.Load(); got != want {
			t.Fatalf("after %d silent sockets: %d evicted, want %d", i+1, got, want)
		}
	}
	if code := clients[2].expectClose(5 * time.Second); code != protocol.CodeHandshakeTimeout {
		t.Errorf("the adopted connection waiting for its LOGIN: closed with %v, want HANDSHAKE_TIMEOUT (the oldest waiting)", code)
	}
}

// TestTakeoverCarriesEachUnreadBytes: two clients each write about 100 KiB
// of SENDs that the running server has not read when it hands over (it is
// paused), more than one batch of the exchange holds: each connection's
// unread bytes reach the successor as its own, which accepts each
// client's SENDs on its connection and delivers their bodies intact.
func TestTakeoverCarriesEachUnreadBytes(t *testing.T) {
	ts := startServer(t, serverOptions{})
	clients := []*rawConn{ts.rawLogin(1), ts.rawLogin(2)}
	body := func(from, id uint64) []byte {
		return bytes.Repeat([]byte(fmt.Sprintf("%d:%d;", from, id)), 50<<10/4)
	}
	ts.Srv.Pause()
	sizes := make([]int, len(clients))
	for i, c := range clients {
		from := uint64(i + 1)
		var b []byte
		for id := from * 10; id < from*10+2; id++ {
			b = (&protocol.Send{MsgID: id, To: 3, Body: body(from, id)}).Append(b)
		}
		if len(b) <= handover.BatchBytes || len(b) > handover.MaxInbound {
			t.Fatalf("%d bytes unread: want a batch's worth and at most a record's", len(b))
		}
		c.write(b)
		sizes[i] = len(b)
	}
	eventually(t, 5*time.Second, "the SENDs to reach the server", func() bool {
		return ts.Srv.Buffered(1) == sizes[0] && ts.Srv.Buffered(2) == sizes[1]
	})

	cfg := ts.node.Config()
	cfg.Takeover = true
	next, err := node.Start(cfg)
	if err != nil {
		t.Fatalf("takeover: %v", err)
	}
	t.Cleanup(func() { next.Stop(ctxFor(t, 10*time.Second)) })
	if got := next.Gateway().Stats().Adopted.Load(); got != 2 {
		t.Fatalf("adopted %d connections, want 2", got)
	}
	for i, c := range clients {
		from := uint64(i + 1)
		// One ACCEPT may cover both (More).
		for id := from * 10; id < from*10+2; {
			var a protocol.Accept
			if f := c.next(5 * time.Second); f.Type != protocol.TypeAccept || a.Decode(f) != nil || a.MsgID != id || id+a.More >= from*10+2 {
				t.Fatalf("user %d: got %v %+v, want ACCEPT of %d on", from, f.Type, a, id)
			}
			id += a.More + 1
		}
	}
	for _, d := range recvDelivers(t, ts.Dial(3, protocol.ClientOptions{AutoAck: true}), 4, 10*time.Second) {
		if !bytes.Equal(d.Body, body(d.From, d.MsgID)) {
			t.Errorf("message %d from %d: a body of %d bytes that is not the one sent", d.MsgID, d.From, len(d.Body))
		}
	}
}
