package protocol

import (
	"encoding/binary"
	"fmt"
)

// GroupOp names a change to a group, in GROUP requests and GROUP_EVENT entries.
type GroupOp uint8

// Group operations.
const (
	GroupCreate  GroupOp = 1 // create a group; the members listed join it, the creator is its admin
	GroupAdd     GroupOp = 2 // add members (admin only)
	GroupRemove  GroupOp = 3 // remove members (admin only)
	GroupLeave   GroupOp = 4 // the sender leaves (no members listed)
	GroupPromote GroupOp = 5 // make members admins (admin only)
	GroupDemote  GroupOp = 6 // make admins plain members (admin only)

	groupOpMax = GroupDemote
)

// MaxGroupMembers is the most member ids one GROUP request or GROUP_EVENT lists.
const MaxGroupMembers = 1024

// Group is a request to change a group (GROUP, 0x0C), answered with ACCEPT
// (Ref = the new group's id for GroupCreate) or REFUSE.
//
//	msg_id varint | op byte | group varint | member varint …  (to the end)
//
// MsgID shares the sender's message id space, so a retried request is
// recognised. Group is 0 for GroupCreate.
type Group struct {
	MsgID   uint64
	Op      GroupOp
	Group   uint64
	Members []uint64 // Decode reuses its backing array
}

// Append appends g as a frame.
func (g *Group) Append(dst []byte) []byte {
	n := uvarintLen(g.MsgID) + 1 + uvarintLen(g.Group) + membersLen(g.Members)
	dst = appendHeader(dst, TypeGroup, 0, n)
	dst = binary.AppendUvarint(dst, g.MsgID)
	dst = append(dst, byte(g.Op))
	dst = binary.AppendUvarint(dst, g.Group)
	return appendMembers(dst, g.Members)
}

// Decode fills g from f, which must be an uncompressed GROUP frame.
func (g *Group) Decode(f Frame) error {
	if f.Has(FlagCompressed) {
		return errCompressed
	}
	r := reader{b: f.Payload}
	g.MsgID = r.id("msg_id")
	g.Op = readOp(&r)
	g.Group = r.uvarint()
	if r.err == nil && (g.Group == 0) != (g.Op == GroupCreate) {
		r.err = fmt.Errorf("%w: group id %d with op %d", ErrMalformed, g.Group, g.Op)
	}
	g.Members = readMembers(&r, g.Members[:0])
	return r.err
}

// GroupEvent is a change to a group, an entry in each member's mailbox
// (GROUP_EVENT, 0x0D).
//
//	seq varint | group varint | actor varint | op byte | [time varint, if FlagB] |
//	member varint …  (to the end)
type GroupEvent struct {
	Seq     uint64
	Group   uint64
	Actor   uint64 // who made the change
	Op      GroupOp
	Time    uint32   // Stamp of the change; 0: absent
	Members []uint64 // who was added, removed…; Decode reuses its backing array
}

// Append appends g as a frame.
func (g *GroupEvent) Append(dst []byte) []byte {
	flags, n := g.shape()
	dst = appendHeader(dst, TypeGroupEvent, flags, uvarintLen(g.Seq)+n)
	dst = binary.AppendUvarint(dst, g.Seq)
	return g.appendFields(dst)
}

func (g *GroupEvent) shape() (flags byte, n int) {
	n = uvarintLen(g.Group) + uvarintLen(g.Actor) + 1 + membersLen(g.Members)
	if g.Time != 0 {
		flags |= FlagB
		n += uvarintLen(uint64(g.Time))
	}
	return flags, n
}

func (g *GroupEvent) appendFields(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, g.Group)
	dst = binary.AppendUvarint(dst, g.Actor)
	dst = append(dst, byte(g.Op))
	if g.Time != 0 {
		dst = binary.AppendUvarint(dst, uint64(g.Time))
	}
	return appendMembers(dst, g.Members)
}

// Decode fills g from f, which must be an uncompressed GROUP_EVENT frame.
func (g *GroupEvent) Decode(f Frame) error {
	if f.Has(FlagCompressed) {
		return errCompressed
	}
	r := reader{b: f.Payload}
	g.Seq = r.id("seq")
	g.decodeFields(&r, f.Flags)
	return r.err
}

func (g *GroupEvent) decodeFields(r *reader, flags byte) {
	g.Group = r.id("group")
	g.Actor = r.id("actor")
	g.Op = readOp(r)
	g.Time = 0
	if flags&FlagB != 0 {
		g.Time = r.id32("time")
	}
	g.Members = readMembers(r, g.Members[:0])
}

func readOp(r *reader) GroupOp {
	op := GroupOp(r.byte1())
	if r.err == nil && (op == 0 || op > groupOpMax) {
		r.err = fmt.Errorf("%w: group op %d", ErrMalformed, op)
	}
	return op
}

func membersLen(m []uint64) int {
	n := 0
	for _, id := range m {
		n += uvarintLen(id)
	}
	return n
}

func appendMembers(dst []byte, m []uint64) []byte {
	for _, id := range m {
		dst = binary.AppendUvarint(dst, id)
	}
	return dst
}

func readMembers(r *reader, m []uint64) []uint64 {
	for r.more() {
		if len(m) == MaxGroupMembers {
			r.err = fmt.Errorf("%w: more than %d members", ErrMalformed, MaxGroupMembers)
			break
		}
		m = append(m, r.id("member"))
	}
	return m
}
