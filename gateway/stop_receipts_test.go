package gateway_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"switchboard/delivery"
	"switchboard/gateway"
	"switchboard/protocol"
	"switchboard/storage"
)

// receiptTally is what the clients of a receipt test know across server
// lives. Each sender writes to one recipient only, so a msg id names a
// message within its sender.
type receiptTally struct {
	t testing.TB

	mu       sync.Mutex
	received map[uint64]map[uint64]bool // sender → msg ids its recipient received
	receipts map[uint64]map[uint64]int  // sender → msg ids delivered receipts covered
	accepted map[uint64]map[uint64]bool // sender → msg ids ACCEPTed
	refused  map[uint64]int             // sender → REFUSEs
	lastSeq  map[uint64]uint64          // user → highest seq read: its next LOGIN ack
	extra    int                        // receipts for msg ids already covered
}

func newReceiptTally(t testing.TB) *receiptTally {
	return &receiptTally{
		t:        t,
		received: map[uint64]map[uint64]bool{},
		receipts: map[uint64]map[uint64]int{},
		accepted: map[uint64]map[uint64]bool{},
		refused:  map[uint64]int{},
		lastSeq:  map[uint64]uint64{},
	}
}

func innerOf[V any](m map[uint64]map[uint64]V, k uint64) map[uint64]V {
	if m[k] == nil {
		m[k] = map[uint64]V{}
	}
	return m[k]
}

// login logs user in with the seq it holds, retrying while the router is
// too busy to take the login (small queues), and notes what the
// connection reads until it ends. The returned channel closes then.
func (r *receiptTally) login(ts *testServer, user uint64, autoAck bool) (*protocol.Client, <-chan struct{}) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		ack := r.lastSeq[user]
		r.mu.Unlock()
		c, err := ts.TryDial(user, protocol.ClientOptions{Ack: ack, AutoAck: autoAck})
		if err == nil {
			return c, r.follow(user, c)
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("login of user %d: %v", user, err)
		}
		time.Sleep(5 * time.Millisecond) // a busy shard closed the login: retry, as a client would
	}
}

func (r *receiptTally) follow(user uint64, c *protocol.Client) <-chan struct{} {
	done := make(chan struct{})
	r.t.Cleanup(func() { c.Close(); <-done })
	go func() {
		defer close(done)
		for {
			ev, err := c.Recv(context.Background())
			if err != nil {
				return
			}
			r.note(user, ev)
		}
	}()
	return done
}

func (r *receiptTally) note(user uint64, ev protocol.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch ev := ev.(type) {
	case *protocol.Deliver:
		r.lastSeq[user] = max(r.lastSeq[user], ev.Seq)
		innerOf(r.received, ev.From)[ev.MsgID] = true
	case *protocol.Accept:
		for id := ev.MsgID; id <= ev.MsgID+ev.More && id-ev.MsgID < 1<<20; id++ {
			innerOf(r.accepted, user)[id] = true
		}
	case *protocol.Refuse:
		r.refused[user]++
	case *protocol.Receipt:
		r.lastSeq[user] = max(r.lastSeq[user], ev.Seq)
		if ev.Read || ev.By != 0 || ev.More >= 1<<20 {
			r.t.Errorf("user %d: unexpected receipt %+v", user, *ev)
			return
		}
		for id := ev.MsgID; id <= ev.MsgID+ev.More; id++ {
			if r.receipts[user][id] > 0 {
				r.extra++
			}
			innerOf(r.receipts, user)[id]++
		}
	}
}

// missing returns how many messages their recipients received have no
// receipt at their sender, one of them, and how many receipts are owed.
func (r *receiptTally) missing() (n int, example string, owed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for s, ids := range r.received {
		for id := range ids {
			owed++
			if r.receipts[s][id] == 0 {
				if n == 0 {
					example = fmt.Sprintf("msg %d of user %d", id, s)
				}
				n++
			}
		}
	}
	return n, example, owed
}

// waitReceipts waits until every message a recipient received is covered
// by a receipt at its sender, failing the test after d.
func (r *receiptTally) waitReceipts(t testing.TB, d time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		n, example, owed := r.missing()
		if n == 0 {
			return owed
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d delivered receipts missing after %v, such as %s", n, owed, d, example)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// check fails the test if an ACCEPTed message was never received, or a
// receipt covers a message its recipient never received.
func (r *receiptTally) check(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for s, ids := range r.accepted {
		for id := range ids {
			if !r.received[s][id] {
				t.Errorf("msg %d of user %d was ACCEPTed and never delivered", id, s)
				return
			}
		}
	}
	for s, ids := range r.receipts {
		for id := range ids {
			if !r.received[s][id] {
				t.Errorf("a receipt covers msg %d of user %d, which its recipient never received", id, s)
				return
			}
		}
	}
}

func (r *receiptTally) seq(user uint64) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastSeq[user]
}

// pendingIn opens the closed store in dir and counts the msg ids its
// pending receipts cover.
func pendingIn(t testing.TB, dir string) int {
	t.Helper()
	st, err := storage.Open(storage.Config{Dir: dir, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer st.Close()
	n := 0
	if err := st.PendingReceipts(func(p storage.PendingReceipt) bool { n += int(p.More) + 1; return true }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestReceiptsFullQueuesAndStop: with routing queues of 16 requests on two
// shards, 24 senders write to 3 recipients in turn (so that one ACK deletes
// the messages of many senders and yields a receipt for each), the
// recipients acknowledging every frame. First a burst of 40 messages per
// sender, during which delivered receipts are put off because their
// senders' queues stayed full (ReceiptsDropped must count some): every
// message received must get its receipt without a restart, from the
// rescan. Then the traffic goes on and the server is stopped gracefully in
// the middle of it, and restarts on the same folder (with default queues:
// a rescan re-queues at most a queue's worth per shard and second, so with
// queues of 16 a backlog of thousands takes tens of seconds). After the
// recipients read to the end, every message they received has its
// receipt, every ACCEPTed message was delivered, and after a clean stop no
// receipt is pending.
func TestReceiptsFullQueuesAndStop(t *testing.T) {
	small := func(c *delivery.Config) { c.Shards, c.QueueLen = 2, 16 }
	fast := func(c *gateway.Config) { c.RateLimit = 1_000_000 }
	ts := startServer(t, serverOptions{gw: fast, router: small})
	r := newReceiptTally(t)
	const senders, rcpts = 24, 3
	sender := func(i int) uint64 { return uint64(100 + i) }
	rcpt := func(i int) uint64 { return uint64(200 + i) }

	var conns sync.WaitGroup // the clients' follow goroutines
	follow := func(done <-chan struct{}) {
		conns.Add(1)
		go func() { defer conns.Done(); <-done }()
	}
	for i := range rcpts {
		_, done := r.login(ts, rcpt(i), true)
		follow(done)
	}
	cs := make([]*protocol.Client, senders)
	for i := range senders { // every login before the traffic, which refuses logins (busy)
		var done <-chan struct{}
		cs[i], done = r.login(ts, sender(i), true)
		follow(done)
	}
	// traffic sends n messages from each sender (n < 0: until the
	// connection ends), in bursts of 4 that fill the queues.
	traffic := func(n int) *sync.WaitGroup {
		var wg sync.WaitGroup
		for i, c := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; k != n; k++ {
					if _, err := c.Send(rcpt((i+k)%rcpts), body(sender(i), k)); err != nil {
						return
					}
					if k%4 == 3 {
						time.Sleep(2 * time.Millisecond) // pacing: the queues fill, and drain
					}
				}
			}()
		}
		return &wg
	}

	stats := ts.Router.Stats()
	// Bursts until one put a receipt off: whether 24 senders' bursts fill
	// the queues depends on how the host schedules them, and a busy host
	// can drain them as fast as they fill. Each burst is checked in full.
	const bursts = 5
	for burst := 1; ; burst++ {
		traffic(40).Wait()
		// Every send answered, every ACCEPTed one delivered: only then are
		// all the receipts owed known.
		eventually(t, 30*time.Second, "every send answered and delivered", func() bool {
			r.mu.Lock()
			defer r.mu.Unlock()
			for i := range senders {
				s := sender(i)
				if len(r.accepted[s])+r.refused[s] < 40*burst {
					return false
				}
				for id := range r.accepted[s] {
					if !r.received[s][id] {
						return false
					}
				}
			}
			return true
		})
		start := time.Now()
		owed := r.waitReceipts(t, 30*time.Second)
		t.Logf("burst %d: %d receipts owed, all arrived %v after the last send; %d times held, %d put off, %d replayed, %d requests refused busy",
			burst, owed, time.Since(start).Round(time.Millisecond), stats.ReceiptsHeld.Load(), stats.ReceiptsDropped.Load(), stats.ReceiptsReplayed.Load(), stats.Busy.Load())
		if stats.ReceiptsDropped.Load() > 0 {
			break
		}
		if burst == bursts {
			t.Fatalf("no receipt was put off by a full queue in %d bursts: the test did not exercise what it is for", bursts)
		}
	}

	before := stats.Receipts.Load()
	sending := traffic(-1)
	eventually(t, 20*time.Second, "receipts to flow", func() bool { return stats.Receipts.Load() > before+100 })
	if err := ts.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	sending.Wait()
	conns.Wait()
	t.Logf("stopped: %d msg ids pending", pendingIn(t, ts.Dir))

	ts2 := startServer(t, serverOptions{gw: fast, dir: ts.Dir})
	for i := range rcpts {
		u := rcpt(i)
		c, _ := r.login(ts2, u, true)
		last := c.Welcome().Last
		eventually(t, 20*time.Second, fmt.Sprintf("user %d to read to seq %d", u, last), func() bool { return r.seq(u) >= last })
	}
	for i := range senders {
		r.login(ts2, sender(i), true)
	}
	start := time.Now()
	owed := r.waitReceipts(t, 30*time.Second)
	r.check(t)
	replayed := ts2.Router.Stats().ReceiptsReplayed.Load()
	if err := ts2.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if n := pendingIn(t, ts.Dir); n != 0 {
		t.Errorf("%d msg ids still pending after every receipt arrived and a clean stop", n)
	}
	t.Logf("restarted: %d receipts owed, all arrived in %v (%d more than once); %d pending receipts replayed",
		owed, time.Since(start).Round(time.Millisecond), r.extra, replayed)
}

// TestReceiptsAfterSenderMailboxFull: a sender's mailbox (capped at 16
// entries here) fills with receipts it reads but does not acknowledge, so
// the receipts of its recipient's later acks cannot be stored: they stay
// pending. Once the sender acknowledges its mailbox there is room again,
// and every receipt must then arrive without a restart of the server (the
// refusal sets a rescan).
func TestReceiptsAfterSenderMailboxFull(t *testing.T) {
	ts := startServer(t, serverOptions{storage: func(c *storage.Config) { c.MaxMailboxMessages = 16 }})
	r := newReceiptTally(t)
	a, b := uint64(1), uint64(2)
	r.login(ts, b, true)
	ca, _ := r.login(ts, a, false)
	const n = 48
	for range n {
		// One at a time, so that each of b's ACKs covers one message and
		// yields a receipt of its own.
		id, err := ca.Send(b, []byte("hello"))
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "the message ACCEPTed and delivered", func() bool {
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.accepted[a][id] && r.received[a][id]
		})
	}
	eventually(t, 10*time.Second, "receipts refused by the sender's full mailbox", func() bool {
		return ts.Store.Stats().RefusedFull > 0
	})
	eventually(t, 10*time.Second, "the sender to read its 16 receipts", func() bool { return r.seq(a) >= 16 })
	// From now on the sender acknowledges what it reads, as a client
	// does: each ACK makes room for receipts still pending in storage,
	// which the server must offer again without a restart.
	eventually(t, 15*time.Second, "every delivered receipt, while the sender acks", func() bool {
		if err := ca.Ack(r.seq(a)); err != nil {
			t.Fatal(err)
		}
		n, _, _ := r.missing()
		return n == 0
	})
	r.check(t)
}
