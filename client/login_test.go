package client_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"switchboard/client"
	"switchboard/protocol"
)

// TestDialChecksWelcome: a WELCOME that chooses a version the client does
// not speak (0, or above the preface's) or a dictionary it did not offer
// fails Dial, since every frame after it would be read wrong; one that
// declines the offered dictionary (0: no compression) is a login. A first
// frame that is not a WELCOME, ERROR or GOAWAY, or one whose payload does
// not decode, fails Dial as malformed.
func TestDialChecksWelcome(t *testing.T) {
	fs := newFakeServer(t)
	for _, tc := range []struct {
		name    string
		offer   uint32 // Options.Dict
		version uint32
		dict    uint32 // WELCOME.dict
		answer  []byte // the server's answer to LOGIN; nil: the WELCOME above
		want    error  // nil: Dial succeeds
	}{
		{name: "a PONG first", answer: protocol.AppendPong(nil), want: protocol.ErrMalformed},
		{name: "a WELCOME cut short", answer: protocol.AppendFrame(nil, protocol.TypeWelcome, 0, []byte{1}), want: protocol.ErrMalformed},
		{name: "an ERROR cut short", answer: protocol.AppendFrame(nil, protocol.TypeError, 0, nil), want: protocol.ErrMalformed},
		{name: "a GOAWAY cut short", answer: protocol.AppendFrame(nil, protocol.TypeGoAway, 0, nil), want: protocol.ErrMalformed},
		{name: "version 0", version: 0, want: protocol.ErrUnsupportedVersion},
		{name: "a later version", version: protocol.Version + 1, want: protocol.ErrUnsupportedVersion},
		{name: "a dictionary not offered", version: protocol.Version, dict: protocol.DictV1, want: protocol.ErrMalformed},
		{name: "the offered dictionary declined", offer: protocol.DictV1, version: protocol.Version},
		{name: "the offered dictionary taken", offer: protocol.DictV1, version: protocol.Version, dict: protocol.DictV1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			go func() {
				if fc, ok := fs.take(); ok {
					w := protocol.Welcome{Version: tc.version, User: 7, Ping: 600, Dict: tc.dict,
						MaxFrame: protocol.MaxFrame, Window: 256}
					b := tc.answer
					if b == nil {
						b = w.Append(nil)
					}
					fc.nc.Write(b)
				}
			}()
			c, err := client.Dial(ctx, fs.addr(), client.Options{
				Token: func(context.Context) ([]byte, error) { return []byte("t"), nil },
				Dict:  tc.offer,
			})
			if err == nil {
				c.Close()
			}
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Dial: %v, want %v", err, tc.want)
			}
		})
	}
}

// TestConnKeepTryingEndsOnBadToken: with KeepTrying, a first login refused
// with ERROR BAD_TOKEN ends the Conn at once (PROTOCOL.md 10: the same
// token will not verify): Recv returns ErrClosed with the refusal, the
// status is closed, and no second LOGIN is attempted.
func TestConnKeepTryingEndsOnBadToken(t *testing.T) {
	fs := newFakeServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		if fc, ok := fs.take(); ok {
			fc.nc.Write((&protocol.Error{Code: protocol.CodeBadToken, Reason: "MAC does not verify"}).Append(nil))
		}
	}()
	opts := client.Options{
		Token:      func(context.Context) ([]byte, error) { return []byte("t"), nil },
		KeepTrying: true,
		Session:    client.Config{MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond},
	}
	c, err := client.Dial(ctx, fs.addr(), opts)
	if err != nil {
		t.Fatalf("Dial with KeepTrying: %v", err)
	}
	defer c.Close()
	_, err = c.Recv(ctx)
	var perr *protocol.Error
	if !errors.Is(err, client.ErrClosed) || !errors.As(err, &perr) || perr.Code != protocol.CodeBadToken {
		t.Fatalf("Recv: %v, want ErrClosed with BAD_TOKEN", err)
	}
	if st := c.Status(); st.State != client.StateClosed || !errors.As(st.Err, &perr) {
		t.Fatalf("status %+v, want closed with BAD_TOKEN", st)
	}
	// Recv returned the cause, so the Conn's goroutines are done: a second
	// LOGIN would already be here.
	select {
	case <-fs.conns:
		t.Fatal("a second LOGIN after BAD_TOKEN")
	default:
	}
}

// TestConnCloseWhileKeepTrying: Close of a Conn that has never logged in
// (KeepTrying, nothing listening) returns at once, ending the wait between
// attempts, and Recv then reports ErrClosed.
func TestConnCloseWhileKeepTrying(t *testing.T) {
	addr := refusedAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr, client.Options{
		Token:      func(context.Context) ([]byte, error) { return []byte("t"), nil },
		KeepTrying: true,
		Session:    client.Config{MinBackoff: time.Hour, MaxBackoff: time.Hour, Rand: func(n int64) int64 { return n - 1 }},
	})
	if err != nil {
		t.Fatalf("Dial with KeepTrying: %v", err)
	}
	if st := c.Status(); st.State != client.StateOffline || st.Retry.Before(time.Now().Add(59*time.Minute)) {
		t.Fatalf("status %+v, want offline until the hour's backoff ends", st)
	}
	closesWithin(t, c, 5*time.Second, "Close waited for the backoff of a Conn that never logged in")
	if _, err := c.Recv(ctx); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Recv after Close: %v, want ErrClosed", err)
	}
}

// closesWithin fails the test, saying why, when c's Close takes longer
// than d.
func closesWithin(t *testing.T, c *client.Conn, d time.Duration, why string) {
	t.Helper()
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(d):
		t.Fatal(why)
	}
}

// refusedAddr returns the address of a port nobody listens on: every dial
// there is refused.
func refusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestDialRefusesBadOptions: Dial reports what is wrong with its Options,
// or the token source's error, before it dials anything, rather than a
// panic, a dial error, or an outbox entry silently dropped.
func TestDialRefusesBadOptions(t *testing.T) {
	tok := func(context.Context) ([]byte, error) { return []byte("t"), nil }
	for _, tc := range []struct {
		name string
		opts client.Options
		want string // in Dial's error
	}{
		{name: "no token", opts: client.Options{}, want: "Options.Token is required"},
		{name: "a failing token source", want: "client: token: no token today",
			opts: client.Options{Token: func(context.Context) ([]byte, error) { return nil, errors.New("no token today") }}},
		{name: "no Noise key", want: "Options.Noise.Static is required",
			opts: client.Options{Token: tok, Noise: &client.NoiseOptions{}}},
		{name: "a pinned server key of 31 bytes", want: "Options.Noise.Server of 31 bytes",
			opts: client.Options{Token: tok, Noise: &client.NoiseOptions{Static: newKeypair(t), Server: make([]byte, 31)}}},
		{name: "an outbox out of order", want: "msg id not above the outbox's last: restored msg id 3",
			opts: client.Options{Token: tok, Outbox: []client.Outgoing{{MsgID: 4, To: 9}, {MsgID: 3, To: 9}}}},
		{name: "a dictionary this build lacks", want: "no dictionary 99",
			opts: client.Options{Token: tok, Dict: 99}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := client.Dial(ctx, refusedAddr(t), tc.opts)
			if err == nil {
				c.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Dial: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestConnLoginAsksPingInWholeSeconds: LOGIN asks for Options.Ping rounded
// up to whole seconds, never down (a wish of 1.5 s is 2, not 1, which would
// make the server expect traffic twice as often), and 0 for the server's
// default.
func TestConnLoginAsksPingInWholeSeconds(t *testing.T) {
	fs := newFakeServer(t)
	for _, tc := range []struct {
		ping time.Duration
		want uint32
	}{
		{0, 0},
		{time.Nanosecond, 1},
		{1500 * time.Millisecond, 2},
		{2 * time.Second, 2},
	} {
		dialFake(t, fs, client.Options{Ping: tc.ping}, func(fc *fakeConn) {
			if fc.login.Ping != tc.want {
				t.Errorf("Options.Ping %v: LOGIN ping %d, want %d", tc.ping, fc.login.Ping, tc.want)
			}
			fc.welcome(t)
		})
	}
}

// TestConnStatusThroughAReconnect: after a lost connection, while the new
// LOGIN waits for its WELCOME, Status says logging in with why the last
// connection ended; once logged in again it is caught up with no error.
func TestConnStatusThroughAReconnect(t *testing.T) {
	fs := newFakeServer(t)
	c, fc := dialFake(t, fs, client.Options{}, func(fc *fakeConn) { fc.welcome(t) })
	fc.nc.Close()
	again := fs.next(t)
	if st := c.Status(); st.State != client.StateLogin || st.Err == nil {
		t.Fatalf("status %+v with the LOGIN unanswered, want logging in with the lost connection's error", st)
	}
	again.welcome(t)
	next[*client.Reconnected](t, c, nil)
	if st := c.Status(); st.State != client.StateCaughtUp || st.Err != nil {
		t.Fatalf("status %+v after the WELCOME, want caught up with no error", st)
	}
}
