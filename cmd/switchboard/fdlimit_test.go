package main

import (
	"errors"
	"testing"
	"time"

	"switchboard/protocol"
)

// TestConnectionCapUnderLowFileLimit: the server runs with `ulimit -n 700`,
// so its derived connection cap is 700 - 512 (the reserve for storage and
// listeners) = 188. Of 200 logins, the 12 over the cap get ERROR
// SERVER_FULL; accept never meets EMFILE (which would stop gnet's engine and
// drop every connection), the held sessions still work, and a fresh login
// succeeds once some close.
func TestConnectionCapUnderLowFileLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process")
	}
	const limit, reserve, tries = 700, 512, 200
	srv := startChild(t, t.TempDir(), limit)
	var held []*protocol.Client
	full := 0
	for i := range tries {
		c, err := srv.dial(uint64(i+1), protocol.ClientOptions{})
		var e *protocol.Error
		switch {
		case err == nil:
			held = append(held, c)
		case errors.As(err, &e) && e.Code == protocol.CodeServerFull:
			full++
		default:
			t.Fatalf("login %d: %v\n%s", i, err, srv.log())
		}
	}
	if len(held) != limit-reserve || full != tries-(limit-reserve) {
		t.Fatalf("%d logins held, %d refused SERVER_FULL; want %d and %d", len(held), full, limit-reserve, tries-(limit-reserve))
	}
	if !srv.alive() {
		t.Fatalf("server exited\n%s", srv.log())
	}
	// The first and the last held sessions still carry a message.
	first, last := held[0], held[len(held)-1]
	id, err := first.Send(uint64(len(held)), []byte("still here"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxTimeout(t, 10*time.Second)
	if d, err := last.RecvDeliver(ctx); err != nil || d.MsgID != id {
		t.Fatalf("held session: %v %v", d, err)
	}
	for _, c := range held[:10] {
		c.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := srv.dial(1000, protocol.ClientOptions{})
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no login after 10 closed: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // the server learns of the closes
	}
}
