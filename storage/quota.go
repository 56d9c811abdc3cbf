package storage

import "fmt"

// Per-sender quotas: what one sender has waiting in other users' mailboxes.
//
// A sender's use counts its message entries (KindMessage, KindGroupMessage
// with a Sender) still stored: their number and their value bytes, which is
// what the store holds (a compressed upload is counted decompressed). An
// append adds to it in the transaction that writes the entry; an ack or an
// expiry that deletes the entry takes it off in the transaction that
// deletes it. Receipts and group events are not counted: nobody chose to
// send them, and the recipient's mailbox limits bound them.
//
// The use is persisted, one key per sender with entries waiting ('q'
// sender, see keys.go), written at the end of each batch that changed it.
// Rebuilding it at open instead would read every stored entry (up to
// MaxTotalBytes) on every start and after every recovery; the key costs one
// small write per sender per batch. Entries stored before the key existed
// are not counted; a use that would go below zero stays at zero. Offline,
// Folder.Recount (move.go) sets every use to what the entries add up to,
// those included; a move between stores does, on both.

// senderUse is one sender's entries waiting in other users' mailboxes.
type senderUse struct {
	count int64
	bytes int64
}

// cachedUse is the committer's copy of a sender's use.
type cachedUse struct {
	sender uint64
	u      senderUse
	dirty  bool // written by the open batch
}

// quotaBook is the committer's cache of sender uses. Owned by the committer
// goroutine; bounded by Config.MetaCacheEntries after each commit.
type quotaBook struct {
	cache map[uint64]*cachedUse
	dirty []*cachedUse // changed in the open batch
}

// counted reports whether e counts against its sender's quota.
func counted(kind Kind, sender uint64) bool { return kind.message() && sender != 0 }

// use returns sender's use, loading it on a cache miss.
func (s *engine) use(w writer, sender uint64) (*cachedUse, error) {
	if c, ok := s.quota.cache[sender]; ok {
		return c, nil
	}
	u, err := w.senderUse(sender)
	if err != nil {
		return nil, err
	}
	if s.quota.cache == nil {
		s.quota.cache = make(map[uint64]*cachedUse)
	}
	c := &cachedUse{sender: sender, u: u}
	s.quota.cache[sender] = c
	return c, nil
}

// checkQuota sets o.err, and reports false, when o's entry of n bytes
// would take its sender over a quota.
func (s *engine) checkQuota(w writer, o *op, n int64) (bool, error) {
	e := &o.e
	if !counted(e.Kind, e.Sender) {
		return true, nil
	}
	c, err := s.use(w, e.Sender)
	if err != nil {
		return false, err
	}
	if c.u.count+1 > s.cfg.MaxSenderPendingMessages || c.u.bytes+n > s.cfg.MaxSenderPendingBytes {
		o.err = fmt.Errorf("%w: sender %d has %d entries, %d bytes waiting", ErrSenderQuota, e.Sender, c.u.count, c.u.bytes)
		s.stats.refusedQuota.Add(1)
		return false, nil
	}
	return true, nil
}

// charge adds count entries of bytes to sender's use (negative: deleted).
func (s *engine) charge(w writer, kind Kind, sender uint64, count, bytes int64) error {
	if !counted(kind, sender) {
		return nil
	}
	c, err := s.use(w, sender)
	if err != nil {
		return err
	}
	c.u.count = max(0, c.u.count+count)
	c.u.bytes = max(0, c.u.bytes+bytes)
	if !c.dirty {
		c.dirty = true
		s.quota.dirty = append(s.quota.dirty, c)
	}
	return nil
}

// flushQuota writes the uses the open batch changed into w.
func (s *engine) flushQuota(w writer) error {
	for _, c := range s.quota.dirty {
		if err := w.putSenderUse(c.sender, c.u); err != nil {
			return err
		}
	}
	return nil
}

// quotaCommitted marks the batch's uses clean and bounds the cache.
func (s *engine) quotaCommitted() {
	for _, c := range s.quota.dirty {
		c.dirty = false
	}
	clear(s.quota.dirty)
	s.quota.dirty = s.quota.dirty[:0]
	if len(s.quota.cache) > s.cfg.MetaCacheEntries {
		keep := s.cfg.MetaCacheEntries * 7 / 8 // evict in bulk, not per commit
		for id := range s.quota.cache {
			delete(s.quota.cache, id)
			if len(s.quota.cache) <= keep {
				break
			}
		}
	}
}

// quotaReset drops the cache (after the database was reopened: what is on
// disk is what counts).
func (s *engine) quotaReset() {
	clear(s.quota.cache)
	clear(s.quota.dirty)
	s.quota.dirty = s.quota.dirty[:0]
}
