package gateway_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"switchboard/protocol"
)

// recvKind reads events until one of type T arrives.
func recvKind[T protocol.Event](t *testing.T, c *protocol.Client) T {
	t.Helper()
	ctx := ctxFor(t, 10*time.Second)
	for {
		ev, err := c.Recv(ctx)
		if err != nil {
			var zero T
			t.Fatalf("waiting for %T: %v", zero, err)
		}
		if x, ok := ev.(T); ok {
			return x
		}
	}
}

// createGroup creates a group of owner with members and returns its id and
// the GROUP_EVENT the owner received (it may come before the ACCEPT).
func createGroup(t *testing.T, owner *protocol.Client, members ...uint64) (uint64, *protocol.GroupEvent) {
	t.Helper()
	id, err := owner.Group(protocol.Group{Op: protocol.GroupCreate, Members: members})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, 10*time.Second)
	var group uint64
	var event *protocol.GroupEvent
	for group == 0 || event == nil {
		ev, err := owner.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		switch ev := ev.(type) {
		case *protocol.Accept:
			if ev.MsgID != id || ev.Ref == 0 {
				t.Fatalf("ACCEPT of a create: %+v", ev)
			}
			group = ev.Ref
		case *protocol.GroupEvent:
			event = ev
		case *protocol.Refuse:
			t.Fatalf("create refused: %v", ev.Code)
		}
	}
	return group, event
}

func TestGroupCreateSendReceipts(t *testing.T) {
	ts := startServer(t, serverOptions{})
	owner := ts.Dial(100, protocol.ClientOptions{})
	m1 := ts.Dial(101, protocol.ClientOptions{})
	m2 := ts.Dial(102, protocol.ClientOptions{})
	outsider := ts.Dial(103, protocol.ClientOptions{})

	g, ownerEvent := createGroup(t, owner, 101, 102)
	for _, c := range []*protocol.Client{owner, m1, m2} {
		ev := ownerEvent
		if c != owner {
			ev = recvKind[*protocol.GroupEvent](t, c)
		}
		if ev.Group != g || ev.Actor != 100 || ev.Op != protocol.GroupCreate || !slices.Equal(sorted(ev.Members), []uint64{100, 101, 102}) {
			t.Fatalf("user %d: create event %+v", c.Welcome().User, ev)
		}
		if err := c.AckAll(); err != nil {
			t.Fatal(err)
		}
	}

	body := []byte("to the group")
	id, err := m1.SendGroup(g, body)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m1.WaitAccept(ctxFor(t, 10*time.Second), id); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*protocol.Client{owner, m2} {
		d := recvKind[*protocol.Deliver](t, c)
		if d.From != 101 || d.Group != g || d.MsgID != id || !bytes.Equal(d.Body, body) {
			t.Fatalf("user %d got %+v", c.Welcome().User, d)
		}
		if err := c.Ack(d.Seq); err != nil {
			t.Fatal(err)
		}
	}
	// The sender does not get its own message; it gets one delivered
	// receipt per member, each naming the member.
	by := map[uint64]bool{}
	for len(by) < 2 {
		r := recvKind[*protocol.Receipt](t, m1)
		if r.MsgID != id || r.Read || r.By == 0 {
			t.Fatalf("receipt %+v", r)
		}
		by[r.By] = true
	}
	if !by[100] || !by[102] {
		t.Fatalf("receipts by %v, want 100 and 102", by)
	}

	// A non-member may not send to the group.
	id, err = outsider.SendGroup(g, body)
	if err != nil {
		t.Fatal(err)
	}
	var refused *protocol.RefusedError
	if _, err := outsider.WaitAccept(ctxFor(t, 10*time.Second), id); !errors.As(err, &refused) || refused.Code != protocol.CodeNotMember {
		t.Fatalf("outsider's send: %v, want NOT_MEMBER", err)
	}
}

func TestGroupMembershipChanges(t *testing.T) {
	ts := startServer(t, serverOptions{})
	owner := ts.Dial(200, protocol.ClientOptions{AutoAck: true})
	m := ts.Dial(201, protocol.ClientOptions{AutoAck: true})
	late := ts.Dial(202, protocol.ClientOptions{AutoAck: true})
	g, _ := createGroup(t, owner, 201)
	recvKind[*protocol.GroupEvent](t, m)

	// A plain member may not add anyone.
	id, _ := m.Group(protocol.Group{Op: protocol.GroupAdd, Group: g, Members: []uint64{202}})
	var refused *protocol.RefusedError
	if _, err := m.WaitAccept(ctxFor(t, 10*time.Second), id); !errors.As(err, &refused) || refused.Code != protocol.CodeForbidden {
		t.Fatalf("member's add: %v, want FORBIDDEN", err)
	}
	// The owner may; the new member hears of it and receives later messages.
	id, _ = owner.Group(protocol.Group{Op: protocol.GroupAdd, Group: g, Members: []uint64{202}})
	if _, err := owner.WaitAccept(ctxFor(t, 10*time.Second), id); err != nil {
		t.Fatal(err)
	}
	if ev := recvKind[*protocol.GroupEvent](t, late); ev.Op != protocol.GroupAdd || !slices.Equal(ev.Members, []uint64{202}) {
		t.Fatalf("add event %+v", ev)
	}
	sent, _ := owner.SendGroup(g, []byte("hello all"))
	for _, c := range []*protocol.Client{m, late} {
		if d := recvKind[*protocol.Deliver](t, c); d.MsgID != sent || d.Group != g {
			t.Fatalf("delivery %+v", d)
		}
	}
	// A member who leaves gets no more messages; the others hear of it.
	id, _ = m.Group(protocol.Group{Op: protocol.GroupLeave, Group: g})
	if _, err := m.WaitAccept(ctxFor(t, 10*time.Second), id); err != nil {
		t.Fatal(err)
	}
	if ev := recvKind[*protocol.GroupEvent](t, late); ev.Op != protocol.GroupLeave || ev.Actor != 201 {
		t.Fatalf("leave event %+v", ev)
	}
	id, _ = m.SendGroup(g, []byte("still here?"))
	if _, err := m.WaitAccept(ctxFor(t, 10*time.Second), id); !errors.As(err, &refused) || refused.Code != protocol.CodeNotMember {
		t.Fatalf("send after leaving: %v, want NOT_MEMBER", err)
	}
}

func TestGroupCreateRetryFindsSameGroup(t *testing.T) {
	ts := startServer(t, serverOptions{})
	owner := ts.Dial(300, protocol.ClientOptions{AutoAck: true})
	req := protocol.Group{MsgID: 77, Op: protocol.GroupCreate, Members: []uint64{301}}
	var ids []uint64
	for range 2 {
		if _, err := owner.Group(req); err != nil {
			t.Fatal(err)
		}
		a, err := owner.WaitAccept(ctxFor(t, 10*time.Second), 77)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, a.Ref)
	}
	if ids[0] == 0 || ids[0] != ids[1] {
		t.Fatalf("a retried create answered groups %v, want the same one twice", ids)
	}
}

func sorted(s []uint64) []uint64 {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
