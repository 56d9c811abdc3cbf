package storage

import "errors"

// This file holds the read methods. They run on the caller's goroutine
// against a consistent view of committed data, never through the committer.

// view runs fn on committed data unless the store is closed. It holds
// mu.RLock so that Close waits for it.
func (s *engine) view(fn func(reader) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return s.be.view(fn)
}

// LastSeq implements Store.
func (s *engine) LastSeq(recipient uint64) (uint64, error) {
	var hw uint64
	err := s.view(func(rd reader) error {
		m, _, err := loadMeta(rd, recipient)
		hw = m.hw
		return err
	})
	return hw, err
}

// NewestScan bounds the entries Newest reads when the newest seq holds no
// entry: a login costs at most one page of a big backlog more.
const NewestScan = 1024

// Newest implements Store.
func (s *engine) Newest(recipient, after, upto uint64) (uint64, error) {
	if upto <= after {
		return after, nil
	}
	now := s.cfg.Now().UnixMilli()
	newest := after
	err := s.view(func(rd reader) error {
		// Mostly the newest seq holds an entry: one seek.
		top := false
		err := rd.scan(recipient, upto, func(e *Entry) bool {
			top = e.Seq == upto && !s.expired(e.Time, now)
			return false
		})
		if err != nil || top {
			newest = upto
			return err
		}
		m, err := rd.meta(recipient)
		if err != nil {
			return err
		}
		n := 0
		return rd.scan(recipient, max(after, m.floor)+1, func(e *Entry) bool {
			switch {
			case e.Seq > upto:
				return false
			case n == NewestScan:
				newest = upto
				return false
			}
			n++
			if !s.expired(e.Time, now) {
				newest = e.Seq
			}
			return true
		})
	})
	if err != nil {
		return after, err
	}
	return newest, nil
}

// Read implements Store.
func (s *engine) Read(recipient, from uint64, maxEntries, maxBytes int, dst []Entry) ([]Entry, uint64, error) {
	maxEntries = max(1, maxEntries)
	now := s.cfg.Now().UnixMilli()
	next := from
	base := len(dst)
	var (
		buf     []byte
		ends    []int // ends[i] is where dst[base+i]'s value ends in buf
		skipped uint64
	)
	err := s.view(func(rd reader) error {
		m, err := rd.meta(recipient)
		if err != nil {
			return err
		}
		next = max(from, m.floor+1)
		return rd.scan(recipient, next, func(e *Entry) bool {
			n := len(dst) - base
			if n == maxEntries || (maxBytes > 0 && n > 0 && len(buf)+len(e.Value) > maxBytes) {
				next = e.Seq
				return false
			}
			next = e.Seq + 1
			if s.expired(e.Time, now) {
				skipped++
				return true
			}
			buf = append(buf, e.Value...)
			ends = append(ends, len(buf))
			c := *e
			c.Value = nil
			dst = append(dst, c)
			return true
		})
	})
	if err != nil {
		return dst[:base], from, err
	}
	// Point the values into buf only now: append may have moved it.
	start := 0
	for i, end := range ends {
		dst[base+i].Value = buf[start:end:end]
		start = end
	}
	s.stats.readEntries.Add(uint64(len(ends)))
	s.stats.expiredSkipped.Add(skipped)
	return dst, next, nil
}

// Lookup implements Store.
func (s *engine) Lookup(sender, msgID, recipient uint64) (Dup, bool, error) {
	var (
		d  Dup
		ok bool
	)
	err := s.view(func(rd reader) error {
		var err error
		d, ok, err = rd.dedupe(sender, msgID, recipient)
		return err
	})
	if err != nil || !ok || s.cfg.Now().UnixMilli()-d.Time >= s.dedupeMs {
		return Dup{}, false, err
	}
	return d, true, nil
}

// Members implements Store.
func (s *engine) Members(group uint64) ([]Member, error) {
	var ms []Member
	err := s.view(func(rd reader) error {
		_, ok, err := rd.group(group)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNoGroup
		}
		return rd.members(group, func(m Member) bool { ms = append(ms, m); return true })
	})
	return ms, err
}

// Role implements Store.
func (s *engine) Role(group, member uint64) (Role, error) {
	var role Role
	err := s.view(func(rd reader) error {
		r, ok, err := rd.role(group, member)
		if err == nil && !ok {
			err = ErrNotMember
		}
		role = r
		return err
	})
	return role, err
}

// Groups implements Store.
func (s *engine) Groups(member uint64) ([]uint64, error) {
	var gs []uint64
	err := s.view(func(rd reader) error {
		return rd.groupsOf(member, func(g uint64) bool { gs = append(gs, g); return true })
	})
	return gs, err
}

// sweepBatch caps the recipients one housekeeping round expires, so that a
// round stays short after a long outage; the next round continues.
const sweepBatch = 10_000

// housekeep runs one round: read the free space, expire the heads of
// mailboxes past their TTL, then let the backend reclaim disk space, the
// costly way only if the store was quiet since the last round.
func (s *engine) housekeep() error {
	s.hkMu.Lock()
	defer s.hkMu.Unlock()
	// Free space is otherwise read only when a message or group change is
	// applied: an idle server reports a disk that filled within a round.
	// A store recovering from a failed commit refuses the op; the round
	// goes on.
	if err := s.exclusive(func() error { s.checkDisk(); return nil }); errors.Is(err, ErrClosed) {
		return err
	}
	if err := s.sweep(); err != nil {
		return err
	}
	commits := s.stats.commits.Load()
	quiet := commits-s.hkCommits < quietCommits
	s.hkCommits = commits
	if err := s.be.reclaim(s.liveBytes(), quiet, &s.stats, s); err != nil {
		return err
	}
	s.stats.housekeeps.Add(1)
	return nil
}

// quietCommits: a store with fewer commits than this between two
// housekeeping rounds is quiet (the sweep's own expiry commits stay below
// it). Only a quiet store is flattened: under traffic a flatten stops writes
// and takes a core for seconds, while Badger's compaction keeps up alone.
const quietCommits = 16

// sweepsPerTTL: the TTL sweep visits every recipient, so it runs at most
// this often per TTL (hourly for 30 days), not every housekeeping round:
// an entry outlives its TTL by at most 1/720 of it, and Read never returns
// it meanwhile.
const sweepsPerTTL = 720

// sweep queues an expiry op for every mailbox whose first entry is past
// its TTL.
func (s *engine) sweep() error {
	nowT := s.cfg.Now()
	if !s.lastSweep.IsZero() && nowT.Sub(s.lastSweep) < s.cfg.MessageTTL/sweepsPerTTL {
		return nil
	}
	now := nowT.UnixMilli()
	var due []uint64
	err := s.view(func(rd reader) error {
		return rd.heads(func(r uint64, _ meta, headTime int64) bool {
			if s.expired(headTime, now) {
				due = append(due, r)
			}
			return len(due) < sweepBatch
		})
	})
	if err != nil {
		return err
	}
	if len(due) < sweepBatch { // else the next round goes on where this stopped
		s.lastSweep = nowT
	}
	for _, r := range due {
		if !s.submit(op{kind: opExpire, r: r}) {
			return ErrClosed
		}
	}
	return nil
}

// liveBytes returns the committed value bytes, from the gauge (the committer owns
// s.tot).
func (s *engine) liveBytes() int64 { return int64(s.stats.storedBytes.Load()) }
