package chat

import (
	"fmt"
	"slices"

	"switchboard/client"
	"switchboard/protocol"
)

// events applies what the connection received, saves once, and only then
// lets the ACK of the entries among them go.
func (m *Model) events(evs EventsMsg) {
	var top client.Event // the entry with the highest seq, new or not
	var topSeq uint64
	changed := false
	for _, ev := range evs {
		if seq := client.EntrySeq(ev); seq > topSeq {
			top, topSeq = ev, seq
		}
		switch ev := ev.(type) {
		case *protocol.Deliver:
			if m.entry(ev.Seq) {
				m.deliver(ev)
				changed = true
			}
		case *protocol.Receipt:
			if m.entry(ev.Seq) {
				m.receipt(ev)
				changed = true
			}
		case *protocol.GroupEvent:
			if m.entry(ev.Seq) {
				m.groupEvent(ev)
				changed = true
			}
		case *protocol.Accept:
			m.accept(ev)
			changed = true
		case *protocol.Refuse:
			m.refuse(ev)
			changed = true
		case *protocol.Signal:
			m.signal(ev)
		case *client.Reconnected:
			m.markRead() // READs written while offline went nowhere
		}
	}
	if changed {
		m.markRead()
		if !m.save() {
			return // nothing is acknowledged that is not saved
		}
	}
	// An entry saved before (redelivered after a reconnect lost its ACK) is
	// acknowledged too: the connection's resume point would stay behind,
	// and the status at resuming, until a new entry came.
	if top != nil {
		m.cfg.Link.Processed(top)
	}
}

// entry reports whether the mailbox entry seq is new, and moves the resume
// point to it.
func (m *Model) entry(seq uint64) bool {
	if seq <= m.st.Resume {
		return false // a redelivery of what is saved already
	}
	m.st.Resume = seq
	return true
}

func (m *Model) deliver(d *protocol.Deliver) {
	key := userKey(d.From)
	if d.Group != 0 {
		key = groupKey(d.Group)
	}
	c := m.st.conversation(key)
	for i := range c.Lines {
		if l := &c.Lines[i]; !l.Notice && l.From == d.From && l.MsgID == d.MsgID {
			return // a resend stored twice (PROTOCOL.md 8.5): shown once
		}
	}
	t := m.cfg.Now().Unix()
	if d.Time != 0 {
		t = protocol.StampTime(d.Time).Unix()
	}
	c.add(Line{Time: t, From: d.From, MsgID: d.MsgID, Text: string(d.Body), Unread: true}, m.cfg.History)
	m.added(key)
	if d.Group != 0 && !slices.Contains(c.Members, d.From) {
		c.Members = append(c.Members, d.From)
	}
	delete(m.typing, typist{key, d.From})
}

// receipt marks this user's messages delivered, read or expired. A sender
// applies a read receipt only to messages it sent to its reader, or to a
// group the reader is in (PROTOCOL.md, READ).
func (m *Model) receipt(r *protocol.Receipt) {
	lo, hi := r.MsgID, r.MsgID+r.More
	for key, c := range m.st.Conversations {
		peer, group, ok := peerOf(key)
		switch {
		case !ok:
			continue
		case !group && r.By != 0 && peer != r.By:
			continue // another user's receipt
		case group && r.By == 0:
			continue // a delivered 1:1 receipt
		case group && r.Read && !slices.Contains(c.Members, r.By):
			continue // a reader not known to be in the group
		}
		by := r.By
		if by == 0 {
			by = peer
		}
		hit := false
		for i := range c.Lines {
			l := &c.Lines[i]
			if !l.Mine || l.MsgID < lo || l.MsgID > hi {
				continue
			}
			hit = true
			switch {
			case r.Expired:
				if !slices.Contains(l.Delivery, by) {
					l.Failed = fmt.Sprintf("not fetched by %s in time", m.name(by))
				}
			case r.Read:
				l.ReadBy = addID(l.ReadBy, by)
				l.Delivery = addID(l.Delivery, by)
				l.Failed = ""
			default:
				l.Delivery = addID(l.Delivery, by)
				l.Failed = "" // the better news wins (PROTOCOL.md 8.3)
			}
			l.Accepted = true
		}
		if hit && group && !r.Read && !slices.Contains(c.Gone, by) {
			// The server said by got it: a member this user saw no event
			// for. A receipt for what went before a removal comes after
			// it, so a member known to have gone stays gone.
			c.Members = addID(c.Members, by)
		}
	}
}

// join and part follow a group's events: id is a member, or has gone.
func (c *Conversation) join(id uint64) {
	c.Members = addID(c.Members, id)
	c.Gone = slices.DeleteFunc(c.Gone, func(g uint64) bool { return g == id })
}

func (c *Conversation) part(id uint64) {
	c.Members = slices.DeleteFunc(c.Members, func(m uint64) bool { return m == id })
	if !slices.Contains(c.Gone, id) && len(c.Gone) < protocol.MaxGroupMembers {
		c.Gone = append(c.Gone, id)
	}
}

func addID(ids []uint64, id uint64) []uint64 {
	if slices.Contains(ids, id) {
		return ids
	}
	return append(ids, id)
}

func (m *Model) groupEvent(g *protocol.GroupEvent) {
	c := m.st.conversation(groupKey(g.Group))
	var what string
	switch g.Op {
	case protocol.GroupCreate:
		c.Members, c.Gone = nil, nil
		for _, id := range g.Members {
			c.join(id)
		}
		c.join(g.Actor)
		what = "created the group with " + m.names(g.Members)
	case protocol.GroupAdd:
		for _, id := range g.Members {
			c.join(id)
		}
		c.join(g.Actor)
		what = "added " + m.names(g.Members)
	case protocol.GroupRemove:
		for _, id := range g.Members {
			c.part(id)
		}
		what = "removed " + m.names(g.Members)
	case protocol.GroupLeave:
		c.part(g.Actor)
		what = "left"
	case protocol.GroupPromote:
		what = "made " + m.names(g.Members) + " admin"
	case protocol.GroupDemote:
		what = "made " + m.names(g.Members) + " a plain member"
	}
	t := m.cfg.Now().Unix()
	if g.Time != 0 {
		t = protocol.StampTime(g.Time).Unix()
	}
	c.add(Line{Time: t, From: g.Actor, Text: what, Notice: true}, m.cfg.History)
	m.added(groupKey(g.Group))
	joined := (g.Op == protocol.GroupCreate || g.Op == protocol.GroupAdd) && slices.Contains(g.Members, m.cfg.User)
	if joined && g.Actor != m.cfg.User && m.st.Open != groupKey(g.Group) {
		m.say(fmt.Sprintf("%d added you to group %d: /group %d opens it", g.Actor, g.Group, g.Group))
	}
}

func (m *Model) accept(a *protocol.Accept) {
	for id := a.MsgID; id-a.MsgID <= a.More; id++ {
		p, ok := m.dropOutbox(id)
		if !ok {
			continue // a repeat
		}
		if p.Op == 0 {
			m.mark(p, func(l *Line) { l.Accepted = true })
			continue
		}
		if p.Op == protocol.GroupCreate && a.Ref != 0 {
			key := groupKey(a.Ref)
			c := m.st.conversation(key)
			c.Members = addID(c.Members, m.cfg.User)
			for _, id := range p.Members {
				c.Members = addID(c.Members, id)
			}
			if m.st.Open == p.Over {
				m.st.Open, m.scroll = key, 0
				m.say(fmt.Sprintf("group %d created", a.Ref))
			} else {
				// Another conversation was opened since: the next Enter
				// must not go to the group unannounced.
				m.say(fmt.Sprintf("group %d created: /group %d opens it", a.Ref, a.Ref))
			}
		}
	}
}

func (m *Model) refuse(r *protocol.Refuse) {
	if r.RetryAfter > 0 {
		m.say(fmt.Sprintf("server busy (%v): message %d goes again in %d ms", r.Code, r.MsgID, r.RetryAfter))
		return
	}
	p, ok := m.dropOutbox(r.MsgID)
	if !ok {
		return
	}
	if p.Op == protocol.GroupCreate && r.Code == protocol.CodeRetryLater {
		// The group id derived from this msg_id is another creator's
		// (PROTOCOL.md 8.6): the same create goes again under a new one.
		// queue's notice, if it cannot, replaces this one.
		m.say(fmt.Sprintf("group create %d asked again as %d", p.MsgID, m.st.NextMsgID))
		m.queue(Pending{Op: p.Op, Members: p.Members, Over: p.Over}, "")
		return
	}
	why := r.Code.String()
	if r.Reason != "" {
		why += ": " + r.Reason
	}
	m.failed(p, why)
}

// failed shows that p was refused for good.
func (m *Model) failed(p Pending, why string) {
	if p.Op == 0 {
		m.mark(p, func(l *Line) { l.Failed = why })
		return
	}
	m.say(fmt.Sprintf("group request refused: %s", why))
}

// mark applies f to the line of the message p.
func (m *Model) mark(p Pending, f func(*Line)) {
	key := userKey(p.To)
	if p.Group {
		key = groupKey(p.To)
	}
	c := m.st.Conversations[key]
	if c == nil {
		return
	}
	for i := len(c.Lines) - 1; i >= 0; i-- {
		if l := &c.Lines[i]; l.Mine && l.MsgID == p.MsgID {
			f(l)
			return
		}
	}
}

// dropOutbox takes msg_id id out of the outbox.
func (m *Model) dropOutbox(id uint64) (Pending, bool) {
	i := slices.IndexFunc(m.st.Outbox, func(p Pending) bool { return p.MsgID == id })
	if i < 0 {
		return Pending{}, false
	}
	p := m.st.Outbox[i]
	m.st.Outbox = slices.Delete(m.st.Outbox, i, i+1)
	return p, true
}

func (m *Model) signal(s *protocol.Signal) {
	key := userKey(s.Peer)
	if s.Group != 0 {
		key = groupKey(s.Group)
	}
	if s.Kind == protocol.SignalTyping {
		m.typing[typist{key, s.Peer}] = m.cfg.Now()
	} else {
		delete(m.typing, typist{key, s.Peer})
	}
	// Old entries go: the map holds what the screen may still show.
	for k, at := range m.typing {
		if m.cfg.Now().Sub(at) > TypingShown {
			delete(m.typing, k)
		}
	}
}

// markRead tells the senders of the open conversation's unread messages
// that they are read, unless the conversation is scrolled back: a READ per run of consecutive msg_ids of one sender.
// A READ that cannot go (offline) is tried again at the next chance.
func (m *Model) markRead() {
	_, group, ok := peerOf(m.st.Open)
	c := m.st.Conversations[m.st.Open]
	if !ok || c == nil || m.scroll > 0 {
		return // what is below the screen is not read yet
	}
	for i := 0; i < len(c.Lines); {
		l := c.Lines[i]
		if !l.Unread {
			i++
			continue
		}
		// The run: lines i…j-1, unread, from l.From, msg ids following on.
		j := i + 1
		for j < len(c.Lines) && c.Lines[j].Unread && c.Lines[j].From == l.From &&
			c.Lines[j].MsgID == l.MsgID+uint64(j-i) && j-i < client.MaxReadIDs {
			j++
		}
		if m.cfg.Link.Read(l.From, group, l.MsgID, uint64(j-i-1)) == nil {
			for k := i; k < j; k++ {
				c.Lines[k].Unread = false
			}
		}
		i = j
	}
}
