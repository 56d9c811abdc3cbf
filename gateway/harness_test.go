package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"switchboard/delivery"
	"switchboard/gateway"
	"switchboard/internal/testutil"
	"switchboard/node"
	"switchboard/protocol"
	"switchboard/storage"
	"switchboard/token"
)

// testServer is storage (Badger in a temporary folder), a router and a
// gateway on 127.0.0.1:0, all in this process.
// hangLoop hangs ts's one event loop (Server.HangLoops) until the release
// it returns is called; release runs at the test's end too, and may run
// more than once.
func (ts *testServer) hangLoop() (release func()) {
	ts.t.Helper()
	ch := make(chan struct{})
	release = sync.OnceFunc(func() { close(ch) })
	ts.t.Cleanup(release)
	if n := ts.Srv.HangLoops(ch); n != 1 {
		release()
		ts.t.Fatalf("hung %d loops, want 1", n)
	}
	return release
}

type testServer struct {
	t      testing.TB
	Addr   string
	Srv    *gateway.Server
	Router *delivery.Router
	Store  storage.Store
	Dir    string
	secret []byte
	runErr chan error
	closed bool
	mux    *sessionsMux // nil when started through node
	node   *node.Node   // nil when assembled by hand
}

// sessionsMux is the router's Sessions in these tests: the gateway's
// sessions, and sessions of the test itself (Node 1) for requests it makes
// on the router directly.
type sessionsMux struct {
	gw    delivery.Sessions
	mu    sync.Mutex
	extra map[uint64]*nullConn
	next  uint64
}

func (m *sessionsMux) get(s delivery.Session) *nullConn {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.extra[s.ID]
}

func (m *sessionsMux) Push(s delivery.Session, o delivery.Outbound) bool {
	if s.Node == 0 {
		return m.gw.Push(s, o)
	}
	c := m.get(s)
	return c != nil && c.Push(o)
}

func (m *sessionsMux) Close(s delivery.Session, code protocol.Code) {
	if s.Node == 0 {
		m.gw.Close(s, code)
	}
}

// session returns a session of the test's own that hands what it gets to
// c. The server must be assembled by hand (serverOptions.byHand).
func (ts *testServer) session(c *nullConn) delivery.Session {
	ts.mux.mu.Lock()
	defer ts.mux.mu.Unlock()
	ts.mux.next++
	ts.mux.extra[ts.mux.next] = c
	return delivery.Session{Node: 1, ID: ts.mux.next}
}

// serverOptions adjust the configs before the server starts.
type serverOptions struct {
	gw      func(*gateway.Config)
	router  func(*delivery.Config)
	storage func(*storage.Config)
	dir     string // reuse this data folder; "" makes a fresh one
	// fileLimit replaces the process's open-file limit for the gateway;
	// 0 keeps it.
	fileLimit int
	// delivery, if set, wraps the router as the gateway sees it.
	delivery func(gateway.Delivery) gateway.Delivery
	// byHand assembles the server from its parts instead of through
	// package node: for a test that makes sessions of its own on the router
	// (testServer.session), or that configures what node's validation
	// refuses on purpose. fileLimit and delivery imply it.
	byHand bool
}

// quietLogger discards logs unless SWITCHBOARD_TEST_LOG is set (gnet and
// Badger are chatty).
func quietLogger() *slog.Logger {
	if os.Getenv("SWITCHBOARD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startServer starts a server and stops it (Shutdown, Run returns, the store
// closes) when the test ends.
func startServer(t testing.TB, o serverOptions) *testServer {
	t.Helper()
	dir := o.dir
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "mailboxes")
	}
	log := quietLogger()
	scfg := storage.Config{Dir: dir, Logger: log}
	if o.storage != nil {
		o.storage(&scfg)
	}
	rcfg := delivery.Config{Logger: log}
	if o.router != nil {
		o.router(&rcfg)
	}
	secret := make([]byte, token.SecretLen)
	for i := range secret {
		secret[i] = byte(i*7 + 1)
	}
	gcfg := gateway.Config{Addr: "127.0.0.1:0", Loops: 2, Keys: token.Keys{1: secret}, Logger: log}
	if o.gw != nil {
		o.gw(&gcfg)
	}
	if !o.byHand && o.fileLimit == 0 && o.delivery == nil {
		return startNode(t, dir, scfg, rcfg, gcfg, secret)
	}
	store, err := storage.Open(scfg)
	if err != nil {
		t.Fatalf("storage.Open: %v", err)
	}
	router, err := delivery.New(rcfg, store)
	if err != nil {
		store.Close()
		t.Fatalf("delivery.New: %v", err)
	}
	newServer := gateway.New
	if o.fileLimit > 0 {
		newServer = func(cfg gateway.Config, r gateway.Delivery) (*gateway.Server, error) {
			return gateway.NewWithFileLimit(cfg, r, o.fileLimit)
		}
	}
	var d gateway.Delivery = router
	if o.delivery != nil {
		d = o.delivery(router)
	}
	srv, err := newServer(gcfg, d)
	if err != nil {
		store.Close()
		t.Fatalf("gateway.New: %v", err)
	}
	mux := &sessionsMux{gw: srv, extra: map[uint64]*nullConn{}}
	router.Start(mux)
	ts := &testServer{t: t, Srv: srv, Router: router, Store: store, Dir: dir, secret: secret, runErr: make(chan error, 1), mux: mux}
	go func() { ts.runErr <- srv.Run() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr, err := srv.Addr(ctx)
	if err != nil {
		select {
		case err := <-ts.runErr:
			t.Fatalf("gateway did not start: Run: %v", err)
		default:
		}
		t.Fatalf("gateway did not start: %v", err)
	}
	ts.Addr = addr.String()
	t.Cleanup(func() { ts.Stop() })
	return ts
}

// startNode starts the server through package node, as serve does, with
// its mailboxes in dir.
func startNode(t testing.TB, dir string, scfg storage.Config, rcfg delivery.Config, gcfg gateway.Config, secret []byte) *testServer {
	t.Helper()
	cfg := node.Default()
	cfg.Data = filepath.Dir(dir)
	cfg.Metrics = ""
	cfg.Logger = scfg.Logger
	cfg.Storage, cfg.Delivery, cfg.Gateway = scfg, rcfg, gcfg
	// The plain transport alone, as these tests speak it, unless the test
	// gave Noise keys: then both.
	cfg.Transport = node.TransportPlain
	if len(gcfg.NoiseKeys) > 0 {
		cfg.Transport = node.TransportBoth
	}
	n, err := node.Start(cfg)
	if err != nil {
		t.Fatalf("node.Start: %v", err)
	}
	ts := &testServer{t: t, Srv: n.Gateway(), Router: n.Router(), Store: n.Store(), Dir: dir, secret: secret, node: n, Addr: n.Addr().String()}
	t.Cleanup(func() { ts.Stop() })
	return ts
}

// Stop shuts the server down gracefully and closes the store. It is
// idempotent and returns the store's Close error.
func (ts *testServer) Stop() error {
	if ts.closed {
		return nil
	}
	ts.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if ts.node != nil {
		return ts.node.Stop(ctx)
	}
	// The order package node keeps: drain, stop the router (its commits in
	// flight queue their ACCEPTs), then GOAWAY.
	ts.Srv.Drain()
	ts.Router.Stop()
	if err := ts.Srv.Shutdown(ctx); err != nil {
		ts.t.Errorf("Shutdown: %v", err)
	}
	select {
	case err := <-ts.runErr:
		if err != nil {
			ts.t.Errorf("Run: %v", err)
		}
	case <-ctx.Done():
		ts.t.Errorf("Run did not return after Shutdown")
	}
	return ts.Store.Close()
}

// Token mints a valid token for user.
func (ts *testServer) Token(user uint64) []byte {
	return token.Mint(ts.secret, token.Claims{KeyID: 1, User: user, Device: 1, Expiry: time.Now().Add(time.Hour)})
}

// BoundToken mints a valid token for user bound to device key key.
func (ts *testServer) BoundToken(user uint64, key []byte) []byte {
	return token.MintBound(ts.secret, token.Claims{KeyID: 1, User: user, Device: 1, Expiry: time.Now().Add(time.Hour)}, key)
}

// Dial logs user in; it fails the test if the login fails. The client is
// closed when the test ends.
func (ts *testServer) Dial(user uint64, opts protocol.ClientOptions) *protocol.Client {
	ts.t.Helper()
	return ts.dialT(ts.t, user, opts)
}

// dialT is Dial failing t, for subtests.
func (ts *testServer) dialT(t testing.TB, user uint64, opts protocol.ClientOptions) *protocol.Client {
	t.Helper()
	c, err := ts.TryDial(user, opts)
	if err != nil {
		t.Fatalf("login of user %d: %v", user, err)
	}
	return c
}

// TryDial logs user in and returns the error of the login.
func (ts *testServer) TryDial(user uint64, opts protocol.ClientOptions) (*protocol.Client, error) {
	if opts.Token == nil {
		opts.Token = ts.Token(user)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := protocol.Dial(ctx, ts.Addr, opts)
	if err != nil {
		return nil, err
	}
	ts.t.Cleanup(func() { c.Close() })
	return c, nil
}

// eventually polls cond every few milliseconds until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, d, what, cond)
}

// ctxFor returns a context that ends after d, cancelled at the test's end.
func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// recvDelivers reads n DELIVERs (skipping other events) and fails on error.
func recvDelivers(t testing.TB, c *protocol.Client, n int, d time.Duration) []*protocol.Deliver {
	t.Helper()
	ctx := ctxFor(t, d)
	out := make([]*protocol.Deliver, 0, n)
	for len(out) < n {
		ev, err := c.Recv(ctx)
		if err != nil {
			t.Fatalf("after %d of %d DELIVERs: %v", len(out), n, err)
		}
		if dv, ok := ev.(*protocol.Deliver); ok {
			out = append(out, dv)
		}
	}
	return out
}

// waitAccepted waits for the ACCEPTs covering every id in ids.
func waitAccepted(t testing.TB, c *protocol.Client, ids []uint64, d time.Duration) {
	t.Helper()
	want := map[uint64]bool{}
	for _, id := range ids {
		want[id] = true
	}
	ctx := ctxFor(t, d)
	for len(want) > 0 {
		ev, err := c.Recv(ctx)
		if err != nil {
			t.Fatalf("waiting for %d ACCEPTs: %v", len(want), err)
		}
		switch ev := ev.(type) {
		case *protocol.Accept:
			for id := ev.MsgID; id <= ev.MsgID+ev.More; id++ {
				delete(want, id)
			}
		case *protocol.Refuse:
			t.Fatalf("msg %d refused: %v", ev.MsgID, ev.Code)
		}
	}
}

// expectError reads until the connection ends and returns the code of the
// server's ERROR (0 if it ended without one). Other events are ignored.
func expectError(t testing.TB, c *protocol.Client, d time.Duration) protocol.Code {
	t.Helper()
	ctx := ctxFor(t, d)
	for {
		_, err := c.Recv(ctx)
		if err == nil {
			continue
		}
		var e *protocol.Error
		if errors.As(err, &e) {
			return e.Code
		}
		if errors.Is(err, protocol.ErrClosed) {
			return 0
		}
		t.Fatalf("waiting for the connection to end: %v", err)
	}
}

// rawConn is a client that speaks bytes, for bad input.
type rawConn struct {
	t testing.TB
	net.Conn
	buf []byte
}

func (ts *testServer) raw() *rawConn {
	ts.t.Helper()
	c, err := net.DialTimeout("tcp", ts.Addr, 5*time.Second)
	if err != nil {
		ts.t.Fatalf("dial: %v", err)
	}
	ts.t.Cleanup(func() { c.Close() })
	return &rawConn{t: ts.t, Conn: c}
}

// rawLogin writes the preface and a LOGIN for user and waits for WELCOME.
func (ts *testServer) rawLogin(user uint64) *rawConn {
	ts.t.Helper()
	r := ts.raw()
	lg := protocol.Login{Token: ts.Token(user)}
	r.write(lg.Append(protocol.AppendPreface(nil, protocol.Version, protocol.TransportPlain)))
	f := r.next(5 * time.Second)
	if f.Type != protocol.TypeWelcome {
		ts.t.Fatalf("raw login: got %v, want WELCOME", f.Type)
	}
	return r
}

func (r *rawConn) write(b []byte) {
	r.t.Helper()
	r.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.Write(b); err != nil {
		r.t.Fatalf("raw write: %v", err)
	}
}

// answers reads the server's answers to n requests: how many were
// accepted, and the REFUSEs in order. Frames of the types in skip are
// passed over; any other fails the test.
func (r *rawConn) answers(n int, skip ...protocol.Type) (accepted int, refused []protocol.Refuse) {
	r.t.Helper()
	for accepted+len(refused) < n {
		f := r.next(5 * time.Second)
		switch {
		case f.Type == protocol.TypeAccept:
			var a protocol.Accept
			if err := a.Decode(f); err != nil {
				r.t.Fatal(err)
			}
			accepted += int(a.More) + 1
		case f.Type == protocol.TypeRefuse:
			var x protocol.Refuse
			if err := x.Decode(f); err != nil {
				r.t.Fatal(err)
			}
			refused = append(refused, x)
		case !slices.Contains(skip, f.Type):
			r.t.Fatalf("got %v, want ACCEPT or REFUSE", f.Type)
		}
	}
	return accepted, refused
}

// next reads the next frame; it fails the test if none comes within d.
func (r *rawConn) next(d time.Duration) protocol.Frame {
	r.t.Helper()
	f, err := r.tryNext(d)
	if err != nil {
		r.t.Fatalf("raw read: %v", err)
	}
	return f
}

func (r *rawConn) tryNext(d time.Duration) (protocol.Frame, error) {
	r.SetReadDeadline(time.Now().Add(d))
	tmp := make([]byte, 64<<10)
	for {
		if len(r.buf) > 0 {
			f, n, err := protocol.ReadFrame(r.buf, protocol.MaxServerFrame)
			if err == nil {
				f.Payload = append([]byte(nil), f.Payload...)
				r.buf = r.buf[n:]
				return f, nil
			}
			if !errors.Is(err, protocol.ErrIncomplete) {
				return protocol.Frame{}, err
			}
		}
		n, err := r.Read(tmp)
		r.buf = append(r.buf, tmp[:n]...)
		if err != nil && n == 0 {
			return protocol.Frame{}, err
		}
	}
}

// expectClose reads frames until the server closes and returns the code of
// the last ERROR seen (0 if none). It fails the test if the connection is
// still open after d.
func (r *rawConn) expectClose(d time.Duration) protocol.Code {
	r.t.Helper()
	var code protocol.Code
	deadline := time.Now().Add(d)
	for {
		f, err := r.tryNext(time.Until(deadline))
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				r.t.Fatalf("connection still open after %v (last ERROR %v)", d, code)
			}
			return code // EOF or reset: closed
		}
		if f.Type == protocol.TypeError {
			var e protocol.Error
			if err := e.Decode(f); err != nil {
				r.t.Fatalf("bad ERROR frame: %v", err)
			}
			code = e.Code
		}
	}
}

// roundTrip checks that the server still serves: a fresh pair of users
// exchange one message.
func (ts *testServer) roundTrip(t testing.TB, from, to uint64) {
	t.Helper()
	a := ts.dialT(t, from, protocol.ClientOptions{})
	b := ts.dialT(t, to, protocol.ClientOptions{})
	body := []byte(fmt.Sprintf("still serving %d→%d", from, to))
	id, err := a.Send(to, body)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	if _, err := a.WaitAccept(ctxFor(t, 10*time.Second), id); err != nil {
		t.Fatalf("accept: %v", err)
	}
	d := recvDelivers(t, b, 1, 10*time.Second)[0]
	if d.From != from || d.MsgID != id || string(d.Body) != string(body) {
		t.Fatalf("delivered %d/%d %q, want %d/%d %q", d.From, d.MsgID, d.Body, from, id, body)
	}
	a.Close()
	b.Close()
}

// fakeClock is a Config.Now that moves only when told; Server.Tick then
// runs the loops' timers at its time.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
