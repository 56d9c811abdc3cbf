package storage

import "testing"

// TestPendingFlags checks the flags byte of a pending receipt: the values a
// store wrote before expired receipts (0, and 1 for group messages) keep
// their meaning, every combination round-trips, and unknown bits are
// refused as corrupt.
func TestPendingFlags(t *testing.T) {
	k := putPendingKey(make([]byte, pendingKeyLen), 7, ReceiptKey{Acker: 8, Seq: 9})
	for _, tc := range []struct {
		flag           byte
		group, expired bool
	}{
		{0, false, false},
		{1, true, false},
		{2, false, true},
		{3, true, true},
	} {
		p := PendingReceipt{Sender: 7, Acker: 8, Seq: 9, MsgID: 10, More: 2, Group: tc.group, Expired: tc.expired}
		v := putPending(make([]byte, pendingValLen), &p)
		if v[16] != tc.flag {
			t.Errorf("%+v: flags byte %d, want %d", p, v[16], tc.flag)
		}
		got, err := decodePending(k, v)
		if err != nil || got != p {
			t.Errorf("decode flags %d = %+v, %v; want %+v", tc.flag, got, err, p)
		}
	}
	v := putPending(make([]byte, pendingValLen), &PendingReceipt{MsgID: 1})
	v[16] = 4
	if _, err := decodePending(k, v); err != errCorrupt {
		t.Errorf("flags 4 decoded: %v, want errCorrupt", err)
	}
}
