package delivery_test

import (
	"slices"
	"testing"

	"switchboard/delivery"
	"switchboard/protocol"
	"switchboard/storage"
)

// twoWaiting starts a router whose user 2 has messages 1 and 2 from user
// 1 waiting, at seqs 1 and 2, and returns the sender's connection and the
// store.
func twoWaiting(t *testing.T) (*delivery.Router, *fakeConn, storage.Store) {
	t.Helper()
	r, store := newRouter(t, delivery.Config{}, storage.Config{})
	a := &fakeConn{}
	send(t, r, a, 1, 1, 2)
	send(t, r, a, 1, 2, 2)
	waitFor(t, "both ACCEPTs", func() bool { return len(a.items(delivery.OutAccept)) == 2 })
	return r, a, store
}

// TestResumePastWhatIsStored: a handed-over connection that claims to have
// acked past the mailbox's high-water mark is closed with BAD_ACK, and its
// claim deletes nothing: a later login gets every entry.
func TestResumePastWhatIsStored(t *testing.T) {
	r, _, _ := twoWaiting(t)
	moved := &fakeConn{}
	if !r.Resume(moved.s(), delivery.To(2), 5, 5) {
		t.Fatal("Resume: the router stopped")
	}
	waitFor(t, "the resumed connection closed", func() bool { return moved.closeCode() != 0 })
	if code := moved.closeCode(); code != protocol.CodeBadAck {
		t.Fatalf("closed with %v, want BAD_ACK", code)
	}
	b := &fakeConn{}
	login(t, r, b, 2, 0)
	if last := b.items(delivery.OutWelcome)[0].Seq; last != 2 {
		t.Fatalf("WELCOME.last = %d, want 2", last)
	}
	waitFor(t, "both entries", func() bool { return len(b.items(delivery.OutEntry)) == 2 })
}

// TestResumeCarriesOn: a handed-over connection gets the entries stored
// after what it was written and acked, and only those: none it acked (an
// ACK may pass what was written), and a new one even when the count of
// entries written that came with it runs past the mailbox. What it acked
// is deleted.
func TestResumeCarriesOn(t *testing.T) {
	for _, tc := range []struct {
		name           string
		acked, written uint64
	}{
		{"acked past written", 2, 0},
		{"written past the mailbox", 0, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, a, store := twoWaiting(t)
			moved := &fakeConn{}
			if !r.Resume(moved.s(), delivery.To(2), tc.acked, tc.written) {
				t.Fatal("Resume: the router stopped")
			}
			send(t, r, a, 1, 3, 2)
			waitFor(t, "msg 3 on the resumed connection", func() bool {
				es := moved.items(delivery.OutEntry)
				return len(es) > 0 && es[len(es)-1].Seq == 3
			})
			var got []uint64
			for _, e := range moved.items(delivery.OutEntry) {
				got = append(got, e.Seq)
			}
			if !slices.Equal(got, []uint64{3}) {
				t.Fatalf("pushed seqs %v, want only the new entry, 3", got)
			}
			waitFor(t, "the entries acked deleted", func() bool {
				es, _, err := store.Read(2, 1, 10, 0, nil)
				return err == nil && len(es) > 0 && es[0].Seq == tc.acked+1
			})
		})
	}
}

// TestLoginAckDeletes: the ack a LOGIN carries is applied like an ACK:
// the entries through it are deleted and their senders get delivered
// receipts.
func TestLoginAckDeletes(t *testing.T) {
	r, a, _ := twoWaiting(t)
	login(t, r, a, 1, 0)
	b := &fakeConn{}
	login(t, r, b, 2, 1)
	waitFor(t, "msg 2 pushed", func() bool { return len(b.items(delivery.OutEntry)) == 1 })
	waitFor(t, "the receipt of msg 1 at its sender", func() bool { return len(receiptsPushed(t, a)) == 1 })
	if got := receiptsPushed(t, a)[0]; got.MsgID != 1 || got.More != 0 || got.Read {
		t.Fatalf("receipt %+v, want delivered of msg 1 alone", got)
	}
}

// TestLogoutOfAReplacedSession: the logout of a connection that a newer
// login replaced leaves the newer one its user's session: it still gets
// new entries.
func TestLogoutOfAReplacedSession(t *testing.T) {
	r, a, _ := twoWaiting(t)
	first, second := &fakeConn{}, &fakeConn{}
	login(t, r, first, 2, 2)
	login(t, r, second, 2, 2)
	r.Logout(first.s(), delivery.To(2))
	send(t, r, a, 1, 3, 2)
	waitFor(t, "msg 3 on the newer connection", func() bool { return len(second.items(delivery.OutEntry)) == 1 })
}
