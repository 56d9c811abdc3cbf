package storage

// The committer keeps, for a recipient it has cached, the list of entries
// waiting in the mailbox (its "tail"), as long as that list is short and
// complete. An ack then knows what it deletes and which receipts it makes
// without scanning the mailbox: a scan opens an iterator over every memtable
// and table, which was the largest cost of an ack. Only the committer writes
// entries, so it can keep the list exact: appends add to it, acks and expiry
// take from its front. A list that would grow past tailMax entries, or past
// the engine's total budget, is dropped and the recipient goes back to
// scanning until its mailbox is empty again (an empty mailbox has a known,
// empty tail). A recipient loaded from disk with entries waiting starts
// without a tail.

// defaultTailMax bounds one recipient's tail: about the delivery window,
// which is what a recipient that keeps up has outstanding. A longer mailbox
// is a backlog, read from disk by delivery anyway.
const defaultTailMax = 512

// defaultTailBudget bounds the entries in all tails together (48 bytes
// each, so 12 MiB).
const defaultTailBudget = 1 << 18

// tail is the list of a recipient's waiting entries.
type tail struct {
	entries []deadEntry // entries[head:] are waiting, in seq order
	head    int
	known   bool // entries[head:] is every entry from floor+1 through hw
}

func (t *tail) len() int { return len(t.entries) - t.head }

// waiting returns the entries in seq order; the caller must not keep it
// past the next change.
func (t *tail) waiting() []deadEntry { return t.entries[t.head:] }

// tailAppend records a committed-to-be entry at the end of c's tail.
func (s *engine) tailAppend(c *cachedMeta, e *Entry) {
	t := &c.tail
	if !t.known {
		return
	}
	if t.len() >= s.tailMax || s.tailEntries >= s.tailBudget {
		s.tailDrop(c)
		return
	}
	if t.head > 0 && len(t.entries) == cap(t.entries) {
		n := copy(t.entries, t.entries[t.head:]) // reuse the room taken from the front
		t.entries, t.head = t.entries[:n], 0
	}
	t.entries = append(t.entries, deadEntry{
		seq: e.Seq, sender: e.Sender, msgID: e.MsgID, time: e.Time,
		size: int64(len(e.Value)), kind: e.Kind,
	})
	s.tailEntries++
}

// tailRemove takes dead, a run from the front of c's mailbox, off its tail.
func (s *engine) tailRemove(c *cachedMeta, dead []deadEntry) {
	t := &c.tail
	if !t.known {
		return
	}
	w := t.waiting()
	if len(dead) > len(w) || (len(dead) > 0 && (w[0].seq != dead[0].seq || w[len(dead)-1].seq != dead[len(dead)-1].seq)) {
		s.tailDrop(c) // cannot happen while the tail is exact; do not trust it
		return
	}
	t.head += len(dead)
	s.tailEntries -= len(dead)
	if t.head == len(t.entries) {
		t.entries, t.head = t.entries[:0], 0
	}
}

// tailDrop forgets c's tail until its mailbox is empty again.
func (s *engine) tailDrop(c *cachedMeta) {
	s.tailEntries -= c.tail.len()
	c.tail = tail{}
}

// tailReset starts a known, empty tail when c's mailbox is empty.
func (s *engine) tailReset(c *cachedMeta) {
	if !c.tail.known && c.m.count == 0 {
		c.tail = tail{known: true}
	}
}
