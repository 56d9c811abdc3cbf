package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"testing"
	"time"

	"switchboard/client"
	"switchboard/internal/testutil"
	"switchboard/node"
	"switchboard/protocol"
	"switchboard/token"
)

// testNode is a Switchboard in the test's process that can be stopped and
// started again on the same address and data folder.
type testNode struct {
	t      *testing.T
	dir    string
	addr   string
	secret []byte
	n      *node.Node
}

func newTestNode(t *testing.T) *testNode {
	t.Helper()
	secret := make([]byte, token.SecretLen)
	for i := range secret {
		secret[i] = byte(i + 1)
	}
	tn := &testNode{t: t, dir: t.TempDir(), addr: "127.0.0.1:0", secret: secret}
	tn.start()
	t.Cleanup(tn.stop)
	return tn
}

func (tn *testNode) start() {
	tn.t.Helper()
	cfg := node.Default()
	cfg.Data = tn.dir
	cfg.Metrics = ""
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Gateway.Addr = tn.addr
	cfg.Gateway.Loops = 1
	cfg.Gateway.Keys = token.Keys{1: tn.secret}
	cfg.Gateway.GoAwayAfter = 10 * time.Millisecond // reconnect at once in tests
	// A restart binds the address again; a moment after the stop it may
	// still be held, so the start is retried until a deadline.
	var n *node.Node
	var err error
	testutil.Eventually(tn.t, 5*time.Second, "the server to start on "+tn.addr, func() bool {
		n, err = node.Start(cfg)
		return err == nil
	}, func() string { return err.Error() })
	tn.n, tn.addr = n, n.Addr().String()
}

func (tn *testNode) stop() {
	if tn.n == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tn.n.Stop(ctx)
	tn.n = nil
}

// dial logs user in, with fast reconnects.
func (tn *testNode) dial(t *testing.T, user uint64, opts client.Options) *client.Conn {
	t.Helper()
	opts.Token = func(context.Context) ([]byte, error) {
		return token.Mint(tn.secret, token.Claims{KeyID: 1, User: user, Device: 1, Expiry: time.Now().Add(time.Hour)}), nil
	}
	opts.Session.MinBackoff = 20 * time.Millisecond
	opts.Session.MaxBackoff = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, tn.addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// next returns c's next event that match accepts, skipping others, or fails
// the test after 10 s.
func next[E any](t *testing.T, c *client.Conn, match func(E) bool) E {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		ev, err := c.Recv(ctx)
		if err != nil {
			var zero E
			t.Fatalf("waiting for %T: %v", zero, err)
		}
		if e, ok := ev.(E); ok && (match == nil || match(e)) {
			return e
		}
	}
}

// waitState polls c's Status until it is in state want, and returns it.
func waitState(t *testing.T, c *client.Conn, want client.State) client.Status {
	t.Helper()
	var st client.Status
	testutil.Eventually(t, 10*time.Second, "state "+want.String(), func() bool {
		st = c.Status()
		return st.State == want
	}, func() string { return fmt.Sprintf("last status %+v", st) })
	return st
}

// TestConn runs the tests that need a server but not its restart on one
// server, each with users of its own: a server takes a while to start.
func TestConn(t *testing.T) {
	tn := newTestNode(t)
	for _, tc := range []struct {
		name string
		run  func(*testing.T, *testNode)
	}{
		{"GroupRequests", connGroupRequests},
		{"GroupChecks", connGroupChecks},
		{"ReadAndSignal", connReadAndSignal},
		{"BodyLimit", connBodyLimit},
		{"ManualAckAndStatus", connManualAckAndStatus},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, tn) })
	}
}

// connGroupRequests: a create answers with ACCEPT carrying the new
// group's id and makes one GROUP_EVENT listing every member; an add by the
// owner reaches the new member; an add by a plain member is refused
// FORBIDDEN for good; a leave names the leaver.
func connGroupRequests(t *testing.T, tn *testNode) {
	const alice, bob, carol = 11, 12, 13
	a := tn.dial(t, alice, client.Options{})
	b := tn.dial(t, bob, client.Options{})
	c := tn.dial(t, carol, client.Options{})

	id, err := a.Group(protocol.GroupCreate, 0, bob)
	if err != nil {
		t.Fatal(err)
	}
	acc := next(t, a, func(x *protocol.Accept) bool { return x.MsgID == id })
	group := acc.Ref
	if group == 0 {
		t.Fatalf("ACCEPT of the create %+v carries no group id", acc)
	}
	ev := next[*protocol.GroupEvent](t, b, nil)
	if ev.Group != group || ev.Actor != alice || ev.Op != protocol.GroupCreate || !equalSet(ev.Members, []uint64{alice, bob}) {
		t.Fatalf("bob's event %+v, want create of %d by %d with members %d, %d", ev, group, alice, alice, bob)
	}

	id, err = b.Group(protocol.GroupAdd, group, carol)
	if err != nil {
		t.Fatal(err)
	}
	ref := next(t, b, func(x *protocol.Refuse) bool { return x.MsgID == id })
	if ref.Code != protocol.CodeForbidden || ref.RetryAfter != 0 {
		t.Fatalf("a plain member's add: %+v, want FORBIDDEN, retry_after 0", ref)
	}
	if n := b.Pending(); n != 0 {
		t.Fatalf("%d requests pending after a refusal for good, want 0", n)
	}

	id, err = a.Group(protocol.GroupAdd, group, carol)
	if err != nil {
		t.Fatal(err)
	}
	if acc := next(t, a, func(x *protocol.Accept) bool { return x.MsgID == id }); acc.Ref != group {
		t.Fatalf("ACCEPT of the add %+v, want ref %d", acc, group)
	}
	ev = next[*protocol.GroupEvent](t, c, nil)
	if ev.Group != group || ev.Op != protocol.GroupAdd || !slices.Equal(ev.Members, []uint64{carol}) {
		t.Fatalf("carol's event %+v, want add of %d to %d", ev, carol, group)
	}

	if _, err := c.Group(protocol.GroupLeave, group); err != nil {
		t.Fatal(err)
	}
	ev = next(t, a, func(x *protocol.GroupEvent) bool { return x.Op == protocol.GroupLeave })
	if ev.Actor != carol || !slices.Equal(ev.Members, []uint64{carol}) {
		t.Fatalf("alice's leave event %+v, want carol leaving", ev)
	}
}

// connGroupChecks: requests a server would close the connection for
// are refused before anything is written.
func connGroupChecks(t *testing.T, tn *testNode) {
	a := tn.dial(t, 15, client.Options{})
	for _, tc := range []struct {
		name    string
		op      protocol.GroupOp
		group   uint64
		members []uint64
	}{
		{"create naming a group", protocol.GroupCreate, 5, []uint64{2}},
		{"add without a group", protocol.GroupAdd, 0, []uint64{2}},
		{"add of no one", protocol.GroupAdd, 5, nil},
		{"leave naming members", protocol.GroupLeave, 5, []uint64{2}},
		{"unknown op", 9, 5, []uint64{2}},
		{"too many members", protocol.GroupAdd, 5, make([]uint64, protocol.MaxGroupMembers+1)},
	} {
		if _, err := a.Group(tc.op, tc.group, tc.members...); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	if err := a.Read(12, false, 1, client.MaxReadIDs); err == nil {
		t.Error("a READ of 1,025 ids: no error")
	}
	if err := a.Signal(12, 5, protocol.SignalTyping); err == nil {
		t.Error("a SIGNAL for a user and a group: no error")
	}
	if a.Pending() != 0 || a.NextMsgID() != 1 {
		t.Fatalf("refused requests left %d pending, next msg id %d; want 0, 1", a.Pending(), a.NextMsgID())
	}
}

// connReadAndSignal: bob's READ reaches alice as a read receipt naming
// bob, besides the delivered one; bob's typing SIGNAL reaches alice from bob.
// connBodyLimit: a server that offers Noise, as the default one does,
// takes bodies of at most max_frame − 1,024 bytes (64,431) on its plain
// connections too (PROTOCOL.md 9). A plain Conn refuses a larger body
// itself, where sending it would have closed the connection with
// BODY_TOO_LARGE, and the largest one it takes arrives.
func connBodyLimit(t *testing.T, tn *testNode) {
	const alice, bob = 25, 26
	a := tn.dial(t, alice, client.Options{})
	b := tn.dial(t, bob, client.Options{})
	waitState(t, a, client.StateCaughtUp)
	if _, err := a.Send(bob, false, make([]byte, client.MaxNoiseBody+1)); err == nil {
		t.Fatalf("Send of a %d-byte body: no error, and the server takes at most %d", client.MaxNoiseBody+1, client.MaxNoiseBody)
	}
	id, err := a.Send(bob, false, bytes.Repeat([]byte{7}, client.MaxNoiseBody))
	if err != nil {
		t.Fatal(err)
	}
	d := next[*protocol.Deliver](t, b, nil)
	if d.From != alice || d.MsgID != id || len(d.Body) != client.MaxNoiseBody || d.Body[len(d.Body)-1] != 7 {
		t.Fatalf("bob got msg %d from %d, %d bytes; want msg %d of %d bytes", d.MsgID, d.From, len(d.Body), id, client.MaxNoiseBody)
	}
	if st := a.Status(); st.State != client.StateCaughtUp {
		t.Errorf("alice's connection %+v after the refused body, want it still caught up", st)
	}
}

func connReadAndSignal(t *testing.T, tn *testNode) {
	const alice, bob = 21, 22
	a := tn.dial(t, alice, client.Options{})
	b := tn.dial(t, bob, client.Options{})

	if err := b.Signal(alice, 0, protocol.SignalTyping); err != nil {
		t.Fatal(err)
	}
	sig := next[*protocol.Signal](t, a, nil)
	if sig.Peer != bob || sig.Kind != protocol.SignalTyping || sig.Group != 0 {
		t.Fatalf("alice got %+v, want typing from %d", sig, bob)
	}

	before := protocol.Stamp(time.Now())
	id, err := a.Send(bob, false, []byte("hi"))
	if err != nil {
		t.Fatal(err)
	}
	d := next[*protocol.Deliver](t, b, nil)
	// Sent live, without a time: stamped with the server's clock as
	// WELCOME gave it (the same clock here, to the second).
	if after := protocol.Stamp(time.Now()); d.Time < before || d.Time > after+1 {
		t.Errorf("live DELIVER stamped %d, want %d to %d", d.Time, before, after+1)
	}
	if err := b.Read(d.From, false, d.MsgID, 0); err != nil {
		t.Fatal(err)
	}
	// The READ may overtake bob's coalesced ACK: the receipts come in
	// either order.
	var delivered, read *protocol.Receipt
	for delivered == nil || read == nil {
		r := next[*protocol.Receipt](t, a, nil)
		if r.Read {
			read = r
		} else {
			delivered = r
		}
	}
	if delivered.MsgID != id || read.MsgID != id || read.By != bob || read.More != 0 {
		t.Fatalf("receipts delivered %+v, read %+v; want both of %d, read by %d", delivered, read, id, bob)
	}
}

// connManualAckAndStatus: with ManualAck, a backlog keeps the status
// resuming until the application processed up to WELCOME.last, and Recv
// alone does not move the resume point; Processed does.
func connManualAckAndStatus(t *testing.T, tn *testNode) {
	const alice, bob = 31, 32
	a := tn.dial(t, alice, client.Options{})
	for i := range 3 {
		id, err := a.Send(bob, false, fmt.Appendf(nil, "m%d", i))
		if err != nil {
			t.Fatal(err)
		}
		next(t, a, func(x *protocol.Accept) bool { return x.MsgID+x.More >= id })
	}
	b := tn.dial(t, bob, client.Options{ManualAck: true})
	st := b.Status()
	if st.State != client.StateResuming || st.Last != 3 || st.Resume != 0 {
		t.Fatalf("status after login with 3 waiting: %+v, want resuming, last 3, resume 0", st)
	}
	for i := range 3 {
		d := next[*protocol.Deliver](t, b, nil)
		if got := b.Resume(); got != uint64(i) {
			t.Fatalf("resume point %d after Recv of seq %d without Processed, want %d", got, d.Seq, i)
		}
		b.Processed(d)
		if got := b.Resume(); got != d.Seq {
			t.Fatalf("resume point %d after Processed of seq %d", got, d.Seq)
		}
		if want := map[bool]client.State{false: client.StateResuming, true: client.StateCaughtUp}[i == 2]; b.Status().State != want {
			t.Fatalf("after processing seq %d: state %v, want %v", d.Seq, b.Status().State, want)
		}
	}
}

// TestConnNoDuplicateAfterReconnect: entries the application has from
// Recv but has not processed yet (ManualAck) come again after a reconnect,
// since the resume point is below them; the Conn hands each to the
// application once. After the reconnect the next entry Recv returns is the
// next message, not a copy.
func TestConnNoDuplicateAfterReconnect(t *testing.T) {
	tn := newTestNode(t)
	const alice, bob = 51, 52
	a := tn.dial(t, alice, client.Options{})
	b := tn.dial(t, bob, client.Options{ManualAck: true})
	var got []*protocol.Deliver
	for i := range 3 {
		if _, err := a.Send(bob, false, fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
		got = append(got, next[*protocol.Deliver](t, b, nil))
	}
	tn.stop()
	waitState(t, b, client.StateOffline)
	tn.start()
	waitState(t, b, client.StateResuming) // resume point 0: seqs 1-3 come again
	waitState(t, a, client.StateCaughtUp)
	id, err := a.Send(bob, false, []byte("m3"))
	if err != nil {
		t.Fatal(err)
	}
	d := next[*protocol.Deliver](t, b, nil)
	if d.MsgID != id || d.Seq <= got[2].Seq {
		t.Fatalf("after the reconnect bob got msg %d (seq %d) again; want the new msg %d", d.MsgID, d.Seq, id)
	}
	for _, d := range append(got, d) {
		b.Processed(d)
	}
	if r := b.Resume(); r != d.Seq {
		t.Errorf("resume point %d, want %d", r, d.Seq)
	}
}

// TestConnRestartAndRestoredOutbox: a server restart takes the status
// offline (with the cause) and back to caught up; a message queued while
// offline goes out after it; an outbox restored in a new Conn goes with
// flag B, so the server does not store it twice, and its ids are not used
// again.
func TestConnRestartAndRestoredOutbox(t *testing.T) {
	tn := newTestNode(t)
	const alice, bob = 41, 42
	a := tn.dial(t, alice, client.Options{})
	b := tn.dial(t, bob, client.Options{})
	if st := a.Status(); st.State != client.StateCaughtUp || st.Err != nil {
		t.Fatalf("status of a new login with an empty mailbox: %+v, want caught up", st)
	}

	tn.stop()
	st := waitState(t, a, client.StateOffline)
	if st.Err == nil || st.Retry.IsZero() {
		t.Fatalf("offline status %+v: want the cause and the next attempt", st)
	}
	if err := a.Signal(bob, 0, protocol.SignalTyping); !errors.Is(err, client.ErrNotConnected) {
		t.Fatalf("Signal while offline: %v, want ErrNotConnected", err)
	}
	msg := client.Outgoing{MsgID: 5, To: bob, Body: []byte("queued offline")}
	if err := a.Queue(msg); err != nil {
		t.Fatal(err)
	}
	tn.start()
	waitState(t, a, client.StateCaughtUp)
	next(t, a, func(x *protocol.Accept) bool { return x.MsgID == 5 })
	if d := next[*protocol.Deliver](t, b, nil); d.MsgID != 5 || string(d.Body) != "queued offline" {
		t.Fatalf("bob got %+v, want msg 5", d)
	}
	a.Close()
	if st := a.Status(); st.State != client.StateClosed {
		t.Fatalf("status after Close: %v, want closed", st.State)
	}

	// A restart of the application that did not see ACCEPT(5): msg 5 again
	// from the restored outbox, then a new msg 6.
	a2 := tn.dial(t, alice, client.Options{Outbox: []client.Outgoing{msg}})
	if err := a2.Queue(client.Outgoing{MsgID: 5, To: bob, Body: []byte("again")}); !errors.Is(err, client.ErrMsgIDOrder) {
		t.Fatalf("Queue of a restored id: %v, want ErrMsgIDOrder", err)
	}
	next(t, a2, func(x *protocol.Accept) bool { return x.MsgID == 5 })
	if err := a2.Queue(client.Outgoing{MsgID: 6, To: bob, Body: []byte("new")}); err != nil {
		t.Fatal(err)
	}
	if d := next[*protocol.Deliver](t, b, nil); d.MsgID != 6 {
		t.Fatalf("bob's next message is %d (%q), want 6: the restored resend was stored again", d.MsgID, d.Body)
	}
	if out := a2.Outbox(); len(out) > 1 || (len(out) == 1 && out[0].MsgID != 6) {
		t.Fatalf("outbox %+v after ACCEPT(5), want at most msg 6", out)
	}
}

// TestConnKeepTrying: with KeepTrying, Dial to a server that is down
// returns an offline Conn, which logs in once the server is up and then
// starts with Reconnected; without it, Dial fails.
func TestConnKeepTrying(t *testing.T) {
	tn := newTestNode(t)
	tn.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok := func(context.Context) ([]byte, error) {
		return token.Mint(tn.secret, token.Claims{KeyID: 1, User: 51, Device: 1, Expiry: time.Now().Add(time.Hour)}), nil
	}
	if c, err := client.Dial(ctx, tn.addr, client.Options{Token: tok}); err == nil {
		c.Close()
		t.Fatal("Dial to a stopped server: no error")
	}
	c := tn.dial(t, 51, client.Options{KeepTrying: true})
	if st := c.Status(); st.State != client.StateOffline || st.Err == nil {
		t.Fatalf("status with the server down: %+v, want offline with the failed attempt's error", st)
	}
	tn.start()
	next[*client.Reconnected](t, c, nil)
	waitState(t, c, client.StateCaughtUp)
}

func equalSet(a, b []uint64) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestConnCloseSendsOwedAck: an entry Recv returned is acknowledged even
// when Close comes before the coalesced ACK was due: the sender gets its
// delivered receipt without the recipient connecting again.
func TestConnCloseSendsOwedAck(t *testing.T) {
	tn := newTestNode(t)
	const alice, bob = 61, 62
	a := tn.dial(t, alice, client.Options{})
	b := tn.dial(t, bob, client.Options{Session: client.Config{AckDelay: time.Hour, AckEvery: 1000}})
	id, err := a.Send(bob, false, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	next(t, b, func(d *protocol.Deliver) bool { return d.MsgID == id })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	r := next(t, a, func(r *protocol.Receipt) bool { return r.MsgID == id })
	if r.Read {
		t.Fatalf("receipt %+v, want delivered", r)
	}
}

// TestConnOutboxRoundTrip: Outbox returns what waits, in msg_id order and
// byte-exact (a SEND to a group and a GROUP request with its members), as
// copies the caller may change; a Conn dialled with it as Options.Outbox
// holds the same outbox.
func TestConnOutboxRoundTrip(t *testing.T) {
	tn := newTestNode(t)
	tn.stop()
	a := tn.dial(t, 61, client.Options{KeepTrying: true})
	want := []client.Outgoing{
		{MsgID: 7, To: 62, Body: []byte("first")},
		{MsgID: 8, To: 900, Group: true, Body: []byte("to the group")},
		{MsgID: 9, To: 900, Op: protocol.GroupAdd, Members: []uint64{62, 63}},
	}
	for _, o := range want[1:] {
		if err := a.Queue(o); err != nil {
			t.Fatal(err)
		}
	}
	out := a.Outbox()
	if !reflect.DeepEqual(out, want[1:]) {
		t.Fatalf("outbox %+v, want %+v", out, want[1:])
	}
	out[0].Body[0], out[1].Members[0] = 'X', 99
	if got := a.Outbox(); !reflect.DeepEqual(got, want[1:]) {
		t.Fatalf("outbox after the caller changed its copy: %+v", got)
	}
	a.Close()
	b := tn.dial(t, 61, client.Options{KeepTrying: true, Outbox: want})
	if got := b.Outbox(); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored outbox %+v, want %+v", got, want)
	}
}
