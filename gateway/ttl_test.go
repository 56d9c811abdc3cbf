package gateway_test

import (
	"sync/atomic"
	"testing"
	"time"

	"switchboard/gateway"
	"switchboard/protocol"
	"switchboard/storage"
)

// TestAckOfExpiredEntries: entries that expired while their recipient was
// away are never delivered, and WELCOME.last leaves them out, so the
// client is caught up at once; the session goes on, and the next message's
// ack deletes them.
func TestAckOfExpiredEntries(t *testing.T) {
	var skew atomic.Int64 // added to the store's clock
	ts := startServer(t, serverOptions{storage: func(c *storage.Config) {
		c.MessageTTL = time.Hour
		c.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	}})
	sender := ts.Dial(1, protocol.ClientOptions{})
	var ids []uint64
	for range 3 {
		id, err := sender.Send(2, []byte("soon stale"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	waitAccepted(t, sender, ids, 10*time.Second)
	skew.Store(int64(2 * time.Hour))

	rcv := ts.Dial(2, protocol.ClientOptions{})
	if last := rcv.Welcome().Last; last != 0 {
		t.Fatalf("WELCOME.last = %d, want 0: the three expired", last)
	}
	// The session goes on: a new message arrives after the expired ones.
	if _, err := sender.Send(2, []byte("fresh")); err != nil {
		t.Fatal(err)
	}
	d := recvKind[*protocol.Deliver](t, rcv)
	if d.Seq != 4 || string(d.Body) != "fresh" {
		t.Fatalf("delivered seq %d %q, want seq 4 \"fresh\"", d.Seq, d.Body)
	}
	if err := rcv.Ack(d.Seq); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the expired entries deleted with the ack", func() bool {
		return ts.Store.Stats().ExpiredDeleted == 3
	})
}

// TestLiveGroupEventHasNoTime: a GROUP_EVENT sent within a second of its
// change leaves its time out, as a live DELIVER does; one sent later
// carries it.
func TestLiveGroupEventHasNoTime(t *testing.T) {
	var skew atomic.Int64 // added to the gateway's clock
	ts := startServer(t, serverOptions{gw: func(c *gateway.Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	}})
	owner := ts.Dial(1, protocol.ClientOptions{})
	member := ts.Dial(2, protocol.ClientOptions{})
	g, _ := createGroup(t, owner, 2)
	ev := recvKind[*protocol.GroupEvent](t, member)
	if ev.Group != g || ev.Time != 0 {
		t.Fatalf("live create event %+v, want group %d and no time", ev, g)
	}
	// An event read from the mailbox a minute later carries its time.
	if err := member.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.Group(protocol.Group{Op: protocol.GroupAdd, Group: g, Members: []uint64{3}}); err != nil {
		t.Fatal(err)
	}
	recvKind[*protocol.Accept](t, owner)
	skew.Store(int64(time.Minute))
	member = ts.Dial(2, protocol.ClientOptions{})
	ev = recvKind[*protocol.GroupEvent](t, member)
	if ev.Op == protocol.GroupCreate {
		ev = recvKind[*protocol.GroupEvent](t, member)
	}
	if ev.Op != protocol.GroupAdd || ev.Time == 0 {
		t.Fatalf("stored add event %+v, want its time", ev)
	}
}

// TestRefuseCarriesReason: a REFUSE names the check that failed.
func TestRefuseCarriesReason(t *testing.T) {
	ts := startServer(t, serverOptions{})
	c := ts.Dial(1, protocol.ClientOptions{})
	id, err := c.SendGroup(1<<30, []byte("to nobody"))
	if err != nil {
		t.Fatal(err)
	}
	r := recvKind[*protocol.Refuse](t, c)
	if r.MsgID != id || r.Code != protocol.CodeBadRecipient || r.Reason != "no such group" {
		t.Fatalf("REFUSE %+v, want BAD_RECIPIENT \"no such group\"", r)
	}
}
