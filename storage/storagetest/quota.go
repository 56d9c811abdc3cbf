package storagetest

import (
	"testing"

	"switchboard/storage"
)

// testSenderQuota: a sender at its quota (entries or bytes waiting in other
// users' mailboxes) is refused with ErrSenderQuota while another sender to
// the same recipients is not; receipts do not count; the use survives a
// reopen and frees up as recipients ack.
func testSenderQuota(t *testing.T, h Harness) {
	cfg := storage.Config{HousekeepingInterval: -1, MaxSenderPendingMessages: 3, MaxSenderPendingBytes: 1000}
	s := open(t, h, cfg)
	const spammer, other = 77, 78
	msg := func(r, seq, sender uint64, n int) storage.Entry {
		return storage.Entry{Recipient: r, Seq: seq, Kind: storage.KindGroupMessage, Sender: sender, MsgID: 9000 + 100*seq + r, Value: value(r, seq, n)}
	}
	mustAppend(t, s, msg(1, 1, spammer, 40))
	mustAppend(t, s, msg(2, 1, spammer, 40))
	mustAppend(t, s, msg(1, 2, spammer, 40))
	wantErr(t, storage.AppendWait(s, msg(2, 2, spammer, 40)), storage.ErrSenderQuota)
	mustAppend(t, s, msg(2, 3, other, 40)) // same recipients, another sender
	mustAppend(t, s, storage.Entry{Recipient: 1, Seq: 3, Kind: storage.KindReceipt, Sender: spammer, MsgID: 1, Value: value(1, 3, 10)})
	if st := s.Stats(); st.RefusedQuota != 1 {
		t.Fatalf("RefusedQuota = %d, want 1", st.RefusedQuota)
	}

	if h.Reopen != nil {
		s = h.Reopen(t, s, cfg)
		t.Cleanup(func() { _ = s.Close() })
		wantErr(t, storage.AppendWait(s, msg(2, 4, spammer, 40)), storage.ErrSenderQuota)
	}

	mustAck(t, s, 1, 3) // two of the spammer's three go
	mustAppend(t, s, msg(2, 5, spammer, 40))
	mustAppend(t, s, msg(3, 1, spammer, 40))
	wantErr(t, storage.AppendWait(s, msg(3, 2, spammer, 40)), storage.ErrSenderQuota)

	// Bytes: after recipient 2 acks, one entry of 40 bytes is left; 900
	// more fit in 1000, another 100 do not.
	mustAck(t, s, 2, 5)
	mustAppend(t, s, msg(4, 1, spammer, 900))
	wantErr(t, storage.AppendWait(s, msg(4, 2, spammer, 100)), storage.ErrSenderQuota)
	mustAppend(t, s, msg(4, 3, other, 100))
}
