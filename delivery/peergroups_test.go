package delivery_test

import (
	"slices"
	"testing"
	"time"

	"switchboard/delivery"
	"switchboard/protocol"
	"switchboard/storage"
)

// createGroupOn has creator, whose session c is on r, create a group with
// members that is homed on node home of the n nodes of a fakeCluster; it
// returns the group. Its create msg id is 1000 or above, clear of the ids
// tests send.
func createGroupOn(t *testing.T, r *delivery.Router, c *fakeConn, creator uint64, n, home int, members ...uint64) uint64 {
	t.Helper()
	for id := uint64(1000); ; id++ {
		if g := delivery.GroupID(creator, id); int(g%uint64(n))+1 == home {
			wantAccept(t, groupOp(t, r, c, creator, id, protocol.GroupCreate, 0, members...), g)
			return g
		}
	}
}

// groupSend submits from's message msgID to group through r, as a retry
// (flag B), and fails if r is busy.
func groupSend(t *testing.T, r *delivery.Router, c *fakeConn, from, group, msgID uint64) {
	t.Helper()
	if !r.Send(c.s(), delivery.Message{From: delivery.To(from), To: group, Group: true, MsgID: msgID, Retry: true, Record: record(from, msgID, "g")}) {
		t.Fatalf("group Send %d busy", msgID)
	}
}

// wantRefusals fails unless c was refused exactly msgIDs, in that order,
// each RETRY_LATER with a retry_after and reason.
func wantRefusals(t *testing.T, c *fakeConn, reason string, msgIDs ...uint64) {
	t.Helper()
	refused := c.items(delivery.OutRefuse)
	var got []uint64
	for _, o := range refused {
		got = append(got, o.MsgID)
		if o.Code != protocol.CodeRetryLater || o.RetryAfter == 0 || o.Reason != reason {
			t.Fatalf("refusal %+v, want RETRY_LATER with a retry_after, %q", o, reason)
		}
	}
	if !slices.Equal(got, msgIDs) {
		t.Fatalf("refused msgs %v, want %v in that order", got, msgIDs)
	}
}

// TestFanoutLostWithARestartedMemberHome: a member's home node restarts
// with the copy of group message 5 in hand. The group home's next fan-out
// to that node fails 5 at once, and that next message (6) too, so the
// sender sends both again in msg_id order and the member reads them in
// order, rather than 6 stored before the resent 5.
func TestFanoutLostWithARestartedMemberHome(t *testing.T) {
	c, rs, ss := newCluster(t, 2, time.Now)
	const alice, bob = 2, 1 // alice on node 1, the group's home; bob on node 2
	a := newFake()
	login(t, rs[0], a, alice, 0)
	group := createGroupOn(t, rs[0], a, alice, 2, 1, bob)

	c.set(c.deaf, 2, true)
	groupSend(t, rs[0], a, alice, group, 5)
	waitFor(t, "the fan-out to node 2", func() bool { return rs[0].Fanning() == 1 })
	c.mu.Lock()
	c.inst[2]++
	c.mu.Unlock()
	c.set(c.deaf, 2, false)
	groupSend(t, rs[0], a, alice, group, 6)
	waitFor(t, "two refusals", func() bool { return len(a.items(delivery.OutRefuse)) == 2 })
	wantRefusals(t, a, "a member's home node restarted", 5, 6)
	if n := rs[0].Fanning(); n != 0 {
		t.Fatalf("node 1 still tracks %d fan-outs", n)
	}

	a.reset()
	groupSend(t, rs[0], a, alice, group, 5)
	wantAccept(t, answer(t, a, 5), 0)
	groupSend(t, rs[0], a, alice, group, 6)
	wantAccept(t, answer(t, a, 6), 0)
	if got := groupMessages(t, ss[1], bob); !slices.Equal(got, []uint64{5, 6}) {
		t.Fatalf("bob's group messages %v, want [5 6]", got)
	}
}

// TestFanoutForAnEarlierProcess: a member's home restarted and the group's
// home has not heard it yet, so it hands that node a copy tagged for its
// previous process. The new process refuses it (a copy of an earlier
// message may have died with the old one): nothing is stored, and the
// sender is told to retry. Once the restart is heard, the resend is stored
// once.
func TestFanoutForAnEarlierProcess(t *testing.T) {
	c, rs, ss := newCluster(t, 2, time.Now)
	const alice, bob = 2, 1 // alice on node 1, the group's home; bob on node 2
	a := newFake()
	login(t, rs[0], a, alice, 0)
	group := createGroupOn(t, rs[0], a, alice, 2, 1, bob)

	c.mu.Lock()
	c.inst[2]++
	c.stale[1] = true
	c.mu.Unlock()
	groupSend(t, rs[0], a, alice, group, 5)
	got := answer(t, a, 5)
	wantRefuse(t, got, protocol.CodeRetryLater)
	if got.RetryAfter < 1000 || got.RetryAfter > 2000 || got.Reason != "a member's home node restarted" {
		t.Fatalf("refusal %+v, want a retry_after in [1000, 2000] ms, saying the member's home restarted", got)
	}
	if got := groupMessages(t, ss[1], bob); len(got) != 0 {
		t.Fatalf("bob's mailbox holds group messages %v from a fan-out meant for the old process", got)
	}

	c.mu.Lock()
	c.stale[1] = false
	c.mu.Unlock()
	a.reset()
	groupSend(t, rs[0], a, alice, group, 5)
	wantAccept(t, answer(t, a, 5), 0)
	if got := groupMessages(t, ss[1], bob); !slices.Equal(got, []uint64{5}) {
		t.Fatalf("bob's group messages %v, want [5]", got)
	}
}

// TestGroupRequestForAnEarlierProcess: the group's home restarted with
// group message 5 of a session on another node in hand, and that node has
// not heard it yet: the session's next group message (6) goes tagged for
// the old process, and the new one refuses it. 5, lost with the old
// process, is refused first, then 6, so the session sends both again in
// msg_id order and the members read them in order.
func TestGroupRequestForAnEarlierProcess(t *testing.T) {
	c, rs, ss := newCluster(t, 2, time.Now)
	const alice, bob = 1, 2 // alice on node 2; bob on node 1, the group's home
	a := newFake()
	login(t, rs[1], a, alice, 0)
	group := createGroupOn(t, rs[1], a, alice, 2, 1, bob)

	c.set(c.deaf, 1, true)
	groupSend(t, rs[1], a, alice, group, 5)
	c.mu.Lock()
	c.inst[1]++
	c.stale[2] = true
	c.mu.Unlock()
	c.set(c.deaf, 1, false)
	groupSend(t, rs[1], a, alice, group, 6)
	waitFor(t, "two refusals", func() bool { return len(a.items(delivery.OutRefuse)) == 2 })
	wantRefusals(t, a, "the recipient's home node restarted", 5, 6)

	c.mu.Lock()
	c.stale[2] = false
	c.mu.Unlock()
	a.reset()
	groupSend(t, rs[1], a, alice, group, 5)
	groupSend(t, rs[1], a, alice, group, 6)
	wantAccept(t, answer(t, a, 5), 0)
	wantAccept(t, answer(t, a, 6), 0)
	if got := groupMessages(t, ss[0], bob); !slices.Equal(got, []uint64{5, 6}) {
		t.Fatalf("bob's group messages %v, want [5 6]", got)
	}
}

// TestFanoutRefusedByAMemberHome: a member's copy that its home node's
// store refuses (the mailbox is full) fails the group message with that
// refusal's code, retry_after and reason, not with an ACCEPT.
func TestFanoutRefusedByAMemberHome(t *testing.T) {
	_, rs, ss := newClusterWith(t, 2, clusterOpts{cfg: delivery.Config{Shards: 2}, scfg: storage.Config{MaxMailboxMessages: 1}})
	const alice, bob = 2, 1 // alice on node 1, the group's home; bob on node 2
	a := newFake()
	login(t, rs[0], a, alice, 0)
	group := createGroupOn(t, rs[0], a, alice, 2, 1, bob) // its event fills bob's mailbox

	groupSend(t, rs[0], a, alice, group, 5)
	got := answer(t, a, 5)
	wantRefuse(t, got, protocol.CodeMailboxFull)
	if got.RetryAfter != 5000 || got.Reason != "recipient's mailbox full" {
		t.Fatalf("refusal %+v, want MAILBOX_FULL's retry_after (5000 ms) and reason", got)
	}
	if got := groupMessages(t, ss[1], bob); len(got) != 0 {
		t.Fatalf("bob's full mailbox holds group messages %v", got)
	}
}

// TestFanoutNamesAMemberHomedElsewhere: a fan-out naming a member this
// node does not home (the nodes disagree on homes while the cluster
// changes) fails that copy, stores the others, and is answered once: one
// peerFanned, not one for the misrouted copy and another for the rest.
func TestFanoutNamesAMemberHomedElsewhere(t *testing.T) {
	const kindFanned = 9
	const elsewhere, here = 3, 4 // homed on node 2 and node 1
	var park *parkStore
	c, rs, ss := newClusterWith(t, 2, clusterOpts{cfg: delivery.Config{Shards: 2}, store: func(node uint32, mem storage.Store) storage.Store {
		if node != 1 {
			return mem
		}
		park = &parkStore{Store: mem, user: here, parking: true}
		return park
	}})
	t.Cleanup(park.release)

	// instance 1 (node 1's), fan 7, a group message from 9 (msg 5, flag B),
	// for members 3 and 4.
	payload := []byte{kindFanout, 1, 7, byte(storage.KindGroupMessage), 9, 5, 1, 2, elsewhere, here}
	payload = append(payload, record(9, 5, "g")...)
	fanned := c.kinds[kindFanned].Load()
	rs[0].FromPeer(2, payload)
	if n := c.kinds[kindFanned].Load() - fanned; n > 1 {
		t.Fatalf("%d answers to one fan-out", n)
	}
	waitFor(t, "the copy for member 4 handed to the store", func() bool { return park.held() == 1 })
	park.release()
	waitFor(t, "the answer", func() bool { return c.kinds[kindFanned].Load()-fanned == 1 })
	if got := groupMessages(t, ss[0], here); !slices.Equal(got, []uint64{5}) {
		t.Fatalf("member 4's group messages %v, want [5]", got)
	}
	if got := groupMessages(t, ss[0], elsewhere); len(got) != 0 {
		t.Fatalf("node 1 stored group messages %v for member 3, homed on node 2", got)
	}
}

// TestFanoutRestartHeardFromAMemberHome: bob's home node died with the
// fan-out parts of alice's group messages 1 to 32 in hand and came back
// as a new process, which the group's home has not heard yet. Message 33
// goes tagged for the old process and the new one refuses it: 1 to 32,
// lost with the old process, are refused first, in msg_id order, then 33,
// so alice sends them all again in order and bob reads them in order.
func TestFanoutRestartHeardFromAMemberHome(t *testing.T) {
	c, rs, ss := newCluster(t, 2, time.Now)
	const alice, bob = 2, 1 // alice on node 1, the group's home; bob on node 2
	const lost = 32         // enough that an unsorted refusal order shows
	a := newFake()
	login(t, rs[0], a, alice, 0)
	group := createGroupOn(t, rs[0], a, alice, 2, 1, bob)
	a.reset()

	c.set(c.deaf, 2, true) // node 2 dies with the parts of 1 to 32 in hand
	for id := uint64(1); id <= lost; id++ {
		groupSend(t, rs[0], a, alice, group, id)
	}
	waitFor(t, "the parts awaiting node 2", func() bool { return rs[0].Awaiting() == lost })
	c.mu.Lock()
	c.inst[2]++       // and comes back as a new process
	c.stale[1] = true // which node 1 has not heard from yet
	c.mu.Unlock()
	c.set(c.deaf, 2, false)
	groupSend(t, rs[0], a, alice, group, lost+1)
	waitFor(t, "the refusals", func() bool { return len(a.items(delivery.OutRefuse)) == lost+1 })
	for i, r := range a.items(delivery.OutRefuse) {
		if r.MsgID != uint64(i+1) || r.Code != protocol.CodeRetryLater || r.Reason != "a member's home node restarted" {
			t.Fatalf("refusal %d: %+v, want RETRY_LATER of msg %d (in msg_id order), saying the member's home restarted", i, r, i+1)
		}
	}
	c.mu.Lock()
	c.stale[1] = false
	c.mu.Unlock()
	for id := uint64(1); id <= lost+1; id++ {
		groupSend(t, rs[0], a, alice, group, id)
	}
	waitFor(t, "every ACCEPT", func() bool { return len(a.items(delivery.OutAccept)) == lost+1 })
	want := make([]uint64, lost+1)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	if got := groupMessages(t, ss[1], bob); !slices.Equal(got, want) {
		t.Fatalf("bob's group messages %v, want 1 to %d in order", got, lost+1)
	}
}
