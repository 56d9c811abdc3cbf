package bench

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"switchboard/client"
	"switchboard/delivery"
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

// TestServerFaults runs chat through a proxy that plays a faulty server
// once: the first frame of one type is mangled, dropped, or followed by a
// hang-up. A bad frame fails the run naming it, and the client tells the
// server why (ERROR PROTOCOL) before it reconnects, and that close is the
// client's, not counted as the server's; a hang-up without
// ERROR is a close counted as EOF, after which the client reconnects and
// resends what was not accepted, and the run passes; a DELIVER that never
// arrives, acknowledged by the later ones, is a lost message whose
// delivered receipt nonetheless comes back: both fail the run.
func TestServerFaults(t *testing.T) {
	// empty keeps a frame's type and flags and drops its payload.
	empty := func(f protocol.Frame, raw []byte) ([]byte, bool) {
		return []byte{1, raw[len(raw)-len(f.Payload)-1]}, false
	}
	tests := []struct {
		name     string
		on       protocol.Type
		fault    func(f protocol.Frame, raw []byte) ([]byte, bool)
		failures []string // a fragment of each failure, in order; nil: the run passes
		lost     uint64
		closes   map[string]uint64
		resent   bool            // the client reconnected and resent what was not accepted
		clientTo []protocol.Code // the ERRORs the client sent the server
	}{
		{name: "a bad frame", on: protocol.TypeAccept, fault: empty,
			failures: []string{": server sent a bad frame: protocol: malformed"}, resent: true, clientTo: []protocol.Code{protocol.CodeProtocol}},
		{name: "a hang-up", on: protocol.TypeAccept, fault: func(protocol.Frame, []byte) ([]byte, bool) { return nil, true },
			closes: map[string]uint64{"EOF": 1}, resent: true},
		{name: "a DELIVER dropped", on: protocol.TypeDeliver, fault: func(protocol.Frame, []byte) ([]byte, bool) { return nil, false },
			failures: []string{"got a delivered receipt for msg ", "1 accepted messages were not delivered to every recipient"}, lost: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, delivery.Config{})
			var done atomic.Bool
			p := startProxy(t, srv.addr, 0, func(f protocol.Frame, raw []byte) ([]byte, bool) {
				if f.Type != tt.on || done.Swap(true) {
					return raw, false
				}
				return tt.fault(f, raw)
			})
			cfg := srv.config("chat")
			cfg.Addr, cfg.Pairs, cfg.Rate, cfg.Duration, cfg.Drain = p.addr(), 1, 20, time.Second, time.Second
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatalf("chat: %v", err)
			}
			if !done.Load() {
				t.Fatalf("no %v passed the proxy", tt.on)
			}
			if len(res.Failures) != len(tt.failures) {
				t.Fatalf("failures %q, want %d", res.Failures, len(tt.failures))
			}
			for i, w := range tt.failures {
				if !strings.Contains(res.Failures[i], w) {
					t.Errorf("failure %d is %q, want it to contain %q", i, res.Failures[i], w)
				}
			}
			if res.Sent != 20 || res.Lost != tt.lost || res.Delivered != res.Sent-tt.lost || res.Duplicates+res.Reordered != 0 {
				t.Errorf("sent %d, delivered %d, lost %d, duplicates %d, reordered %d; want 20 sent, %d lost, the rest delivered once",
					res.Sent, res.Delivered, res.Lost, res.Duplicates, res.Reordered, tt.lost)
			}
			if !maps.Equal(res.Closes, tt.closes) {
				t.Errorf("closes %v, want %v", res.Closes, tt.closes)
			}
			// The message whose ACCEPT did not come is resent after the reconnect.
			if tt.resent && res.Resent == 0 {
				t.Errorf("nothing resent after the reconnect")
			}
			p.mu.Lock()
			var codes []protocol.Code
			for _, e := range p.clientErrors {
				codes = append(codes, e.Code)
			}
			p.mu.Unlock()
			if !reflect.DeepEqual(codes, tt.clientTo) {
				t.Errorf("the client sent ERRORs %v, want %v", codes, tt.clientTo)
			}
		})
	}
}

// socketConn gives c one end of a socket pair, registered with a fresh
// epoll set on c's loop for reads, as dial does; it returns the other end,
// the server's, and a function that closes it (once). Both close with the
// test.
func socketConn(t *testing.T, c *conn) (peer int, closePeer func()) {
	t.Helper()
	l := c.l
	if l.epfd == 0 {
		epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		l.epfd = epfd
		t.Cleanup(func() { unix.Close(epfd) })
	}
	if l.rbuf == nil {
		l.rbuf = make([]byte, readBufLen)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	c.fd = fds[0]
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(c.fd), Pad: c.idx}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		t.Fatal(err)
	}
	closePeer = sync.OnceFunc(func() { unix.Close(fds[1]) })
	t.Cleanup(func() {
		if c.fd >= 0 {
			unix.Close(c.fd)
		}
		closePeer()
	})
	return fds[1], closePeer
}

// epollEvents returns the events epoll reports for c now, without waiting.
func epollEvents(t *testing.T, c *conn) uint32 {
	t.Helper()
	evs := make([]unix.EpollEvent, 4)
	n, err := unix.EpollWait(c.l.epfd, evs, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs[:n] {
		if ev.Pad == c.idx {
			return ev.Events
		}
	}
	return 0
}

// TestConnWritesWhatTheKernelTakesLater: bytes the socket does not take
// at once wait in order, later writes behind them; the connection asks
// epoll for writability until they are all written and then stops asking;
// every byte is counted out once.
func TestConnWritesWhatTheKernelTakesLater(t *testing.T) {
	l := testLoop(1)
	c := l.conns[0]
	peer, _ := socketConn(t, c)
	first := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB: more than a socket buffer
	second := []byte("and then this")
	c.writeOut(first)
	if len(c.wpend) == 0 || len(c.wpend) == len(first) {
		t.Fatalf("%d of %d bytes pending: want the socket to take part", len(c.wpend), len(first))
	}
	var got []byte
	buf := make([]byte, 256<<10)
	// readAll has the server read all there is; the socket is then writable.
	readAll := func() {
		for {
			n, err := unix.Read(peer, buf)
			if err == unix.EAGAIN {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, buf[:n]...)
		}
	}
	readAll()
	c.writeOut(second) // the socket has room, but bytes are pending
	if !bytes.HasSuffix(c.wpend, second) {
		t.Fatal("a later write did not queue behind the pending bytes")
	}
	for len(c.wpend) > 0 {
		readAll()
		if len(got) > len(first)+len(second) {
			t.Fatalf("the server read %d bytes, more than the %d written", len(got), len(first)+len(second))
		}
		if epollEvents(t, c)&unix.EPOLLOUT == 0 {
			t.Fatalf("%d bytes pending, the socket empty, and epoll reports no writability", len(c.wpend))
		}
		l.event(c, unix.EPOLLOUT)
	}
	readAll()
	if ev := epollEvents(t, c); ev&unix.EPOLLOUT != 0 {
		t.Errorf("epoll events %#x once nothing is pending: still asking for writability", ev)
	}
	if want := append(first, second...); !bytes.Equal(got, want) {
		t.Errorf("the server read %d bytes, want the %d written, in order", len(got), len(want))
	}
	if want := uint64(len(first) + len(second)); l.res.BytesOut != want {
		t.Errorf("bytes out %d, want %d", l.res.BytesOut, want)
	}
	if c.wpend != nil {
		t.Errorf("wpend keeps a buffer of %d bytes once empty", cap(c.wpend))
	}
}

// TestConnWriteToAClosedServer: a write the server's end refuses (it
// closed), at once or of bytes left pending, ends the connection as lost
// without an ERROR: counted as an EOF close.
func TestConnWriteToAClosedServer(t *testing.T) {
	for _, tt := range []struct {
		name    string
		pending bool // bytes were left pending before the server closed
	}{{name: "a write"}, {name: "pending bytes", pending: true}} {
		t.Run(tt.name, func(t *testing.T) {
			l := testLoop(1)
			c := l.conns[0]
			_, closePeer := socketConn(t, c)
			if tt.pending {
				c.writeOut(make([]byte, 1<<20))
				if len(c.wpend) == 0 {
					t.Fatal("the socket took 1 MiB at once")
				}
			}
			closePeer()
			if tt.pending {
				l.event(c, unix.EPOLLOUT)
			} else {
				c.writeOut([]byte("hello"))
			}
			if c.fd != -1 || c.state != stateClosed || !maps.Equal(l.res.Closes, map[string]uint64{"EOF": 1}) {
				t.Errorf("fd %d, state %d, closes %v; want the connection closed, one EOF", c.fd, c.state, l.res.Closes)
			}
		})
	}
}

// TestConnClosedWhileNotReading: a connection that stopped reading (the
// slow scenario) and that the server closes reads what the server left to
// find why: an ERROR's code, else an EOF.
func TestConnClosedWhileNotReading(t *testing.T) {
	for _, tt := range []struct {
		name  string
		send  []byte // what the server writes before it closes
		close bool
		want  string // the close counted
	}{
		{name: "closed with ERROR", send: (&protocol.Error{Code: protocol.CodeSlowConsumer}).Append(nil), close: true, want: "SLOW_CONSUMER"},
		{name: "closed without ERROR", close: true, want: "EOF"},
		{name: "woken with nothing to read", want: "EOF"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := testLoop(1)
			c := l.conns[0]
			peer, closePeer := socketConn(t, c)
			c.paused = true
			c.setEvents(false)
			if tt.send != nil {
				if _, err := unix.Write(peer, tt.send); err != nil {
					t.Fatal(err)
				}
			}
			if tt.close {
				closePeer()
				if ev := epollEvents(t, c); ev&unix.EPOLLRDHUP == 0 {
					t.Fatalf("epoll events %#x for a closed peer, want EPOLLRDHUP", ev)
				}
			}
			l.event(c, unix.EPOLLRDHUP)
			if c.fd != -1 || c.paused || !maps.Equal(l.res.Closes, map[string]uint64{tt.want: 1}) {
				t.Errorf("fd %d, paused %v, closes %v; want the connection closed, one %s", c.fd, c.paused, l.res.Closes, tt.want)
			}
		})
	}
}

// TestConnRefusesFrames: a frame the client cannot take is a protocol
// error naming it: a compressed one (the bench offers no dictionary), one
// other than WELCOME, ERROR or GOAWAY before WELCOME, and one a server
// never sends. None of them counts as a mailbox entry.
func TestConnRefusesFrames(t *testing.T) {
	frameOf := func(b []byte, flags byte) protocol.Frame {
		f, _, err := protocol.ReadFrame(b, protocol.MaxFrame)
		if err != nil {
			t.Fatal(err)
		}
		f.Flags |= flags
		return f
	}
	deliver := (&protocol.Deliver{Seq: 1, From: 10, MsgID: 1000, Body: []byte("hi")}).Append(nil)
	tests := []struct {
		name  string
		state uint8
		f     protocol.Frame
		is    error
		want  string
	}{
		{"a compressed DELIVER", stateReady, frameOf(deliver, protocol.FlagCompressed), protocol.ErrDecompress,
			"protocol: bad compressed payload: compressed DELIVER without a dictionary"},
		{"a DELIVER before WELCOME", stateHandshake, frameOf(deliver, 0), protocol.ErrMalformed,
			"protocol: malformed frame: DELIVER before WELCOME"},
		{"a SEND", stateReady, frameOf((&protocol.Send{MsgID: 1, To: 2, Body: []byte("hi")}).Append(nil), 0), protocol.ErrMalformed,
			"protocol: malformed frame: unexpected SEND"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, b := checkerFixture(0)
			b.state = tt.state
			err := b.frame(tt.f)
			if !errors.Is(err, tt.is) || err.Error() != tt.want {
				t.Errorf("error %v, want %q", err, tt.want)
			}
			if b.sessSeq != 0 {
				t.Errorf("mailbox seq %d counted, want none", b.sessSeq)
			}
		})
	}
}

// TestConnLoginEndsWithoutWelcome: a server that ends the connection
// before WELCOME, by hanging up or with an ERROR, costs the user an
// attempt and a new dial; past --retries the user gives up and the run
// lists why. A hang-up before WELCOME is a failed login, not a close
// counted as EOF; an ERROR's code is counted.
func TestConnLoginEndsWithoutWelcome(t *testing.T) {
	tests := []struct {
		name    string
		send    []byte // what the server writes before it closes
		failure string
		closes  map[string]uint64
	}{
		{name: "a hang-up", failure: "user 100 could not log in to 127.0.0.1:7070: closed by the server without an ERROR frame"},
		{name: "an ERROR", send: (&protocol.Error{Code: protocol.CodeServerFull}).Append(nil),
			failure: "user 100 could not log in", closes: map[string]uint64{"SERVER_FULL": 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := testLoop(1)
			l.e.spec.Retries = 1
			l.e.spec.Servers = []Target{{Addr: "127.0.0.1:7070"}}
			c := l.conns[0]
			c.autoRedial = true
			for attempt := 1; attempt <= 2; attempt++ {
				peer, closePeer := socketConn(t, c)
				c.sess.AppendLogin(nil, protocol.Login{})
				c.state, c.reconnectAt = stateHandshake, 0
				if _, err := unix.Write(peer, tt.send); err != nil {
					t.Fatal(err)
				}
				closePeer()
				l.event(c, unix.EPOLLIN|unix.EPOLLRDHUP)
				if c.fd != -1 || c.state != stateClosed || c.attempts != attempt {
					t.Fatalf("attempt %d: fd %d, state %d, %d attempts; want closed after %d", attempt, c.fd, c.state, c.attempts, attempt)
				}
				if attempt == 1 && (c.reconnectAt == 0 || c.gaveUp) {
					t.Fatalf("after the first attempt: reconnect at %d, gave up %v; want a new dial", c.reconnectAt, c.gaveUp)
				}
			}
			if c.reconnectAt != 0 || !c.gaveUp || !slices.Equal(l.res.Failures, []string{tt.failure}) {
				t.Errorf("reconnect at %d, gave up %v, failures %q; want no dial, given up, %q", c.reconnectAt, c.gaveUp, l.res.Failures, tt.failure)
			}
			if !maps.Equal(l.res.Closes, tt.closes) {
				t.Errorf("closes %v, want %v", l.res.Closes, tt.closes)
			}
		})
	}
}
