package main

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"switchboard/protocol"
)

// TestCrashKill9: the server runs in a child process under a storm of sends
// (8 senders to an online recipient that acks and to an offline one) and is
// killed with SIGKILL; after a restart on the same data folder every
// ACCEPTed message reaches its recipient, each (sender, msg id) under one
// seq only, in order per sender. The soak variant (build tag soak) runs
// more and longer rounds.
func TestCrashKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills a server process")
	}
	runCrash(t, 1, 1500*time.Millisecond)
}

// crashState is what the clients know across rounds: what the server
// accepted and what the recipients received (and so "stored on the device").
type crashState struct {
	mu       sync.Mutex
	accepted map[uint64]map[uint64]bool // sender → msg ids ACCEPTed
	nextID   map[uint64]uint64          // sender → next msg id
	recv     map[uint64]map[key]uint64  // recipient → (from, id) → seq
	lastSeq  map[uint64]uint64          // recipient → highest seq received
	dupes    int                        // redeliveries (same key, same seq)
}

type key struct{ from, id uint64 }

const (
	crashSenders = 8
	onlineRcpt   = 100
	offlineRcpt  = 101
)

func recipientOf(sender uint64) uint64 {
	if sender%2 == 0 {
		return onlineRcpt
	}
	return offlineRcpt
}

// record notes a delivery; it fails the test if (from, id) was already
// stored under another seq (stored twice, not redelivered).
func (st *crashState) record(t testing.TB, rcpt uint64, d *protocol.Deliver) {
	st.mu.Lock()
	defer st.mu.Unlock()
	k := key{d.From, d.MsgID}
	if seq, ok := st.recv[rcpt][k]; ok {
		if seq != d.Seq {
			t.Errorf("recipient %d: msg %d of %d stored twice, at seq %d and %d", rcpt, d.MsgID, d.From, seq, d.Seq)
		}
		st.dupes++
	}
	st.recv[rcpt][k] = d.Seq
	st.lastSeq[rcpt] = max(st.lastSeq[rcpt], d.Seq)
}

// receive records what c delivers until its connection ends.
func (st *crashState) receive(t testing.TB, rcpt uint64, c *protocol.Client) {
	for {
		ev, err := c.Recv(context.Background())
		if err != nil {
			return
		}
		if d, ok := ev.(*protocol.Deliver); ok {
			st.record(t, rcpt, d)
		}
	}
}

func runCrash(t *testing.T, rounds int, storm time.Duration) {
	data := t.TempDir()
	st := &crashState{
		accepted: map[uint64]map[uint64]bool{},
		nextID:   map[uint64]uint64{},
		recv:     map[uint64]map[key]uint64{onlineRcpt: {}, offlineRcpt: {}},
		lastSeq:  map[uint64]uint64{},
	}
	for s := uint64(1); s <= crashSenders; s++ {
		st.accepted[s] = map[uint64]bool{}
		st.nextID[s] = 1
	}
	for round := range rounds {
		srv := startChild(t, data, 0)
		var wg sync.WaitGroup
		rc, err := srv.dial(onlineRcpt, protocol.ClientOptions{AutoAck: true, Ack: st.lastSeq[onlineRcpt]})
		if err != nil {
			t.Fatalf("round %d: recipient login: %v", round, err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); st.receive(t, onlineRcpt, rc) }()
		before := st.total()
		for s := uint64(1); s <= crashSenders; s++ {
			c, err := srv.dial(s, protocol.ClientOptions{FirstMsgID: st.nextID[s]})
			if err != nil {
				t.Fatalf("round %d: sender %d login: %v", round, s, err)
			}
			wg.Add(2)
			go func() { // ACCEPTs
				defer wg.Done()
				for {
					ev, err := c.Recv(context.Background())
					if err != nil {
						return
					}
					if a, ok := ev.(*protocol.Accept); ok {
						st.mu.Lock()
						for id := a.MsgID; id <= a.MsgID+a.More; id++ {
							st.accepted[s][id] = true
						}
						st.mu.Unlock()
					}
				}
			}()
			go func() { // sends, paced under the 1000 frames/s rate limit
				defer wg.Done()
				for i := 0; ; i++ {
					if _, err := c.Send(recipientOf(s), []byte(fmt.Sprintf("%d says %d", s, i))); err != nil {
						return
					}
					if i%10 == 9 {
						time.Sleep(12 * time.Millisecond) // ~800/s: sends are in flight at any moment
					}
				}
			}()
		}
		deadline := time.Now().Add(20 * time.Second)
		for st.total() < before+crashSenders*100 {
			if time.Now().After(deadline) || !srv.alive() {
				t.Fatalf("round %d: only %d messages accepted\n%s", round, st.total()-before, srv.log())
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(storm) // the storm goes on; the kill lands in the middle of it
		srv.kill()
		wg.Wait() // every client sees its connection end
		st.mu.Lock()
		for s := uint64(1); s <= crashSenders; s++ {
			for id := range st.accepted[s] {
				st.nextID[s] = max(st.nextID[s], id+1)
			}
			st.nextID[s] += 1000 // unaccepted sends may be stored too: skip their ids
		}
		st.mu.Unlock()
		t.Logf("round %d: %d accepted so far, %d received by the online recipient", round, st.total(), len(st.recv[onlineRcpt]))
	}

	// Restart and drain both recipients to the end of their mailboxes.
	srv := startChild(t, data, 0)
	for _, rcpt := range []uint64{onlineRcpt, offlineRcpt} {
		c, err := srv.dial(rcpt, protocol.ClientOptions{AutoAck: true, Ack: st.lastSeq[rcpt]})
		if err != nil {
			t.Fatalf("recipient %d after restart: %v", rcpt, err)
		}
		last := c.Welcome().Last
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		for st.lastSeq[rcpt] < last {
			ev, err := c.Recv(ctx)
			if err != nil {
				cancel()
				t.Fatalf("recipient %d draining to seq %d, at %d: %v", rcpt, last, st.lastSeq[rcpt], err)
			}
			if d, ok := ev.(*protocol.Deliver); ok {
				st.record(t, rcpt, d)
			}
		}
		cancel()
		c.Close()
	}

	// Every accepted message arrived; per sender in order of its ids.
	lost := 0
	for s := uint64(1); s <= crashSenders; s++ {
		for id := range st.accepted[s] {
			if _, ok := st.recv[recipientOf(s)][key{s, id}]; !ok {
				if lost < 10 {
					t.Errorf("sender %d msg %d was ACCEPTed and never delivered", s, id)
				}
				lost++
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d accepted messages lost", lost)
	}
	for rcpt, got := range st.recv {
		type del struct{ seq, from, id uint64 }
		var ds []del
		for k, seq := range got {
			ds = append(ds, del{seq, k.from, k.id})
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i].seq < ds[j].seq })
		prev := map[uint64]uint64{}
		for i, d := range ds {
			if i > 0 && ds[i-1].seq == d.seq {
				t.Fatalf("recipient %d: seq %d holds two messages", rcpt, d.seq)
			}
			if d.id <= prev[d.from] {
				t.Fatalf("recipient %d: sender %d's msg %d at seq %d after msg %d", rcpt, d.from, d.id, d.seq, prev[d.from])
			}
			prev[d.from] = d.id
		}
	}
	t.Logf("%d accepted, all delivered; %d redeliveries dropped by the client", st.total(), st.dupes)
}

func (st *crashState) total() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	n := 0
	for _, a := range st.accepted {
		n += len(a)
	}
	return n
}
