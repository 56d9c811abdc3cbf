package gateway_test

import (
	"errors"
	"testing"
	"time"

	"switchboard/delivery"
	"switchboard/gateway"
	"switchboard/protocol"
	"switchboard/storage"
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

// startServerNoRun builds, but does not run, a server for addr.
func startServerNoRun(t *testing.T, addr string) *gateway.Server {
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
	srv, err := gateway.New(gateway.Config{Addr: addr, Keys: gateway.Keys{1: make([]byte, gateway.SecretLen)}, Logger: quietLogger()}, r)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}
