package delivery

import (
	"time"

	"switchboard/protocol"
	"switchboard/storage"
)

// The flow window: a user's entries go to its session at most
// Config.Window entries and Config.WindowBytes bytes ahead of its ACKs.
// pump reads the mailbox and pushes while there is room, skipping the seqs
// that hold nothing; a window that stays full for SlowAfter closes the
// session as a slow consumer.

// push pushes the entry seq (the next after u.sent) to u's connection and
// reports whether the connection took it; if not, u is offline from now.
func (s *shard) push(u *user, seq uint64, record []byte) bool {
	o := Outbound{Kind: OutEntry, Seq: seq, Record: record}
	if !s.r.push(u.sess, o) {
		u.sess = Session{}
		return false
	}
	u.sent = seq
	u.pending += uint32(o.Size())
	return true
}

// pump pushes u's committed entries after u.sent from storage, while the
// window has room.
func (s *shard) pump(u *user) {
	window := uint64(s.r.cfg.Window)
	for u.sess.Valid() && u.sent < u.committed && !s.windowFull(u) {
		room := int(window - (u.sent - u.acked))
		if uint64(room) < window/2 && u.committed-u.sent > uint64(room) {
			// Refill in halves: an ACK that frees a few entries waits for
			// more, so a backlog drains in large batches answered by few
			// ACKs, not a ping-pong of small ones (which also runs a client
			// into the frame-rate limit).
			break
		}
		// Read returns one entry even if it is larger than this.
		roomBytes := min(s.r.cfg.PageBytes, s.r.cfg.WindowBytes-int(u.pending))
		entries, _, err := s.r.store.Read(u.id, u.sent+1, room, roomBytes, s.scratch[:0])
		s.scratch = entries[:0]
		if err != nil {
			s.r.stats.StorageErrors.Add(1)
			s.r.cfg.Logger.Error("delivery: reading mailbox", "user", u.id, "err", err)
			s.r.close(u.sess, protocol.CodeInternal)
			u.sess = Session{}
			return
		}
		if len(entries) == 0 {
			s.skipTo(u, u.committed) // the rest are gaps: failed, expired or deleted seqs
			break
		}
		for i := range entries {
			e := &entries[i]
			if e.Seq > u.committed {
				// Committed by storage, completion not seen yet: it will push
				// it. Nothing is stored between: move past those seqs, which
				// also ends the loop (reading again would find this entry
				// again and spin).
				s.skipTo(u, u.committed)
				break
			}
			s.skipTo(u, e.Seq-1)
			if !s.push(u, e.Seq, e.Value) {
				return
			}
			s.r.stats.DeliveredStored.Add(1)
		}
		clear(entries)
	}
	s.markStuck(u)
}

// skipTo moves u.sent over seqs through seq that hold no entry (failed,
// expired, or deleted before this connection: a LOGIN ack below the
// mailbox's floor). When nothing is outstanding, acked moves with it: no
// one will ever acknowledge those seqs, and counting them would fill the
// window with nothing.
func (s *shard) skipTo(u *user, seq uint64) {
	if seq <= u.sent {
		return
	}
	if u.acked == u.sent {
		u.acked = seq
	}
	u.sent = seq
}

// windowFull reports whether u's connection has as many entries or bytes
// outstanding as the window allows.
func (s *shard) windowFull(u *user) bool {
	return u.sent-u.acked >= uint64(s.r.cfg.Window) || int(u.pending) >= s.r.cfg.WindowBytes
}

// markStuck notes when u's window became full.
func (s *shard) markStuck(u *user) {
	if s.windowFull(u) && u.stuck == 0 {
		u.stuck = s.r.cfg.Now().UnixNano()
	}
}

// ackAgain offers storage again the acks whose commit failed (a user that
// went offline meanwhile acks again when it logs in).
func (s *shard) ackAgain() {
	for _, u := range s.users {
		if u.ackAgain && u.inflight == 0 && u.sess.Valid() && u.acked > 0 {
			u.ackAgain = false
			u.inflight++
			s.inflight++
			id, seq, gen := u.id, u.acked, s.gen
			s.r.store.Ack(id, seq, func(res storage.AckResult, err error) {
				s.done <- completion{kind: doneAck, user: id, ack: res, err: err, gen: gen}
			})
		}
	}
}

// checkSlow closes connections whose window stayed full too long.
func (s *shard) checkSlow() {
	now := s.r.cfg.Now().UnixNano()
	for _, u := range s.users {
		if u.sess.Valid() && u.stuck != 0 && time.Duration(now-u.stuck) >= s.r.cfg.SlowAfter {
			s.r.stats.SlowConsumers.Add(1) // counted before the close anyone can see
			s.r.close(u.sess, protocol.CodeSlowConsumer)
			u.sess, u.stuck = Session{}, 0
			s.forget(u) // offline now: drop its state unless appends are in flight
		}
	}
}
