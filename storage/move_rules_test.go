package storage

import (
	"errors"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// These tests pin down rules of Move and Recount that the rest of the
// suite let slip: each fails if its rule is broken.

// storeWith opens a Badger store in dir, runs fill on it and closes it.
func storeWith(t *testing.T, dir string, fill func(s *engine)) {
	t.Helper()
	s, err := openBadger(smallConfig(dir, -1).withDefaults(), nil)
	if err != nil {
		t.Fatal(err)
	}
	fill(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func mustAppend(t *testing.T, s Store, e Entry) {
	t.Helper()
	if err := AppendWait(s, e); err != nil {
		t.Fatal(err)
	}
}

func openFolder(t *testing.T, dir string) *Folder {
	t.Helper()
	f, err := OpenFolder(smallConfig(dir, -1), false)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func unfinishedIn(t *testing.T, f *Folder) []Unfinished {
	t.Helper()
	h, err := f.Holdings()
	if err != nil {
		t.Fatal(err)
	}
	return h.Unfinished
}

// TestMoveRefusesItsArguments: a move of a folder into itself, or with a
// source name a marker cannot hold, is refused and changes nothing. (Into
// itself, a drained mailbox would be copied onto itself, seqs raised by
// its own mark, and then deleted whole: its mark, dedupe records and
// pending receipt gone.)
func TestMoveRefusesItsArguments(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	storeWith(t, dir, func(s *engine) {
		mustAppend(t, s, Entry{Recipient: 7, Seq: 1, Kind: KindMessage, Sender: 9, MsgID: 1, Value: []byte("x")})
		mustAck(t, s, 7, 1) // drained: its mark, a dedupe record, a pending receipt
	})
	storeWith(t, other, func(*engine) {})
	before := dump(t, dir)
	f, to := openFolder(t, dir), openFolder(t, other)
	if res, err := Move(f, f, []uint64{7}, "1"); err == nil {
		t.Errorf("move of a folder into itself: %+v, want an error", res)
	}
	for _, name := range []string{"", strings.Repeat("n", maxMoveFrom+1)} {
		if res, err := Move(f, to, []uint64{7}, name); err == nil {
			t.Errorf("move with a source name of %d bytes: %+v, want an error", len(name), res)
		}
	}
	if u := unfinishedIn(t, to); len(u) > 0 {
		t.Errorf("refused moves left markers: %+v", u)
	}
	f.Close()
	to.Close()
	if after := dump(t, dir); !maps.Equal(after, before) {
		t.Errorf("refused moves changed the source: %d keys, %d before", len(after), len(before))
	}
}

// TestMoveMarksBeforeCopying: a copy that fails part way leaves a marker
// saying so in the destination (a copy there without one would later look
// like a second home's mailbox and be refused), the source whole, and a
// rerun once the cause is gone finishes the move.
func TestMoveMarksBeforeCopying(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	storeWith(t, src, func(s *engine) {
		for seq := uint64(1); seq <= 2; seq++ {
			mustAppend(t, s, Entry{Recipient: 7, Seq: seq, Kind: KindMessage, Sender: 9, MsgID: seq, Value: []byte("x")})
		}
	})
	storeWith(t, dst, func(*engine) {})
	from, to := openFolder(t, src), openFolder(t, dst)
	defer func() { from.Close(); to.Close() }()
	bad := entryKey(7, 3) // an entry too short to be one: the copy stops there
	if err := from.write(func(wb *badger.WriteBatch) error { return wb.Set(bad, []byte{1}) }); err != nil {
		t.Fatal(err)
	}
	if _, err := Move(from, to, []uint64{7}, "1"); !errors.Is(err, errCorrupt) {
		t.Fatalf("move of a mailbox with a corrupt entry: %v, want errCorrupt", err)
	}
	if u := unfinishedIn(t, to); len(u) != 1 || u[0] != (Unfinished{ID: 7, From: "1"}) {
		t.Fatalf("the destination after a failed copy marks %+v, want a copy of 7 from 1 in progress", u)
	}
	if h, err := from.holds([]uint64{7}); err != nil || !h[7] {
		t.Fatalf("the source after a failed copy: holds 7 %v, %v", h[7], err)
	}
	if err := from.write(func(wb *badger.WriteBatch) error { return wb.Delete(bad) }); err != nil {
		t.Fatal(err)
	}
	res, err := Move(from, to, []uint64{7}, "1")
	if err != nil || !slices.Equal(res.IDs, []uint64{7}) || res.Entries != 2 {
		t.Fatalf("rerun: %+v, %v; want 7 moved with 2 entries", res, err)
	}
	if u := unfinishedIn(t, to); len(u) > 0 {
		t.Errorf("markers after the rerun: %+v", u)
	}
}

// TestMoveRefusesMore: Move stops on a marker of a copy in progress whose
// source holds nothing of the id (finishing it would take a partial copy
// for a whole one), and refuses, leaving them where they are, a group the
// destination holds a record of too, and an id whose seqs, raised by the
// destination's mark, would pass 2^64-1.
func TestMoveRefusesMore(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	group := GroupChange{Group: 5001, Actor: 1, MsgID: 1, Op: GroupCreate, Members: []uint64{2, 3}}
	storeWith(t, src, func(s *engine) {
		for seq := uint64(1); seq <= 2; seq++ {
			mustAppend(t, s, Entry{Recipient: 9, Seq: seq, Kind: KindMessage, Sender: 4, MsgID: seq, Value: []byte("x")})
		}
		if _, _, err := s.ChangeGroup(group); err != nil {
			t.Fatal(err)
		}
	})
	storeWith(t, dst, func(s *engine) {
		if _, _, err := s.ChangeGroup(group); err != nil {
			t.Fatal(err)
		}
	})
	from, to := openFolder(t, src), openFolder(t, dst)
	defer func() { from.Close(); to.Close() }()
	if err := to.write(func(wb *badger.WriteBatch) error {
		return errors.Join(
			wb.Set(markerKey(8), markerValue(moveCopying, 0, "1")),
			wb.Set(metaKey(9), putMeta(make([]byte, metaValLen), meta{hw: math.MaxUint64 - 1, floor: math.MaxUint64 - 1})),
		)
	}); err != nil {
		t.Fatal(err)
	}
	if res, err := Move(from, to, []uint64{8}, "1"); !errors.Is(err, errCorrupt) {
		t.Errorf("finishing a copy whose source holds nothing: %+v, %v; want errCorrupt", res, err)
	}
	if u := unfinishedIn(t, to); len(u) != 1 || u[0].ID != 8 {
		t.Errorf("the marker of 8 after the refusal: %+v", u)
	}
	res, err := Move(from, to, []uint64{9, 5001}, "1")
	if err != nil || len(res.IDs) != 0 || len(res.Refused) != 2 || res.Refused[0].ID != 9 || res.Refused[1].ID != 5001 {
		t.Fatalf("move of 9 (its seqs would overflow) and group 5001 (held by both): %+v, %v; want both refused", res, err)
	}
	if !strings.Contains(res.Refused[0].Reason, "overflows") {
		t.Errorf("refusal of 9: %q, want the overflow named", res.Refused[0].Reason)
	}
	if h, err := from.holds([]uint64{9, 5001}); err != nil || !h[9] || !h[5001] {
		t.Errorf("the source after the refusals: %v, %v; want 9 and 5001 still there", h, err)
	}
	err = to.db.View(func(txn *badger.Txn) error {
		if n := countPrefix(txn, entryPrefix(9), 10); n > 0 {
			t.Errorf("the destination holds %d entries of refused 9", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// pendingOf returns the pending receipts of acker in the store in dir.
func pendingOf(t *testing.T, dir string, acker uint64) []PendingReceipt {
	t.Helper()
	s, err := openBadger(smallConfig(dir, -1).withDefaults(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out []PendingReceipt
	if err := s.PendingReceipts(func(p PendingReceipt) bool {
		if p.Acker == acker {
			out = append(out, p)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMoveRaisesPendingReceipts: a user whose new home holds a drained
// mailbox of it, with a pending receipt from the same sender for the same
// seq as one the old home holds: the moved receipt's seq is raised with
// the entries, so both receipts are kept (the same key would keep one),
// and so is the floor.
func TestMoveRaisesPendingReceipts(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	storeWith(t, src, func(s *engine) {
		for seq := uint64(1); seq <= 3; seq++ {
			mustAppend(t, s, Entry{Recipient: 7, Seq: seq, Kind: KindMessage, Sender: 9, MsgID: seq, Value: []byte("x")})
		}
		mustAck(t, s, 7, 1)
	})
	storeWith(t, dst, func(s *engine) {
		mustAppend(t, s, Entry{Recipient: 7, Seq: 1, Kind: KindMessage, Sender: 9, MsgID: 500, Value: []byte("y")})
		mustAck(t, s, 7, 1)
	})
	ps, pd := pendingOf(t, src, 7), pendingOf(t, dst, 7)
	if len(ps) != 1 || len(pd) != 1 || ps[0].Key() != pd[0].Key() || ps[0].Sender != pd[0].Sender {
		t.Fatalf("pending receipts before the move: %+v and %+v; the test needs one each, of the same sender and key", ps, pd)
	}
	srcMeta, err := decodeMeta([]byte(dump(t, src)[string(metaKey(7))].value))
	if err != nil || srcMeta.floor != 1 {
		t.Fatalf("the source's meta of 7: %+v, %v", srcMeta, err)
	}
	from, to := openFolder(t, src), openFolder(t, dst)
	res, err := Move(from, to, []uint64{7}, "1")
	from.Close()
	to.Close()
	if err != nil || !slices.Equal(res.Renumbered, []uint64{7}) {
		t.Fatalf("move: %+v, %v; want 7 renumbered", res, err)
	}
	got := pendingOf(t, dst, 7)
	slices.SortFunc(got, func(a, b PendingReceipt) int { return cmpU64(a.Seq, b.Seq) })
	if len(got) != 2 || got[0].MsgID != 500 || got[0].Seq != pd[0].Seq || got[1].MsgID != ps[0].MsgID || got[1].Seq != ps[0].Seq+1 {
		t.Errorf("pending receipts of 7 after the move: %+v; want the destination's (seq %d) and the moved one at seq %d", got, pd[0].Seq, ps[0].Seq+1)
	}
	m, err := decodeMeta([]byte(dump(t, dst)[string(metaKey(7))].value))
	if err != nil || m.hw != 3+1 || m.floor != srcMeta.floor+1 || m.count != 2 {
		t.Errorf("the destination's meta of 7: %+v, %v; want hw 4, floor %d, count 2", m, err, srcMeta.floor+1)
	}
}

// TestRecountRules: Recount counts message entries with a sender against
// that sender (receipts and entries without a sender are not), deletes the
// count of a sender with nothing waiting, and says whether it changed
// anything.
func TestRecountRules(t *testing.T) {
	dir := t.TempDir()
	storeWith(t, dir, func(s *engine) {
		mustAppend(t, s, Entry{Recipient: 1, Seq: 1, Kind: KindMessage, Sender: 9, MsgID: 1, Value: []byte("abc")})
		mustAppend(t, s, Entry{Recipient: 1, Seq: 2, Kind: KindGroupMessage, Sender: 9, MsgID: 2, Value: []byte("de")})
		mustAppend(t, s, Entry{Recipient: 1, Seq: 3, Kind: KindReceipt, Sender: 9, MsgID: 3, Value: []byte("receipt")})
		mustAppend(t, s, Entry{Recipient: 2, Seq: 1, Kind: KindMessage, MsgID: 4, Value: []byte("no sender")})
	})
	f := openFolder(t, dir)
	if err := f.write(func(wb *badger.WriteBatch) error {
		return errors.Join(
			wb.Set(quotaKey(9), encodeUse(senderUse{count: 7, bytes: 70})),
			wb.Set(quotaKey(55), encodeUse(senderUse{count: 1, bytes: 1})), // nothing of 55 waits
		)
	}); err != nil {
		t.Fatal(err)
	}
	changed, err := f.Recount()
	if err != nil || !changed {
		t.Fatalf("Recount of wrong counts: changed %v, %v", changed, err)
	}
	if changed, err := f.Recount(); err != nil || changed {
		t.Errorf("a second Recount: changed %v, %v; want nothing to change", changed, err)
	}
	f.Close()
	d := dump(t, dir)
	var senders []uint64
	for k, v := range d {
		if k[0] != prefixQuota {
			continue
		}
		senders = append(senders, be64([]byte(k[1:])))
		if u, err := decodeUse([]byte(v.value)); err != nil || u != (senderUse{count: 2, bytes: 5}) {
			t.Errorf("sender %d's count after Recount: %+v, %v; want sender 9's, 2 entries of 5 bytes", be64([]byte(k[1:])), u, err)
		}
	}
	if !slices.Equal(senders, []uint64{9}) {
		t.Errorf("counts after Recount for senders %v, want [9]", senders)
	}
	tot, err := decodeTotals([]byte(d[string([]byte{prefixTotals})].value))
	if err != nil || tot != (totals{count: 4, bytes: 3 + 2 + 7 + 9}) {
		t.Errorf("totals after Recount: %+v, %v; want 4 entries, 21 bytes", tot, err)
	}
}

// TestHoldsAny: a folder that holds nothing an id owns says so, one that
// holds a message, or the mark an acknowledged one left, says it holds
// something.
func TestHoldsAny(t *testing.T) {
	holds := func(dir string) bool {
		t.Helper()
		f, err := OpenFolder(smallConfig(dir, -1), true)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		any, err := f.HoldsAny()
		if err != nil {
			t.Fatal(err)
		}
		return any
	}
	empty := t.TempDir()
	if holds(empty) {
		t.Error("an empty folder holds something")
	}
	for _, tc := range []struct {
		name string
		fill func(s Store) error
	}{
		{"a message", func(s Store) error {
			return AppendWait(s, Entry{Recipient: 7, Seq: 1, Kind: KindMessage, Sender: 9, MsgID: 1, Value: []byte("x")})
		}},
		{"a mark", func(s Store) error {
			if err := AppendWait(s, Entry{Recipient: 7, Seq: 1, Kind: KindMessage, Sender: 9, MsgID: 1, Value: []byte("x")}); err != nil {
				return err
			}
			_, err := AckWait(s, 7, 1)
			return err
		}},
	} {
		dir := t.TempDir()
		s, err := Open(smallConfig(dir, -1))
		if err != nil {
			t.Fatal(err)
		}
		err = tc.fill(s)
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !holds(dir) {
			t.Errorf("a folder with %s holds nothing", tc.name)
		}
	}
}
