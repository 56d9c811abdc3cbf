package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"switchboard/client"
	"switchboard/protocol"
)

// recorder is a TCP proxy to a server that keeps every byte the server
// sent, to see which frames went compressed.
type recorder struct {
	ln   net.Listener
	mu   sync.Mutex
	down bytes.Buffer
}

func newRecorder(t *testing.T, target string) *recorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				return
			}
			go func() { io.Copy(s, c); s.Close() }()
			// Recorded before forwarded: what the client has read, the
			// recorder holds.
			go func() { io.Copy(io.MultiWriter(r, c), s); c.Close() }()
		}
	}()
	return r
}

func (r *recorder) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.down.Write(b)
}

// compressed counts the whole frames the server sent with flag Z.
func (r *recorder) compressed(t *testing.T) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, n := r.down.Bytes(), 0
	for len(b) > 0 {
		f, used, err := protocol.ReadFrame(b, protocol.MaxServerFrame)
		if errors.Is(err, protocol.ErrIncomplete) {
			break
		}
		if err != nil {
			t.Fatalf("server sent a bad frame: %v", err)
		}
		if f.Has(protocol.FlagCompressed) {
			n++
		}
		b = b[used:]
	}
	return n
}

// TestConnInflatesWithDictionary: a Conn that offers DictV1 gets its
// backlog in compressed BATCHes and returns every message, bytes and order
// intact; a Conn that offers none gets no compressed frame.
func TestConnInflatesWithDictionary(t *testing.T) {
	srv, err := startServer()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const alice = 1001
	a, err := client.Dial(ctx, srv.addr, client.Options{Token: srv.tokenFor(alice)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	body := func(to uint64, i int) []byte {
		return fmt.Appendf(nil, "message %d to %d: %s", i, to, bytes.Repeat([]byte("the quick brown fox "), 20))
	}
	const n = 40
	for _, to := range []uint64{2001, 2002} {
		for i := range n {
			if _, err := a.Send(to, false, body(to, i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for accepted := 0; accepted < 2*n; {
		ev, err := a.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if acc, ok := ev.(*protocol.Accept); ok {
			accepted += 1 + int(acc.More)
		}
	}

	for _, tc := range []struct {
		user uint64
		dict uint32
	}{{2001, protocol.DictV1}, {2002, 0}} {
		rec := newRecorder(t, srv.addr)
		b, err := client.Dial(ctx, rec.ln.Addr().String(), client.Options{Token: srv.tokenFor(tc.user), Dict: tc.dict})
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			ev, err := b.Recv(ctx)
			if err != nil {
				t.Fatal(err)
			}
			d, ok := ev.(*protocol.Deliver)
			if !ok || d.From != alice || !bytes.Equal(d.Body, body(tc.user, i)) {
				t.Fatalf("user %d, event %d: %#v; want message %d from %d", tc.user, i, ev, i, alice)
			}
		}
		b.Close()
		switch z := rec.compressed(t); {
		case tc.dict != 0 && z == 0:
			t.Errorf("user %d offered DictV1 and got no compressed frame", tc.user)
		case tc.dict == 0 && z != 0:
			t.Errorf("user %d offered no dictionary and got %d compressed frames", tc.user, z)
		}
	}
	if _, err := client.Dial(ctx, srv.addr, client.Options{Token: srv.tokenFor(3001), Dict: 99}); err == nil {
		t.Error("Dial offered dictionary 99, which this build lacks, and succeeded")
	}
}
