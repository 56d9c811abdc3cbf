package delivery_test

import (
	"testing"

	"switchboard/delivery"
	"switchboard/protocol"
	"switchboard/storage"
)

// TestRefusalCapacity: the refusals for lack of room tell the client
// whether and when a retry can help, and which room is short: the sender's
// quota (MAILBOX_FULL after a minute), the whole store (STORAGE after 5 s,
// as for a disk below its floor). Neither counts as a storage error.
func TestRefusalCapacity(t *testing.T) {
	size := int64(len(record(1, 1, "m1"))) // each of the three records below
	tests := []struct {
		name  string
		scfg  storage.Config
		code  protocol.Code
		retry uint32
	}{
		{"sender quota", storage.Config{MaxSenderPendingMessages: 2}, protocol.CodeQuota, 60_000},
		{"store full", storage.Config{MaxTotalBytes: 2*size + size/2}, protocol.CodeStorage, 5000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := newRouter(t, delivery.Config{}, tc.scfg)
			sender := &fakeConn{}
			for id := uint64(1); id <= 3; id++ {
				send(t, r, sender, 1, id, 10+id) // three recipients: no mailbox is full
				waitFor(t, "the answer", func() bool {
					return len(sender.items(delivery.OutAccept))+len(sender.items(delivery.OutRefuse)) == int(id)
				})
			}
			refused := sender.items(delivery.OutRefuse)
			if len(refused) != 1 || refused[0].MsgID != 3 || refused[0].Code != tc.code || refused[0].RetryAfter != tc.retry {
				t.Fatalf("refusals %+v, want msg 3 %v after %d ms", refused, tc.code, tc.retry)
			}
			if n := r.Stats().StorageErrors.Load(); n != 0 {
				t.Fatalf("StorageErrors = %d", n)
			}
		})
	}
}
