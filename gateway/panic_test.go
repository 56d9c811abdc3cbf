package gateway_test

import (
	"sync/atomic"
	"testing"
	"time"

	"switchboard/gateway"
	"switchboard/protocol"
)

// TestPanicContained: a panic in any per-connection path (OnOpen, the
// timing wheel's check, OnClose, the GOAWAY sweep) is counted and closes
// only that connection; the server goes on serving everyone else.
func TestPanicContained(t *testing.T) {
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) { c.PingMin = time.Second }})
	var point atomic.Pointer[string]
	var victim atomic.Uint64
	ts.Srv.SetPanicHook(func(p string, user uint64) {
		if want := point.Load(); want != nil && *want == p && user == victim.Load() && point.CompareAndSwap(want, nil) {
			panic("injected at " + p)
		}
	})
	arm := func(p string, user uint64) { victim.Store(user); point.Store(&p) }
	panics := func() uint64 { return ts.Srv.Stats().Panics.Load() }

	// Traffic that must go on throughout.
	a := ts.Dial(1, protocol.ClientOptions{})
	b := ts.Dial(2, protocol.ClientOptions{})
	exchange := func() {
		t.Helper()
		id, err := a.Send(2, []byte("still here"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.WaitAccept(ctxFor(t, 5*time.Second), id); err != nil {
			t.Fatal(err)
		}
		recvDelivers(t, b, 1, 5*time.Second)
	}

	t.Run("OnOpen", func(t *testing.T) {
		before, conns := panics(), ts.Srv.Conns()
		arm("open", 0)
		r := ts.rawFor(t)
		if code := r.expectClose(5 * time.Second); code != 0 {
			t.Fatalf("closed with %v", code)
		}
		eventually(t, 5*time.Second, "the panic counted and the connection gone", func() bool {
			return panics() == before+1 && ts.Srv.Conns() == conns
		})
		exchange()
	})
	t.Run("check", func(t *testing.T) {
		before := panics()
		r := ts.rawLoginPing(t, 7, 1) // checked every second or so
		arm("check", 7)
		if code := r.expectClose(5 * time.Second); code != protocol.CodeInternal {
			t.Fatalf("closed with %v, want INTERNAL", code)
		}
		eventually(t, 5*time.Second, "the panic counted", func() bool { return panics() == before+1 })
		exchange()
	})
	t.Run("OnClose", func(t *testing.T) {
		before, conns := panics(), ts.Srv.Conns()
		r := ts.rawLoginPing(t, 8, 0)
		arm("close", 8)
		r.Close()
		eventually(t, 5*time.Second, "the panic counted and the connection gone", func() bool {
			return panics() == before+1 && ts.Srv.Conns() == conns
		})
		exchange()
		ts.Dial(8, protocol.ClientOptions{}) // the user logs in again
	})
	t.Run("GOAWAY sweep", func(t *testing.T) {
		c9 := ts.Dial(9, protocol.ClientOptions{})
		arm("goaway", 9)
		if err := ts.Stop(); err != nil {
			t.Fatal(err)
		}
		// Every connection was closed, the one that panicked included, and
		// the others were told to go away.
		for _, c := range []*protocol.Client{a, b, c9} {
			code := expectGoAway(t, c)
			if c != c9 && code != protocol.CodeShuttingDown {
				t.Fatalf("GOAWAY code %v, want SHUTTING_DOWN", code)
			}
		}
		if ts.Srv.Stats().Panics.Load() == 0 {
			t.Fatal("panic not counted")
		}
	})
}

// expectGoAway reads c until it ends and returns the code of its GOAWAY
// (0: none came).
func expectGoAway(t *testing.T, c *protocol.Client) protocol.Code {
	t.Helper()
	ctx := ctxFor(t, 5*time.Second)
	var code protocol.Code
	for {
		ev, err := c.Recv(ctx)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("connection still open: %v", err)
			}
			return code
		}
		if g, ok := ev.(*protocol.GoAway); ok {
			code = g.Code
		}
	}
}
