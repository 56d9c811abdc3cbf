package gateway_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"switchboard/delivery"
	"switchboard/gateway"
	"switchboard/protocol"
	"switchboard/storage"
	"switchboard/token"
)

// TestAnswersBeforeACloseGoToTheirConnection: a PING and an ERROR in one
// write get the PONG written to that connection before the close, and the
// loop's next connection sees nothing of it.
func TestAnswersBeforeACloseGoToTheirConnection(t *testing.T) {
	ts := startServer(t, serverOptions{})
	r := ts.rawLogin(400)
	e := protocol.Error{Code: protocol.CodeInternal, Reason: "client gives up"}
	r.write(e.Append(protocol.AppendPing(nil)))
	if f := r.next(5 * time.Second); f.Type != protocol.TypePong {
		t.Fatalf("got %v before the close, want PONG", f.Type)
	}
	if code := r.expectClose(5 * time.Second); code != 0 {
		t.Fatalf("server answered a client's ERROR with ERROR %v, want a quiet close", code)
	}
	// Both loops serve a fresh connection: the first frame each gets after
	// WELCOME is the answer to its own PING.
	for _, user := range []uint64{401, 402, 403, 404} {
		c := ts.rawLogin(user)
		c.write(protocol.AppendPing(nil))
		if f := c.next(5 * time.Second); f.Type != protocol.TypePong {
			t.Fatalf("user %d got %v, want PONG", user, f.Type)
		}
	}
}

// TestRunRefusesATakenAddress: a second server on the address of a running
// one does not start (SO_REUSEPORT would otherwise let it share the port).
func TestRunRefusesATakenAddress(t *testing.T) {
	ts := startServer(t, serverOptions{})
	second := startServerNoRun(t, ts.Addr)
	if err := second.Run(); !errors.Is(err, gateway.ErrAddrInUse) {
		t.Fatalf("Run on a taken address: %v, want ErrAddrInUse", err)
	}
}

// TestRunBadAddress: Run returns an error for an address it cannot serve,
// whether it checks first that the address is free or serves beside
// another server (Config.Beside).
func TestRunBadAddress(t *testing.T) {
	for _, beside := range []bool{false, true} {
		srv := startServerNoRun(t, "127.0.0.1:notaport", func(c *gateway.Config) { c.Beside = beside })
		if err := srv.Run(); err == nil || !strings.Contains(err.Error(), "127.0.0.1:notaport") {
			t.Errorf("Run on a bad address (beside %v): %v, want an error naming it", beside, err)
		}
	}
}

// TestShutdownBeforeRun: Shutdown of a server that never started returns
// an error at once rather than wait for a start.
func TestShutdownBeforeRun(t *testing.T) {
	srv := startServerNoRun(t, "127.0.0.1:0")
	errc := make(chan error, 1)
	go func() { errc <- srv.Shutdown(context.Background()) }()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "before the server started") {
			t.Fatalf("Shutdown before Run: %v, want an error saying it never started", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown before Run still waiting after 10 s")
	}
}

// startServerNoRun builds, but does not run, a server for addr; more
// adjust its config.
func startServerNoRun(t *testing.T, addr string, more ...func(*gateway.Config)) *gateway.Server {
	t.Helper()
	store, err := storage.NewMemory(storage.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	r, err := delivery.New(delivery.Config{}, store)
	if err != nil {
		t.Fatal(err)
	}
	cfg := gateway.Config{Addr: addr, Keys: token.Keys{1: make([]byte, token.SecretLen)}, Logger: quietLogger()}
	for _, f := range more {
		f(&cfg)
	}
	srv, err := gateway.New(cfg, r)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// TestAcksFollowTheServer: ACKs that advance are not charged to the frame
// rate limit (a client acking each frame of a fast drain sends as many as
// the server sends frames), but repeated ones are.
func TestAcksFollowTheServer(t *testing.T) {
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) { c.RateLimit = 20 }})
	const backlog = 3000
	fill := func(to uint64, n int) {
		for seq := 1; seq <= n; seq++ {
			d := protocol.Deliver{From: 500, MsgID: uint64(seq), Time: protocol.Stamp(time.Now()), Body: []byte("m")}
			e := storage.Entry{Recipient: to, Seq: uint64(seq), Kind: storage.KindMessage, Sender: 500, MsgID: uint64(seq), Value: d.AppendRecord(nil)}
			if err := storage.AppendWait(ts.Store, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	fill(501, backlog)
	recipient := ts.Dial(501, protocol.ClientOptions{AutoAck: true})
	got := recvDelivers(t, recipient, backlog, 30*time.Second)
	if last := got[len(got)-1].Seq; last != backlog {
		t.Fatalf("drained to seq %d, want %d", last, backlog)
	}

	// The same ACK again and again is charged, and closes the connection.
	fill(502, 1)
	r := ts.rawLogin(502)
	if f := r.next(5 * time.Second); f.Type != protocol.TypeDeliver {
		t.Fatalf("got %v, want the stored DELIVER", f.Type)
	}
	// The bucket holds 40 (2 × 20); as many again over it close.
	var acks []byte
	for range 200 {
		acks = (&protocol.Ack{Seq: 1}).Append(acks)
	}
	r.write(acks)
	if code := r.expectClose(5 * time.Second); code != protocol.CodeRateLimited {
		t.Fatalf("200 copies of one ACK: closed with %v, want RATE_LIMITED", code)
	}
}
