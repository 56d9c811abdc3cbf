package gateway_test

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"switchboard/delivery"
	"switchboard/gateway"
	"switchboard/noise"
	"switchboard/protocol"
)

// Rules of the protocol the gateway enforces or honours, each a test of
// its own: what may be acknowledged, what may be pipelined behind LOGIN,
// compressed frames, signals, the ping range, the rate limit on GROUP and
// SIGNAL, the last Noise handshake message and the LOGIN it carries, and
// the write buffer's slow-consumer close.

// recvUntilError reads c's events until the connection ends with a server
// ERROR, which it returns with the events read before it; it fails the test
// if the connection ends otherwise or d passes.
func recvUntilError(t *testing.T, c *protocol.Client, d time.Duration) (*protocol.Error, []protocol.Event) {
	t.Helper()
	ctx := ctxFor(t, d)
	var evs []protocol.Event
	for {
		ev, err := c.Recv(ctx)
		if err == nil {
			evs = append(evs, ev)
			continue
		}
		var e *protocol.Error
		if errors.As(err, &e) {
			return e, evs
		}
		t.Fatalf("connection ended with %v (after %d events), want a server ERROR", err, len(evs))
	}
}

// recvUntilPong reads c's events until a PONG and returns those before it;
// it fails the test if the connection ends or d passes first.
func recvUntilPong(t *testing.T, c *protocol.Client, d time.Duration) []protocol.Event {
	t.Helper()
	ctx := ctxFor(t, d)
	var evs []protocol.Event
	for {
		ev, err := c.Recv(ctx)
		if err != nil {
			t.Fatalf("waiting for PONG (after %d events %v): %v", len(evs), evs, err)
		}
		if _, ok := ev.(protocol.Pong); ok {
			return evs
		}
		evs = append(evs, ev)
	}
}

// payloadOf returns the payload of the one frame in b.
func payloadOf(t *testing.T, b []byte) []byte {
	t.Helper()
	f, n, err := protocol.ReadFrame(b, protocol.MaxServerFrame)
	if err != nil || n != len(b) {
		t.Fatalf("ReadFrame: %v (%d of %d bytes)", err, n, len(b))
	}
	return bytes.Clone(f.Payload)
}

// compressedSend returns a SEND frame compressed with DictV1's codec; it
// fails the test if the codec does not compress it.
func compressedSend(t *testing.T, s protocol.Send) []byte {
	t.Helper()
	codec, ok := protocol.Lookup(protocol.DictV1)
	if !ok {
		t.Fatal("no codec for DictV1")
	}
	b := codec.AppendFrame(nil, protocol.TypeSend, 0, payloadOf(t, s.Append(nil)))
	f, _, err := protocol.ReadFrame(b, protocol.MaxServerFrame)
	if err != nil || !f.Has(protocol.FlagCompressed) {
		t.Fatalf("SEND of %d bytes not compressed (%v)", len(s.Body), err)
	}
	return b
}

// TestAckBeyondWindowRefused: with a window of one, the second entry is
// stored but held back until the first is acknowledged; a client that
// acknowledges it anyway is closed with BAD_ACK, and the entry is not
// deleted: the next login, acknowledging the first, receives it.
func TestAckBeyondWindowRefused(t *testing.T) {
	ts := startServer(t, serverOptions{router: func(c *delivery.Config) { c.Window = 1 }})
	b := ts.Dial(2, protocol.ClientOptions{})
	if w := b.Welcome(); w.Last != 0 {
		t.Fatalf("WELCOME.Last = %d, want 0 (an empty mailbox)", w.Last)
	}
	a := ts.Dial(1, protocol.ClientOptions{FirstMsgID: 1})
	for i := range 2 {
		if _, err := a.Send(2, body(1, i)); err != nil {
			t.Fatal(err)
		}
	}
	waitAccepted(t, a, []uint64{1, 2}, 10*time.Second)
	if d := recvDelivers(t, b, 1, 10*time.Second)[0]; d.Seq != 1 || d.MsgID != 1 {
		t.Fatalf("first delivery %+v, want seq 1, msg 1", d)
	}
	// Seq 2 is stored but outside the window: never sent.
	if err := b.Ack(2); err != nil {
		t.Fatal(err)
	}
	_ = b.Ping() // after the close, the write may fail
	ctx := ctxFor(t, 10*time.Second)
	for {
		ev, err := b.Recv(ctx)
		if err != nil {
			var e *protocol.Error
			if !errors.As(err, &e) || e.Code != protocol.CodeBadAck {
				t.Fatalf("after ACK 2 with only seq 1 delivered: %v, want ERROR BAD_ACK", err)
			}
			break
		}
		if _, ok := ev.(protocol.Pong); ok {
			t.Errorf("ACK 2 of an entry never sent (window 1, seq 1 unacknowledged) was taken: PONG, no BAD_ACK")
			break
		}
		if d, ok := ev.(*protocol.Deliver); ok {
			t.Fatalf("window of 1 with seq 1 unacknowledged, yet delivered %+v", d)
		}
	}
	b.Close()
	again := ts.Dial(2, protocol.ClientOptions{Ack: 1})
	if d := recvDelivers(t, again, 1, 10*time.Second)[0]; d.Seq != 2 || d.MsgID != 2 || !bytes.Equal(d.Body, body(1, 1)) {
		t.Fatalf("after reconnecting with ack 1: delivered %+v, want seq 2, msg 2", d)
	}
}

// TestAckUpToWelcomeLast: a client may acknowledge everything up to
// WELCOME.last at once, before it has received those entries (PROTOCOL.md
// 8.3): no BAD_ACK, the mailbox is emptied and the sender gets its
// delivered receipts. A window of one keeps all but the first entry from
// being sent before the ACK.
func TestAckUpToWelcomeLast(t *testing.T) {
	ts := startServer(t, serverOptions{router: func(c *delivery.Config) { c.Window = 1 }})
	a := ts.Dial(1, protocol.ClientOptions{FirstMsgID: 1})
	for i := range 3 {
		if _, err := a.Send(2, body(1, i)); err != nil {
			t.Fatal(err)
		}
	}
	waitAccepted(t, a, []uint64{1, 2, 3}, 10*time.Second)
	b := ts.Dial(2, protocol.ClientOptions{})
	if w := b.Welcome(); w.Last != 3 {
		t.Fatalf("WELCOME.Last = %d, want 3", w.Last)
	}
	if err := b.Ack(3); err != nil {
		t.Fatal(err)
	}
	if err := b.Ping(); err != nil {
		t.Fatal(err)
	}
	recvUntilPong(t, b, 10*time.Second) // fails on the ERROR BAD_ACK that would come first
	recvReceipts(t, a, 1, 3, false, 10*time.Second)
	// The backlog given up is gone: a new login finds nothing waiting.
	b2 := ts.Dial(2, protocol.ClientOptions{})
	if w := b2.Welcome(); w.Last != 0 {
		t.Fatalf("a new login after the backlog was given up: WELCOME.Last = %d, want 0", w.Last)
	}
}

// TestPipelinedBehindLoginLimit: more than 4 × MaxFrame bytes written
// behind a LOGIN, before its WELCOME, close the connection with
// RATE_LIMITED (PROTOCOL.md 9). The frame rate is raised so that only the
// byte limit can refuse the PINGs.
func TestPipelinedBehindLoginLimit(t *testing.T) {
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) {
		c.MaxFrame = 2048
		c.RateLimit = 1_000_000
	}})
	r := ts.raw()
	lg := protocol.Login{Token: ts.Token(1)}
	b := lg.Append(protocol.AppendPreface(nil, protocol.Version, protocol.TransportPlain))
	pings := bytes.Repeat(protocol.AppendPing(nil), 5000) // 10,000 bytes > 4 × 2048
	r.write(append(b, pings...))
	e := r.expectErrorFrame(10 * time.Second)
	if e.Code != protocol.CodeRateLimited || !strings.Contains(e.Reason, "over 8192 bytes pipelined behind LOGIN") {
		t.Fatalf("ERROR %v %q, want RATE_LIMITED over 8192 bytes pipelined behind LOGIN", e.Code, e.Reason)
	}
}

// TestCompressedOverMaxFrame: with a dictionary negotiated, a compressed
// SEND that would inflate past MaxFrame is refused with DECOMPRESSION,
// before it is inflated.
func TestCompressedOverMaxFrame(t *testing.T) {
	ts := startServer(t, serverOptions{})
	c := ts.Dial(1, protocol.ClientOptions{Dict: protocol.DictV1})
	if w := c.Welcome(); w.Dict != protocol.DictV1 {
		t.Fatalf("WELCOME.Dict = %d, want %d", w.Dict, protocol.DictV1)
	}
	s := protocol.Send{MsgID: 1, To: 2, Body: make([]byte, protocol.MaxFrame)}
	if err := c.WriteRaw(compressedSend(t, s)); err != nil {
		t.Fatal(err)
	}
	e, evs := recvUntilError(t, c, 10*time.Second)
	if e.Code != protocol.CodeDecompression {
		t.Fatalf("ERROR %v %q (after %v), want DECOMPRESSION", e.Code, e.Reason, evs)
	}
}

// TestCompressedWithoutDictionary: a compressed frame from a client that
// negotiated no dictionary is refused with DECOMPRESSION, even though the
// server's codec could inflate it.
func TestCompressedWithoutDictionary(t *testing.T) {
	ts := startServer(t, serverOptions{})
	c := ts.Dial(1, protocol.ClientOptions{})
	if w := c.Welcome(); w.Dict != protocol.DictNone {
		t.Fatalf("WELCOME.Dict = %d, want none", w.Dict)
	}
	s := protocol.Send{MsgID: 1, To: 2, Body: bytes.Repeat([]byte("hello, hello, hello "), 50)}
	if err := c.WriteRaw(compressedSend(t, s)); err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, 10*time.Second)
	var e *protocol.Error
	for e == nil {
		ev, err := c.Recv(ctx)
		if a, ok := ev.(*protocol.Accept); ok {
			t.Fatalf("compressed SEND with no dictionary accepted: %+v", a)
		}
		if err != nil && !errors.As(err, &e) {
			t.Fatalf("connection ended with %v, want ERROR DECOMPRESSION", err)
		}
	}
	if e.Code != protocol.CodeDecompression || !strings.Contains(e.Reason, "no dictionary negotiated") {
		t.Fatalf("ERROR %v %q, want DECOMPRESSION saying no dictionary was negotiated", e.Code, e.Reason)
	}
}

// TestSignalOneToOne: a SIGNAL goes to its peer, naming the sender, with
// its kind unchanged; the sender gets nothing back.
func TestSignalOneToOne(t *testing.T) {
	ts := startServer(t, serverOptions{})
	a := ts.Dial(1, protocol.ClientOptions{})
	b := ts.Dial(2, protocol.ClientOptions{})
	if err := a.Signal(protocol.Signal{Peer: 2, Kind: 7}); err != nil {
		t.Fatal(err)
	}
	s := recvKind[*protocol.Signal](t, b)
	if s.Peer != 1 || s.Kind != 7 || s.Group != 0 {
		t.Fatalf("B got SIGNAL %+v, want peer 1 (the sender), kind 7, no group", *s)
	}
	// B has its SIGNAL: anything the router sent A for it is on its way;
	// two PING round trips let it arrive before the last PONG.
	for range 2 {
		if err := a.Ping(); err != nil {
			t.Fatal(err)
		}
		if evs := recvUntilPong(t, a, 10*time.Second); len(evs) > 0 {
			t.Fatalf("the sender of a SIGNAL got %v", evs)
		}
	}
}

// TestPingClamped: the ping interval asked for at login is clamped to
// [PingMin, PingMax] (10 s and 600 s by default).
func TestPingClamped(t *testing.T) {
	ts := startServer(t, serverOptions{})
	for _, tc := range []struct {
		ask  time.Duration
		want uint32
	}{{10000 * time.Second, 600}, {time.Second, 10}, {45 * time.Second, 45}} {
		c := ts.Dial(1, protocol.ClientOptions{Ping: tc.ask})
		if got := c.Welcome().Ping; got != tc.want {
			t.Errorf("asked for ping %v: WELCOME.Ping = %d, want %d", tc.ask, got, tc.want)
		}
		c.Close()
	}
}

// rateLimited starts a server that takes 10 frames a second from each
// connection, in bursts of up to burst, on a fake clock.
func rateLimited(t *testing.T, burst int) (*testServer, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) {
		c.Now = clock.Now
		c.RateLimit = 10
		c.RateBurst = burst
	}})
	return ts, clock
}

// TestRateLimitRefusesGroup: GROUP requests over the frame rate are
// refused like SENDs: the burst goes through, the next is refused with
// RETRY_LATER and a retry_after.
func TestRateLimitRefusesGroup(t *testing.T) {
	const burst = 5
	ts, _ := rateLimited(t, burst) // the clock stands still: nothing refills
	r := ts.rawLoginPing(t, 1, 0)
	var b []byte
	for id := uint64(1); id <= burst+1; id++ {
		b = (&protocol.Group{MsgID: id, Op: protocol.GroupCreate, Members: []uint64{2}}).Append(b)
	}
	r.write(b)
	accepted, refused := r.answers(burst+1, protocol.TypeGroupEvent, protocol.TypeBatch) // the owner's GROUP_EVENTs pass
	if accepted != burst || len(refused) != 1 {
		t.Fatalf("%d GROUP CREATEs at once with a burst of %d: %d accepted, %d refused; want %d and 1", burst+1, burst, accepted, len(refused), burst)
	}
	if x := refused[0]; x.MsgID != burst+1 || x.Code != protocol.CodeRetryLater || x.RetryAfter == 0 {
		t.Fatalf("refusal %+v, want RETRY_LATER of msg %d with a retry_after", x, burst+1)
	}
}

// TestRateLimitDropsSignals: SIGNALs over the frame rate are dropped, not
// refused (signals are never acknowledged): the burst reaches the peer,
// the two past it never do, and once the bucket refills the next one goes
// through. Time is a fake clock.
func TestRateLimitDropsSignals(t *testing.T) {
	const burst = 5
	ts, clock := rateLimited(t, burst)
	b := ts.Dial(2, protocol.ClientOptions{})
	a := ts.rawLoginPing(t, 1, 0)
	var w []byte
	for kind := uint32(1); kind <= burst+2; kind++ {
		w = (&protocol.Signal{Peer: 2, Kind: kind}).Append(w)
	}
	a.write(protocol.AppendPing(w))
	if f := a.next(5 * time.Second); f.Type != protocol.TypePong {
		t.Fatalf("got %v, want PONG", f.Type)
	}
	clock.Advance(time.Second)
	a.write((&protocol.Signal{Peer: 2, Kind: 99}).Append(nil))
	var kinds []uint32
	for len(kinds) == 0 || kinds[len(kinds)-1] != 99 && len(kinds) <= burst+2 {
		kinds = append(kinds, recvKind[*protocol.Signal](t, b).Kind)
	}
	if want := []uint32{1, 2, 3, 4, 5, 99}; !slices.Equal(kinds, want) {
		t.Fatalf("the peer got SIGNALs of kinds %v, want %v", kinds, want)
	}
}

// TestNoiseBytesAfterLogin: the last Noise handshake message must carry the
// LOGIN and nothing else; a frame after it closes the connection with
// PROTOCOL rather than being dropped.
func TestNoiseBytesAfterLogin(t *testing.T) {
	ts := noiseServer(t, []noise.Keypair{noiseKey(t)})
	static := noiseKey(t)
	lg := protocol.Login{Token: ts.BoundToken(1, static.Public[:])}
	login := protocol.AppendPing(lg.Append(nil)) // a PING riding behind the LOGIN
	r, _, err := ts.noiseHello(noise.ClientConfig{Static: static}, login)
	if err != nil {
		t.Fatalf("Noise handshake: %v", err)
	}
	e := r.expectErrorFrame(10 * time.Second)
	if e.Code != protocol.CodeProtocol || !strings.Contains(e.Reason, "after the LOGIN") {
		t.Fatalf("ERROR %v %q, want PROTOCOL naming the bytes after the LOGIN", e.Code, e.Reason)
	}
}

// TestNoiseLoginTooLarge: the LOGIN in the last Noise handshake message is
// held to the 1 KiB limit of a frame before login, as on the plain
// transport: a frame declaring more is refused with FRAME_TOO_LARGE.
func TestNoiseLoginTooLarge(t *testing.T) {
	ts := noiseServer(t, []noise.Keypair{noiseKey(t)})
	login := protocol.AppendFrame(nil, protocol.TypeLogin, 0, make([]byte, 2000))[:100] // declares 2000
	r, _, err := ts.noiseHello(noise.ClientConfig{Static: noiseKey(t)}, login)
	if err != nil {
		t.Fatalf("Noise handshake: %v", err)
	}
	if e := r.expectErrorFrame(10 * time.Second); e.Code != protocol.CodeFrameTooLarge {
		t.Fatalf("ERROR %v %q, want FRAME_TOO_LARGE", e.Code, e.Reason)
	}
}

// TestSlowConsumerWriteBuffer: entries small next to OutboundCap, each
// sent after the last was accepted, never fill the connection's push queue;
// a reader that never reads is closed by the write buffer's check alone:
// the bytes gnet holds past OutboundCap.
func TestSlowConsumerWriteBuffer(t *testing.T) {
	ts := startServer(t, serverOptions{
		byHand: true, // an outbound cap below the window, which node refuses
		gw:     func(c *gateway.Config) { c.OutboundCap = 64 << 10; c.RateLimit = 100_000 },
		router: func(c *delivery.Config) { c.SlowAfter = time.Hour; c.Window = 1 << 20; c.WindowBytes = 1 << 30 },
	})
	r := ts.rawLoginPing(t, 1, 0) // never reads again
	a := ts.Dial(2, protocol.ClientOptions{})
	small := bytes.Repeat([]byte("0123456789abcdef"), 8<<10/16)
	deadline := time.Now().Add(30 * time.Second)
	sent := 0
	for ts.Srv.Stats().Closes[protocol.CodeSlowConsumer].Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("never closed as a slow consumer after %d entries (gateway %+v, router %d)", sent, ts.Srv.SlowConsumers(), ts.Router.Stats().SlowConsumers.Load())
		}
		id, err := a.Send(1, small)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.WaitAccept(ctxFor(t, 10*time.Second), id); err != nil {
			t.Fatalf("entry %d: %v; the reader was never closed as a slow consumer (gateway %+v)", sent+1, err, ts.Srv.SlowConsumers())
		}
		sent++
	}
	t.Logf("closed after %d entries of %d bytes", sent, len(small))
	eventually(t, 5*time.Second, "the slow consumer counted", func() bool {
		return ts.Srv.SlowConsumers() != (gateway.SlowConsumers{})
	})
	if got := ts.Srv.SlowConsumers(); got != (gateway.SlowConsumers{WriteBuffer: 1}) {
		t.Fatalf("gateway slow consumers %+v, want one, over the write buffer", got)
	}
	if got := ts.Router.Stats().SlowConsumers.Load(); got != 0 {
		t.Fatalf("router closed %d slow consumers; the write buffer check should have", got)
	}
	if got := r.expectClose(20 * time.Second); got != protocol.CodeSlowConsumer && got != 0 {
		t.Fatalf("closed with %v, want SLOW_CONSUMER or no ERROR", got)
	}
}
