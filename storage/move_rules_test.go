package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

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
	if len(res.Renumbered) > 0 {
		t.Errorf("the refused ids are reported renumbered too: %v", res.Renumbered)
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
	if err != nil || m.hw != 3+1 || m.floor != srcMeta.floor+1 || m.count != 2 || m.bytes != 2 {
		t.Errorf("the destination's meta of 7: %+v, %v; want hw 4, floor %d, count 2, bytes 2", m, err, srcMeta.floor+1)
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

// TestOwnerOfKeys: every owned key names its owner where keys.go puts it
// (the group of a membership's reverse index, the acker of a pending
// receipt, the group in a pending event's value); a store-wide key has
// none; a key of an owned prefix with the wrong length, or an event whose
// value is too short to name its group, is corrupt rather than read out
// of bounds; a prefix this build does not know stops a move.
func TestOwnerOfKeys(t *testing.T) {
	group7 := encodeGroupEvent(&GroupEvent{Group: 7, Op: GroupCreate})
	for _, tc := range []struct {
		name    string
		key     []byte
		value   []byte
		wantID  uint64
		wantOK  bool
		wantErr error
	}{
		{name: "entry", key: entryKey(7, 3), wantID: 7, wantOK: true},
		{name: "mark", key: metaKey(7), wantID: 7, wantOK: true},
		{name: "dedupe record", key: dedupeKey(1, 2, 7), wantID: 7, wantOK: true},
		{name: "group record", key: groupInfoKey(7), wantID: 7, wantOK: true},
		{name: "membership", key: memberKey(7, 9), wantID: 7, wantOK: true},
		{name: "reverse index", key: byUserKey(9, 7), wantID: 7, wantOK: true},
		{name: "pending receipt", key: putPendingKey(make([]byte, pendingKeyLen), 1, ReceiptKey{Acker: 7, Seq: 3}), wantID: 7, wantOK: true},
		{name: "pending event", key: groupEventKey(1, 2), value: group7, wantID: 7, wantOK: true},
		{name: "totals", key: []byte{prefixTotals}},
		{name: "sender use", key: quotaKey(9)},
		{name: "scratch", key: []byte{prefixScratch}},
		{name: "move marker", key: markerKey(7)},
		{name: "empty key", key: []byte{}, wantErr: errCorrupt},
		{name: "short entry", key: entryKey(7, 3)[:entryKeyLen-1], wantErr: errCorrupt},
		{name: "long mark", key: append(metaKey(7), 0), wantErr: errCorrupt},
		{name: "short dedupe record", key: dedupeKey(1, 2, 7)[:dedupeKeyLen-1], wantErr: errCorrupt},
		{name: "short group key", key: groupInfoKey(7)[:groupPrefixSz-1], wantErr: errCorrupt},
		{name: "short reverse index", key: byUserKey(9, 7)[:byUserKeyLen-1], wantErr: errCorrupt},
		{name: "short pending receipt", key: putPendingKey(make([]byte, pendingKeyLen), 1, ReceiptKey{Acker: 7, Seq: 3})[:pendingKeyLen-1], wantErr: errCorrupt},
		{name: "pending event without its group", key: groupEventKey(1, 2), value: group7[:7], wantErr: errCorrupt},
		{name: "unknown prefix", key: []byte{'x', 0, 7}, wantErr: ErrUnknownKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, ok, err := owner(tc.key, func(fn func([]byte) error) error { return fn(tc.value) })
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("owner of %x: %v, want %v", tc.key, err, tc.wantErr)
			}
			if tc.wantErr == nil && (id != tc.wantID || ok != tc.wantOK) {
				t.Errorf("owner of %x: %d, %v; want %d, %v", tc.key, id, ok, tc.wantID, tc.wantOK)
			}
		})
	}
}

// TestMoveSkipsWhatItDoesNotHold: an id the source holds nothing of is
// not moved, marked, nor reported, even if the destination holds a mark
// of it (which stays as it was); an id moving into a destination without
// a mark of it keeps its seqs and is not reported renumbered. Both stores'
// totals count what they hold afterwards.
func TestMoveSkipsWhatItDoesNotHold(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	storeWith(t, src, func(s *engine) {
		mustAppend(t, s, Entry{Recipient: 7, Seq: 1, Kind: KindMessage, Sender: 9, MsgID: 1, Value: []byte("x")})
	})
	storeWith(t, dst, func(s *engine) {
		mustAppend(t, s, Entry{Recipient: 8, Seq: 1, Kind: KindMessage, Sender: 9, MsgID: 2, Value: []byte("y")})
		mustAck(t, s, 8, 1) // drained: 8's mark alone
	})
	before := ownedBy(dump(t, dst), 8)
	from, to := openFolder(t, src), openFolder(t, dst)
	res, err := Move(from, to, []uint64{7, 8, 9}, "1")
	u := unfinishedIn(t, to)
	from.Close()
	to.Close()
	if err != nil || !slices.Equal(res.IDs, []uint64{7}) || len(res.Renumbered) > 0 || len(res.Refused) > 0 {
		t.Fatalf("move of 7 (held), 8 (a mark in the destination) and 9 (nowhere): %+v, %v; want 7 alone moved, none renumbered", res, err)
	}
	if len(u) > 0 {
		t.Errorf("markers after the move: %+v", u)
	}
	if after := ownedBy(dump(t, dst), 8); !maps.Equal(after, before) {
		t.Errorf("the destination's keys of 8, which did not move, changed: %d keys, %d before", len(after), len(before))
	}
	if box := readMailbox(t, dst, 7); box.last != 1 || len(box.entries) != 1 || box.entries[0].Seq != 1 {
		t.Errorf("7 in the destination: %+v; want its entry at seq 1", box)
	}
	for dir, want := range map[string]totals{src: {}, dst: {count: 1, bytes: 1}} {
		if tot, err := decodeTotals([]byte(dump(t, dir)[string([]byte{prefixTotals})].value)); err != nil || tot != want {
			t.Errorf("totals of %s after the move: %+v, %v; want %+v", dir, tot, err, want)
		}
	}
}

// TestMoveFinishesAfterSourceDeleted: a crash after the source's deletion
// and before the destination's marker is removed leaves the id whole in
// the destination, marked, and nothing of it in the source. The rerun
// removes the marker and reports the id moved, copying nothing.
func TestMoveFinishesAfterSourceDeleted(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	storeWith(t, src, func(s *engine) {
		for seq := uint64(1); seq <= 2; seq++ {
			mustAppend(t, s, Entry{Recipient: 7, Seq: seq, Kind: KindMessage, Sender: 9, MsgID: seq, Value: []byte{'a' + byte(seq)}})
		}
	})
	storeWith(t, dst, func(*engine) {})
	from, to := openFolder(t, src), openFolder(t, dst)
	errCrash := errors.New("crash")
	if _, err := move(from, to, []uint64{7}, "1", func() error { return errCrash }); !errors.Is(err, errCrash) {
		t.Fatalf("move: %v, want the crash", err)
	}
	// What the crashed run would have done next: delete the source's keys.
	if err := deleteIDs(from, map[uint64]*moving{7: {}}); err != nil {
		t.Fatal(err)
	}
	if h, err := from.holds([]uint64{7}); err != nil || h[7] {
		t.Fatalf("the source after its deletion: holds 7 %v, %v", h[7], err)
	}
	if u := unfinishedIn(t, to); len(u) != 1 || u[0] != (Unfinished{ID: 7, From: "1", Copied: true}) {
		t.Fatalf("the destination after the crash marks %+v, want a whole copy of 7 from 1", u)
	}
	res, err := Move(from, to, []uint64{7}, "1")
	u := unfinishedIn(t, to)
	from.Close()
	to.Close()
	if err != nil || !slices.Equal(res.IDs, []uint64{7}) || res.Keys != 0 {
		t.Fatalf("rerun: %+v, %v; want 7 moved, no key copied", res, err)
	}
	if len(u) > 0 {
		t.Errorf("markers after the rerun: %+v", u)
	}
	box := readMailbox(t, dst, 7)
	if box.last != 2 || len(box.entries) != 2 || string(box.entries[0].Value) != "b" || string(box.entries[1].Value) != "c" {
		t.Errorf("7 in the destination: %+v; want its 2 entries", box)
	}
}

// TestMoveRedoesCopyWithItsOffset: a copy that failed into a destination
// holding a mark of the id is redone with the offset its marker recorded,
// so the entries land once, above that mark.
func TestMoveRedoesCopyWithItsOffset(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	storeWith(t, src, func(s *engine) {
		for seq := uint64(1); seq <= 3; seq++ {
			mustAppend(t, s, Entry{Recipient: 7, Seq: seq, Kind: KindMessage, Sender: 9, MsgID: seq, Value: []byte{'a' + byte(seq)}})
		}
	})
	storeWith(t, dst, func(s *engine) {
		for seq := uint64(1); seq <= 2; seq++ {
			mustAppend(t, s, Entry{Recipient: 7, Seq: seq, Kind: KindMessage, Sender: 9, MsgID: 100 + seq, Value: []byte("old")})
		}
		mustAck(t, s, 7, 2) // drained: a mark of 2
	})
	second := []byte(dump(t, src)[string(entryKey(7, 2))].value)
	from, to := openFolder(t, src), openFolder(t, dst)
	defer func() { from.Close(); to.Close() }()
	// The second entry made too short to be one: the copy stops there,
	// after the marker is written. (The plan reads the entries above the
	// stored mark, which may lag them: the mark is made exact.)
	if err := from.write(func(wb *badger.WriteBatch) error {
		return errors.Join(
			wb.Set(entryKey(7, 2), []byte{1}),
			wb.Set(metaKey(7), putMeta(make([]byte, metaValLen), meta{hw: 3, count: 3, bytes: 3})),
		)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := Move(from, to, []uint64{7}, "1"); !errors.Is(err, errCorrupt) {
		t.Fatalf("move of a mailbox with a corrupt entry: %v, want errCorrupt", err)
	}
	if u := unfinishedIn(t, to); len(u) != 1 || u[0] != (Unfinished{ID: 7, From: "1"}) {
		t.Fatalf("the destination after a failed copy marks %+v, want a copy of 7 from 1 in progress", u)
	}
	if err := from.write(func(wb *badger.WriteBatch) error { return wb.Set(entryKey(7, 2), second) }); err != nil {
		t.Fatal(err)
	}
	if res, err := Move(from, to, []uint64{7}, "1"); err != nil || !slices.Equal(res.IDs, []uint64{7}) || res.Entries != 3 {
		t.Fatalf("rerun: %+v, %v; want 7 moved with 3 entries", res, err)
	}
	from.Close()
	to.Close()
	box := readMailbox(t, dst, 7)
	var got []string
	for _, e := range box.entries {
		got = append(got, fmt.Sprintf("%d:%s", e.Seq, e.Value))
	}
	if want := "[3:b 4:c 5:d]"; box.last != 5 || fmt.Sprint(got) != want {
		t.Errorf("7 in the destination: mark %d, entries %v; want mark 5, entries %s", box.last, got, want)
	}
}

// TestHoldsAnyMarkersAndSums: a folder whose ids all moved away holds
// nothing, though its store-wide sums remain; one that holds only a
// marker of a move into it holds something (the move must be finished
// before it is served as another node).
func TestHoldsAnyMarkersAndSums(t *testing.T) {
	src, dst, marked := t.TempDir(), t.TempDir(), t.TempDir()
	storeWith(t, src, func(s *engine) {
		mustAppend(t, s, Entry{Recipient: 7, Seq: 1, Kind: KindMessage, Sender: 9, MsgID: 1, Value: []byte("x")})
	})
	storeWith(t, dst, func(*engine) {})
	from, to := openFolder(t, src), openFolder(t, dst)
	res, err := Move(from, to, []uint64{7}, "1")
	if err != nil || !slices.Equal(res.IDs, []uint64{7}) {
		t.Fatalf("move: %+v, %v", res, err)
	}
	srcHolds, err1 := from.HoldsAny()
	dstHolds, err2 := to.HoldsAny()
	from.Close()
	to.Close()
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	if countKeys(dump(t, src), prefixTotals) == 0 {
		t.Fatal("the emptied source keeps no totals: the test needs a store-wide key left")
	}
	if srcHolds || !dstHolds {
		t.Errorf("after the move the source holds something: %v, the destination: %v; want false, true", srcHolds, dstHolds)
	}

	f, err := OpenFolder(smallConfig(marked, -1), true)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.write(func(wb *badger.WriteBatch) error {
		return wb.Set(markerKey(7), markerValue(moveCopying, 0, "1"))
	}); err != nil {
		t.Fatal(err)
	}
	if holds, err := f.HoldsAny(); err != nil || !holds {
		t.Errorf("a folder with a move marker alone holds something: %v, %v; want true", holds, err)
	}
}

// TestOpenFolderRefusesConfig: a config without a folder, or with an
// invalid field, is refused before any folder is made.
func TestOpenFolderRefusesConfig(t *testing.T) {
	root := t.TempDir()
	invalid := smallConfig(filepath.Join(root, "invalid"), -1)
	invalid.MaxMailboxMessages = -1
	for _, cfg := range []Config{smallConfig("", -1), invalid} {
		if f, err := OpenFolder(cfg, true); !errors.Is(err, ErrInvalidConfig) {
			if f != nil {
				f.Close()
			}
			t.Errorf("OpenFolder of %q with MaxMailboxMessages %d: %v, want ErrInvalidConfig", cfg.Dir, cfg.MaxMailboxMessages, err)
		}
	}
	if ents, err := os.ReadDir(root); err != nil || len(ents) != 0 {
		t.Errorf("refused opens made %d folders (%v)", len(ents), err)
	}
}

// TestHoldingsOfTheLastID: Holdings, which reads one entry per mailbox and
// skips the rest, lists a mailbox of the largest id and returns (there is
// no next mailbox to skip to).
func TestHoldingsOfTheLastID(t *testing.T) {
	dir := t.TempDir()
	storeWith(t, dir, func(s *engine) {
		for _, r := range []uint64{5, math.MaxUint64} {
			for seq := uint64(1); seq <= 2; seq++ {
				mustAppend(t, s, Entry{Recipient: r, Seq: seq, Kind: KindMessage, Sender: 9, MsgID: seq, Value: []byte("x")})
			}
		}
	})
	f := openFolder(t, dir)
	defer f.Close()
	done := make(chan Holdings, 1)
	go func() {
		h, err := f.Holdings()
		if err != nil {
			t.Error(err)
		}
		done <- h
	}()
	select {
	case h := <-done:
		if !slices.Equal(h.IDs, []uint64{5, math.MaxUint64}) {
			t.Errorf("holdings %v, want 5 and 2^64-1", h.IDs)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Holdings of a folder holding the largest id did not return in 30 s")
	}
}

// TestFolderWriteSurvivesAKill: what a folder opened offline committed and
// synced (a move's copy, its markers) lives in Badger's memtable log until
// a flush; opened again after a kill -9 (here, a copy of the folder taken
// while it was open), the folder still holds it.
func TestFolderWriteSurvivesAKill(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	storeWith(t, dir, func(s *engine) {
		mustAppend(t, s, Entry{Recipient: 1, Seq: 1, Kind: KindMessage, Sender: 2, MsgID: 1, Value: []byte("x")})
	})
	f := openFolder(t, dir)
	want := markerValue(moveCopied, 0, "a")
	err := f.write(func(wb *badger.WriteBatch) error { return wb.Set(markerKey(7), want) })
	if err == nil {
		err = f.db.Sync()
	}
	if err != nil {
		t.Fatal(err)
	}
	image := filepath.Join(t.TempDir(), "db") // what a kill -9 now leaves on disk
	err = os.CopyFS(image, os.DirFS(dir))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	g := openFolder(t, image)
	defer g.Close()
	var got []byte
	err = g.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(markerKey(7))
		if err != nil {
			return err
		}
		got, err = item.ValueCopy(nil)
		return err
	})
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("the marker after a kill: %x, %v; want %x", got, err, want)
	}
}

// TestOpenFolderAfterAFailedReplay: a folder whose in-flight log holds a
// record that does not decode (its checksum matches) is refused, and the
// refusal releases the folder: once the segment is gone, it opens.
func TestOpenFolderAfterAFailedReplay(t *testing.T) {
	dir := t.TempDir()
	storeWith(t, dir, func(s *engine) {
		mustAppend(t, s, Entry{Recipient: 1, Seq: 1, Kind: KindMessage, Sender: 2, MsgID: 1, Value: []byte("x")})
	})
	payload := []byte{9, 1, 'k'} // an op that does not exist
	rec := binary.BigEndian.AppendUint32(nil, uint32(len(payload)))
	rec = binary.BigEndian.AppendUint32(rec, recordSum(1, payload))
	seg := filepath.Join(dir, tierLogDir, segName(1))
	if err := os.MkdirAll(filepath.Dir(seg), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(seg, slices.Concat([]byte(tierMagic), rec, payload), 0o600); err != nil {
		t.Fatal(err)
	}
	if f, err := OpenFolder(smallConfig(dir, -1), false); !errors.Is(err, errTierRecord) {
		if f != nil {
			f.Close()
		}
		t.Fatalf("OpenFolder with a malformed log record: %v, want errTierRecord", err)
	}
	if err := os.Remove(seg); err != nil {
		t.Fatal(err)
	}
	f := openFolder(t, dir)
	defer f.Close()
	if h, err := f.Holdings(); err != nil || !slices.Equal(h.IDs, []uint64{1}) {
		t.Fatalf("holdings %v (%v), want id 1", h.IDs, err)
	}
}

// TestRecountRefusesCorruptKeys: Recount of a folder holding a count under
// a key of the wrong length, or an entry too short for its header, fails
// with errCorrupt and writes nothing.
func TestRecountRefusesCorruptKeys(t *testing.T) {
	for _, tc := range []struct {
		name   string
		key, v []byte
	}{
		{"long count key", append(quotaKey(9), 0), encodeUse(senderUse{count: 1, bytes: 1})},
		{"short entry", entryKey(5, 1), []byte{byte(KindMessage)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			storeWith(t, dir, func(s *engine) {
				mustAppend(t, s, Entry{Recipient: 1, Seq: 1, Kind: KindMessage, Sender: 9, MsgID: 1, Value: []byte("abc")})
			})
			f := openFolder(t, dir)
			if err := f.write(func(wb *badger.WriteBatch) error {
				return errors.Join(wb.Set(tc.key, tc.v), wb.Delete([]byte{prefixTotals}))
			}); err != nil {
				t.Fatal(err)
			}
			if changed, err := f.Recount(); !errors.Is(err, errCorrupt) {
				t.Errorf("Recount: changed %v, %v; want errCorrupt", changed, err)
			}
			f.Close()
			if v, ok := dump(t, dir)[string([]byte{prefixTotals})]; ok {
				t.Errorf("totals written by a refused Recount: %x", v.value)
			}
		})
	}
}

// TestOpenRefusesCorruptTotals: a store whose totals record does not
// decode is refused at open with errCorrupt, and the refusal releases the
// folder: it can be opened offline and mended, and then the store opens
// with what it held.
func TestOpenRefusesCorruptTotals(t *testing.T) {
	dir := t.TempDir()
	storeWith(t, dir, func(s *engine) {
		mustAppend(t, s, Entry{Recipient: 1, Seq: 1, Kind: KindMessage, Sender: 9, MsgID: 1, Value: []byte("abc")})
	})
	setTotals := func(v []byte) {
		f := openFolder(t, dir)
		defer f.Close()
		if err := f.write(func(wb *badger.WriteBatch) error { return wb.Set([]byte{prefixTotals}, v) }); err != nil {
			t.Fatal(err)
		}
	}
	setTotals([]byte{1})
	cfg := smallConfig(dir, -1).withDefaults()
	if s, err := openBadger(cfg, nil); !errors.Is(err, errCorrupt) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("open with corrupt totals: %v, want errCorrupt", err)
	}
	setTotals(encodeTotals(totals{count: 1, bytes: 3}))
	s, err := openBadger(cfg, nil)
	if err != nil {
		t.Fatalf("open with the totals mended: %v", err)
	}
	defer s.Close()
	if got := values(t, s, 1); len(got) != 1 {
		t.Fatalf("recipient 1 holds %v, want its one entry", got)
	}
}
