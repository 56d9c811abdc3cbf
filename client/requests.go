package client

import (
	"errors"
	"fmt"
	"slices"

	"switchboard/protocol"
)

// ErrNotConnected is returned by Read and Signal while the Conn has no
// connection: neither is kept for the next one (a SIGNAL is never retried,
// PROTOCOL.md 8.7; the caller decides whether a READ is worth sending again
// after Reconnected).
var ErrNotConnected = errors.New("client: not connected")

// MaxReadIDs is the most msg ids one READ covers (more + 1):
// protocol.MaxReadIDs; a READ over it closes the connection with ERROR
// PROTOCOL.
const MaxReadIDs = protocol.MaxReadIDs

// Outgoing is one entry of the outbox, as an application persists it and
// hands it back in Options.Outbox: a SEND, or a GROUP request when Op is
// not 0.
type Outgoing struct {
	MsgID uint64
	// To is the recipient user, or the group when Group is set; for a GROUP
	// request, the group (0 for a create).
	To    uint64
	Group bool
	Body  []byte
	// Op and Members make it a GROUP request (PROTOCOL.md 8.6).
	Op      protocol.GroupOp
	Members []uint64
}

// check reports what is wrong with o as a request a server would take, with
// bodies of at most maxBody bytes, or nil.
func (o *Outgoing) check(maxBody int) error {
	switch {
	case o.MsgID == 0:
		return errors.New("client: msg id 0")
	case len(o.Body) > maxBody:
		return fmt.Errorf("client: body of %d bytes, over %d", len(o.Body), maxBody)
	case o.Op == 0:
		if o.To == 0 {
			return errors.New("client: a message to user or group 0")
		}
		return nil
	case o.Op > protocol.GroupDemote:
		return fmt.Errorf("client: group op %d", o.Op)
	case (o.To == 0) != (o.Op == protocol.GroupCreate):
		return fmt.Errorf("client: group %d with op %d: a create names no group, every other op one", o.To, o.Op)
	case o.Op == protocol.GroupLeave && len(o.Members) > 0:
		return errors.New("client: a leave names no members")
	case len(o.Members) > protocol.MaxGroupMembers:
		return fmt.Errorf("client: %d members, over %d", len(o.Members), protocol.MaxGroupMembers)
	case o.Op != protocol.GroupCreate && o.Op != protocol.GroupLeave && len(o.Members) == 0:
		return fmt.Errorf("client: group op %d names no members", o.Op)
	}
	return nil
}

func (o *Outgoing) msg() outMsg {
	return outMsg{to: o.To, group: o.Group, body: slices.Clone(o.Body), op: o.Op, mem: slices.Clone(o.Members)}
}

// restore puts o in the outbox as possibly written before (flag B). Dial
// calls it before the Conn's goroutines start.
func (c *Conn) restore(o Outgoing) error {
	// Before a WELCOME the server's limit is not known: a body it takes
	// no more of is refused for good at the next login (failLargestLocked),
	// not here, where it would refuse every Dial. Over Noise the seal's
	// limit holds whatever the server says.
	limit := protocol.MaxBody
	if c.opts.Noise != nil {
		limit = MaxNoiseBody
	}
	if err := o.check(limit); err != nil {
		return err
	}
	if err := c.sess.Add(o.MsgID, true); err != nil {
		return fmt.Errorf("%w: restored msg id %d", err, o.MsgID)
	}
	c.bodies[o.MsgID] = o.msg()
	return nil
}

// Queue puts o in the outbox under the msg_id the application chose and
// writes it if the session lets it go now: for an application that owns the
// msg_id counter and persists each message (and the counter past it) before
// it goes (PROTOCOL.md 8.5). o.MsgID must be at least NextMsgID
// (ErrMsgIDOrder otherwise: an id is never used twice); the counter moves
// past it. Its ACCEPT or REFUSE comes from Recv, as for Send. o is copied.
func (c *Conn) Queue(o Outgoing) error {
	if err := o.check(c.maxBody()); err != nil {
		return err
	}
	_, err := c.enqueue(o.MsgID, o.msg())
	return err
}

// Group queues a GROUP request (PROTOCOL.md 8.6) under the next msg_id and
// returns the id: its ACCEPT (Ref = the group's id, the new one's for a
// create) or REFUSE comes from Recv. group is 0 exactly for
// protocol.GroupCreate; a leave names no members, every other op at least
// one. Like a message, the request stays in the outbox and goes again,
// unchanged (GROUP has no flag B), after a reconnect or a retry_after. A
// create refused with RETRY_LATER and retry_after 0 left the outbox: the
// group id its msg_id derives is another creator's, so call Group again,
// which takes a new msg_id (PROTOCOL.md 8.6).
func (c *Conn) Group(op protocol.GroupOp, group uint64, members ...uint64) (msgID uint64, err error) {
	o := Outgoing{MsgID: 1, To: group, Op: op, Members: members}
	if op == 0 {
		return 0, errors.New("client: group op 0")
	}
	if err := o.check(c.maxBody()); err != nil {
		return 0, err
	}
	return c.enqueue(0, o.msg())
}

// Read tells from that the user read from's messages msgID … msgID+more
// (sent to a group when group is set): the server stores a read receipt in
// from's mailbox (PROTOCOL.md, READ). more is below MaxReadIDs.
// READ has no answer; one written on a connection that then drops may be
// lost, and ErrNotConnected means it was not written at all.
func (c *Conn) Read(from uint64, group bool, msgID, more uint64) error {
	switch {
	case from == 0 || msgID == 0:
		return errors.New("client: READ of user or msg id 0")
	case more >= MaxReadIDs:
		return fmt.Errorf("client: READ of %d ids, over %d", more+1, MaxReadIDs)
	case msgID+more < msgID:
		return errors.New("client: READ past the last msg id")
	}
	r := protocol.Read{To: from, MsgID: msgID, More: more, Group: group}
	return c.writeNow(r.Append)
}

// Signal sends an ephemeral notice (protocol.SignalTyping…) to user to, or
// with to 0 to the members of group (PROTOCOL.md 8.7): exactly one of them
// is not 0. It is never stored nor retried: ErrNotConnected means it went
// nowhere. Send one every few seconds at most.
func (c *Conn) Signal(to, group uint64, kind uint32) error {
	if (to == 0) == (group == 0) {
		return errors.New("client: a SIGNAL is for a user or a group, exactly one")
	}
	s := protocol.Signal{Peer: to, Kind: kind, Group: group}
	return c.writeNow(s.Append)
}

// writeNow writes the frame appendFn makes if the session is logged in.
func (c *Conn) writeNow(appendFn func([]byte) []byte) error {
	select {
	case <-c.ended:
		return c.cause
	default:
	}
	defer c.writeOut()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nc == nil || !c.sess.Ready() {
		return ErrNotConnected
	}
	c.queueLocked(appendFn(c.out))
	return nil
}

// Processed records that the application stored ev (and every entry Recv
// returned before it), with Options.ManualAck: the resume point moves to
// its seq and the ACK is owed (coalesced as Session.Processed says). Events
// that are not mailbox entries change nothing. Call it in the order Recv
// returned the events; without ManualAck, Recv already did.
func (c *Conn) Processed(ev Event) { c.processed(ev) }

// Outbox returns the messages and GROUP requests not yet ACCEPTed nor
// refused for good, in msg_id order: with NextMsgID and Resume, what the
// application persists to hand back in Options. The result is a copy.
func (c *Conn) Outbox() []Outgoing {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Outgoing
	c.sess.Outbox(func(id uint64) bool {
		m := c.bodies[id]
		out = append(out, Outgoing{MsgID: id, To: m.to, Group: m.group, Body: slices.Clone(m.body), Op: m.op, Members: slices.Clone(m.mem)})
		return true
	})
	return out
}
