package storage

import "fmt"

// This file holds the rules a write op follows inside a batch. Every
// function here runs on the committer goroutine. An op's own refusal goes
// to o.err and writes nothing; a returned error is a database failure that
// fails the whole batch.

// apply applies o to w. budget is how many more units (appends, deleted
// entries, group changes) the batch may take; an ack that needs more sets
// o.unfinished. It returns the units and value bytes o used.
func (s *engine) apply(w writer, o *op, now int64, budget int) (units, bytes int, err error) {
	switch o.kind {
	case opAppend:
		return s.applyAppend(w, o, now, budget)
	case opAck:
		return s.applyAck(w, o, now, budget)
	case opExpire:
		c, err := s.getMeta(w, o.r)
		if err != nil {
			return 0, 0, err
		}
		n, err := s.expireHead(w, c, now, budget)
		return max(1, n), 0, err
	case opGroupChange:
		return s.applyChange(w, o, now)
	case opSettleEvent:
		return 1, 0, w.delGroupEvent(o.change.Actor, o.change.MsgID)
	case opSettleReceipt:
		return 1, 0, w.delPending(o.r, o.e.Settles)
	case opDeleteGroup:
		return s.deleteGroup(w, o)
	}
	return 0, 0, fmt.Errorf("storage: unknown op kind %d", o.kind)
}

// applyAppend writes o's entry. Expired entries that stand between a full
// mailbox and the entry are deleted first, within budget; when the budget
// runs out before the entry fits, o continues in the next batch.
func (s *engine) applyAppend(w writer, o *op, now int64, budget int) (units, bytes int, err error) {
	e := &o.e
	if e.Time == 0 {
		e.Time = now
	}
	c, err := s.getMeta(w, e.Recipient)
	if err != nil {
		return 0, 0, err
	}
	if o.urgent() && s.diskLow() {
		o.err = fmt.Errorf("%w: %d bytes free, floor %d", ErrDiskFull, s.disk.free, s.disk.floor)
		s.stats.refusedDiskFull.Add(1)
		return 1, 0, nil
	}
	if e.Kind.deduped() && e.Retry {
		d, ok, err := s.dedupe(w, o)
		if err != nil {
			return 0, 0, err
		}
		if ok && now-d.Time < s.dedupeMs {
			o.err = &DuplicateError{Original: d}
			s.stats.duplicates.Add(1)
			return 1, 0, nil
		}
	}
	if e.Seq <= c.m.hw {
		o.err = fmt.Errorf("%w: recipient %d seq %d, high-water %d", ErrSeqOrder, e.Recipient, e.Seq, c.m.hw)
		s.stats.refusedSeqOrder.Add(1)
		return 1, 0, nil
	}
	n := int64(len(e.Value))
	if ok, err := s.checkQuota(w, o, n); err != nil {
		return 0, 0, err
	} else if !ok {
		return 1, 0, nil // o.err says why (quota.go)
	}
	if !s.fits(c, n) {
		// Expired entries do not count: drop them, then look again. Each
		// deletion is a write of this batch, counted against its budget.
		allowance := max(1, budget-1) // at least one, so each try makes progress
		expired, err := s.expireHead(w, c, now, allowance)
		if err != nil {
			return 0, 0, err
		}
		units = expired
		if !s.fits(c, n) && expired == allowance {
			o.unfinished = true // more may be expired: go on in the next batch
			return units, 0, nil
		}
		if !s.fits(c, n) {
			o.err = fmt.Errorf("%w: recipient %d holds %d entries, %d bytes", ErrMailboxFull, e.Recipient, c.m.count, c.m.bytes)
			s.stats.refusedFull.Add(1)
			return units + 1, 0, nil
		}
	}
	if s.tot.bytes+n > s.cfg.MaxTotalBytes {
		o.err = fmt.Errorf("%w: %d bytes stored", ErrStoreFull, s.tot.bytes)
		s.stats.refusedStoreFull.Add(1)
		return units + 1, 0, nil
	}
	if err := w.putEntry(e); err != nil {
		return 0, 0, err
	}
	if e.Settles != (ReceiptKey{}) {
		if err := w.delPending(e.Recipient, e.Settles); err != nil {
			return 0, 0, err
		}
	}
	if e.Kind.deduped() {
		d := Dup{Recipient: e.Recipient, Seq: e.Seq, Time: e.Time}
		if err := w.putDedupe(e.Sender, e.MsgID, d, s.dedupeMs/1000+3600); err != nil {
			return 0, 0, err
		}
		s.batchKeys[dedupeID{e.Sender, e.MsgID, e.Recipient}] = d
	}
	if err := s.charge(w, e.Kind, e.Sender, 1, n); err != nil {
		return 0, 0, err
	}
	s.tailAppend(c, e)
	c.m.hw = e.Seq
	c.m.count++
	c.m.bytes += n
	// The meta is rewritten by the first append ever, by an append to an
	// empty mailbox (so that a stored count of 0 always means empty, which
	// the TTL sweep relies on), and then by every metaEvery-th append.
	if c.persisted == 0 || c.m.count == 1 || c.m.hw-c.persisted >= metaEvery {
		s.touch(c)
	}
	s.tot.count++
	s.tot.bytes += n
	s.totDirt = true
	return units + 1, int(n), nil
}

// fits reports whether one more entry of n bytes fits c's mailbox.
func (s *engine) fits(c *cachedMeta, n int64) bool {
	return c.m.count+1 <= s.cfg.MaxMailboxMessages && c.m.bytes+n <= s.cfg.MaxMailboxBytes
}

func (s *engine) applyAck(w writer, o *op, now int64, budget int) (units, bytes int, err error) {
	if o.ack == nil {
		o.ack = &AckResult{}
	}
	c, err := s.getMeta(w, o.r)
	if err != nil {
		return 0, 0, err
	}
	if o.upto > c.m.hw {
		o.err = fmt.Errorf("%w: recipient %d acked %d, high-water %d", ErrAckAhead, o.r, o.upto, c.m.hw)
		return 1, 0, nil
	}
	if o.upto <= c.m.floor {
		o.ack.Floor = c.m.floor
		return 1, 0, nil
	}
	dead, err := s.collect(w, c, budget, func(d *deadEntry) bool { return d.seq <= o.upto })
	if err != nil {
		return 0, 0, err
	}
	s.owed = s.owed[:0]
	for _, d := range dead {
		expired := s.expired(d.time, now)
		if expired {
			// Read never returned it, so it was never delivered: its
			// sender is owed an expired receipt, not a delivered one.
			s.stats.expiredDeleted.Add(1)
		}
		if !d.kind.message() {
			continue
		}
		r := Receipt{Sender: d.sender, MsgID: d.msgID, Seq: d.seq, Group: d.kind == KindGroupMessage}
		if !expired {
			o.ack.Receipts = append(o.ack.Receipts, r)
		}
		s.owed = append(s.owed, owedReceipt{Receipt: r, expired: expired})
	}
	if err := s.remove(w, c, dead); err != nil {
		return 0, 0, err
	}
	if err := s.recordPending(w, o.r, s.owed, o.ack); err != nil {
		return 0, 0, err
	}
	o.ack.Deleted += len(dead)
	if len(dead) < budget || c.m.floor == o.upto {
		c.m.floor = o.upto // gaps and the tail up to upto count as deleted
		s.touch(c)
	} else {
		o.unfinished = true
	}
	o.ack.Floor = c.m.floor
	return max(1, len(dead)), 0, nil
}

// expireHead deletes up to budget expired entries at the head of c's
// mailbox, records the expired receipts their senders are owed in the
// same transaction, and returns how many entries it deleted.
func (s *engine) expireHead(w writer, c *cachedMeta, now int64, budget int) (int, error) {
	if c.m.count == 0 {
		return 0, nil
	}
	dead, err := s.collect(w, c, budget, func(d *deadEntry) bool { return s.expired(d.time, now) })
	if err != nil || len(dead) == 0 {
		return 0, err
	}
	s.stats.expiredDeleted.Add(uint64(len(dead)))
	s.owed = s.owed[:0]
	for _, d := range dead {
		if d.kind.message() {
			r := Receipt{Sender: d.sender, MsgID: d.msgID, Seq: d.seq, Group: d.kind == KindGroupMessage}
			s.owed = append(s.owed, owedReceipt{Receipt: r, expired: true})
		}
	}
	if err := s.remove(w, c, dead); err != nil {
		return 0, err
	}
	return len(dead), s.recordPending(w, c.r, s.owed, nil)
}

// collect gathers, into s.dead, up to budget entries of c's mailbox from
// its floor while keep returns true: from c's tail when it is known, else
// by scanning the mailbox.
func (s *engine) collect(w writer, c *cachedMeta, budget int, keep func(*deadEntry) bool) ([]deadEntry, error) {
	s.dead = s.dead[:0]
	if c.tail.known {
		s.tailHits++
		for _, d := range c.tail.waiting() {
			if len(s.dead) >= budget || !keep(&d) {
				break
			}
			s.dead = append(s.dead, d)
		}
		return s.dead, nil
	}
	err := w.scan(c.r, c.m.floor+1, func(e *Entry) bool {
		d := deadEntry{
			seq: e.Seq, sender: e.Sender, msgID: e.MsgID, time: e.Time,
			size: int64(len(e.Value)), kind: e.Kind,
		}
		if len(s.dead) >= budget || !keep(&d) {
			return false
		}
		s.dead = append(s.dead, d)
		return true
	})
	return s.dead, err
}

// remove deletes dead (a run from c's floor) and moves the floor past it.
func (s *engine) remove(w writer, c *cachedMeta, dead []deadEntry) error {
	if len(dead) == 0 {
		return nil
	}
	var n int64
	for _, d := range dead {
		if err := w.delEntry(c.r, d.seq); err != nil {
			return err
		}
		if err := s.charge(w, d.kind, d.sender, -1, -d.size); err != nil {
			return err
		}
		n += d.size
	}
	s.tailRemove(c, dead)
	c.m.floor = dead[len(dead)-1].seq
	c.m.count = max(0, c.m.count-int64(len(dead)))
	c.m.bytes = max(0, c.m.bytes-n)
	s.tailReset(c)
	s.touch(c)
	s.tot.count -= int64(len(dead))
	s.tot.bytes -= n
	s.totDirt = true
	return nil
}

// deleteGroup removes a group and its memberships.
func (s *engine) deleteGroup(w writer, o *op) (units, bytes int, err error) {
	if _, exists, err := w.group(o.group); err != nil {
		return 0, 0, err
	} else if !exists {
		o.err = fmt.Errorf("%w: %d", ErrNoGroup, o.group)
		return 1, 0, nil
	}
	var ids []uint64
	if err := w.members(o.group, func(m Member) bool { ids = append(ids, m.ID); return true }); err != nil {
		return 0, 0, err
	}
	for _, id := range ids {
		if err := w.delMember(o.group, id); err != nil {
			return 0, 0, err
		}
	}
	return 1 + len(ids), 0, w.delGroup(o.group)
}

// owedReceipt is a deleted message entry whose sender is owed a receipt:
// delivered, or expired.
type owedReceipt struct {
	Receipt
	expired bool
}

// recordPending writes the receipts owed for rs (deleted message entries
// of acker's mailbox, in seq order) as pending receipts, one per run of
// consecutive msg ids of one sender, kind and outcome, in the transaction
// that deletes their entries. Delivered ones are added to ack.Pending (ack
// is nil for expiry, which deletes nothing delivered); expired ones are
// counted in s.expiredOwed, which Stats.ExpiredReceipts takes up once the
// batch commits, for delivery to find them.
func (s *engine) recordPending(w writer, acker uint64, rs []owedReceipt, ack *AckResult) error {
	for i := 0; i < len(rs); {
		j := i + 1
		for j < len(rs) && rs[j].Sender == rs[i].Sender && rs[j].MsgID == rs[j-1].MsgID+1 &&
			rs[j].Group == rs[i].Group && rs[j].expired == rs[i].expired {
			j++
		}
		p := PendingReceipt{Sender: rs[i].Sender, Acker: acker, Seq: rs[i].Seq, MsgID: rs[i].MsgID,
			More: uint64(j - i - 1), Group: rs[i].Group, Expired: rs[i].expired}
		if err := w.putPending(&p); err != nil {
			return err
		}
		if p.Expired {
			s.expiredOwed++
		} else {
			ack.Pending = append(ack.Pending, p)
		}
		i = j
	}
	return nil
}
