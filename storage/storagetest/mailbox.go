package storagetest

import (
	"testing"
	"time"

	"switchboard/storage"
)

func testOrderAndPaging(t *testing.T, h Harness) {
	s := open(t, h, storage.Config{})
	if hw, err := s.LastSeq(7); err != nil || hw != 0 {
		t.Fatalf("LastSeq of a new recipient = %d, %v; want 0", hw, err)
	}
	kinds := []storage.Kind{storage.KindMessage, storage.KindReceipt, storage.KindGroupEvent}
	for seq := uint64(1); seq <= 50; seq++ {
		mustAppend(t, s, entry(7, seq, kinds[seq%3]))
	}
	mustAppend(t, s, entry(8, 1, storage.KindMessage)) // a neighbour must not leak in
	if hw, _ := s.LastSeq(7); hw != 50 {
		t.Fatalf("LastSeq = %d, want 50", hw)
	}
	for _, pageLen := range []int{1, 7, 50, 100} {
		all := readAll(t, s, 7, 1, pageLen, 0)
		checkEntries(t, all, 7, seqRange(1, 50))
		for _, e := range all {
			if e.Kind != kinds[e.Seq%3] {
				t.Fatalf("seq %d kind %d, want %d", e.Seq, e.Kind, kinds[e.Seq%3])
			}
		}
	}
	// Reading from the middle, and appending to a caller's slice.
	dst := []storage.Entry{{Seq: 999}}
	page, next, err := s.Read(7, 45, 3, 0, dst)
	if err != nil || len(page) != 4 || page[0].Seq != 999 || next != 48 {
		t.Fatalf("Read(from 45, 3) = %v, next %d, %v", seqs(page), next, err)
	}
	checkEntries(t, page[1:], 7, []uint64{45, 46, 47})
	// Past the end: nothing, and next does not move backwards.
	page, next, err = s.Read(7, 51, 10, 0, nil)
	if err != nil || len(page) != 0 || next != 51 {
		t.Fatalf("Read past end = %v, next %d, %v", seqs(page), next, err)
	}
	if st := s.Stats(); st.Appends != 51 || st.StoredMessages != 51 || st.StoredBytes != 51*40 {
		t.Fatalf("stats appends %d stored %d/%d bytes", st.Appends, st.StoredMessages, st.StoredBytes)
	}
}

func testPagingByBytes(t *testing.T, h Harness) {
	s := open(t, h, storage.Config{})
	for seq := uint64(1); seq <= 10; seq++ {
		mustAppend(t, s, entry(3, seq, storage.KindMessage)) // 40-byte values
	}
	page, next, err := s.Read(3, 1, 100, 100, nil)
	if err != nil || len(page) != 2 || next != 3 {
		t.Fatalf("100-byte page = %v next %d, %v; want 2 entries", seqs(page), next, err)
	}
	// Values that fill the limit to the last byte are returned together.
	page, next, err = s.Read(3, 1, 100, 80, nil)
	if err != nil || len(page) != 2 || next != 3 {
		t.Fatalf("80-byte page = %v next %d, %v; want 2 entries", seqs(page), next, err)
	}
	// A limit below one value still returns one entry, so paging progresses.
	checkEntries(t, readAll(t, s, 3, 1, 100, 10), 3, seqRange(1, 10))
	// The returned values are the caller's: changing one changes nothing stored.
	page[0].Value[0] = 'X'
	again, _, _ := s.Read(3, 1, 1, 0, nil)
	checkEntries(t, again, 3, []uint64{1})
}

func testSeqOrder(t *testing.T, h Harness) {
	s := open(t, h, storage.Config{})
	wantErr(t, storage.AppendWait(s, entry(1, 0, storage.KindMessage)), storage.ErrInvalidEntry)
	mustAppend(t, s, entry(1, 5, storage.KindMessage))
	wantErr(t, storage.AppendWait(s, entry(1, 5, storage.KindReceipt)), storage.ErrSeqOrder)
	wantErr(t, storage.AppendWait(s, entry(1, 3, storage.KindReceipt)), storage.ErrSeqOrder)
	mustAppend(t, s, entry(1, 9, storage.KindMessage)) // gaps are allowed
	checkEntries(t, readAll(t, s, 1, 0, 10, 0), 1, []uint64{5, 9})
	if st := s.Stats(); st.RefusedSeqOrder != 2 {
		t.Fatalf("RefusedSeqOrder = %d, want 2", st.RefusedSeqOrder)
	}
	// Appends in flight together are checked against each other too.
	errs := make(chan error, 2)
	s.Append(entry(1, 12, storage.KindReceipt), func(err error) { errs <- err })
	s.Append(entry(1, 11, storage.KindReceipt), func(err error) { errs <- err })
	if err := <-errs; err != nil {
		t.Fatalf("seq 12: %v", err)
	}
	wantErr(t, <-errs, storage.ErrSeqOrder)
}

func testCumulativeAck(t *testing.T, h Harness) {
	s := open(t, h, storage.Config{})
	for seq := uint64(1); seq <= 10; seq++ {
		kind := storage.KindMessage
		if seq%2 == 0 {
			kind = storage.KindReceipt // no receipt for a receipt
		}
		mustAppend(t, s, entry(4, seq, kind))
	}
	res := mustAck(t, s, 4, 4)
	want := []storage.Receipt{{Sender: 1001, MsgID: 5001, Seq: 1}, {Sender: 1003, MsgID: 5003, Seq: 3}}
	if res.Deleted != 4 || res.Floor != 4 || len(res.Receipts) != 2 || res.Receipts[0] != want[0] || res.Receipts[1] != want[1] {
		t.Fatalf("ack 4 = %+v, want 4 deleted, floor 4, receipts %v", res, want)
	}
	// Reading from before the floor starts after it.
	checkEntries(t, readAll(t, s, 4, 1, 3, 0), 4, seqRange(5, 10))
	// Going backwards, or repeating, is a no-op.
	for _, upto := range []uint64{0, 3, 4} {
		if res := mustAck(t, s, 4, upto); res.Deleted != 0 || len(res.Receipts) != 0 || res.Floor != 4 {
			t.Fatalf("ack %d after ack 4 = %+v, want a no-op at floor 4", upto, res)
		}
	}
	// Beyond the high-water mark: refused, nothing deleted.
	_, err := storage.AckWait(s, 4, 11)
	wantErr(t, err, storage.ErrAckAhead)
	checkEntries(t, readAll(t, s, 4, 0, 10, 0), 4, seqRange(5, 10))
	res = mustAck(t, s, 4, 10)
	if res.Deleted != 6 || len(res.Receipts) != 3 || res.Floor != 10 {
		t.Fatalf("ack 10 = %+v, want 6 deleted, 3 receipts", res)
	}
	if got := readAll(t, s, 4, 0, 10, 0); len(got) != 0 {
		t.Fatalf("drained mailbox still has %v", seqs(got))
	}
	if hw, _ := s.LastSeq(4); hw != 10 {
		t.Fatalf("LastSeq after drain = %d, want 10", hw)
	}
	wantErr(t, storage.AppendWait(s, entry(4, 10, storage.KindMessage)), storage.ErrSeqOrder)
	mustAppend(t, s, entry(4, 11, storage.KindMessage))
	checkEntries(t, readAll(t, s, 4, 0, 10, 0), 4, []uint64{11})
	st := s.Stats()
	if st.Deleted != 10 || st.Receipts != 5 || st.StoredMessages != 1 || st.StoredBytes != 40 {
		t.Fatalf("stats deleted %d receipts %d stored %d/%d", st.Deleted, st.Receipts, st.StoredMessages, st.StoredBytes)
	}
}

func testAckWithGaps(t *testing.T, h Harness) {
	s := open(t, h, storage.Config{})
	for _, seq := range []uint64{2, 5, 9} {
		mustAppend(t, s, entry(6, seq, storage.KindMessage))
	}
	res := mustAck(t, s, 6, 6)
	if res.Deleted != 2 || res.Floor != 6 || len(res.Receipts) != 2 || res.Receipts[1].Seq != 5 {
		t.Fatalf("ack 6 = %+v", res)
	}
	checkEntries(t, readAll(t, s, 6, 0, 10, 0), 6, []uint64{9})
}

func testAckLargerThanBatch(t *testing.T, h Harness) {
	s := open(t, h, storage.Config{MaxBatch: 16})
	const n = 100
	for seq := uint64(1); seq <= n; seq++ {
		mustAppend(t, s, entry(2, seq, storage.KindMessage))
	}
	res := mustAck(t, s, 2, n)
	if res.Deleted != n || res.Floor != n || len(res.Receipts) != n {
		t.Fatalf("ack %d = deleted %d floor %d receipts %d", n, res.Deleted, res.Floor, len(res.Receipts))
	}
	for i, r := range res.Receipts {
		if r.Seq != uint64(i+1) || r.MsgID != 5000+r.Seq {
			t.Fatalf("receipt %d = %+v", i, r)
		}
	}
	if got := readAll(t, s, 2, 0, 10, 0); len(got) != 0 {
		t.Fatalf("mailbox still has %v", seqs(got))
	}
}

func testHighWaterAcrossReopen(t *testing.T, h Harness) {
	if h.Reopen == nil {
		t.Skip("store does not persist")
	}
	cfg := storage.Config{HousekeepingInterval: -1}
	s := open(t, h, cfg)
	for seq := uint64(1); seq <= 5; seq++ {
		mustAppend(t, s, entry(9, seq, storage.KindMessage))
		mustAppend(t, s, entry(10, seq, storage.KindMessage))
	}
	mustAck(t, s, 9, 5) // 9 drained, 10 keeps its entries
	mustAck(t, s, 10, 2)
	for seq := uint64(1); seq <= 20; seq++ { // 11 is never acked
		mustAppend(t, s, entry(11, seq, storage.KindReceipt))
	}
	cfg.MaxMailboxMessages = 21
	s = h.Reopen(t, s, cfg)
	t.Cleanup(func() { _ = s.Close() })
	if hw, err := s.LastSeq(9); err != nil || hw != 5 {
		t.Fatalf("LastSeq after reopen = %d, %v; want 5", hw, err)
	}
	wantErr(t, storage.AppendWait(s, entry(9, 5, storage.KindReceipt)), storage.ErrSeqOrder)
	mustAppend(t, s, entry(9, 6, storage.KindMessage))
	checkEntries(t, readAll(t, s, 9, 0, 10, 0), 9, []uint64{6})
	checkEntries(t, readAll(t, s, 10, 0, 10, 0), 10, []uint64{3, 4, 5})
	if st := s.Stats(); st.StoredMessages != 24 || st.StoredBytes != 24*40 {
		t.Fatalf("totals after reopen %d/%d, want 24/%d", st.StoredMessages, st.StoredBytes, 24*40)
	}
	// 11's high-water and count survive without an ack: one more fits.
	if hw, _ := s.LastSeq(11); hw != 20 {
		t.Fatalf("LastSeq(11) after reopen = %d, want 20", hw)
	}
	mustAppend(t, s, entry(11, 21, storage.KindReceipt))
	wantErr(t, storage.AppendWait(s, entry(11, 22, storage.KindReceipt)), storage.ErrMailboxFull)
	wantErr(t, storage.AppendWait(s, entry(11, 20, storage.KindReceipt)), storage.ErrSeqOrder)
	// Dedupe records and the floor survive too.
	d, ok, err := s.Lookup(1003, 5003, 10)
	if err != nil || !ok || d.Seq != 3 {
		t.Fatalf("Lookup after reopen = %+v %v %v", d, ok, err)
	}
	if res := mustAck(t, s, 10, 2); res.Deleted != 0 || res.Floor != 2 {
		t.Fatalf("re-ack after reopen = %+v", res)
	}
}

func testTTL(t *testing.T, h Harness) {
	clock := NewClock(epoch)
	s := open(t, h, storage.Config{Now: clock.Now, MessageTTL: time.Hour})
	mustAppend(t, s, entry(5, 1, storage.KindMessage))
	mustAppend(t, s, entry(5, 2, storage.KindMessage))
	clock.Advance(30 * time.Minute)
	mustAppend(t, s, entry(5, 3, storage.KindMessage))
	checkEntries(t, readAll(t, s, 5, 0, 10, 0), 5, []uint64{1, 2, 3})
	clock.Advance(31 * time.Minute) // 1 and 2 are 61 minutes old
	page, next, err := s.Read(5, 0, 10, 0, nil)
	if err != nil || next != 4 {
		t.Fatalf("Read = next %d, %v", next, err)
	}
	checkEntries(t, page, 5, []uint64{3})
	if st := s.Stats(); st.ExpiredSkipped != 2 {
		t.Fatalf("ExpiredSkipped = %d, want 2", st.ExpiredSkipped)
	}
	// Acking past expired entries deletes them without receipts.
	res := mustAck(t, s, 5, 3)
	if res.Deleted != 3 || len(res.Receipts) != 1 || res.Receipts[0].Seq != 3 {
		t.Fatalf("ack = %+v, want 3 deleted, one receipt for seq 3", res)
	}
	if st := s.Stats(); st.ExpiredDeleted != 2 || st.StoredMessages != 0 {
		t.Fatalf("ExpiredDeleted %d stored %d, want 2 and 0", st.ExpiredDeleted, st.StoredMessages)
	}
	// A Time the caller gives is kept, and the TTL counts from it.
	old, fresh := entry(5, 4, storage.KindMessage), entry(5, 5, storage.KindMessage)
	old.Time = clock.Now().Add(-61 * time.Minute).UnixMilli()
	fresh.Time = clock.Now().Add(-59 * time.Minute).UnixMilli()
	mustAppend(t, s, old)
	mustAppend(t, s, fresh)
	page, _, err = s.Read(5, 0, 10, 0, nil)
	if err != nil || len(page) != 1 || page[0].Seq != 5 || page[0].Time != fresh.Time {
		t.Fatalf("Read = %v, %v; want seq 5 alone, with its own time %d", seqs(page), err, fresh.Time)
	}
}

func testTTLHousekeeping(t *testing.T, h Harness) {
	clock := NewClock(epoch)
	s := open(t, h, storage.Config{Now: clock.Now, MessageTTL: time.Hour, HousekeepingInterval: 5 * time.Millisecond})
	for r := uint64(1); r <= 20; r++ {
		for seq := uint64(1); seq <= 3; seq++ {
			mustAppend(t, s, entry(r, seq, storage.KindMessage))
		}
	}
	clock.Advance(59 * time.Minute)
	mustAppend(t, s, entry(1, 4, storage.KindMessage)) // younger: must survive
	clock.Advance(2 * time.Minute)
	eventually(t, "housekeeping to expire 60 entries", func() bool {
		return s.Stats().ExpiredDeleted == 60
	})
	eventually(t, "the totals to settle", func() bool { return s.Stats().StoredMessages == 1 })
	checkEntries(t, readAll(t, s, 1, 0, 10, 0), 1, []uint64{4})
	for r := uint64(2); r <= 20; r++ {
		if got := readAll(t, s, r, 0, 10, 0); len(got) != 0 {
			t.Fatalf("recipient %d still has %v", r, seqs(got))
		}
		if hw, _ := s.LastSeq(r); hw != 3 {
			t.Fatalf("recipient %d high-water %d after expiry, want 3", r, hw)
		}
	}
	// The sweep runs every 1/720 of the TTL, not once a TTL: seq 4 expires
	// 58 minutes after the last sweep and is deleted within seconds.
	clock.Advance(59 * time.Minute)
	eventually(t, "the next sweep to expire seq 4", func() bool { return s.Stats().ExpiredDeleted == 61 })
	eventually(t, "the totals to settle", func() bool { return s.Stats().StoredMessages == 0 })
}

func testMailboxLimits(t *testing.T, h Harness) {
	s := open(t, h, storage.Config{MaxMailboxMessages: 5, MaxMailboxBytes: 1000, MaxValueBytes: 400})
	for seq := uint64(1); seq <= 5; seq++ {
		mustAppend(t, s, entry(1, seq, storage.KindMessage))
	}
	wantErr(t, storage.AppendWait(s, entry(1, 6, storage.KindMessage)), storage.ErrMailboxFull)
	mustAppend(t, s, entry(2, 1, storage.KindMessage)) // another mailbox is not affected
	mustAck(t, s, 1, 2)
	mustAppend(t, s, entry(1, 7, storage.KindMessage))
	mustAppend(t, s, entry(1, 8, storage.KindMessage))
	wantErr(t, storage.AppendWait(s, entry(1, 9, storage.KindMessage)), storage.ErrMailboxFull)
	checkEntries(t, readAll(t, s, 1, 0, 10, 0), 1, []uint64{3, 4, 5, 7, 8})

	// Bytes: three 300-byte values fit in 1000, a fourth does not.
	for seq := uint64(1); seq <= 4; seq++ {
		e := storage.Entry{Recipient: 3, Seq: seq, Kind: storage.KindReceipt, Value: make([]byte, 300)}
		err := storage.AppendWait(s, e)
		if seq <= 3 && err != nil {
			t.Fatalf("append %d: %v", seq, err)
		}
		if seq == 4 {
			wantErr(t, err, storage.ErrMailboxFull)
		}
	}
	big := storage.Entry{Recipient: 4, Seq: 1, Value: make([]byte, 401)}
	wantErr(t, storage.AppendWait(s, big), storage.ErrValueTooLarge)
	if st := s.Stats(); st.RefusedFull != 3 {
		t.Fatalf("RefusedFull = %d, want 3", st.RefusedFull)
	}
	// An ack gives its bytes back, and a value that fills the mailbox to
	// the last byte fits: 600 bytes wait after the ack, 400 more make 1000.
	mustAck(t, s, 3, 1)
	mustAppend(t, s, storage.Entry{Recipient: 3, Seq: 5, Kind: storage.KindReceipt, Value: make([]byte, 400)})
	wantErr(t, storage.AppendWait(s, storage.Entry{Recipient: 3, Seq: 6, Kind: storage.KindReceipt, Value: make([]byte, 1)}), storage.ErrMailboxFull)
}

func testTotalLimit(t *testing.T, h Harness) {
	s := open(t, h, storage.Config{MaxTotalBytes: 100})
	mustAppend(t, s, entry(1, 1, storage.KindMessage))
	mustAppend(t, s, entry(2, 1, storage.KindMessage))
	wantErr(t, storage.AppendWait(s, entry(3, 1, storage.KindMessage)), storage.ErrStoreFull)
	mustAck(t, s, 1, 1)
	mustAppend(t, s, entry(3, 1, storage.KindMessage))
	if st := s.Stats(); st.RefusedStoreFull != 1 || st.StoredBytes != 80 {
		t.Fatalf("RefusedStoreFull %d StoredBytes %d", st.RefusedStoreFull, st.StoredBytes)
	}
	// A value that fills the store to the last byte fits; one byte more
	// does not.
	mustAppend(t, s, storage.Entry{Recipient: 4, Seq: 1, Kind: storage.KindReceipt, Value: make([]byte, 20)})
	wantErr(t, storage.AppendWait(s, storage.Entry{Recipient: 4, Seq: 2, Kind: storage.KindReceipt, Value: make([]byte, 1)}), storage.ErrStoreFull)
}

func testFullMailboxDropsExpired(t *testing.T, h Harness) {
	clock := NewClock(epoch)
	s := open(t, h, storage.Config{Now: clock.Now, MessageTTL: time.Hour, MaxMailboxMessages: 3})
	for seq := uint64(1); seq <= 3; seq++ {
		mustAppend(t, s, entry(1, seq, storage.KindMessage))
	}
	wantErr(t, storage.AppendWait(s, entry(1, 4, storage.KindMessage)), storage.ErrMailboxFull)
	clock.Advance(2 * time.Hour)
	mustAppend(t, s, entry(1, 5, storage.KindMessage)) // the expired three make room
	checkEntries(t, readAll(t, s, 1, 0, 10, 0), 1, []uint64{5})
	if st := s.Stats(); st.ExpiredDeleted != 3 || st.StoredMessages != 1 {
		t.Fatalf("ExpiredDeleted %d stored %d", st.ExpiredDeleted, st.StoredMessages)
	}
}

// testNewest: what a login announces as WELCOME.last is the newest entry
// that waits, not the high-water mark, which can be above every entry.
func testNewest(t *testing.T, h Harness) {
	clock := NewClock(epoch)
	s := open(t, h, storage.Config{Now: clock.Now, MessageTTL: time.Hour})
	newest := func(r, after, upto, want uint64) {
		t.Helper()
		if got, err := s.Newest(r, after, upto); err != nil || got != want {
			t.Fatalf("Newest(%d, after %d, upto %d) = %d, %v; want %d", r, after, upto, got, err, want)
		}
	}
	newest(3, 0, 0, 0) // a new recipient
	for _, seq := range []uint64{1, 2, 5} {
		mustAppend(t, s, entry(3, seq, storage.KindMessage))
	}
	newest(3, 0, 5, 5)
	newest(3, 2, 5, 5)
	newest(3, 5, 5, 5) // nothing after the client's own position
	newest(3, 0, 4, 2) // an entry committed above upto is not counted
	newest(3, 0, 9, 5) // seqs 6..9 hold nothing (refused, or a restore's gap)
	newest(3, 5, 9, 5)

	// Acked: the high-water mark stays, nothing waits.
	mustAck(t, s, 3, 5)
	newest(3, 0, 5, 0)
	newest(3, 3, 5, 3)

	// Expired entries do not wait either.
	mustAppend(t, s, entry(3, 6, storage.KindMessage))
	clock.Advance(30 * time.Minute)
	mustAppend(t, s, entry(3, 7, storage.KindMessage))
	newest(3, 5, 7, 7)
	clock.Advance(31 * time.Minute) // 6 is 61 minutes old
	newest(3, 5, 9, 7)
	clock.Advance(30 * time.Minute)
	newest(3, 5, 7, 5)

	// Past NewestScan entries below an empty top, the high-water mark.
	for seq := uint64(1); seq <= storage.NewestScan+1; seq++ {
		mustAppend(t, s, entry(4, seq, storage.KindMessage))
	}
	newest(4, 0, storage.NewestScan+5, storage.NewestScan+5)
	newest(4, 1, storage.NewestScan+5, storage.NewestScan+1)
}
