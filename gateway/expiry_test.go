package gateway_test

import (
	"errors"
	"testing"
	"time"

	"switchboard/gateway"
	"switchboard/protocol"
	"switchboard/token"
)

// TestTokenExpiresDuringSession: a session ends when its login token
// expires: the server writes GOAWAY TOKEN_EXPIRED (reconnect at once, with
// a fresh token) and closes, while a session whose token lives on stays.
func TestTokenExpiresDuringSession(t *testing.T) {
	clock := newFakeClock()
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) { c.Now = clock.Now }})
	mint := func(user uint64, ttl time.Duration) []byte {
		return token.Mint(ts.secret, token.Claims{KeyID: 1, User: user, Device: 1, Expiry: clock.Now().Add(ttl)})
	}
	short := ts.Dial(1, protocol.ClientOptions{Token: mint(1, 30*time.Second)})
	long := ts.Dial(2, protocol.ClientOptions{Token: mint(2, time.Hour)})

	clock.Advance(29 * time.Second) // not yet: a round trip still works
	if _, err := short.Send(2, []byte("before expiry")); err != nil {
		t.Fatal(err)
	}
	recvDelivers(t, long, 1, 5*time.Second)

	clock.Advance(2 * time.Second) // past the expiry, well before the idle deadline (180 s)
	ctx := ctxFor(t, 5*time.Second)
	var goAway *protocol.GoAway
	for goAway == nil {
		ev, err := short.Recv(ctx)
		if err != nil {
			t.Fatalf("waiting for GOAWAY: %v", err)
		}
		goAway, _ = ev.(*protocol.GoAway)
	}
	if goAway.Code != protocol.CodeTokenExpired || goAway.After != 0 {
		t.Fatalf("GOAWAY %+v, want TOKEN_EXPIRED after 0 ms", goAway)
	}
	if _, err := short.Recv(ctx); !errors.Is(err, protocol.ErrClosed) {
		t.Fatalf("after GOAWAY: %v, want the connection closed", err)
	}
	eventually(t, 5*time.Second, "the close counted", func() bool {
		return ts.Srv.Stats().Closes[protocol.CodeTokenExpired].Load() == 1
	})

	// The other session is still served, and the client comes back with a
	// fresh token. (The loops' clocks first catch up with the fake one: a
	// loop that had not ticked since the advance would date the new
	// connection's handshake deadline 31 s back, and its next tick would
	// close it.)
	ts.Srv.Tick()
	again := ts.Dial(1, protocol.ClientOptions{Token: mint(1, time.Hour)})
	id, err := long.Send(1, []byte("after"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := long.WaitAccept(ctxFor(t, 5*time.Second), id); err != nil {
		t.Fatal(err)
	}
	if d := recvDelivers(t, again, 1, 5*time.Second)[0]; string(d.Body) != "after" {
		t.Fatalf("delivered %q", d.Body)
	}
}
