package gateway_test

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"switchboard/gateway"
	"switchboard/protocol"
)

func body(sender uint64, i int) []byte {
	return []byte(fmt.Sprintf("from %d, message %d: %s", sender, i, bytes.Repeat([]byte{'x'}, i%50)))
}

// recvReceipts reads RECEIPTs until they cover every id in [first, last]
// and returns them; other events are skipped.
func recvReceipts(t *testing.T, c *protocol.Client, first, last uint64, read bool, d time.Duration) []*protocol.Receipt {
	t.Helper()
	ctx := ctxFor(t, d)
	covered := map[uint64]bool{}
	var out []*protocol.Receipt
	for uint64(len(covered)) < last-first+1 {
		ev, err := c.Recv(ctx)
		if err != nil {
			t.Fatalf("waiting for receipts of %d..%d (read=%v), have %d: %v", first, last, read, len(covered), err)
		}
		x, ok := ev.(*protocol.Receipt)
		if !ok {
			continue
		}
		if x.Read != read || (x.By != 0) != read { // 1:1: only a read receipt names who (the reader)
			t.Fatalf("receipt %+v: want read=%v, by set only if read", *x, read)
		}
		for id := x.MsgID; id <= x.MsgID+x.More; id++ {
			if id < first || id > last {
				t.Fatalf("receipt %+v covers id %d outside %d..%d", *x, id, first, last)
			}
			if covered[id] {
				t.Fatalf("id %d receipted twice", id)
			}
			covered[id] = true
		}
		out = append(out, x)
	}
	return out
}

// TestOnlineOneToOne: both online; messages go both ways in order with
// exact bodies; delivered receipts come after ACK and read receipts after
// READ, coalesced over consecutive ids.
func TestOnlineOneToOne(t *testing.T) {
	ts := startServer(t, serverOptions{})
	a := ts.Dial(1, protocol.ClientOptions{FirstMsgID: 100})
	b := ts.Dial(2, protocol.ClientOptions{FirstMsgID: 500})
	if w := a.Welcome(); w.User != 1 || w.Window != 256 || w.Last != 0 {
		t.Fatalf("WELCOME %+v", w)
	}

	for i := range 3 {
		if _, err := a.Send(2, body(1, i)); err != nil {
			t.Fatal(err)
		}
	}
	waitAccepted(t, a, []uint64{100, 101, 102}, 10*time.Second)
	ds := recvDelivers(t, b, 3, 10*time.Second)
	for i, d := range ds {
		if d.Seq != uint64(i+1) || d.From != 1 || d.MsgID != uint64(100+i) || !bytes.Equal(d.Body, body(1, i)) || d.Group != 0 {
			t.Fatalf("delivery %d: %+v", i, d)
		}
	}
	// The other way.
	if _, err := b.Send(1, body(2, 0)); err != nil {
		t.Fatal(err)
	}
	waitAccepted(t, b, []uint64{500}, 10*time.Second)
	d := recvDelivers(t, a, 1, 10*time.Second)[0]
	if d.Seq != 1 || d.From != 2 || d.MsgID != 500 || !bytes.Equal(d.Body, body(2, 0)) {
		t.Fatalf("delivery to a: %+v", d)
	}

	// Nothing acknowledged yet: no receipt.
	if ev, err := a.Recv(ctxFor(t, 200*time.Millisecond)); err == nil {
		t.Fatalf("before any ACK the sender got %T %+v", ev, ev)
	}
	// b acks 3 → a is told 100..102.
	if err := b.Ack(3); err != nil {
		t.Fatal(err)
	}
	rs := recvReceipts(t, a, 100, 102, false, 10*time.Second)
	if len(rs) != 1 || rs[0].More != 2 {
		t.Fatalf("delivered receipts %+v, want one covering 3 ids", rs)
	}
	if err := a.Ack(a.Seq()); err != nil {
		t.Fatal(err)
	}
	recvReceipts(t, b, 500, 500, false, 10*time.Second)

	// Read receipts: b read a's 100..101.
	if err := b.MarkRead(protocol.Read{To: 1, MsgID: 100, More: 1}); err != nil {
		t.Fatal(err)
	}
	rs = recvReceipts(t, a, 100, 101, true, 10*time.Second)
	if len(rs) != 1 || rs[0].By != 2 {
		t.Fatalf("read receipts %+v", rs)
	}
	if err := a.MarkRead(protocol.Read{To: 2, MsgID: 500}); err != nil {
		t.Fatal(err)
	}
	recvReceipts(t, b, 500, 500, true, 10*time.Second)

	// Receipts are mailbox entries of the sender: seqs continue.
	if got := a.Seq(); got != 3 { // deliver 1, delivered receipt 2, read receipt 3
		t.Fatalf("a's seq after receipts = %d, want 3", got)
	}
	if st := ts.Router.Stats(); st.Receipts.Load() != 4 || st.Accepted.Load() != 4 {
		t.Fatalf("router stats: receipts %d accepted %d", st.Receipts.Load(), st.Accepted.Load())
	}
}

// TestOfflineDelivery: messages to an offline user wait; at login the
// WELCOME names the last seq and the backlog arrives from storage.
func TestOfflineDelivery(t *testing.T) {
	ts := startServer(t, serverOptions{})
	a := ts.Dial(1, protocol.ClientOptions{FirstMsgID: 1})
	for i := range 5 {
		if _, err := a.Send(2, body(1, i)); err != nil {
			t.Fatal(err)
		}
	}
	waitAccepted(t, a, []uint64{1, 2, 3, 4, 5}, 10*time.Second)
	b := ts.Dial(2, protocol.ClientOptions{})
	if w := b.Welcome(); w.Last != 5 {
		t.Fatalf("WELCOME.Last = %d, want 5", w.Last)
	}
	ds := recvDelivers(t, b, 5, 10*time.Second)
	for i, d := range ds {
		if d.Seq != uint64(i+1) || d.MsgID != uint64(i+1) || !bytes.Equal(d.Body, body(1, i)) {
			t.Fatalf("delivery %d: %+v", i, d)
		}
	}
	if err := b.Ack(5); err != nil {
		t.Fatal(err)
	}
	recvReceipts(t, a, 1, 5, false, 10*time.Second)
	if st := ts.Router.Stats(); st.DeliveredStored.Load() != 5 {
		t.Fatalf("DeliveredStored = %d, want 5", st.DeliveredStored.Load())
	}

	// A device that lost its state logs in from 0: nothing waits, so
	// WELCOME.last is 0, not the mark of 5 it could never reach.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = ts.Dial(2, protocol.ClientOptions{})
	if w := b.Welcome(); w.Last != 0 {
		t.Fatalf("WELCOME.Last after a drain = %d, want 0", w.Last)
	}
	if _, err := a.Send(2, body(1, 5)); err != nil {
		t.Fatal(err)
	}
	if d := recvDelivers(t, b, 1, 10*time.Second)[0]; d.Seq != 6 {
		t.Fatalf("the next message came as seq %d, want 6", d.Seq)
	}
}

// TestResumeBacklog drains a 1,000-entry backlog (several BATCHes, four
// windows) across a reconnect that resumes with LOGIN ack, while the
// sender keeps sending: order, exact bodies, no gaps, and the messages sent
// during the drain after the backlog.
func TestResumeBacklog(t *testing.T) {
	const backlog, during = 1000, 100
	// The sender writes 1,000 SENDs in a burst, over the default 1000/s.
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) { c.RateLimit = 100_000 }})
	a := ts.Dial(1, protocol.ClientOptions{FirstMsgID: 1})
	var ids []uint64
	for i := range backlog {
		id, err := a.Send(2, body(1, i))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	waitAccepted(t, a, ids, 30*time.Second)

	// First connection: take 400, ack through 300, leave.
	b := ts.Dial(2, protocol.ClientOptions{})
	if w := b.Welcome(); w.Last != backlog {
		t.Fatalf("WELCOME.Last = %d, want %d", w.Last, backlog)
	}
	got := recvDelivers(t, b, 256, 10*time.Second) // one window, then the server waits
	ctx := ctxFor(t, 300*time.Millisecond)
	if ev, err := b.Recv(ctx); err == nil {
		t.Fatalf("got %T beyond the window of 256 without an ack", ev)
	}
	for _, upto := range []uint64{100, 200} {
		if err := b.Ack(upto); err != nil {
			t.Fatal(err)
		}
	}
	got = append(got, recvDelivers(t, b, 144, 10*time.Second)...)
	if err := b.Ack(300); err != nil {
		t.Fatal(err)
	}
	// The ack of 300 is applied before the connection goes: its receipts come.
	recvReceipts(t, a, 1, 300, false, 10*time.Second)
	b.Close()

	// Second connection resumes: it has everything through 350.
	b = ts.Dial(2, protocol.ClientOptions{Ack: 350})
	got = got[:350]
	var mu sync.Mutex
	var duringIDs []uint64
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := range during {
			id, err := a.Send(2, body(1, backlog+i))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			duringIDs = append(duringIDs, id)
			mu.Unlock()
		}
	}()
	ctx = ctxFor(t, 30*time.Second)
	for len(got) < backlog+during {
		ev, err := b.Recv(ctx)
		if err != nil {
			t.Fatalf("after %d entries: %v", len(got), err)
		}
		if d, ok := ev.(*protocol.Deliver); ok {
			got = append(got, d)
			if d.Seq%50 == 0 {
				if err := b.Ack(d.Seq); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	<-sent
	for i, d := range got {
		if d.Seq != uint64(i+1) || d.From != 1 || d.MsgID != uint64(i+1) || !bytes.Equal(d.Body, body(1, i)) {
			t.Fatalf("entry %d: seq %d from %d msg %d body %q", i, d.Seq, d.From, d.MsgID, d.Body)
		}
	}
	if len(duringIDs) != during || duringIDs[0] != backlog+1 {
		t.Fatalf("ids sent during the drain: %d starting %v", len(duringIDs), duringIDs[:1])
	}
	// LOGIN ack 350 deleted through 350: the receipts say 301..350, and the
	// store starts at 351 (then after the acks above).
	recvReceipts(t, a, 301, 350, false, 10*time.Second)
	entries, _, err := ts.Store.Read(2, 1, 1, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) > 0 && entries[0].Seq <= 350 {
		t.Fatalf("first stored entry after resume has seq %d, want above 350", entries[0].Seq)
	}
	if err := b.Ack(uint64(backlog + during)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "mailbox empty", func() bool {
		es, _, err := ts.Store.Read(2, 1, 1, 0, nil)
		return err == nil && len(es) == 0
	})
}

// TestRetrySameMsgID: a retried SEND (flag B) with the same msg id is
// acknowledged again and delivered once, also after the first copy was
// acknowledged and deleted.
func TestRetrySameMsgID(t *testing.T) {
	ts := startServer(t, serverOptions{})
	a := ts.Dial(1, protocol.ClientOptions{})
	b := ts.Dial(2, protocol.ClientOptions{})
	msg := []byte("exactly once")
	if err := a.SendID(77, 2, msg, false); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := a.Resend(77, 2, msg, false); err != nil { // flag B
			t.Fatal(err)
		}
	}
	for range 3 {
		if _, err := a.WaitAccept(ctxFor(t, 10*time.Second), 77); err != nil {
			t.Fatal(err)
		}
	}
	d := recvDelivers(t, b, 1, 10*time.Second)[0]
	if d.MsgID != 77 || !bytes.Equal(d.Body, msg) {
		t.Fatalf("delivery %+v", d)
	}
	if err := b.Ack(d.Seq); err != nil {
		t.Fatal(err)
	}
	recvReceipts(t, a, 77, 77, false, 10*time.Second)
	// After the delete: still a duplicate.
	if err := a.Resend(77, 2, msg, false); err != nil {
		t.Fatal(err)
	}
	if _, err := a.WaitAccept(ctxFor(t, 10*time.Second), 77); err != nil {
		t.Fatal(err)
	}
	// A different message after it is the only further delivery.
	if err := a.SendID(78, 2, []byte("next"), false); err != nil {
		t.Fatal(err)
	}
	d = recvDelivers(t, b, 1, 10*time.Second)[0]
	if d.MsgID != 78 {
		t.Fatalf("after the retries got msg %d, want 78", d.MsgID)
	}
	if got := ts.Router.Stats().Duplicates.Load(); got != 3 {
		t.Fatalf("Duplicates = %d, want 3", got)
	}
}

// TestRetrySameMsgIDInAGroup: a group message sent again with flag B is
// ACCEPTed each time and stored once per member: each member gets one
// DELIVER of it, and the next message is the next it gets.
func TestRetrySameMsgIDInAGroup(t *testing.T) {
	ts := startServer(t, serverOptions{})
	a := ts.Dial(1, protocol.ClientOptions{})
	members := []*protocol.Client{ts.Dial(2, protocol.ClientOptions{}), ts.Dial(3, protocol.ClientOptions{})}
	g, _ := createGroup(t, a, 2, 3)
	msg := []byte("once to each member")
	if err := a.SendID(77, g, msg, true); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := a.Resend(77, g, msg, true); err != nil { // flag B
			t.Fatal(err)
		}
	}
	for range 3 {
		if _, err := a.WaitAccept(ctxFor(t, 10*time.Second), 77); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.SendID(78, g, []byte("next"), true); err != nil {
		t.Fatal(err)
	}
	for i, m := range members {
		ds := recvDelivers(t, m, 2, 10*time.Second)
		if ds[0].MsgID != 77 || !bytes.Equal(ds[0].Body, msg) || ds[1].MsgID != 78 {
			t.Fatalf("member %d got msgs %d then %d, want 77 once, then 78", i+2, ds[0].MsgID, ds[1].MsgID)
		}
	}
}

// TestOrderUnderConcurrency: 20 senders × 200 messages to one recipient.
// Each sender's messages arrive in its order, and the recipient's seqs run
// 1..4000 without gaps or repeats.
func TestOrderUnderConcurrency(t *testing.T) {
	const senders, per = 20, 200
	ts := startServer(t, serverOptions{})
	r := ts.Dial(1000, protocol.ClientOptions{AutoAck: true, Events: senders * per})
	var wg sync.WaitGroup
	for s := range senders {
		c := ts.Dial(uint64(s+1), protocol.ClientOptions{FirstMsgID: 1})
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ids []uint64
			for i := range per {
				id, err := c.Send(1000, body(uint64(s+1), i))
				if err != nil {
					t.Error(err)
					return
				}
				ids = append(ids, id)
			}
			waitAccepted(t, c, ids, 60*time.Second)
		}()
	}
	next := map[uint64]uint64{}
	ds := recvDelivers(t, r, senders*per, 60*time.Second)
	wg.Wait()
	for i, d := range ds {
		if d.Seq != uint64(i+1) {
			t.Fatalf("delivery %d has seq %d", i, d.Seq)
		}
		want := next[d.From] + 1
		if d.MsgID != want || !bytes.Equal(d.Body, body(d.From, int(want-1))) {
			t.Fatalf("from %d: got msg %d %q, want msg %d", d.From, d.MsgID, d.Body, want)
		}
		next[d.From] = want
	}
	if len(next) != senders {
		t.Fatalf("heard from %d senders", len(next))
	}
	ctx := ctxFor(t, 300*time.Millisecond)
	for {
		ev, err := r.Recv(ctx)
		if err != nil {
			break
		}
		if _, ok := ev.(*protocol.Deliver); ok {
			t.Fatalf("an extra delivery: %+v", ev)
		}
	}
}

// TestReplaced: a second login of the same user closes the first with
// ERROR REPLACED; the new connection gets what is sent next.
func TestReplaced(t *testing.T) {
	ts := startServer(t, serverOptions{})
	old := ts.Dial(5, protocol.ClientOptions{})
	fresh := ts.Dial(5, protocol.ClientOptions{})
	if code := expectError(t, old, 10*time.Second); code != protocol.CodeReplaced {
		t.Fatalf("old connection ended with %v, want REPLACED", code)
	}
	if got := ts.Router.Stats().Replaced.Load(); got != 1 {
		t.Fatalf("Replaced = %d", got)
	}
	a := ts.Dial(6, protocol.ClientOptions{})
	id, _ := a.Send(5, []byte("to the new one"))
	d := recvDelivers(t, fresh, 1, 10*time.Second)[0]
	if d.MsgID != id {
		t.Fatalf("got %+v", d)
	}
	eventually(t, 5*time.Second, "REPLACED close counted", func() bool {
		return ts.Srv.Stats().Closes[protocol.CodeReplaced].Load() == 1
	})
}

// TestPingPong: PING gets PONG, on an idle session and between messages.
func TestPingPong(t *testing.T) {
	ts := startServer(t, serverOptions{})
	c := ts.Dial(1, protocol.ClientOptions{})
	for range 3 {
		if err := c.Ping(); err != nil {
			t.Fatal(err)
		}
		ev, err := c.Recv(ctxFor(t, 5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := ev.(protocol.Pong); !ok {
			t.Fatalf("got %T, want Pong", ev)
		}
	}
}

// TestReconnectStorm: the recipient drops and resumes its session every
// 100 ms (LOGIN ack = the highest seq it holds) while 2,000 messages flow
// in; it ends up with every message once per seq, seqs 1..2000 with no
// gap, in the sender's order.
func TestReconnectStorm(t *testing.T) {
	const total = 2000
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) { c.RateLimit = 100_000 }})
	a := ts.Dial(1, protocol.ClientOptions{FirstMsgID: 1})
	sent := make(chan error, 1)
	go func() {
		var ids []uint64
		for i := range total {
			id, err := a.Send(2, body(1, i))
			if err != nil {
				sent <- err
				return
			}
			ids = append(ids, id)
			if i%20 == 19 {
				time.Sleep(2 * time.Millisecond)
			}
		}
		waitAccepted(t, a, ids, 30*time.Second)
		sent <- nil
	}()
	bySeq := map[uint64]*protocol.Deliver{}
	var have uint64 // every seq <= have is held
	deadline := time.Now().Add(60 * time.Second)
	for reconnects := 0; have < total; reconnects++ {
		if time.Now().After(deadline) {
			t.Fatalf("after %d reconnects hold %d of %d", reconnects, have, total)
		}
		b := ts.Dial(2, protocol.ClientOptions{Ack: have})
		ctx := ctxFor(t, 100*time.Millisecond)
		for {
			ev, err := b.Recv(ctx)
			if err != nil {
				break
			}
			d, ok := ev.(*protocol.Deliver)
			if !ok {
				continue
			}
			if old, ok := bySeq[d.Seq]; ok && (old.MsgID != d.MsgID || !bytes.Equal(old.Body, d.Body)) {
				t.Fatalf("seq %d delivered as msg %d and as msg %d", d.Seq, old.MsgID, d.MsgID)
			}
			bySeq[d.Seq] = d
			for bySeq[have+1] != nil {
				have++
			}
			if d.Seq%64 == 0 {
				b.Ack(have)
			}
		}
		b.Close()
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= total; seq++ {
		d := bySeq[seq]
		if d.MsgID != seq || !bytes.Equal(d.Body, body(1, int(seq-1))) {
			t.Fatalf("seq %d holds msg %d %q", seq, d.MsgID, d.Body)
		}
	}
	if n := len(bySeq); n != total {
		t.Fatalf("%d seqs delivered, want %d", n, total)
	}
}
