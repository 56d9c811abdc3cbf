package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"switchboard/internal/testutil"
	"switchboard/protocol"
	"switchboard/storage"
)

// What the receipt crash tests (receipts_crash_test.go) know across server
// lives, and the helpers they share with their soak variants.
// receiptBook is what the clients know across server lives: what each
// sender sent and had ACCEPTed, what each recipient received (and so
// acknowledged, at the latest with its next LOGIN), and which of a
// sender's msg ids delivered receipts covered. It checks identities as
// events arrive: a DELIVER of a message never sent to that user, a message
// stored under two seqs, or a receipt covering an id its user never sent
// fails the test.
type receiptBook struct {
	t testing.TB

	mu          sync.Mutex
	sentTo      map[uint64]map[uint64]uint64 // sender → msg id → recipient; noted before the SEND is written
	accepted    map[uint64]map[uint64]bool   // sender → msg ids ACCEPTed
	received    map[uint64]map[key]uint64    // recipient → (from, id) → seq
	receipts    map[uint64]map[uint64]int    // sender → msg id → delivered receipts covering it
	lastSeq     map[uint64]uint64            // user → highest mailbox seq read: the ack of its next LOGIN
	nextID      map[uint64]uint64            // sender → the next msg id it uses
	redelivered int                          // DELIVERs of a message already received
	extra       int                          // receipts for msg ids already covered
}

func newReceiptBook(t testing.TB) *receiptBook {
	return &receiptBook{
		t:        t,
		sentTo:   map[uint64]map[uint64]uint64{},
		accepted: map[uint64]map[uint64]bool{},
		received: map[uint64]map[key]uint64{},
		receipts: map[uint64]map[uint64]int{},
		lastSeq:  map[uint64]uint64{},
		nextID:   map[uint64]uint64{},
	}
}

// inner returns m[k], creating it.
func inner[K comparable, V any](m map[uint64]map[K]V, k uint64) map[K]V {
	if m[k] == nil {
		m[k] = map[K]V{}
	}
	return m[k]
}

// reserve notes n msg ids of from as sent to to, and returns the first;
// ids are never reused, also across lives.
func (b *receiptBook) reserve(from, to uint64, n int) uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	first := max(1, b.nextID[from])
	b.nextID[from] = first + uint64(n)
	for id := first; id < first+uint64(n); id++ {
		inner(b.sentTo, from)[id] = to
	}
	return first
}

// send writes one SEND from c, logged in as from, to to, under the next id.
func (b *receiptBook) send(c *protocol.Client, from, to uint64) error {
	id := b.reserve(from, to, 1)
	return c.SendID(id, to, []byte(fmt.Sprintf("%d to %d: #%d", from, to, id)), false)
}

// seq returns the ack user logs in with: the highest seq it read.
func (b *receiptBook) seq(user uint64) uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastSeq[user]
}

// dial logs user in on srv, resuming from the seq it holds, and follows
// the connection. The returned channel closes when the connection has
// ended and every event it carried is noted.
func (b *receiptBook) dial(srv *child, user uint64, autoAck bool) (*protocol.Client, <-chan struct{}) {
	b.t.Helper()
	c, err := srv.dial(user, protocol.ClientOptions{Ack: b.seq(user), AutoAck: autoAck})
	if err != nil {
		b.t.Fatalf("login of user %d: %v\n%s", user, err, logTail(srv))
	}
	return c, b.follow(user, c)
}

// follow notes what c, logged in as user, reads until its connection ends.
// Closing the client before drops events it has read (and, with AutoAck,
// acknowledged): only a client whose user the test is done with is closed.
func (b *receiptBook) follow(user uint64, c *protocol.Client) <-chan struct{} {
	done := make(chan struct{})
	b.t.Cleanup(func() { c.Close(); <-done }) // no note after the test ended
	go func() {
		defer close(done)
		for {
			ev, err := c.Recv(context.Background())
			if err != nil {
				return
			}
			b.note(user, ev)
		}
	}()
	return done
}

// maxRun bounds the ids one ACCEPT or receipt may cover in these tests,
// so that a corrupt More fails the test instead of looping for ever.
const maxRun = 1 << 20

func (b *receiptBook) note(user uint64, ev protocol.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *protocol.Deliver:
		b.lastSeq[user] = max(b.lastSeq[user], ev.Seq)
		if to, ok := b.sentTo[ev.From][ev.MsgID]; !ok || to != user {
			b.t.Errorf("user %d got msg %d of user %d at seq %d, which was not sent to it", user, ev.MsgID, ev.From, ev.Seq)
		}
		k := key{ev.From, ev.MsgID}
		if seq, ok := b.received[user][k]; ok {
			if seq != ev.Seq {
				b.t.Errorf("user %d: msg %d of user %d stored twice, at seq %d and %d", user, ev.MsgID, ev.From, seq, ev.Seq)
			}
			b.redelivered++
		}
		inner(b.received, user)[k] = ev.Seq
	case *protocol.Accept:
		for id := ev.MsgID; id <= ev.MsgID+ev.More && id-ev.MsgID < maxRun; id++ {
			inner(b.accepted, user)[id] = true
		}
	case *protocol.Receipt:
		b.lastSeq[user] = max(b.lastSeq[user], ev.Seq)
		switch {
		case ev.Read:
			b.t.Errorf("user %d got a read receipt at seq %d; nobody sent READ", user, ev.Seq)
			return
		case ev.By != 0:
			b.t.Errorf("user %d got a receipt by %d at seq %d for 1:1 messages", user, ev.By, ev.Seq)
			return
		case ev.More >= maxRun:
			b.t.Errorf("user %d got a receipt at seq %d covering %d ids from %d", user, ev.Seq, ev.More+1, ev.MsgID)
			return
		}
		for id := ev.MsgID; id <= ev.MsgID+ev.More; id++ {
			if _, ok := b.sentTo[user][id]; !ok {
				b.t.Errorf("user %d got a receipt at seq %d for msg %d, which it never sent", user, ev.Seq, id)
			}
			if b.receipts[user][id] > 0 {
				b.extra++
			}
			inner(b.receipts, user)[id]++
		}
	}
}

// missing returns the messages of the senders for which sender holds true
// (every sender when nil) that their recipients received and no receipt
// covered, as (sender, id) in order, and how many receipts are owed.
func (b *receiptBook) missing(senders map[uint64]bool) (miss []key, owed int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, got := range b.received {
		for k := range got {
			if senders != nil && !senders[k.from] {
				continue
			}
			owed++
			if b.receipts[k.from][k.id] == 0 {
				miss = append(miss, k)
			}
		}
	}
	slices.SortFunc(miss, func(x, y key) int {
		if x.from != y.from {
			return cmpU64(x.from, y.from)
		}
		return cmpU64(x.id, y.id)
	})
	return miss, owed
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// covered counts the msg ids of senders (every sender when nil) that a
// receipt covered.
func (b *receiptBook) covered(senders map[uint64]bool) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for s, ids := range b.receipts {
		if senders == nil || senders[s] {
			n += len(ids)
		}
	}
	return n
}

// waitReceipts waits until every message of senders (all when nil) that
// its recipient received is covered by a receipt, and fails the test,
// naming what is missing, if that takes longer than d.
func (b *receiptBook) waitReceipts(t testing.TB, srv *child, senders map[uint64]bool, d time.Duration) (owed int) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		miss, owed := b.missing(senders)
		if len(miss) == 0 {
			return owed
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d delivered receipts missing after %v; the first: %s\n%s",
				len(miss), owed, d, describe(miss, 10), logTail(srv))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func describe(ks []key, n int) string {
	s := ""
	for i, k := range ks[:min(n, len(ks))] {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("msg %d of user %d", k.id, k.from)
	}
	return s
}

// check fails the test if an ACCEPTed message never reached its recipient,
// or a receipt covered a message its recipient never received (a false
// "delivered"). Call it once the recipients have read their whole
// mailboxes.
func (b *receiptBook) check(t testing.TB) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var lost, unearned []key
	for s, ids := range b.accepted {
		for id := range ids {
			if _, ok := b.received[b.sentTo[s][id]][key{s, id}]; !ok {
				lost = append(lost, key{s, id})
			}
		}
	}
	for s, ids := range b.receipts {
		for id := range ids {
			if _, ok := b.received[b.sentTo[s][id]][key{s, id}]; !ok {
				unearned = append(unearned, key{s, id})
			}
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d ACCEPTed messages never delivered: %s", len(lost), describe(lost, 10))
	}
	if len(unearned) > 0 {
		t.Errorf("%d receipts for messages their recipient never received: %s", len(unearned), describe(unearned, 10))
	}
}

// drain waits until user, logged in on srv, has read its mailbox up to the
// last seq its WELCOME announced.
func (b *receiptBook) drain(t testing.TB, srv *child, user uint64, c *protocol.Client, d time.Duration) {
	t.Helper()
	last := c.Welcome().Last
	waitFor(t, srv, d, fmt.Sprintf("user %d to read its mailbox to seq %d", user, last), func() bool { return b.seq(user) >= last })
}

// waitFor polls cond until it holds, failing the test with the server's
// log after d.
func waitFor(t testing.TB, srv *child, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, d, what, cond, func() string { return logTail(srv) })
}

// logTail returns the end of srv's log, for failure messages.
func logTail(srv *child) string {
	if srv == nil {
		return ""
	}
	l := srv.log()
	if len(l) > 4000 {
		l = "…" + l[len(l)-4000:]
	}
	return l
}

// terminate stops the server with SIGTERM, as an operator would, and waits
// for it to exit; it fails the test unless the server stopped cleanly.
func (c *child) terminate(t testing.TB) { c.stopWith(t, syscall.SIGTERM) }

// stopWith sends sig and waits for the server to exit; it fails the test
// unless the server stopped cleanly.
func (c *child) stopWith(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("server still running 30 s after %v\n%s", sig, logTail(c))
	}
	if c.err != nil {
		t.Fatalf("server exited with %v after %v\n%s", c.err, sig, logTail(c))
	}
}

// killAt sends SIGKILL at the moment at, waiting for it on the processor
// (a timer is late by up to a millisecond), and waits for the process to
// be gone.
func (c *child) killAt(at time.Time) {
	spinUntil(at)
	c.kill()
}

func spinUntil(at time.Time) {
	if d := time.Until(at) - time.Millisecond; d > 0 {
		time.Sleep(d) // the processor is shared with the server: spin only at the end
	}
	for time.Now().Before(at) {
	}
}

// openStore opens the data folder of a server that is not running, in this
// process, and calls fn with its store.
func openStore(t testing.TB, data string, fn func(storage.Store)) {
	t.Helper()
	st, err := storage.Open(storage.Config{Dir: filepath.Join(data, "mailboxes"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("opening the data folder: %v", err)
	}
	fn(st)
	if err := st.Close(); err != nil {
		t.Fatalf("closing the data folder: %v", err)
	}
}

// pendingBySender returns the delivered receipts st holds as pending, per
// sender, counting the msg ids they cover.
func pendingBySender(t testing.TB, st storage.Store) map[uint64]int {
	t.Helper()
	n := map[uint64]int{}
	err := st.PendingReceipts(func(p storage.PendingReceipt) bool {
		n[p.Sender] += int(p.More) + 1
		return true
	})
	if err != nil {
		t.Fatalf("PendingReceipts: %v", err)
	}
	return n
}

func sum(m map[uint64]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// pendingAfter opens the data folder of the stopped server and returns how
// many msg ids its pending receipts cover.
func pendingAfter(t testing.TB, data string) int {
	t.Helper()
	n := 0
	openStore(t, data, func(st storage.Store) { n = sum(pendingBySender(t, st)) })
	return n
}
