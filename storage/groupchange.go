package storage

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// GroupOp names a change to a group. The numbers are protocol.GroupOp's.
type GroupOp uint8

// Group changes.
const (
	GroupCreate  GroupOp = 1 // make the group; Actor owns it, Members join it
	GroupAdd     GroupOp = 2 // Members join; already-members keep their role
	GroupRemove  GroupOp = 3 // Members leave
	GroupLeave   GroupOp = 4 // Actor leaves
	GroupPromote GroupOp = 5 // Members become admins
	GroupDemote  GroupOp = 6 // admins among Members become plain members
)

// GroupChange is one GROUP request from Actor, identified by (Actor, MsgID).
type GroupChange struct {
	Group   uint64
	Actor   uint64
	MsgID   uint64
	Op      GroupOp
	Members []uint64
}

// GroupEvent announces a change that changed something. It is written in
// the change's own transaction and stays until SettleGroupEvent, so that
// its fan-out to Audience can be done again after a crash or a failure.
type GroupEvent struct {
	Group   uint64
	Actor   uint64
	MsgID   uint64
	Op      GroupOp
	Time    int64    // unix ms of the change
	Members []uint64 // whom it changed, in request order
	// Audience is everyone who was or now is a member, Actor included,
	// in id order. Each gets one copy (KindGroupEvent, Sender Actor).
	Audience []uint64
}

// checkChange is the part of ChangeGroup that needs no stored state.
func checkChange(c *GroupChange, maxMembers int) error {
	switch {
	case c.Op < GroupCreate || c.Op > GroupDemote:
		return fmt.Errorf("%w: group op %d", ErrInvalidEntry, c.Op)
	case c.Op == GroupLeave && len(c.Members) > 0:
		return fmt.Errorf("%w: leave names %d members", ErrInvalidEntry, len(c.Members))
	case len(c.Members) > maxMembers:
		return fmt.Errorf("%w: %d members named, at most %d in a group", ErrGroupFull, len(c.Members), maxMembers)
	}
	return nil
}

// applyChange applies a group change: all of it with its event and its
// dedupe record, or, when a rule refuses it, nothing. The rules, in the
// order they are checked:
//
//   - a change already made by (Actor, MsgID) is not made again; the
//     caller gets its event if that is still pending (o.dup);
//   - create: the group must not exist (ErrGroupExists), and the creator
//     and the members together must fit (ErrGroupFull);
//   - otherwise the group must exist (ErrNoGroup), Actor must be a member
//     (ErrNotMember), and add, remove, promote and demote need an admin
//     (ErrForbidden);
//   - nobody removes or demotes the owner (ErrForbidden); the owner may
//     leave, and the group then has no owner;
//   - an add that would pass MaxGroupMembers adds nobody (ErrGroupFull);
//   - members named twice, members who are not members (remove, promote,
//     demote) and members whose role would not change count once or not
//     at all; re-adding an admin keeps them an admin.
//
// A change that changes nothing is accepted and records no event.
func (s *engine) applyChange(w writer, o *op, now int64) (units, bytes int, err error) {
	c := &o.change.GroupChange
	if _, ok, err := w.dedupe(c.Actor, c.MsgID, c.Group); err != nil {
		return 0, 0, err
	} else if ok {
		ev, found, err := w.groupEvent(c.Actor, c.MsgID)
		if err != nil {
			return 0, 0, err
		}
		o.change.dup = true
		if found {
			o.change.event = &ev
		}
		return 1, 0, nil
	}
	if s.diskLow() {
		o.err = fmt.Errorf("%w: %d bytes free, floor %d", ErrDiskFull, s.disk.free, s.disk.floor)
		s.stats.refusedDiskFull.Add(1)
		return 1, 0, nil
	}
	gi, exists, err := w.group(c.Group)
	if err != nil {
		return 0, 0, err
	}
	before := map[uint64]Role{}
	if exists {
		if err := w.members(c.Group, func(m Member) bool { before[m.ID] = m.Role; return true }); err != nil {
			return 0, 0, err
		}
	}
	after, changed, refusal := s.changeRules(c, exists, gi, before)
	if refusal != nil {
		o.err = refusal
		return 1, 0, nil
	}
	if c.Op == GroupCreate {
		gi = groupInfo{owner: c.Actor, created: now}
	}
	if gi.owner != 0 && after[gi.owner] != RoleOwner {
		gi.owner = 0 // the owner left
	}
	gi.members = len(after)
	if err := w.putGroup(c.Group, gi); err != nil {
		return 0, 0, err
	}
	writes := 1
	for _, m := range changed {
		role, stays := after[m]
		if stays {
			err = w.putMember(c.Group, m, role)
		} else {
			err = w.delMember(c.Group, m)
		}
		if err != nil {
			return 0, 0, err
		}
		writes++
	}
	if err := w.putDedupe(c.Actor, c.MsgID, Dup{Recipient: c.Group, Time: now}, s.dedupeMs/1000+3600); err != nil {
		return 0, 0, err
	}
	if len(changed) > 0 {
		ev := GroupEvent{Group: c.Group, Actor: c.Actor, MsgID: c.MsgID, Op: c.Op, Time: now, Members: changed}
		for m := range before {
			ev.Audience = append(ev.Audience, m)
		}
		for m := range after {
			if _, ok := before[m]; !ok {
				ev.Audience = append(ev.Audience, m)
			}
		}
		slices.Sort(ev.Audience)
		if err := w.putGroupEvent(&ev); err != nil {
			return 0, 0, err
		}
		o.change.event = &ev
		writes++
	}
	return writes + 1, 0, nil
}

// changeRules returns the membership after c, and whom it changes in the
// order c names them, or why c is refused.
func (s *engine) changeRules(c *GroupChange, exists bool, gi groupInfo, before map[uint64]Role) (after map[uint64]Role, changed []uint64, refusal error) {
	if c.Op == GroupCreate {
		if exists {
			return nil, nil, fmt.Errorf("%w: %d", ErrGroupExists, c.Group)
		}
	} else {
		actor, member := before[c.Actor]
		switch {
		case !exists:
			return nil, nil, fmt.Errorf("%w: %d", ErrNoGroup, c.Group)
		case !member:
			return nil, nil, fmt.Errorf("%w: %d in group %d", ErrNotMember, c.Actor, c.Group)
		case c.Op != GroupLeave && actor < RoleAdmin:
			return nil, nil, fmt.Errorf("%w: %d is not an admin of group %d", ErrForbidden, c.Actor, c.Group)
		}
	}
	after = make(map[uint64]Role, len(before)+len(c.Members))
	for m, r := range before {
		after[m] = r
	}
	set := func(m uint64, role Role, stays bool) {
		if was, ok := after[m]; (ok == stays && was == role) || (!ok && !stays) {
			return
		}
		if stays {
			after[m] = role
		} else {
			delete(after, m)
		}
		if !slices.Contains(changed, m) {
			changed = append(changed, m)
		}
	}
	switch c.Op {
	case GroupCreate:
		set(c.Actor, RoleOwner, true)
		for _, m := range c.Members {
			if m != c.Actor {
				set(m, RoleMember, true)
			}
		}
	case GroupLeave:
		set(c.Actor, 0, false)
	default:
		for _, m := range c.Members {
			role, member := after[m]
			if role == RoleOwner && (c.Op == GroupRemove || c.Op == GroupDemote) {
				return nil, nil, fmt.Errorf("%w: %d owns group %d", ErrForbidden, m, c.Group)
			}
			switch {
			case c.Op == GroupAdd && !member:
				set(m, RoleMember, true)
			case c.Op == GroupRemove && member:
				set(m, 0, false)
			case c.Op == GroupPromote && role == RoleMember:
				set(m, RoleAdmin, true)
			case c.Op == GroupDemote && role == RoleAdmin:
				set(m, RoleMember, true)
			}
		}
	}
	if len(after) > s.cfg.MaxGroupMembers && len(after) > len(before) {
		return nil, nil, fmt.Errorf("%w: group %d would have %d members, at most %d", ErrGroupFull, c.Group, len(after), s.cfg.MaxGroupMembers)
	}
	return after, changed, nil
}

// The pending group event record, under 'e' actor(8) msgid(8):
//
//	group(8) op(1) time(8) changed(4) changed×member(8) audience×member(8)
const (
	groupEventKeyLen  = 17
	groupEventHeadLen = 21
)

func groupEventKey(actor, msgID uint64) []byte {
	k := make([]byte, groupEventKeyLen)
	k[0] = prefixGroupEvent
	binary.BigEndian.PutUint64(k[1:], actor)
	binary.BigEndian.PutUint64(k[9:], msgID)
	return k
}

func encodeGroupEvent(ev *GroupEvent) []byte {
	v := make([]byte, groupEventHeadLen, groupEventHeadLen+8*(len(ev.Members)+len(ev.Audience)))
	binary.BigEndian.PutUint64(v[0:], ev.Group)
	v[8] = byte(ev.Op)
	binary.BigEndian.PutUint64(v[9:], uint64(ev.Time))
	binary.BigEndian.PutUint32(v[17:], uint32(len(ev.Members)))
	for _, m := range ev.Members {
		v = binary.BigEndian.AppendUint64(v, m)
	}
	for _, m := range ev.Audience {
		v = binary.BigEndian.AppendUint64(v, m)
	}
	return v
}

func decodeGroupEvent(k, v []byte) (GroupEvent, error) {
	if len(k) != groupEventKeyLen || len(v) < groupEventHeadLen || (len(v)-groupEventHeadLen)%8 != 0 {
		return GroupEvent{}, errCorrupt
	}
	n := int(binary.BigEndian.Uint32(v[17:]))
	ids := v[groupEventHeadLen:]
	if n > len(ids)/8 {
		return GroupEvent{}, errCorrupt
	}
	list := func(b []byte) []uint64 {
		out := make([]uint64, len(b)/8)
		for i := range out {
			out[i] = be64(b[8*i:])
		}
		return out
	}
	return GroupEvent{
		Actor: be64(k[1:]), MsgID: be64(k[9:]),
		Group: be64(v[0:]), Op: GroupOp(v[8]), Time: int64(be64(v[9:])),
		Members: list(ids[:8*n]), Audience: list(ids[8*n:]),
	}, nil
}
