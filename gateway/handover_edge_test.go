package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"switchboard/delivery"
	"switchboard/gateway"
	"switchboard/handover"
	"switchboard/noise"
	"switchboard/protocol"
)

// TestPauseRefusesWithRetryLater: while the server pauses for a handover,
// a new connection is told to come back (GOAWAY RETRY_LATER after
// HandoverRetry ms) and closed; after Unpause the server serves again, and
// a later Drain refuses with SHUTTING_DOWN, not as if still paused.
func TestPauseRefusesWithRetryLater(t *testing.T) {
	ts := startServer(t, serverOptions{})
	ts.Srv.Pause()
	r := ts.raw()
	var g protocol.GoAway
	if f := r.next(5 * time.Second); f.Type != protocol.TypeGoAway || g.Decode(f) != nil || g.Code != protocol.CodeRetryLater || g.After != gateway.HandoverRetry {
		t.Fatalf("a connection while paused: got %v %+v, want GOAWAY RETRY_LATER after %d", f.Type, g, gateway.HandoverRetry)
	}
	if code := r.expectClose(5 * time.Second); code != 0 {
		t.Errorf("after the GOAWAY: ERROR %v, want a close", code)
	}
	ts.Srv.Unpause()
	ts.roundTrip(t, 1, 2)
	ts.Srv.Drain()
	if code := ts.raw().expectClose(5 * time.Second); code != protocol.CodeShuttingDown {
		t.Errorf("a connection while draining after a pause: closed with %v, want SHUTTING_DOWN", code)
	}
}

// TestDetachClosesWhatTheRouterClosed: a connection the router asked to
// close (REPLACED by a newer login) whose loop had not yet handled it when
// Detach comes is closed with that code, as it would have been, not handed
// over; the one beside it is.
func TestDetachClosesWhatTheRouterClosed(t *testing.T) {
	ts := startServer(t, serverOptions{})
	old := ts.rawLogin(1)
	ts.rawLogin(2)
	ts.Srv.Pause()
	ts.Srv.CloseUnwoken(1, protocol.CodeReplaced)
	ctx := ctxFor(t, 10*time.Second)
	ts.Srv.Flush(ctx)
	recs, fds, letGo, err := ts.Srv.Detach(ctx)
	t.Cleanup(func() { closeAllFDs(fds) })
	if err != nil || letGo != 1 || len(recs) != 1 || recs[0].User != 2 {
		t.Fatalf("Detach: %+v, %d let go, %v; want user 2's record alone, one let go", recs, letGo, err)
	}
	if code := old.expectClose(5 * time.Second); code != protocol.CodeReplaced {
		t.Errorf("the replaced connection closed with %v, want REPLACED", code)
	}
	if got := ts.Srv.Stats().Closes[protocol.CodeReplaced].Load(); got != 1 {
		t.Errorf("%d closes counted REPLACED, want 1", got)
	}
}

func closeAllFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// TestFlushWaitsForASlowReader: Flush waits for bytes gnet could not yet
// send to a client that does not read, and at its deadline says how many
// connections still hold some; Detach then lets that connection go (its
// client reconnects and is sent them again) and hands over the one that
// had nothing unsent.
func TestFlushWaitsForASlowReader(t *testing.T) {
	ts := startServer(t, serverOptions{
		gw:     func(c *gateway.Config) { c.OutboundCap = 32 << 20 },
		router: func(c *delivery.Config) { c.WindowBytes = 16 << 20 },
	})
	slow, sender := ts.rawLogin(1), ts.rawLogin(2)
	if tc, ok := slow.Conn.(*net.TCPConn); ok {
		tc.SetReadBuffer(4 << 10)
	}
	// More unsent than the kernel's largest send buffer (tcp_wmem's 4 MiB
	// here) could take, so Flush cannot end early.
	body := bytes.Repeat([]byte("x"), 60<<10)
	for id := uint64(1); ts.Srv.Unsent(1) < 4<<20; id++ {
		if id > 250 {
			t.Fatalf("%d bytes unsent after 250 messages of 60 KiB to a client that does not read", ts.Srv.Unsent(1))
		}
		sender.write((&protocol.Send{To: 1, MsgID: id, Body: body}).Append(nil))
		if accepted, _ := sender.answers(1); accepted != 1 {
			t.Fatalf("message %d refused", id)
		}
		// Its DELIVER written (or queued by gnet) before the next check.
		eventually(t, 5*time.Second, "the delivery written", func() bool { return ts.Srv.Gauges().OutboundBytes == 0 })
	}
	ts.Srv.Pause()
	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if n := ts.Srv.Flush(short); n != 1 {
		t.Fatalf("Flush at its deadline: %d connections with unsent bytes, want 1", n)
	}
	recs, fds, letGo, err := ts.Srv.Detach(ctxFor(t, 10*time.Second))
	t.Cleanup(func() { closeAllFDs(fds) })
	if err != nil || letGo != 1 || len(recs) != 1 || recs[0].User != 2 {
		t.Fatalf("Detach: %+v, %d let go, %v; want user 2's record alone, the slow one let go", recs, letGo, err)
	}
}

// TestAdoptEndsWithItsContext: an Adopt whose registrations the loops do
// not take (they hang) returns when its context ends, saying so, and the
// connection it was registering is adopted once the loop runs again, and
// serves.
func TestAdoptEndsWithItsContext(t *testing.T) {
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) { c.Loops = 1 }})
	ts.rawLogin(2) // the loop has had a connection: HangLoops hangs it
	release := ts.hangLoop()
	fd, client := tcpPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := ts.Srv.Adopt(ctx, []handover.Conn{{State: handover.StateReady, User: 1, Ping: 60}}, []int{fd})
		done <- result{n, err}
	}()
	select {
	case r := <-done:
		if r.n != 0 || !errors.Is(r.err, context.DeadlineExceeded) {
			t.Fatalf("Adopt: %d, %v; want 0 and its deadline", r.n, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Adopt did not return when its context ended")
	}
	release()
	r := &rawConn{t: t, Conn: client}
	r.write(protocol.AppendPing(nil))
	if f := r.next(5 * time.Second); f.Type != protocol.TypePong {
		t.Fatalf("the connection Adopt gave up waiting for: got %v, want PONG", f.Type)
	}
}

// refusingLogins is the router as the gateway sees it, too busy to take a
// login; it counts logouts.
type refusingLogins struct {
	gateway.Delivery
	logouts atomic.Int32
}

func (r *refusingLogins) Login(delivery.Session, delivery.Addressee, uint64) bool { return false }

func (r *refusingLogins) Logout(s delivery.Session, to delivery.Addressee) {
	r.logouts.Add(1)
	r.Delivery.Logout(s, to)
}

// TestAdoptJoiningRefused: an adopted connection that was joining, whose
// login the new router is too busy to take, is told to come back (GOAWAY
// RETRY_LATER) and closed, like a fresh login; it is counted out and never
// logged out of a router it never joined.
func TestAdoptJoiningRefused(t *testing.T) {
	busy := &refusingLogins{}
	ts := startServer(t, serverOptions{delivery: func(d gateway.Delivery) gateway.Delivery { busy.Delivery = d; return busy }})
	fd, client := tcpPair(t)
	rec := handover.Conn{State: handover.StateJoining, User: 1, Ping: 60}
	if n, err := ts.Srv.Adopt(ctxFor(t, 10*time.Second), []handover.Conn{rec}, []int{fd}); err != nil || n != 1 {
		t.Fatalf("Adopt: %d, %v", n, err)
	}
	r := &rawConn{t: t, Conn: client}
	var g protocol.GoAway
	if f := r.next(5 * time.Second); f.Type != protocol.TypeGoAway || g.Decode(f) != nil || g.Code != protocol.CodeRetryLater {
		t.Fatalf("got %v %+v, want GOAWAY RETRY_LATER", f.Type, g)
	}
	if code := r.expectClose(5 * time.Second); code != 0 {
		t.Errorf("after the GOAWAY: ERROR %v, want a close", code)
	}
	eventually(t, 5*time.Second, "the connection counted out", func() bool {
		return ts.Srv.Conns() == 0 && ts.Srv.Gauges() == gateway.Gauges{}
	})
	if n := busy.logouts.Load(); n != 0 {
		t.Errorf("%d logouts of a connection the router never took", n)
	}
}

// resumed is the client's end of a Noise session resumed from its state:
// Read returns the frames the server sealed, Write seals whole frames.
type resumed struct {
	net.Conn
	sess      *noise.Session
	in, plain []byte
}

func (c *resumed) Read(p []byte) (int, error) {
	for len(c.plain) == 0 {
		ct, n, err := noise.ReadTransport(c.in)
		if err == nil {
			plain, err := c.sess.Open(ct)
			if err != nil {
				return 0, err
			}
			c.plain, c.in = append(c.plain[:0], plain...), c.in[n:]
			continue
		}
		if !errors.Is(err, noise.ErrIncomplete) {
			return 0, err
		}
		buf := make([]byte, 4096)
		m, err := c.Conn.Read(buf)
		c.in = append(c.in, buf[:m]...)
		if m == 0 && err != nil {
			return 0, err
		}
	}
	n := copy(p, c.plain)
	c.plain = c.plain[n:]
	return n, nil
}

func (c *resumed) Write(p []byte) (int, error) {
	out, err := c.sess.SealFrames(nil, p)
	if err != nil {
		return 0, err
	}
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// TestAdoptNoiseBeforeLogin: a Noise connection handed over after its
// handshake and before its LOGIN keeps the device key the handshake
// proved: detached again, its record still carries it, and adopted, the
// LOGIN with a token bound to that key is welcomed through the session.
func TestAdoptNoiseBeforeLogin(t *testing.T) {
	ts := noiseServer(t, []noise.Keypair{noiseKey(t)})
	device := noiseKey(t)
	var st noise.State
	st.SendKey[0], st.RecvKey[0] = 1, 2 // the server's; the client's are the other way
	st.SendN, st.RecvN = 5, 7
	rec := handover.Conn{State: handover.StateLogin, Flags: handover.FlagNoise | handover.FlagPeer, SendKey: st.SendKey, RecvKey: st.RecvKey, SendN: st.SendN, RecvN: st.RecvN, Peer: device.Public}
	fd, client := tcpPair(t)
	ctx := ctxFor(t, 10*time.Second)
	if n, err := ts.Srv.Adopt(ctx, []handover.Conn{rec}, []int{fd}); err != nil || n != 1 {
		t.Fatalf("Adopt: %d, %v", n, err)
	}
	ts.Srv.Pause()
	ts.Srv.Flush(ctx)
	recs, fds, letGo, err := ts.Srv.Detach(ctx)
	if err != nil || letGo != 0 || len(recs) != 1 {
		closeAllFDs(fds)
		t.Fatalf("Detach: %d records, %d let go, %v; want 1, 0", len(recs), letGo, err)
	}
	if got := recs[0]; !got.Has(handover.FlagPeer) || got.Peer != device.Public || got.State != handover.StateLogin {
		t.Errorf("the record detached again: %+v; want state LOGIN with the device key", got)
	}
	ts.Srv.Unpause()
	if n, err := ts.Srv.Adopt(ctx, recs, fds); err != nil || n != 1 {
		t.Fatalf("Adopt again: %d, %v", n, err)
	}
	sess, err := noise.Resume(noise.State{SendKey: st.RecvKey, RecvKey: st.SendKey, SendN: st.RecvN, RecvN: st.SendN})
	if err != nil {
		t.Fatal(err)
	}
	r := &rawConn{t: t, Conn: &resumed{Conn: client, sess: sess}}
	r.write((&protocol.Login{Token: ts.BoundToken(1, device.Public[:])}).Append(nil))
	if w := welcome(t, r); w.User != 1 {
		t.Fatalf("WELCOME for user %d, want 1", w.User)
	}
}

// TestDetachEndsWithItsContext: a Detach whose context ends while the
// loops hang returns saying so, with nothing detached, and takes no
// connection once the loops run again (it would close it there and leave
// its socket open through a copy no one holds): the connection stays,
// and serves after Unpause.
func TestDetachEndsWithItsContext(t *testing.T) {
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) { c.Loops = 1 }})
	r := ts.rawLogin(1)
	ts.Srv.Pause()
	release := ts.hangLoop()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	recs, fds, letGo, err := ts.Srv.Detach(ctx)
	closeAllFDs(fds)
	if len(recs) != 0 || letGo != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Detach: %d records, %d let go, %v; want none and its deadline", len(recs), letGo, err)
	}
	release()
	ts.Srv.Unpause() // runs after what Detach left queued on the loop
	r.write(protocol.AppendPing(nil))
	if f := r.next(5 * time.Second); f.Type != protocol.TypePong {
		t.Fatalf("after the Detach that gave up: got %v, want PONG", f.Type)
	}
}
