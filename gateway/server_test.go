package gateway_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"switchboard/gateway"
	"switchboard/protocol"
	"switchboard/storage"
	"switchboard/token"
)

// TestPortZeroReachesEveryLoop: with port 0, on IPv4 or IPv6, every loop
// listens on the port Addr reports, so connections spread over all of
// them.
func TestPortZeroReachesEveryLoop(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			if ln, err := net.Listen("tcp", addr); err != nil {
				t.Skipf("no %s here: %v", addr, err)
			} else {
				ln.Close()
			}
			ts := startServer(t, serverOptions{gw: func(c *gateway.Config) { c.Addr, c.Loops = addr, 2 }})
			ipv6 := addr[0] == '['
			if host, port, err := net.SplitHostPort(ts.Addr); err != nil || port == "0" || (net.ParseIP(host).To4() == nil) != ipv6 {
				t.Fatalf("Addr %s for %s, want a port of the same family", ts.Addr, addr)
			}
			for i := range 32 {
				ts.Dial(uint64(i+1), protocol.ClientOptions{})
			}
			if got := ts.Srv.LoopsInUse(); got != 2 {
				t.Fatalf("connections reached %d of 2 loops", got)
			}
		})
	}
}

// TestAddrEndsWithContext: Addr of a server that is not running waits
// only as long as its context, and then says why.
func TestAddrEndsWithContext(t *testing.T) {
	srv, err := gateway.NewWithFileLimit(gateway.Config{Addr: "127.0.0.1:0", Loops: 1, Keys: token.Keys{1: make([]byte, token.SecretLen)}, Logger: quietLogger()}, nil, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	got := make(chan error, 1)
	go func() {
		_, err := srv.Addr(ctx)
		got <- err
	}()
	select {
	case err := <-got:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Addr: %v, want the context's deadline", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Addr outlived its context")
	}
}

// panicOn is a slog.Handler that panics when it is given one message: the
// gateway's injected logger becomes a component that fails while the loop
// handles one connection, with no hook in the production code.
type panicOn struct{ msg string }

func (h panicOn) Enabled(context.Context, slog.Level) bool { return true }
func (h panicOn) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		panic("test: the logger fails on " + h.msg)
	}
	return nil
}
func (h panicOn) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h panicOn) WithGroup(string) slog.Handler      { return h }

// TestPanicClosesOnlyThatConnection: a panic while the loop encodes one
// connection's entries (a stored record that does not parse is logged, and
// the logger panics) closes that connection with ERROR INTERNAL and counts
// it; the other sessions on the same loops carry on.
func TestPanicClosesOnlyThatConnection(t *testing.T) {
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) {
		c.Logger = slog.New(panicOn{"gateway: unreadable stored record skipped"})
	}})
	others := []*protocol.Client{ts.Dial(10, protocol.ClientOptions{}), ts.Dial(11, protocol.ClientOptions{})}
	// User 1's mailbox holds a record that does not parse.
	bad := storage.Entry{Recipient: 1, Seq: 1, Kind: storage.KindMessage, Sender: 2, MsgID: 1, Value: []byte{0xff, 1, 2}}
	if err := storage.AppendWait(ts.Store, bad); err != nil {
		t.Fatal(err)
	}
	// The panic comes in the flush that holds the entry, which may also
	// hold the WELCOME (then Dial fails) or come after it.
	victim, err := ts.TryDial(1, protocol.ClientOptions{})
	var e *protocol.Error
	if err == nil {
		if code := expectError(t, victim, 10*time.Second); code != protocol.CodeInternal {
			t.Fatalf("the connection ended with %v, want ERROR INTERNAL", code)
		}
	} else if !errors.As(err, &e) || e.Code != protocol.CodeInternal {
		t.Fatalf("the login ended with %v, want ERROR INTERNAL", err)
	}
	if got := ts.Srv.Stats().Panics.Load(); got != 1 {
		t.Fatalf("Panics = %d, want 1", got)
	}
	eventually(t, 5*time.Second, "INTERNAL close counted", func() bool {
		return ts.Srv.Stats().Closes[protocol.CodeInternal].Load() == 1
	})
	for _, c := range others {
		if err := c.Ping(); err != nil {
			t.Fatal(err)
		}
		if ev, err := c.Recv(ctxFor(t, 5*time.Second)); err != nil {
			t.Fatalf("another session after the panic: %v", err)
		} else if _, ok := ev.(protocol.Pong); !ok {
			t.Fatalf("got %T, want Pong", ev)
		}
	}
	ts.roundTrip(t, 20, 21)
}

// TestGracefulShutdown: under a stream of sends, Shutdown tells the
// clients GOAWAY SHUTTING_DOWN (the ones not writing certainly) and closes
// them; every ACCEPTed message is in the store, which closes cleanly and
// reopens with no duplicate or gap.
func TestGracefulShutdown(t *testing.T) {
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) { c.RateLimit = 1_000_000 }})
	a := ts.Dial(1, protocol.ClientOptions{FirstMsgID: 1})
	b := ts.Dial(2, protocol.ClientOptions{})
	idle := ts.Dial(3, protocol.ClientOptions{})

	// a sends until its writes fail; b reads (without acking) until the end.
	go func() {
		for i := 0; ; i++ {
			if _, err := a.Send(2, body(1, i)); err != nil {
				return
			}
			if i%64 == 63 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	received := map[uint64]bool{}
	bDone := make(chan protocol.Code, 1)
	go func() {
		var goaway protocol.Code
		for {
			ev, err := b.Recv(context.Background())
			if err != nil {
				bDone <- goaway
				return
			}
			switch ev := ev.(type) {
			case *protocol.Deliver:
				received[ev.MsgID] = true
			case *protocol.GoAway:
				goaway = ev.Code
			}
		}
	}()
	accepted := map[uint64]bool{}
	var aGoAway protocol.Code
	take := func(ev any) {
		switch ev := ev.(type) {
		case *protocol.Accept:
			for id := ev.MsgID; id <= ev.MsgID+ev.More; id++ {
				accepted[id] = true
			}
		case *protocol.GoAway:
			aGoAway = ev.Code
		}
	}
	// Stop only once the sender has seen 500 ACCEPTs: after the stop its
	// last ones may be lost to a reset (below), so counting them then
	// would not show the test carried traffic.
	ctx := ctxFor(t, 20*time.Second)
	for len(accepted) <= 500 {
		ev, err := a.Recv(ctx)
		if err != nil {
			t.Fatalf("sender before the stop: %v", err)
		}
		take(ev)
	}

	stopped := make(chan error, 1)
	go func() { stopped <- ts.Stop() }()
	for {
		ev, err := a.Recv(ctx)
		if err != nil {
			break
		}
		take(ev)
	}
	// The sender keeps writing after the server stopped reading, so the
	// server's close may reach it as a reset that overtakes the GOAWAY
	// (and its last ACCEPTs); its messages are then retried, never lost.
	if aGoAway != protocol.CodeShuttingDown && aGoAway != 0 {
		t.Fatalf("sender got GOAWAY %v, want SHUTTING_DOWN", aGoAway)
	}
	if code := <-bDone; code != protocol.CodeShuttingDown {
		t.Fatalf("recipient got GOAWAY %v, want SHUTTING_DOWN", code)
	}
	ev, err := idle.Recv(ctx)
	if g, ok := ev.(*protocol.GoAway); err != nil || !ok || g.Code != protocol.CodeShuttingDown {
		t.Fatalf("idle client got %v %v, want GOAWAY SHUTTING_DOWN", ev, err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("store close: %v", err)
	}

	// Reopen: every accepted message was received or is stored, once.
	store, err := storage.Open(storage.Config{Dir: ts.Dir, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer store.Close()
	es, _, err := store.Read(2, 1, 1<<20, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[uint64]bool{}
	for i, e := range es {
		if stored[e.MsgID] || e.Seq != uint64(i+1) {
			t.Fatalf("stored entry %d: seq %d msg %d (duplicate or gap)", i, e.Seq, e.MsgID)
		}
		stored[e.MsgID] = true
	}
	for id := range accepted {
		if !stored[id] {
			t.Fatalf("accepted msg %d is not in the store (received: %v)", id, received[id])
		}
	}
	t.Logf("%d accepted, %d stored, %d received before the GOAWAY", len(accepted), len(stored), len(received))
	if len(accepted) < 500 {
		t.Fatalf("only %d ACCEPTs seen", len(accepted))
	}
}

// TestConnectionCap: over MaxConns, a connection gets ERROR SERVER_FULL;
// the server stays up and takes a login again once one closes.
func TestConnectionCap(t *testing.T) {
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) { c.MaxConns = 5 }})
	var cs []*protocol.Client
	for i := range 5 {
		cs = append(cs, ts.Dial(uint64(i+1), protocol.ClientOptions{}))
	}
	for i := range 3 {
		_, err := ts.TryDial(uint64(10+i), protocol.ClientOptions{})
		var e *protocol.Error
		if !errors.As(err, &e) || e.Code != protocol.CodeServerFull {
			t.Fatalf("connection over the cap: %v, want ERROR SERVER_FULL", err)
		}
	}
	if got := ts.Srv.Stats().Refused.Load(); got != 3 {
		t.Fatalf("Refused = %d, want 3", got)
	}
	cs[0].Close()
	eventually(t, 5*time.Second, "a slot to free", func() bool { return ts.Srv.Conns() == 4 })
	ts.Dial(20, protocol.ClientOptions{})
}

// TestDrainRefusesNewConnections: once drained, a new connection is
// refused with ERROR SHUTTING_DOWN (not SERVER_FULL: the client must not
// take the node for full) and counted in Refused; open ones are kept.
func TestDrainRefusesNewConnections(t *testing.T) {
	ts := startServer(t, serverOptions{})
	ts.Dial(1, protocol.ClientOptions{})
	ts.Srv.Drain()
	_, err := ts.TryDial(2, protocol.ClientOptions{})
	var e *protocol.Error
	if !errors.As(err, &e) || e.Code != protocol.CodeShuttingDown {
		t.Fatalf("a connection after Drain: %v, want ERROR SHUTTING_DOWN", err)
	}
	if got := ts.Srv.Stats().Refused.Load(); got != 1 {
		t.Fatalf("Refused = %d, want 1", got)
	}
	eventually(t, 5*time.Second, "the refused one counted out", func() bool { return ts.Srv.Conns() == 1 })
}
