package client_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"switchboard/client"
	"switchboard/protocol"
)

// nextFrame returns the next frame the client wrote other than an ACK or a
// PING, its payload copied.
func (fc *fakeConn) nextFrame(t *testing.T) protocol.Frame {
	t.Helper()
	fc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer fc.nc.SetReadDeadline(time.Time{})
	for {
		f, err := fc.fr.Next()
		if err != nil {
			t.Fatalf("waiting for a frame: %v", err)
		}
		if f.Type != protocol.TypeAck && f.Type != protocol.TypePing {
			f.Payload = append([]byte(nil), f.Payload...)
			return f
		}
	}
}

// TestConnQueueAndReadChecks: Queue and Read refuse, before anything is
// written, what a server would close the connection for (a msg id or user
// 0, a body over the limit, a READ of more than MaxReadIDs ids or past the
// last msg id), and write the largest requests a server takes exactly as
// asked: the first frames the server sees are the valid SEND, then the
// valid READ.
func TestConnQueueAndReadChecks(t *testing.T) {
	fs := newFakeServer(t)
	c, fc := dialFake(t, fs, client.Options{}, func(fc *fakeConn) { fc.welcome(t) })
	for _, tc := range []struct {
		name string
		o    client.Outgoing
	}{
		{"msg id 0", client.Outgoing{MsgID: 0, To: 9, Body: []byte("x")}},
		{"user 0", client.Outgoing{MsgID: 30, To: 0, Body: []byte("x")}},
		{"a body over the limit", client.Outgoing{MsgID: 30, To: 9, Body: make([]byte, protocol.MaxBody+1)}},
		{"a leave naming members", client.Outgoing{MsgID: 30, To: 5, Op: protocol.GroupLeave, Members: []uint64{2}}},
		{"an op past the last", client.Outgoing{MsgID: 30, To: 5, Op: protocol.GroupDemote + 1, Members: []uint64{2}}},
	} {
		if err := c.Queue(tc.o); err == nil {
			t.Errorf("Queue of %s: no error", tc.name)
		}
	}
	for _, tc := range []struct {
		name              string
		from, msgID, more uint64
	}{
		{"from user 0", 0, 1, 0},
		{"msg id 0", 12, 0, 0},
		{"MaxReadIDs + 1 ids", 12, 1, client.MaxReadIDs},
		{"ids past the last", 12, math.MaxUint64, 1},
	} {
		if err := c.Read(tc.from, false, tc.msgID, tc.more); err == nil {
			t.Errorf("Read of %s: no error", tc.name)
		}
	}
	if c.Pending() != 0 || c.NextMsgID() != 1 {
		t.Fatalf("refused requests left %d pending, next msg id %d; want 0, 1", c.Pending(), c.NextMsgID())
	}

	big := client.Outgoing{MsgID: 30, To: 9, Body: make([]byte, protocol.MaxBody)}
	if err := c.Queue(big); err != nil {
		t.Fatalf("Queue of a %d-byte body: %v", len(big.Body), err)
	}
	if err := c.Queue(client.Outgoing{MsgID: 30, To: 9, Body: []byte("again")}); !errors.Is(err, client.ErrMsgIDOrder) {
		t.Fatalf("Queue of msg id 30 twice: %v, want ErrMsgIDOrder", err)
	}
	if err := c.Read(12, true, 5, client.MaxReadIDs-1); err != nil {
		t.Fatalf("Read of %d ids: %v", client.MaxReadIDs, err)
	}
	var s protocol.Send
	if f := fc.nextFrame(t); f.Type != protocol.TypeSend || s.Decode(f) != nil ||
		s.MsgID != big.MsgID || s.To != big.To || s.Retry || len(s.Body) != len(big.Body) {
		t.Fatalf("first frame %v %+v, want SEND msg %d to %d of %d bytes without flag B", f.Type, s, big.MsgID, big.To, len(big.Body))
	}
	var r protocol.Read
	want := protocol.Read{To: 12, MsgID: 5, More: client.MaxReadIDs - 1, Group: true}
	if f := fc.nextFrame(t); f.Type != protocol.TypeRead || r.Decode(f) != nil || r != want {
		t.Fatalf("second frame %v %+v, want READ %+v", f.Type, r, want)
	}
	if got := c.NextMsgID(); got != 31 {
		t.Fatalf("NextMsgID %d after Queue of msg 30, want 31", got)
	}
}

// TestStateString: each State names itself for a status line, and a value
// outside them says so.
func TestStateString(t *testing.T) {
	for s, want := range map[client.State]string{
		client.StateOffline:    "offline",
		client.StateLogin:      "logging in",
		client.StateResuming:   "resuming",
		client.StateCaughtUp:   "caught up",
		client.StateClosed:     "closed",
		client.StateClosed + 1: "unknown",
	} {
		if got := s.String(); got != want {
			t.Errorf("State(%d).String() = %q, want %q", s, got, want)
		}
	}
}

// TestConnQueueRefusesAnAcceptedID: once msg 30 is accepted and gone from
// the outbox, Queue still refuses 30 and any id below the counter: an id is
// never used twice (PROTOCOL.md 8.5), or the server's dedupe would drop the
// new message as a retry of the old one.
func TestConnQueueRefusesAnAcceptedID(t *testing.T) {
	fs := newFakeServer(t)
	c, fc := dialFake(t, fs, client.Options{}, func(fc *fakeConn) { fc.welcome(t) })
	if err := c.Queue(client.Outgoing{MsgID: 30, To: 9, Body: []byte("first")}); err != nil {
		t.Fatal(err)
	}
	if s := fc.send(t); s.MsgID != 30 {
		t.Fatalf("SEND msg %d, want 30", s.MsgID)
	}
	fc.write(t, (&protocol.Accept{MsgID: 30}).Append(nil))
	next[*protocol.Accept](t, c, nil)
	if n := c.Pending(); n != 0 {
		t.Fatalf("%d pending after ACCEPT 30, want 0", n)
	}
	for _, id := range []uint64{30, 29} {
		if err := c.Queue(client.Outgoing{MsgID: id, To: 9, Body: []byte("again")}); !errors.Is(err, client.ErrMsgIDOrder) {
			t.Errorf("Queue of msg id %d after 30 was accepted: %v, want ErrMsgIDOrder", id, err)
		}
	}
	if n := c.Pending(); n != 0 {
		t.Fatalf("%d pending after refused Queues, want 0", n)
	}
}
