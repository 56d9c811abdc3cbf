package gateway_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard/delivery"
	"switchboard/gateway"
	"switchboard/internal/testutil"
	"switchboard/protocol"
)

// TestLoginFrameLimit: before login a frame over 1 KiB (header byte
// included) is refused from its length prefix, before its payload arrives,
// with FRAME_TOO_LARGE; a frame of exactly 1 KiB is read (and, not being a
// valid LOGIN, refused as PROTOCOL).
func TestLoginFrameLimit(t *testing.T) {
	ts := startServer(t, serverOptions{})
	preface := protocol.AppendPreface(nil, protocol.Version, protocol.TransportPlain)
	header := func(length int) []byte {
		b := binary.AppendUvarint(bytes.Clone(preface), uint64(length))
		return append(b, byte(protocol.TypeLogin))
	}
	tests := []struct {
		name  string
		write []byte
		want  protocol.Code
	}{
		{name: "1025 bytes, only the header sent", write: header(1025), want: protocol.CodeFrameTooLarge},
		{name: "66 KB, half sent", write: append(header(66_000), make([]byte, 30_000)...), want: protocol.CodeFrameTooLarge},
		{name: "1024 bytes, whole", write: append(header(1024), make([]byte, 1023)...), want: protocol.CodeProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ts.rawFor(t)
			r.write(tt.write)
			// Well before the partial-frame and handshake timeouts (10 s).
			if got := r.expectClose(3 * time.Second); got != tt.want {
				t.Fatalf("closed with %v, want %v", got, tt.want)
			}
		})
	}
	ts.roundTrip(t, 1, 2)
}

// TestRestartOnTheSamePort: a server stopped while clients were connected
// leaves its side of their connections in TIME_WAIT; a new server binds the
// same port at once, and a second server beside a running one is still
// refused with ErrAddrInUse.
func TestRestartOnTheSamePort(t *testing.T) {
	first := startServer(t, serverOptions{})
	for user := uint64(1); user <= 4; user++ {
		c := first.Dial(user, protocol.ClientOptions{})
		if _, err := c.Send(user%4+1, []byte("hello")); err != nil {
			t.Fatal(err)
		}
	}
	addr := first.Addr
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	second := startServer(t, serverOptions{gw: func(c *gateway.Config) { c.Addr = addr }})
	second.roundTrip(t, 5, 6)
	if err := startServerNoRun(t, addr).Run(); !errors.Is(err, gateway.ErrAddrInUse) {
		t.Fatalf("Run beside a running server: %v, want ErrAddrInUse", err)
	}
}

// TestShutdownDeadline: with every event loop hung, Shutdown returns
// within ShutdownTimeout with ErrShutdownTimeout and logs what it gave up
// on; once the loops run again, the engine stops.
func TestShutdownDeadline(t *testing.T) {
	var logs testutil.Buffer
	ts := startServer(t, serverOptions{byHand: true, gw: func(c *gateway.Config) { // by hand: it calls Shutdown itself and waits for Run
		c.ShutdownTimeout = time.Second
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	}})
	ts.Dial(1, protocol.ClientOptions{})
	ts.Dial(2, protocol.ClientOptions{})
	release := make(chan struct{})
	var unhang sync.Once
	defer unhang.Do(func() { close(release) })
	if n := ts.Srv.HangLoops(release); n == 0 {
		t.Fatal("no loop to hang")
	}
	ts.closed = true // stopped here, not by the cleanup
	start := time.Now()
	errc := make(chan error, 1)
	go func() { errc <- ts.Srv.Shutdown(context.Background()) }()
	select {
	case err := <-errc:
		if !errors.Is(err, gateway.ErrShutdownTimeout) {
			t.Fatalf("Shutdown with hung loops: %v, want ErrShutdownTimeout", err)
		}
		t.Logf("Shutdown returned after %v: %v", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown with hung loops did not return within 5 s (deadline 1 s)")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Shutdown took %v, deadline 1 s", took)
	}
	if !strings.Contains(logs.String(), "gave up waiting for event loops") {
		t.Fatalf("the log does not say what was given up on:\n%s", logs.String())
	}
	unhang.Do(func() { close(release) })
	select {
	case <-ts.runErr:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return once the loops ran again")
	}
	ts.Store.Close()
}

// TestSlowFrameThatProgresses: the partial-frame timeout measures progress.
// A 64 KiB SEND uploaded at 2 KiB/s (33 s, over three times the 10 s
// timeout) is accepted; one dripped at 100 B/s, below the 512 B/s floor,
// is closed with PARTIAL_FRAME_TIMEOUT once it falls behind the floor
// after the 10 s of grace (about 14 s in), not at 10 s. Time is a fake
// clock, ticked by the test.
func TestSlowFrameThatProgresses(t *testing.T) {
	clock := newFakeClock()
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) { c.Now = clock.Now }})
	frame := (&protocol.Send{MsgID: 1, To: 2, Body: bytes.Repeat([]byte("s"), protocol.MaxBody)}).Append(nil)

	r := ts.rawLoginPing(t, 1, 0)
	for off := 0; off < len(frame); off += 2048 {
		r.write(frame[off:min(off+2048, len(frame))])
		clock.Advance(time.Second)
		ts.Srv.Tick()
	}
	f := r.next(5 * time.Second)
	var a protocol.Accept
	if f.Type != protocol.TypeAccept || a.Decode(f) != nil || a.MsgID != 1 {
		t.Fatalf("64 KiB at 2 KiB/s: got %v %x, want ACCEPT of 1", f.Type, f.Payload)
	}

	before := ts.Srv.Stats().Closes[protocol.CodePartialFrameTimeout].Load()
	d := ts.rawLoginPing(t, 3, 0)
	closedAt := 0
	for sec := 1; sec <= 30 && closedAt == 0; sec++ {
		d.write(frame[(sec-1)*100 : sec*100])
		eventually(t, 5*time.Second, "the drip to reach the server", func() bool { return ts.Srv.Buffered(3) >= sec*100 })
		clock.Advance(time.Second)
		ts.Srv.Tick()
		if ts.Srv.Stats().Closes[protocol.CodePartialFrameTimeout].Load() > before {
			closedAt = sec
		}
	}
	// Behind the floor when 100·s < 512·(s - 10 - 1 s of slack): s > 13.7.
	if closedAt < 13 || closedAt > 16 {
		t.Fatalf("100 B/s drip closed after %d s, want 13-16 s", closedAt)
	}
	if code := d.expectClose(5 * time.Second); code != protocol.CodePartialFrameTimeout {
		t.Fatalf("100 B/s drip closed with %v, want PARTIAL_FRAME_TIMEOUT", code)
	}
}

// TestRateLimitSustainedAndBursts: with the default limit (1,000 frames/s,
// a burst of 2,000), a client sending 900 frames a second on average, in
// bursts of 1,500 and 300 a second apart, is never over the rate: every
// PING is answered and nothing is counted over. Time is a fake clock.
func TestRateLimitSustainedAndBursts(t *testing.T) {
	clock := newFakeClock()
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) { c.Now = clock.Now }})
	r := ts.rawLoginPing(t, 1, 0)
	for s := range 6 {
		n := 1500
		if s%2 == 1 {
			n = 300
		}
		r.write(bytes.Repeat(protocol.AppendPing(nil), n))
		for i := range n {
			f, err := r.tryNext(5 * time.Second)
			if err != nil || f.Type != protocol.TypePong {
				t.Fatalf("second %d, PING %d of %d: got %v, %v; want PONG", s, i+1, n, f.Type, err)
			}
		}
		clock.Advance(time.Second)
	}
	if n := ts.Srv.Stats().OverRate.Load(); n != 0 {
		t.Fatalf("%d frames counted over the rate, want 0", n)
	}
}

// TestRateLimitRefusesThenCloses: a SEND over the rate gets REFUSE
// RETRY_LATER with the time until a token is there, and is accepted when
// resent after it; a client that floods on is closed with RATE_LIMITED.
// 100 frames/s with a burst of 50; time is a fake clock, so the bucket
// refills only when the test says.
func TestRateLimitRefusesThenCloses(t *testing.T) {
	clock := newFakeClock()
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) {
		c.Now = clock.Now
		c.RateLimit = 100
		c.RateBurst = 50
	}})
	r := ts.rawLoginPing(t, 1, 0)
	send := func(first, n int) []byte {
		var b []byte
		for id := first; id < first+n; id++ {
			b = (&protocol.Send{MsgID: uint64(id), To: 2, Body: []byte("m")}).Append(b)
		}
		return b
	}

	// The burst of 50 goes through; the next 5 are refused, each told a
	// little longer: a frame costs 10 ms, and each refusal 1.25 ms more.
	r.write(send(1, 55))
	accepted, refused := r.answers(55)
	if accepted != 50 || len(refused) != 5 {
		t.Fatalf("55 SENDs at once: %d accepted, %d refused; want 50 and 5", accepted, len(refused))
	}
	for i, x := range refused {
		want := uint32((10_000 + 1250*(i+1) + 999) / 1000) // µs, rounded up to ms
		if x.Code != protocol.CodeRetryLater || x.MsgID != uint64(51+i) || x.RetryAfter != want {
			t.Fatalf("refusal %d: %+v, want RETRY_LATER of %d after %d ms", i, x, 51+i, want)
		}
	}
	// Resent after the last retry_after told (each refusal moved it on),
	// the first refused one is accepted.
	clock.Advance(time.Duration(refused[4].RetryAfter) * time.Millisecond)
	r.write(send(51, 1))
	if accepted, refused := r.answers(1); accepted != 1 {
		t.Fatalf("resent after retry_after: refused %+v", refused)
	}
	// A flood is refused until its debt passes an eighth of the bucket:
	// a burst's worth more (50 refusals of 1.25 ms), then closed.
	r.write(send(100, 200))
	if code := r.expectClose(5 * time.Second); code != protocol.CodeRateLimited {
		t.Fatalf("flood: closed with %v, want RATE_LIMITED", code)
	}
	if over := ts.Srv.Stats().OverRate.Load(); over != 5+50 {
		t.Fatalf("%d frames over the rate before the close, want 5 + 50", over)
	}
}

// TestPreLoginBudget: sockets that never log in cannot lock valid users
// out. With a cap of 16 connections and a budget of 8 before login (4 a
// loop), 16 silent sockets are accepted, the oldest of them closed with
// HANDSHAKE_TIMEOUT as newer ones come; a valid user still logs in and
// sends. Past half the budget, a new socket gets the 3 s handshake
// deadline instead of 10 s (fake clock).
func TestPreLoginBudget(t *testing.T) {
	clock := newFakeClock()
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) {
		c.Now = clock.Now
		c.MaxConns = 16
		c.MaxPreLogin = 8
		// One loop: each loop keeps its share of MaxPreLogin, and the kernel
		// spreads sockets over loops unevenly (with two, one loop got at most
		// three of the sixteen in about 2% of runs, and evicted more).
		c.Loops = 1
	}})
	var silent []*rawConn
	for range 16 {
		silent = append(silent, ts.raw())
	}
	eventually(t, 5*time.Second, "16 silent sockets accepted", func() bool {
		return ts.Srv.Stats().Accepted.Load() == 16
	})
	eventually(t, 5*time.Second, "8 silent sockets evicted", func() bool {
		return ts.Srv.Stats().PreLoginEvicted.Load() == 8 && ts.Srv.Conns() == 8
	})
	if code := silent[0].expectClose(5 * time.Second); code != protocol.CodeHandshakeTimeout {
		t.Fatalf("the oldest silent socket closed with %v, want HANDSHAKE_TIMEOUT", code)
	}
	ts.roundTrip(t, 1, 2)

	// The budget is full: the newest sockets' deadline is 3 s.
	evicted := ts.Srv.Stats().PreLoginEvicted.Load()
	for range 4 {
		clock.Advance(time.Second)
		ts.Srv.Tick()
	}
	if got := ts.Srv.Stats().Closes[protocol.CodeHandshakeTimeout].Load() - evicted; got < 4 {
		t.Fatalf("%d sockets opened under pressure closed 4 s in, want at least 4", got)
	}
	if code := silent[15].expectClose(5 * time.Second); code != protocol.CodeHandshakeTimeout {
		t.Fatalf("the newest silent socket closed with %v, want HANDSHAKE_TIMEOUT", code)
	}
}

// TestPreLoginBusyPastHalf: a connection gets HandshakeTimeoutBusy only
// while more than half of its loop's pre-login share are waiting: with a
// share of 8, the fifth silent socket (four waiting) keeps the full
// HandshakeTimeout, the sixth (five waiting) gets 3 s.
func TestPreLoginBusyPastHalf(t *testing.T) {
	clock := newFakeClock()
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) {
		c.Now = clock.Now
		c.MaxPreLogin = 8
		c.Loops = 1 // the share is the loop's
	}})
	advance := func(n int) {
		for range n {
			clock.Advance(time.Second)
			ts.Srv.Tick()
		}
	}
	for range 5 {
		ts.raw()
	}
	eventually(t, 5*time.Second, "5 silent sockets accepted", func() bool { return ts.Srv.Stats().Accepted.Load() == 5 })
	advance(4)
	if got := ts.Srv.Stats().Closes[protocol.CodeHandshakeTimeout].Load(); got != 0 {
		t.Fatalf("%d of the first 5 silent sockets closed 4 s in, want 0: at most half the share waited", got)
	}
	sixth := ts.raw()
	eventually(t, 5*time.Second, "the sixth accepted", func() bool { return ts.Srv.Stats().Accepted.Load() == 6 })
	advance(4)
	if code := sixth.expectClose(5 * time.Second); code != protocol.CodeHandshakeTimeout {
		t.Fatalf("the sixth closed with %v, want HANDSHAKE_TIMEOUT", code)
	}
	if got := ts.Srv.Stats().Closes[protocol.CodeHandshakeTimeout].Load(); got != 1 {
		t.Fatalf("%d silent sockets closed 4 s after the sixth opened, want only the sixth", got)
	}
}

// TestPreLoginEvictsOnlyWaiting: eviction passes over the entries at the
// front of the FIFO that logged in or closed since they opened: it closes
// neither a connection whose LOGIN was verified (joining: the router holds
// its welcome) nor counts a socket already gone, only the oldest one still
// waiting.
func TestPreLoginEvictsOnlyWaiting(t *testing.T) {
	clock := newFakeClock() // no handshake timeout fires
	logouts := make(chan uint64, 1)
	ts := startServer(t, serverOptions{
		gw: func(c *gateway.Config) {
			c.Now = clock.Now
			c.MaxPreLogin = 4
			c.Loops = 1 // the share is the loop's
		},
		delivery: func(d gateway.Delivery) gateway.Delivery { return logoutsSeen{heldLogins{d}, logouts} },
	})
	joining := ts.raw() // first in the FIFO, its LOGIN verified since
	lg := protocol.Login{Token: ts.Token(1)}
	joining.write(lg.Append(protocol.AppendPreface(nil, protocol.Version, protocol.TransportPlain)))
	eventually(t, 5*time.Second, "the LOGIN verified", func() bool { return ts.Srv.Gauges().LoggedIn == 1 })
	gone := ts.raw() // second, closed by the client since
	eventually(t, 5*time.Second, "both accepted", func() bool { return ts.Srv.Stats().Accepted.Load() == 2 })
	gone.Close()
	eventually(t, 5*time.Second, "the closed one counted out", func() bool { return ts.Srv.Conns() == 1 })
	var silent []*rawConn
	for range 5 { // the fifth is one past the share of 4
		silent = append(silent, ts.raw())
	}
	eventually(t, 5*time.Second, "the silent sockets accepted", func() bool { return ts.Srv.Stats().Accepted.Load() == 7 })
	if code := silent[0].expectClose(5 * time.Second); code != protocol.CodeHandshakeTimeout {
		t.Fatalf("the oldest silent socket closed with %v, want HANDSHAKE_TIMEOUT", code)
	}
	eventually(t, 5*time.Second, "one eviction", func() bool { return ts.Srv.Conns() == 5 })
	if got := ts.Srv.Stats().PreLoginEvicted.Load(); got != 1 {
		t.Fatalf("PreLoginEvicted = %d, want 1", got)
	}
	if got := ts.Srv.Gauges(); got.LoggedIn != 1 || got.PreLogin != 4 {
		t.Fatalf("gauges %+v, want the joining one and 4 waiting", got)
	}

	// The joining one closes: the router is told, and it is counted out
	// as logged in, so the next socket past the share evicts again.
	joining.Close()
	select {
	case u := <-logouts:
		if u != 1 {
			t.Fatalf("logout of user %d, want 1", u)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the router was not told the joining connection closed")
	}
	eventually(t, 5*time.Second, "the joining one counted out", func() bool {
		return ts.Srv.Conns() == 4 && ts.Srv.Gauges() == gateway.Gauges{PreLogin: 4}
	})
	ts.raw()
	if code := silent[1].expectClose(5 * time.Second); code != protocol.CodeHandshakeTimeout {
		t.Fatalf("the oldest silent socket left closed with %v, want HANDSHAKE_TIMEOUT", code)
	}
	eventually(t, 5*time.Second, "a second eviction", func() bool { return ts.Srv.Stats().PreLoginEvicted.Load() == 2 })
}

// logoutsSeen is the router as the gateway sees it, reporting the user of
// each Logout.
type logoutsSeen struct {
	gateway.Delivery
	users chan<- uint64
}

func (d logoutsSeen) Logout(s delivery.Session, to delivery.Addressee) {
	d.users <- to.User
	d.Delivery.Logout(s, to)
}

// TestPreLoginEvictsOldestPastCompaction: the FIFO of waiting connections
// is compacted once logins leave it mostly stale, so it stays within
// twice the connections waiting plus 16, and the oldest one still waiting
// stays first: it is the one evicted.
func TestPreLoginEvictsOldestPastCompaction(t *testing.T) {
	clock := newFakeClock() // no handshake timeout fires
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) {
		c.Now = clock.Now
		c.MaxPreLogin = 4
		c.Loops = 1 // the share is the loop's
	}})
	oldest := ts.raw()
	eventually(t, 5*time.Second, "the oldest accepted", func() bool { return ts.Srv.Stats().Accepted.Load() == 1 })
	for u := range 24 { // stale entries past twice the waiting ones plus 16
		ts.rawLogin(uint64(u + 1))
	}
	if got := ts.Srv.PreLoginQueue(); got > 2*1+16 {
		t.Fatalf("%d entries queued for 1 connection waiting to log in, want at most 18", got)
	}
	for range 4 { // the fourth is one past the share of 4
		ts.raw()
	}
	if code := oldest.expectClose(5 * time.Second); code != protocol.CodeHandshakeTimeout {
		t.Fatalf("the oldest silent socket closed with %v, want HANDSHAKE_TIMEOUT", code)
	}
	eventually(t, 5*time.Second, "one eviction", func() bool { return ts.Srv.Stats().PreLoginEvicted.Load() == 1 })
}
