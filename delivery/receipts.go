package delivery

import (
	"time"

	"switchboard/storage"
)

// Receipts between shards. The delivered receipts an ack records as
// pending, and the read receipts users send, go to their senders' shards;
// when a sender's queue is full the shard holds them (bounded) and offers
// them again, and what it cannot hold stays pending in storage for the
// next rescan.

// heldRetry is how soon held receipts are offered again: a full queue
// drains a few hundred requests a millisecond.
const heldRetry = time.Millisecond

// receipts hands each delivered receipt an ack left pending (one per run
// of consecutive message ids of one sender) to that sender's shard.
// Receipts for group messages name the member who acked.
func (s *shard) receipts(ps []storage.PendingReceipt) {
	for _, p := range ps {
		s.hold(receiptRequest(p))
	}
	s.offerHeld()
}

// receiptRequest is the request that stores pending receipt p in its
// sender's mailbox and settles it. A delivered receipt names the acker
// for group messages only (a 1:1 recipient is implied by the msg id); an
// expired one always names the recipient it expired for, which its
// encoding needs anyway (protocol.Receipt.Expired).
func receiptRequest(p storage.PendingReceipt) request {
	q := request{kind: reqReceipt, user: p.Sender, msgID: p.MsgID, more: p.More, settles: p.Key(), expired: p.Expired}
	if p.Group || p.Expired {
		q.from = p.Acker
	}
	return q
}

// hold queues receipt q behind those already held.
func (s *shard) hold(q request) {
	if len(s.held) >= s.r.cfg.QueueLen {
		if q.read {
			s.r.stats.ReadsDropped.Add(1) // nothing else holds a read receipt
			return
		}
		// Still pending in storage: the next rescan offers it again.
		s.r.stats.ReceiptsDropped.Add(1)
		s.r.rescan.Store(true)
		return
	}
	s.held = append(s.held, q)
	s.publishHeld()
}

// offerHeld hands held receipts to their senders' shards, keeping those
// whose queue is still full (in order) and arming the retry for them.
func (s *shard) offerHeld() {
	if len(s.held) == 0 {
		return
	}
	kept := s.held[:0]
	for _, q := range s.held {
		if !s.r.submitQuiet(q.user, q) {
			kept = append(kept, q)
		}
	}
	clear(s.held[len(kept):])
	s.held = kept
	s.publishHeld()
	if len(s.held) > 0 {
		s.r.stats.ReceiptsHeld.Add(1)
		s.retry.Reset(heldRetry)
	}
}
