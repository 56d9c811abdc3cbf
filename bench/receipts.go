package bench

import (
	"fmt"

	"switchboard/protocol"
)

// The receipt checks. When a recipient acknowledges a message, the server
// stores a delivered RECEIPT in the sender's mailbox (PROTOCOL.md 8.3):
// one per copy, so one for a 1:1 message and one per member, naming it in
// By, for a group message. The sender's msgState counts the copies
// delivered (recips) and the receipts received for them (receipts), and
// stays in out until every delivered copy has its receipt; the drain waits
// for them, and a copy still without one at the end is a failure.
//
// A group message's receipts are counted, not told apart by member: a
// repeat of one member's receipt under a new seq while another member's is
// missing would cancel out. Redeliveries after a reconnect (the same seq
// again) are told apart by seq, and a receipt beyond the copies delivered
// is counted as a repeat.

// receipt checks RECEIPT x, an entry of c's mailbox that covers c's
// messages x.MsgID through x.MsgID+x.More. Loop-only.
func (c *conn) receipt(x *protocol.Receipt) {
	l := c.l
	if x.Seq <= c.lastSeq {
		if !x.Read {
			l.res.ReceiptsRedelivered += x.More + 1 // seen under this seq already, after a reconnect
		}
		return
	}
	c.lastSeq = x.Seq
	if x.Read {
		l.readReceipts++ // the bench sends no READ: not this checker's to count
		return
	}
	lo, hi := x.MsgID, x.MsgID+x.More
	if hi < lo {
		l.failure(fmt.Sprintf("user %d got a delivered receipt for msg %d with more %d, past the largest id", c.user, x.MsgID, x.More))
		return
	}
	if hi < l.e.firstID {
		l.stale++ // for messages of an earlier run
		return
	}
	if !c.receiptBy(x) {
		return
	}
	end := c.outBase + uint64(len(c.out))
	if hi >= end {
		l.failure(fmt.Sprintf("user %d got a delivered receipt for msg %d, which it never sent", c.user, max(lo, end)))
		hi = end - 1 // check what it did send; end > 0: outBase starts at the clock
	}
	if lo < c.outBase {
		// Delivered to every recipient and receipted already: the same
		// receipt again, stored twice.
		l.res.ReceiptsRedelivered += min(hi+1, c.outBase) - lo
		lo = c.outBase
	}
	for id := lo; id <= hi; id++ {
		m := &c.out[id-c.outBase]
		switch {
		case m.receipts < m.recips:
			m.receipts++
			l.unreceipted--
			l.res.Receipts++
		case m.recips == 0:
			l.failure(fmt.Sprintf("user %d got a delivered receipt for msg %d, which no recipient has received", c.user, id))
		default:
			l.res.ReceiptsRedelivered++ // every delivered copy has its receipt: a repeat
		}
	}
	c.trim()
}

// receiptBy reports whether x names a recipient of c's messages in By: none
// for a 1:1 message, another member for a group message.
func (c *conn) receiptBy(x *protocol.Receipt) bool {
	if c.unit.group == 0 {
		if x.By == 0 {
			return true
		}
		c.l.failure(fmt.Sprintf("user %d got a delivered receipt for 1:1 msg %d by user %d", c.user, x.MsgID, x.By))
		return false
	}
	if b := c.l.users[x.By]; b != nil && b.unit == c.unit && b != c {
		return true
	}
	c.l.failure(fmt.Sprintf("user %d got a delivered receipt for group msg %d by user %d, not another member of group %d", c.user, x.MsgID, x.By, c.unit.group))
	return false
}

// receiptsOutstanding counts delivered copies whose receipt has not come.
// They are missing in a unit whose every member is logged in and has
// acknowledged every entry it processed (so the server has been told of
// every copy, and can hand every receipt over); in any other unit they are
// unchecked. Loop-only; it walks every message still kept.
func (l *loop) receiptsOutstanding() (missing, unchecked uint64) {
	var excused map[*unit]bool
	for _, c := range l.conns {
		if c.state != stateReady || c.lastSeq > c.ackedSeq {
			if excused == nil {
				excused = map[*unit]bool{}
			}
			excused[c.unit] = true
		}
	}
	for _, c := range l.conns {
		for i := range c.out {
			m := &c.out[i]
			if m.receipts >= m.recips {
				continue
			}
			if n := uint64(m.recips - m.receipts); excused[c.unit] {
				unchecked += n
			} else {
				missing += n
			}
		}
	}
	return missing, unchecked
}

// checkReceipts fills lr's missing receipts at a collect: copies delivered
// with no receipt are failures if a drain waited for them since the last
// collect, else unchecked (returned, for a note). Loop-only.
func (l *loop) checkReceipts(lr *Result) (unchecked uint64) {
	missing, unchecked := l.receiptsOutstanding()
	if !l.receiptsDue {
		missing, unchecked = 0, unchecked+missing
	}
	l.receiptsDue = false
	lr.ReceiptsMissing = missing
	if missing > 0 {
		lr.Failures = append(lr.Failures, fmt.Sprintf("%d delivered and acknowledged messages got no delivered receipt at their sender by the end of the drain", missing))
	}
	return unchecked
}
