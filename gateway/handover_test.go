package gateway_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"switchboard/handover"
	"switchboard/node"
	"switchboard/noise"
	"switchboard/protocol"
)

// tcpPair returns both ends of a loopback TCP connection: the server end as
// a descriptor (a copy; the caller owns it) and the client end.
func tcpPair(t testing.TB) (int, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	f, err := server.(*net.TCPConn).File()
	server.Close()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	return fd, client
}

// TestAdoptReadsCarriedBytes: an adopted connection's record carries a
// whole SEND and half of the next; the gateway reads the first at once
// (no new byte arrives to say it is there), and the second when the client
// sends its rest, and answers both on the adopted socket. The recipient's
// mailbox holds both, in order.
func TestAdoptReadsCarriedBytes(t *testing.T) {
	ts := startServer(t, serverOptions{})
	first := (&protocol.Send{MsgID: 7, To: 2, Body: []byte("carried whole")}).Append(nil)
	second := (&protocol.Send{MsgID: 8, To: 2, Body: []byte("carried in half")}).Append(nil)
	half := len(second) / 2
	fd, client := tcpPair(t)
	rec := handover.Conn{State: handover.StateReady, User: 1, Ping: 60, Inbound: append(append([]byte(nil), first...), second[:half]...)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if n, err := ts.Srv.Adopt(ctx, []handover.Conn{rec}, []int{fd}); err != nil || n != 1 {
		t.Fatalf("Adopt: %d, %v", n, err)
	}
	client.SetDeadline(time.Now().Add(10 * time.Second))
	fr := protocol.NewFrameReader(client)
	want := uint64(7)
	for want <= 8 {
		if want == 8 {
			if _, err := client.Write(second[half:]); err != nil {
				t.Fatal(err)
			}
		}
		f, err := fr.Next()
		if err != nil {
			t.Fatalf("waiting for ACCEPT %d: %v", want, err)
		}
		var a protocol.Accept
		if f.Type != protocol.TypeAccept || a.Decode(f) != nil || a.MsgID != want {
			t.Fatalf("got frame type %d (%+v), want ACCEPT %d", f.Type, a, want)
		}
		want++
	}
	entries, _, err := ts.Store.Read(2, 1, 10, 1<<20, nil)
	if err != nil || len(entries) != 2 || entries[0].MsgID != 7 || entries[1].MsgID != 8 {
		t.Fatalf("user 2's mailbox: %+v, %v", entries, err)
	}
	if got := ts.Srv.Stats().Adopted.Load(); got != 1 {
		t.Errorf("Adopted = %d", got)
	}
}

// TestTakeoverNoise: a takeover moves Noise sessions (XX and IK) with their
// keys and counters, a plain one with half a SEND written, and one that has
// sent only its preface; after it every one carries on through its socket:
// messages both ways, the rest of the SEND accepted, the LOGIN welcomed.
func TestTakeoverNoise(t *testing.T) {
	key := noiseKey(t)
	ts := noiseServer(t, []noise.Keypair{key})
	alice, _ := ts.noiseDial(1, noise.ClientConfig{})
	welcome(t, alice)
	bob, _ := ts.noiseDial(2, noise.ClientConfig{Server: key.Public[:]})
	welcome(t, bob)
	carol := ts.rawLogin(3)
	early := ts.raw()
	early.write(protocol.AppendPreface(nil, protocol.Version, protocol.TransportPlain))

	expect := func(r *rawConn, typ protocol.Type) protocol.Frame {
		t.Helper()
		for {
			if f := r.next(10 * time.Second); f.Type == typ {
				return f
			}
		}
	}
	// deliver returns the next DELIVER on r, alone or in a BATCH (after a
	// takeover, a receipt the old process left pending comes with it).
	deliver := func(r *rawConn) protocol.Deliver {
		t.Helper()
		for {
			var d protocol.Deliver
			switch f := r.next(10 * time.Second); f.Type {
			case protocol.TypeDeliver:
				if err := d.Decode(f); err != nil {
					t.Fatal(err)
				}
				return d
			case protocol.TypeBatch:
				var br protocol.BatchReader
				for br.Reset(f); br.Next(); {
					if br.Type() == protocol.TypeDeliver {
						if err := br.Deliver(&d); err != nil {
							t.Fatal(err)
						}
						return d
					}
				}
			}
		}
	}
	exchange := func(from, to *rawConn, toUser, msgID uint64) {
		t.Helper()
		body := fmt.Sprintf("message %d", msgID)
		from.write((&protocol.Send{To: toUser, MsgID: msgID, Body: []byte(body)}).Append(nil))
		d := deliver(to)
		if string(d.Body) != body {
			t.Fatalf("message %d: got %+v", msgID, d)
		}
		to.write((&protocol.Ack{Seq: d.Seq}).Append(nil))
		var a protocol.Accept
		if err := a.Decode(expect(from, protocol.TypeAccept)); err != nil || a.MsgID != msgID {
			t.Fatalf("message %d: ACCEPT %+v (%v)", msgID, a, err)
		}
	}
	exchange(alice, bob, 2, 1)
	exchange(bob, alice, 1, 1)
	half := (&protocol.Send{To: 1, MsgID: 1, Body: []byte("written across the takeover")}).Append(nil)
	carol.write(half[:len(half)/2])

	cfg := ts.node.Config()
	cfg.Takeover = true
	next, err := node.Start(cfg)
	if err != nil {
		t.Fatalf("takeover: %v", err)
	}
	t.Cleanup(func() { next.Stop(context.Background()) })
	select {
	case <-ts.node.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the old node did not end")
	}
	if got := next.Gateway().Stats().Adopted.Load(); got != 4 {
		t.Errorf("adopted %d connections, want 4", got)
	}

	exchange(alice, bob, 2, 2)
	exchange(bob, alice, 1, 2)
	carol.write(half[len(half)/2:])
	var a protocol.Accept
	if err := a.Decode(expect(carol, protocol.TypeAccept)); err != nil || a.MsgID != 1 {
		t.Fatalf("carol's SEND: ACCEPT %+v (%v)", a, err)
	}
	if d := deliver(alice); d.From != 3 {
		t.Fatalf("alice got %+v, want carol's message", d)
	}
	early.write((&protocol.Login{Token: ts.Token(4)}).Append(nil))
	expect(early, protocol.TypeWelcome)
	if got := next.Gateway().Stats().Handshakes.Load(); got != 0 {
		t.Errorf("%d handshakes on the new node: the sessions should have moved", got)
	}
}

// BenchmarkAdopt adopts logged-in connections into a running server: the
// rate a takeover's successor takes them at (ns/op is per connection).
//
//	go test -run '^$' -bench Adopt -benchtime 4000x ./gateway/
func BenchmarkAdopt(b *testing.B) {
	ts := startServer(b, serverOptions{})
	recs := make([]handover.Conn, b.N)
	fds := make([]int, b.N)
	for i := range b.N {
		fds[i], _ = tcpPair(b)
		recs[i] = handover.Conn{State: handover.StateReady, User: uint64(i + 1), Ping: 60}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b.ResetTimer()
	n, err := ts.Srv.Adopt(ctx, recs, fds)
	b.StopTimer()
	if err != nil || n != b.N {
		b.Fatalf("adopted %d of %d: %v", n, b.N, err)
	}
}
