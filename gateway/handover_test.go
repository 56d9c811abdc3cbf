package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"switchboard/gateway"
	"switchboard/handover"
	"switchboard/node"
	"switchboard/noise"
	"switchboard/protocol"
	"switchboard/token"
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

// TestDetachRecords: Detach turns each logged-in connection into a record
// that carries its state exactly (user, granted ping, the highest seq
// written and the highest acked, the token's expiry, compression, the
// half-written SEND it had not read), and lets go of a Noise handshake in
// progress, counted as closed SHUTTING_DOWN (the others are not counted
// as closed at all).
func TestDetachRecords(t *testing.T) {
	ts := noiseServer(t, []noise.Keypair{noiseKey(t)})
	expiry := time.Now().Add(time.Hour)
	alice := ts.raw()
	lg := protocol.Login{Token: token.Mint(ts.secret, token.Claims{KeyID: 1, User: 1, Device: 1, Expiry: expiry}), Ping: 30}
	alice.write(lg.Append(protocol.AppendPreface(nil, protocol.Version, protocol.TransportPlain)))
	if f := alice.next(5 * time.Second); f.Type != protocol.TypeWelcome {
		t.Fatalf("alice: got %v, want WELCOME", f.Type)
	}
	carol := ts.raw()
	lg = protocol.Login{Token: ts.Token(3), Dict: protocol.DictV1}
	carol.write(lg.Append(protocol.AppendPreface(nil, protocol.Version, protocol.TransportPlain)))
	if f := carol.next(5 * time.Second); f.Type != protocol.TypeWelcome {
		t.Fatalf("carol: got %v, want WELCOME", f.Type)
	}
	bob := ts.rawLogin(2)
	var seqs []uint64
	for id := uint64(1); id <= 2; id++ {
		bob.write((&protocol.Send{To: 1, MsgID: id, Body: []byte("before the handover")}).Append(nil))
		for f := alice.next(5 * time.Second); ; f = alice.next(5 * time.Second) {
			var d protocol.Deliver
			if f.Type == protocol.TypeDeliver && d.Decode(f) == nil {
				seqs = append(seqs, d.Seq)
				break
			}
		}
	}
	alice.write((&protocol.Ack{Seq: seqs[0]}).Append(nil))
	// The ACK was read once bob has the receipt it settles.
	for f := bob.next(5 * time.Second); f.Type != protocol.TypeReceipt; f = bob.next(5 * time.Second) {
	}
	half := (&protocol.Send{To: 2, MsgID: 9, Body: []byte("written across the handover")}).Append(nil)
	alice.write(half[:len(half)/2])
	eventually(t, 5*time.Second, "alice's half SEND to arrive", func() bool { return ts.Srv.Buffered(1) == len(half)/2 })

	shaking := ts.raw()
	e := noiseKey(t)
	shaking.write(noise.AppendHandshake(protocol.AppendPreface(nil, protocol.Version, protocol.TransportNoiseXX), noise.KindXX1, e.Public[:]))
	shaking.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [noise.HeaderLen]byte
	if _, err := readFull(shaking, hdr[:]); err != nil || hdr[0] != noise.KindXX2 {
		t.Fatalf("handshake: read % x (%v), want XX 2", hdr, err)
	}
	if _, err := readFull(shaking, make([]byte, int(hdr[1])<<8|int(hdr[2]))); err != nil {
		t.Fatal(err)
	}

	closes := func() (all uint64) {
		for i := range ts.Srv.Stats().Closes {
			all += ts.Srv.Stats().Closes[i].Load()
		}
		return all
	}
	closed, shuttingDown := closes(), ts.Srv.Stats().Closes[protocol.CodeShuttingDown].Load()
	ctx := ctxFor(t, 10*time.Second)
	ts.Srv.Pause()
	if n := ts.Srv.Flush(ctx); n != 0 {
		t.Fatalf("Flush: %d connections with unsent bytes", n)
	}
	recs, fds, letGo, err := ts.Srv.Detach(ctx)
	t.Cleanup(func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	})
	if err != nil || letGo != 1 || len(recs) != 3 || len(fds) != 3 {
		t.Fatalf("Detach: %d records, %d sockets, %d let go, %v; want 3, 3, 1", len(recs), len(fds), letGo, err)
	}
	if got := ts.Srv.Stats().Closes[protocol.CodeShuttingDown].Load() - shuttingDown; got != 1 {
		t.Errorf("%d closes counted SHUTTING_DOWN, want 1 (the handshake)", got)
	}
	if got := closes() - closed; got != 1 {
		t.Errorf("%d closes counted, want 1: a connection handed over is not closed", got)
	}
	shaking.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := shaking.Read(hdr[:]); !errors.Is(err, io.EOF) {
		t.Errorf("the handshake in progress: read %d bytes (%v), want EOF", n, err)
	}
	byUser := map[uint64]handover.Conn{}
	for _, r := range recs {
		byUser[r.User] = r
	}
	a := byUser[1]
	if a.State != handover.StateReady || a.Ping != 30 || a.Delivered != seqs[1] || a.Acked != seqs[0] || a.Flags != 0 || !bytes.Equal(a.Inbound, half[:len(half)/2]) {
		t.Errorf("alice's record %+v; want ready, ping 30, delivered %d, acked %d, no flags, inbound % x", a, seqs[1], seqs[0], half[:len(half)/2])
	}
	if d := time.UnixMilli(a.Expires).Sub(expiry); d < -time.Second || d > time.Second {
		t.Errorf("alice's record expires %v, want %v", time.UnixMilli(a.Expires), expiry)
	}
	if c := byUser[3]; !c.Has(handover.FlagDict) || c.Has(handover.FlagNoise) || len(c.Inbound) != 0 {
		t.Errorf("carol's record %+v, want compression on and nothing unread", c)
	}
}

// TestAdoptResumesWhereTheRecordLeft: an adopted session's backlog resumes
// after the last seq its record says was written, not at what was acked,
// and an ACK up to that seq is in bounds.
func TestAdoptResumesWhereTheRecordLeft(t *testing.T) {
	ts := startServer(t, serverOptions{})
	bob := ts.rawLogin(2)
	for id := uint64(1); id <= 3; id++ {
		bob.write((&protocol.Send{To: 1, MsgID: id, Body: []byte("waiting")}).Append(nil))
	}
	if accepted, _ := bob.answers(3); accepted != 3 {
		t.Fatalf("%d of 3 accepted", accepted)
	}
	entries, _, err := ts.Store.Read(1, 1, 10, 1<<20, nil)
	if err != nil || len(entries) != 3 {
		t.Fatalf("user 1's mailbox: %+v, %v", entries, err)
	}
	fd, client := tcpPair(t)
	rec := handover.Conn{State: handover.StateReady, User: 1, Ping: 60, Acked: entries[0].Seq, Delivered: entries[1].Seq}
	if n, err := ts.Srv.Adopt(ctxFor(t, 10*time.Second), []handover.Conn{rec}, []int{fd}); err != nil || n != 1 {
		t.Fatalf("Adopt: %d, %v", n, err)
	}
	alice := &rawConn{t: t, Conn: client}
	alice.write((&protocol.Ack{Seq: entries[1].Seq}).Append(nil))
	f := alice.next(5 * time.Second)
	var d protocol.Deliver
	if f.Type != protocol.TypeDeliver || d.Decode(f) != nil || d.Seq != entries[2].Seq {
		t.Fatalf("got %v (%+v), want DELIVER of seq %d alone", f.Type, d, entries[2].Seq)
	}
}

// TestAdoptJoining: a record of a connection whose LOGIN was verified but
// not yet welcomed logs in again on adoption: the client gets its WELCOME
// on the same socket.
func TestAdoptJoining(t *testing.T) {
	ts := startServer(t, serverOptions{})
	fd, client := tcpPair(t)
	rec := handover.Conn{State: handover.StateJoining, User: 1, Ping: 60}
	if n, err := ts.Srv.Adopt(ctxFor(t, 10*time.Second), []handover.Conn{rec}, []int{fd}); err != nil || n != 1 {
		t.Fatalf("Adopt: %d, %v", n, err)
	}
	r := &rawConn{t: t, Conn: client}
	if w := welcome(t, r); w.User != 1 {
		t.Fatalf("WELCOME for user %d, want 1", w.User)
	}
}

// TestAdoptKeepsTokenExpiry: an adopted session whose token expires keeps
// that expiry: it gets GOAWAY TOKEN_EXPIRED about a second after it, as if
// it had never moved.
func TestAdoptKeepsTokenExpiry(t *testing.T) {
	ts := startServer(t, serverOptions{})
	fd, client := tcpPair(t)
	rec := handover.Conn{State: handover.StateReady, User: 1, Ping: 60, Expires: time.Now().Add(500 * time.Millisecond).UnixMilli()}
	if n, err := ts.Srv.Adopt(ctxFor(t, 10*time.Second), []handover.Conn{rec}, []int{fd}); err != nil || n != 1 {
		t.Fatalf("Adopt: %d, %v", n, err)
	}
	r := &rawConn{t: t, Conn: client}
	f := r.next(5 * time.Second)
	var g protocol.GoAway
	if f.Type != protocol.TypeGoAway || g.Decode(f) != nil || g.Code != protocol.CodeTokenExpired {
		t.Fatalf("got %v %+v, want GOAWAY TOKEN_EXPIRED", f.Type, g)
	}
}

// TestAdoptBadSocket: a descriptor that is not a socket fails its own
// adoption only: Adopt reports it, counts it out of the open connections,
// and the socket beside it is adopted and serves.
func TestAdoptBadSocket(t *testing.T) {
	ts := startServer(t, serverOptions{})
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	unix.Close(p[1])
	fd, client := tcpPair(t)
	send := (&protocol.Send{MsgID: 5, To: 2, Body: []byte("beside a bad one")}).Append(nil)
	recs := []handover.Conn{
		{State: handover.StateReady, User: 1, Ping: 60},
		{State: handover.StateReady, User: 3, Ping: 60, Inbound: send},
	}
	n, err := ts.Srv.Adopt(ctxFor(t, 10*time.Second), recs, []int{p[0], fd})
	if n != 1 || err == nil {
		t.Fatalf("Adopt: %d, %v; want 1 and an error", n, err)
	}
	r := &rawConn{t: t, Conn: client}
	var a protocol.Accept
	if err := a.Decode(r.next(5 * time.Second)); err != nil || a.MsgID != 5 {
		t.Fatalf("the good socket: ACCEPT %+v (%v)", a, err)
	}
	if got := ts.Srv.Conns(); got != 1 {
		t.Errorf("Conns = %d, want 1", got)
	}
}

// TestAdoptCancelledClosesSockets: an Adopt whose context ends before the
// server serves adopts nothing and closes every socket it was given, so
// their clients see the close and reconnect.
func TestAdoptCancelledClosesSockets(t *testing.T) {
	srv, err := gateway.New(gateway.Config{Addr: "127.0.0.1:0", Keys: token.Keys{1: make([]byte, token.SecretLen)}, Logger: quietLogger()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	fd, client := tcpPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if n, err := srv.Adopt(ctx, []handover.Conn{{State: handover.StateReady, User: 1, Ping: 60}}, []int{fd}); n != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("Adopt: %d, %v; want 0 and context.Canceled", n, err)
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := client.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("client read %d bytes (%v), want EOF", n, err)
	}
}

// TestDetachInboundLimit: a connection holding exactly handover.MaxInbound
// unread bytes is handed over with all of them; one holding a byte more is
// let go.
func TestDetachInboundLimit(t *testing.T) {
	ts := startServer(t, serverOptions{})
	full, over := ts.rawLogin(1), ts.rawLogin(2)
	ts.Srv.Pause()
	full.write(bytes.Repeat([]byte{1}, handover.MaxInbound))
	over.write(bytes.Repeat([]byte{2}, handover.MaxInbound+1))
	eventually(t, 5*time.Second, "the bytes to arrive", func() bool {
		return ts.Srv.Buffered(1) == handover.MaxInbound && ts.Srv.Buffered(2) == handover.MaxInbound+1
	})
	ctx := ctxFor(t, 10*time.Second)
	ts.Srv.Flush(ctx)
	recs, fds, letGo, err := ts.Srv.Detach(ctx)
	for _, fd := range fds {
		unix.Close(fd)
	}
	if err != nil || letGo != 1 || len(recs) != 1 || recs[0].User != 1 || len(recs[0].Inbound) != handover.MaxInbound {
		t.Fatalf("Detach: %d records, %d let go, %v; want user 1's alone, with %d bytes", len(recs), letGo, err, handover.MaxInbound)
	}
}

// TestAdoptKeepsCompression: a session that negotiated the dictionary
// keeps it when adopted: a compressed SEND it had written is inflated and
// accepted.
func TestAdoptKeepsCompression(t *testing.T) {
	ts := startServer(t, serverOptions{})
	codec, _ := protocol.Lookup(protocol.DictV1)
	plain := (&protocol.Send{MsgID: 4, To: 2, Body: bytes.Repeat([]byte("compressed across a handover "), 20)}).Append(nil)
	f, _, err := protocol.ReadFrame(plain, len(plain))
	if err != nil {
		t.Fatal(err)
	}
	send := codec.AppendFrame(nil, f.Type, f.Flags, f.Payload)
	if g, _, _ := protocol.ReadFrame(send, len(send)); !g.Has(protocol.FlagCompressed) {
		t.Fatal("the SEND did not compress")
	}
	fd, client := tcpPair(t)
	rec := handover.Conn{State: handover.StateReady, User: 1, Ping: 60, Flags: handover.FlagDict, Inbound: send}
	if n, err := ts.Srv.Adopt(ctxFor(t, 10*time.Second), []handover.Conn{rec}, []int{fd}); err != nil || n != 1 {
		t.Fatalf("Adopt: %d, %v", n, err)
	}
	r := &rawConn{t: t, Conn: client}
	if accepted, refused := r.answers(1); accepted != 1 {
		t.Fatalf("refused %+v, want ACCEPT", refused)
	}
}
