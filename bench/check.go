package bench

import (
	"fmt"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"switchboard/home"
	"switchboard/protocol"
)

// The correctness checks. A sender's conn keeps every message it sent
// until it is accepted, delivered to every recipient, and each delivered
// copy's receipt has come back; the receiver, on the same loop, checks
// each delivery against it (receipts.go checks the receipts).

// groupApart reports whether group id's home node, on a cluster of nodes
// nodes, is none of the nodes unit u's members are homed on.
func groupApart(u *unit, id uint64, nodes int) bool {
	ids := make([]uint32, nodes) // once per group created: not a hot path
	for i := range ids {
		ids[i] = uint32(i + 1)
	}
	h := int(home.Of(id, ids)) - 1
	for _, c := range u.conns {
		if c.home == h {
			return false
		}
	}
	return true
}

// deliver checks one delivered message: new for this receiver, in order
// for its sender, and one of this run's.
func (c *conn) deliver(d *protocol.Deliver) {
	l := c.l
	if d.Seq <= c.lastSeq {
		l.res.Redelivered++
		return
	}
	c.lastSeq = d.Seq
	b := d.Body
	if len(b) < bodyHeaderLen || be64(b) != l.e.spec.RunID {
		l.stale++
		return
	}
	counter := be64(b[8:])
	s := l.users[d.From]
	if s == nil || d.From == c.user {
		if d.From != c.user {
			l.failure(fmt.Sprintf("user %d got a message from user %d, who is not in this run", c.user, d.From))
		}
		return
	}
	if c.unit != s.unit {
		l.failure(fmt.Sprintf("misrouted: user %d got msg %d of user %d, who sends to its own pair or group only", c.user, d.MsgID, d.From))
		return
	}
	if d.MsgID < s.outBase {
		// Settled long ago: delivered to every recipient already.
		l.res.Duplicates++
		l.failure(fmt.Sprintf("duplicate: user %d got msg %d of user %d again (seq %d)", c.user, d.MsgID, d.From, d.Seq))
		return
	}
	i := d.MsgID - s.outBase
	if i >= uint64(len(s.out)) {
		l.failure(fmt.Sprintf("user %d got msg %d of user %d, which it never sent", c.user, d.MsgID, d.From))
		return
	}
	m := &s.out[i]
	st := c.stream(d.From)
	if counter <= st.last {
		if counter == st.last || int(m.recips) >= s.expect() {
			l.res.Duplicates++
			l.failure(fmt.Sprintf("duplicate: user %d got msg %d of user %d again (seq %d)", c.user, d.MsgID, d.From, d.Seq))
			return
		}
		l.res.Reordered++
		l.failure(fmt.Sprintf("reorder: user %d got msg %d of user %d (counter %d) after counter %d", c.user, d.MsgID, d.From, counter, st.last))
	} else {
		st.last = counter
	}
	if d.Group != s.unit.group {
		l.failure(fmt.Sprintf("user %d got msg %d of user %d for group %d, sent to group %d", c.user, d.MsgID, d.From, d.Group, s.unit.group))
	}
	if s.unit.group != 0 && s.gotCopy(d.MsgID, c.member) {
		l.res.Duplicates++
		l.failure(fmt.Sprintf("duplicate: user %d got msg %d of user %d again (seq %d), a second copy of a group message", c.user, d.MsgID, d.From, d.Seq))
		return
	}
	if int(m.recips) >= s.expect() {
		// A copy more than the message has recipients, under a new seq and
		// with the body of a later write: a resend stored twice.
		l.res.Duplicates++
		l.failure(fmt.Sprintf("duplicate: user %d got msg %d of user %d again (seq %d), one copy more than it was sent to", c.user, d.MsgID, d.From, d.Seq))
		return
	}
	m.recips++
	l.unreceipted++
	l.res.Delivered++
	l.prog.delivered.Add(1)
	if int(m.recips) == s.expect() {
		if !c.untimed && m.sent >= l.measureFrom {
			record(l.res.SendToDeliver, l.now-m.sent)
		}
		l.pending--
		l.prog.pending.Add(-1)
		if !l.traffic.untilAccepted {
			s.inflight--
			s.fillWindow()
		}
		s.trim()
	}
}

func be64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
}

func putBE64(b []byte, v uint64) {
	_ = b[7]
	b[0], b[1], b[2], b[3] = byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32)
	b[4], b[5], b[6], b[7] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}

func (c *conn) stream(from uint64) *stream {
	for i := range c.streams {
		if c.streams[i].from == from {
			return &c.streams[i]
		}
	}
	c.streams = append(c.streams, stream{from: from})
	return &c.streams[len(c.streams)-1]
}

// expect returns how many recipients each of c's messages has.
func (c *conn) expect() int {
	if c.unit.group != 0 {
		return len(c.unit.conns) - 1
	}
	return 1
}

// accepted records ACCEPT a.
func (c *conn) accepted(a *protocol.Accept) {
	l := c.l
	c.sess.Accepted(a)
	if c.isGroupReq(a.MsgID) {
		c.unit.group = a.Ref
		c.unit.groupReq = 0
		if a.Ref == 0 {
			l.failure("the server accepted GROUP create without a group id")
		} else if l.e.spec.Users != nil && groupApart(c.unit, a.Ref, len(l.e.spec.Servers)) {
			l.prog.groupsApart.Add(1)
		}
		c.trim()
		return
	}
	for id := a.MsgID; id <= a.MsgID+a.More; id++ {
		if id < c.outBase || id-c.outBase >= uint64(len(c.out)) {
			continue // settled already, or not ours
		}
		m := &c.out[id-c.outBase]
		if m.accepted {
			continue
		}
		m.accepted = true
		if !m.settled {
			l.unaccepted--
			if l.traffic.untilAccepted {
				c.inflight--
			}
		}
		l.res.Accepted++
		if m.sent >= l.measureFrom {
			record(l.res.SendToAck, l.now-m.sent)
		}
	}
	c.trim()
	if l.traffic.untilAccepted {
		c.fillWindow()
	}
}

// refused handles REFUSE r: retry what the server asks to retry, fail the
// run on what it refuses for good.
func (c *conn) refused(r *protocol.Refuse) {
	l := c.l
	l.res.Refused++
	// The session keeps what it is to send again, no sooner than
	// retry_after (PROTOCOL.md 8.5: the server jittered it, so nothing is
	// added), and after RETRY_LATER holds every new SEND of the connection
	// until then.
	retry := c.sess.Refused(r, time.Duration(l.now))
	if c.isGroupReq(r.MsgID) {
		l.e.fatal(fmt.Errorf("server refused group operations: %v", r.Code))
		return
	}
	switch r.Code {
	case protocol.CodeRetryLater, protocol.CodeStorage, protocol.CodeMailboxFull, protocol.CodeQuota:
		if r.Code == protocol.CodeRetryLater {
			l.res.RetryLater++
			l.res.RetryAfter.RecordValue(min(max(int64(r.RetryAfter)*1000, histMin), histMax))
		}
		if retry {
			if r.MsgID >= c.outBase && r.MsgID-c.outBase < uint64(len(c.out)) {
				c.out[r.MsgID-c.outBase].refused = true
			}
			c.pump() // schedules the wake-up
			return
		}
	}
	if r.Code == protocol.CodeBadRecipient && c.unit.group != 0 {
		l.e.fatal(fmt.Errorf("server refused group operations: %v", r.Code))
	}
	l.failure(fmt.Sprintf("user %d: msg %d refused: %v", c.user, r.MsgID, r.Code))
	if r.MsgID >= c.outBase && r.MsgID-c.outBase < uint64(len(c.out)) {
		m := &c.out[r.MsgID-c.outBase]
		if !m.settled && int(m.recips) < c.expect() {
			m.settled = true
			if !m.accepted {
				l.unaccepted--
			}
			l.pending--
			l.prog.pending.Add(-1)
			c.inflight--
		}
	}
	c.trim()
	c.fillWindow() // a phone waits for no more: the refusal answers it
}

// trim drops settled messages from the front of out: refused for good, or
// accepted and delivered to every recipient; either way with a receipt for
// every copy delivered.
func (c *conn) trim() {
	n := 0
	exp := c.expect()
	for n < len(c.out) {
		m := &c.out[n]
		if m.receipts < m.recips || !(m.settled || (m.accepted && int(m.recips) >= exp)) {
			break
		}
		n++
	}
	if n > 0 {
		for id := c.outBase; id < c.outBase+uint64(n) && c.copies != nil; id++ {
			delete(c.copies, id)
		}
		c.out = c.out[n:]
		c.outBase += uint64(n)
		if len(c.out) == 0 {
			c.out = nil
		}
	}
}

// gotCopy records that the unit's member has a copy of c's group message
// id, and reports whether it had one already. Loop-only.
func (c *conn) gotCopy(id uint64, member int32) (again bool) {
	if c.copies == nil {
		c.copies = map[uint64][]uint64{}
	}
	bits := c.copies[id]
	if bits == nil {
		bits = make([]uint64, (len(c.unit.conns)+63)/64)
		c.copies[id] = bits
	}
	w, b := member/64, uint64(1)<<(member%64)
	again = bits[w]&b != 0
	bits[w] |= b
	return again
}

// record adds a latency of ns nanoseconds to h in microseconds, clamped to
// the histogram's range so that no sample is silently dropped.
func record(h *hdrhistogram.Histogram, ns int64) {
	h.RecordValue(min(max(ns/1000, histMin), histMax))
}

// countLosses records in lr the messages lost (accepted, short of
// recipients) and those never answered (neither accepted, refused nor
// delivered): not lost, since the server never promised them, but a server
// that swallows SENDs, or did not answer within the drain, fails the run
// too. Messages the server refused to be sent again, and had not accepted
// when the run ended, are a note: a server at its capacity. Loop-only.
func (l *loop) countLosses(lr *Result) {
	lost, unchecked, unanswered, refused := l.losses()
	lr.Lost, lr.Unchecked = lost, unchecked
	if lost > 0 {
		lr.Failures = append(lr.Failures, fmt.Sprintf("%d accepted messages were not delivered to every recipient", lost))
	}
	if unchecked > 0 {
		lr.Failures = append(lr.Failures, fmt.Sprintf("%d accepted messages were not delivered to a recipient that could not log in: not checked, and not counted as lost (they may wait in its mailbox); --retries lets a recipient wait longer for a server that restarts", unchecked))
	}
	if unanswered > 0 {
		lr.Failures = append(lr.Failures, fmt.Sprintf("%d messages were never answered: neither accepted nor refused nor delivered when the run ended", unanswered))
	}
	if refused > 0 {
		lr.Notes = append(lr.Notes, fmt.Sprintf("%d messages refused to be sent again were not accepted when the run ended (not lost: the server never promised them)", refused))
	}
}

// losses counts accepted messages short of recipients (unchecked when a
// recipient could not log in, else lost), messages the server neither
// accepted, refused nor delivered, and those it refused to be sent again
// and had not accepted yet. Loop-only.
func (l *loop) losses() (lost, unchecked, unanswered, refused uint64) {
	for _, c := range l.conns {
		exp := c.expect()
		for i := range c.out {
			m := &c.out[i]
			switch {
			case m.settled || int(m.recips) >= exp:
			case m.accepted && c.recipientGaveUp():
				unchecked++
			case m.accepted:
				lost++
			case m.recips == 0 && m.refused:
				refused++
			case m.recips == 0:
				unanswered++
			}
		}
	}
	return lost, unchecked, unanswered, refused
}

// recipientGaveUp reports whether one of the users c sends to could not
// log in. Loop-only (a unit's conns share a loop).
func (c *conn) recipientGaveUp() bool {
	for _, p := range c.unit.conns {
		if p != c && p.gaveUp {
			return true
		}
	}
	return false
}
