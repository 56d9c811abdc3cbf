package storagetest

import (
	"slices"
	"testing"
	"time"

	"switchboard/storage"
)

// The expired receipts: every deletion of expired message entries records,
// in its own transaction, one pending receipt with Expired set per run of
// consecutive msg ids of one sender, naming the recipient as Acker.

// msg is a message entry of sender with msgID for r at seq.
func msg(r, seq, sender, msgID uint64, kind storage.Kind) storage.Entry {
	return storage.Entry{Recipient: r, Seq: seq, Kind: kind, Sender: sender, MsgID: msgID, Value: value(r, seq, 40)}
}

// pendings returns every pending receipt of s, in (sender, acker, seq) order.
func pendings(t *testing.T, s storage.Store) []storage.PendingReceipt {
	t.Helper()
	var ps []storage.PendingReceipt
	if err := s.PendingReceipts(func(p storage.PendingReceipt) bool { ps = append(ps, p); return true }); err != nil {
		t.Fatalf("PendingReceipts: %v", err)
	}
	return ps
}

func wantPendings(t *testing.T, s storage.Store, want []storage.PendingReceipt) {
	t.Helper()
	if got := pendings(t, s); !slices.Equal(got, want) {
		t.Fatalf("pending receipts\n got %+v\nwant %+v", got, want)
	}
}

// testExpiredReceiptOnAppend: an append into a full mailbox deletes the
// expired heads and records their expired receipts in its transaction, so
// they are there as soon as the append's done ran.
func testExpiredReceiptOnAppend(t *testing.T, h Harness) {
	clock := NewClock(epoch)
	s := open(t, h, storage.Config{Now: clock.Now, MessageTTL: time.Hour, MaxMailboxMessages: 5})
	mustAppend(t, s, msg(2, 1, 200, 11, storage.KindMessage))
	mustAppend(t, s, msg(2, 2, 200, 12, storage.KindMessage))
	mustAppend(t, s, msg(2, 3, 201, 7, storage.KindGroupMessage))
	mustAppend(t, s, msg(2, 4, 200, 14, storage.KindMessage)) // 13 was never sent: a new run
	mustAppend(t, s, storage.Entry{Recipient: 2, Seq: 5, Kind: storage.KindReceipt, Sender: 200, MsgID: 3, Value: []byte("r")})
	clock.Advance(61 * time.Minute)
	mustAppend(t, s, msg(2, 6, 202, 1, storage.KindMessage)) // full: expires seqs 1-5
	want := []storage.PendingReceipt{
		{Sender: 200, Acker: 2, Seq: 1, MsgID: 11, More: 1, Expired: true},
		{Sender: 200, Acker: 2, Seq: 4, MsgID: 14, Expired: true},
		{Sender: 201, Acker: 2, Seq: 3, MsgID: 7, Group: true, Expired: true},
	}
	wantPendings(t, s, want)
	if st := s.Stats(); st.ExpiredDeleted != 5 || st.ExpiredReceipts != 3 {
		t.Fatalf("ExpiredDeleted %d ExpiredReceipts %d, want 5 and 3", st.ExpiredDeleted, st.ExpiredReceipts)
	}
	// The receipt entry that settles one ends it, as for delivered ones.
	mustAppend(t, s, storage.Entry{Recipient: 200, Seq: 1, Kind: storage.KindReceipt, Sender: 2, MsgID: 14, Value: []byte("x"), Settles: want[1].Key()})
	wantPendings(t, s, []storage.PendingReceipt{want[0], want[2]})
	// Acking what is left owes nothing more: 6 is delivered, not expired.
	res := mustAck(t, s, 2, 6)
	if len(res.Pending) != 1 || res.Pending[0].Expired || res.Pending[0].MsgID != 1 {
		t.Fatalf("ack pending = %+v, want one delivered receipt for msg 1", res.Pending)
	}
	if st := s.Stats(); st.ExpiredReceipts != 3 {
		t.Fatalf("ExpiredReceipts %d after the ack, want 3", st.ExpiredReceipts)
	}
}

// testExpiredReceiptOnAck: an ack that deletes expired entries owes their
// senders expired receipts, recorded beside the delivered ones but not in
// AckResult (delivery reads them from PendingReceipts).
func testExpiredReceiptOnAck(t *testing.T, h Harness) {
	clock := NewClock(epoch)
	s := open(t, h, storage.Config{Now: clock.Now, MessageTTL: time.Hour})
	mustAppend(t, s, msg(3, 1, 300, 1, storage.KindMessage))
	mustAppend(t, s, msg(3, 2, 300, 2, storage.KindMessage))
	clock.Advance(61 * time.Minute)
	mustAppend(t, s, msg(3, 3, 300, 3, storage.KindMessage)) // fresh: delivered
	res := mustAck(t, s, 3, 3)
	delivered := storage.PendingReceipt{Sender: 300, Acker: 3, Seq: 3, MsgID: 3}
	if res.Deleted != 3 || len(res.Receipts) != 1 || !slices.Equal(res.Pending, []storage.PendingReceipt{delivered}) {
		t.Fatalf("ack = %+v, want 3 deleted and one delivered receipt for msg 3", res)
	}
	wantPendings(t, s, []storage.PendingReceipt{
		{Sender: 300, Acker: 3, Seq: 1, MsgID: 1, More: 1, Expired: true},
		delivered,
	})
	if st := s.Stats(); st.ExpiredReceipts != 1 {
		t.Fatalf("ExpiredReceipts %d, want 1", st.ExpiredReceipts)
	}
	// A receipt stored in another node's store settles its pending receipt
	// on its own; settling it again, or one that does not exist, is no
	// error.
	settle := func(sender uint64, key storage.ReceiptKey) {
		t.Helper()
		done := make(chan error, 1)
		s.SettleReceipt(sender, key, func(err error) { done <- err })
		if err := <-done; err != nil {
			t.Fatalf("SettleReceipt: %v", err)
		}
	}
	settle(300, delivered.Key())
	settle(300, delivered.Key())
	settle(999, storage.ReceiptKey{Acker: 1, Seq: 1})
	wantPendings(t, s, []storage.PendingReceipt{{Sender: 300, Acker: 3, Seq: 1, MsgID: 1, More: 1, Expired: true}})
}

// testExpiredReceiptOnSweep: the TTL sweep records the expired receipts of
// the heads it deletes, and they survive a reopen.
func testExpiredReceiptOnSweep(t *testing.T, h Harness) {
	clock := NewClock(epoch)
	cfg := storage.Config{Now: clock.Now, MessageTTL: time.Hour, HousekeepingInterval: 5 * time.Millisecond}
	s := open(t, h, cfg)
	mustAppend(t, s, msg(4, 1, 400, 21, storage.KindMessage))
	mustAppend(t, s, msg(4, 2, 400, 22, storage.KindMessage))
	mustAppend(t, s, msg(5, 1, 400, 23, storage.KindMessage))
	mustAppend(t, s, storage.Entry{Recipient: 6, Seq: 1, Kind: storage.KindReceipt, Sender: 400, MsgID: 9, Value: []byte("r")})
	mustAppend(t, s, msg(7, 1, 400, 1<<62, storage.KindMessage)) // the sweep goes by the entry's time, whatever its msg id
	clock.Advance(30 * time.Minute)
	mustAppend(t, s, msg(4, 3, 400, 24, storage.KindMessage)) // younger: stays, owes nothing
	clock.Advance(31 * time.Minute)
	eventually(t, "the sweep to expire 5 entries", func() bool { return s.Stats().ExpiredDeleted == 5 })
	eventually(t, "the sweep's commit", func() bool { return s.Stats().ExpiredReceipts == 3 })
	want := []storage.PendingReceipt{
		{Sender: 400, Acker: 4, Seq: 1, MsgID: 21, More: 1, Expired: true},
		{Sender: 400, Acker: 5, Seq: 1, MsgID: 23, Expired: true},
		{Sender: 400, Acker: 7, Seq: 1, MsgID: 1 << 62, Expired: true},
	}
	wantPendings(t, s, want)
	if h.Reopen != nil {
		cfg.HousekeepingInterval = -1
		s = h.Reopen(t, s, cfg)
		t.Cleanup(func() { _ = s.Close() })
		wantPendings(t, s, want)
	}
}
