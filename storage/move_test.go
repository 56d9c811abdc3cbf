package storage

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"switchboard/home"
)

// moveNodes are the node lists of the move tests: two nodes, then three.
var (
	moveOld = []uint32{1, 2}
	moveNew = []uint32{1, 2, 3}
)

// moveFixture fills the stores of nodes 1 and 2 (and 3, left empty but
// for stale), each id in its home under moveOld: users 1..30 with two to
// five messages each from three senders, every third of them acked its
// first (a pending receipt, a floor), every fifth acked all (a drained
// mailbox: only its mark); groups 5001..5008 created by user 1 with
// members 2 and 3 (records, memberships, a pending event). stale, if not
// zero, is a user whose new home (3) already holds a drained mailbox with
// the mark 502. It returns the three folders' paths.
func moveFixture(t *testing.T, stale uint64) map[uint32]string {
	t.Helper()
	dirs := map[uint32]string{}
	stores := map[uint32]*engine{}
	for _, n := range moveNew {
		dirs[n] = t.TempDir()
		s, err := openBadger(smallConfig(dirs[n], -1).withDefaults(), nil)
		if err != nil {
			t.Fatal(err)
		}
		stores[n] = s
	}
	for u := uint64(1); u <= 30; u++ {
		s := stores[home.Of(u, moveOld)]
		n := 2 + u%4
		for i := uint64(1); i <= n; i++ {
			e := Entry{Recipient: u, Seq: i, Kind: KindMessage, Sender: 900 + u%3, MsgID: u*100 + i, Value: fmt.Appendf(nil, "to %d, #%d", u, i)}
			if err := AppendWait(s, e); err != nil {
				t.Fatal(err)
			}
		}
		switch {
		case u%5 == 0:
			mustAck(t, s, u, n)
		case u%3 == 0:
			mustAck(t, s, u, 1)
		}
	}
	for g := uint64(5001); g <= 5008; g++ {
		s := stores[home.Of(g, moveOld)]
		if _, _, err := s.ChangeGroup(GroupChange{Group: g, Actor: 1, MsgID: g, Op: GroupCreate, Members: []uint64{2, 3}}); err != nil {
			t.Fatal(err)
		}
	}
	if stale != 0 {
		s := stores[3]
		for i := uint64(500); i <= 502; i++ {
			if err := AppendWait(s, Entry{Recipient: stale, Seq: i, Kind: KindMessage, Sender: 77, MsgID: i, Value: []byte("old")}); err != nil {
				t.Fatal(err)
			}
		}
		mustAck(t, s, stale, 502)
	}
	for _, s := range stores {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return dirs
}

func mustAck(t *testing.T, s Store, r, upto uint64) {
	t.Helper()
	if _, err := AckWait(s, r, upto); err != nil {
		t.Fatal(err)
	}
}

// moveAll does what the move command does: every id a folder holds whose
// home under nodes is another node moves there, and unfinished moves into
// a folder are finished. crash, when not nil, is the hook of move.
func moveAll(t *testing.T, dirs map[uint32]string, nodes []uint32, crash func() error) (moved []uint64, err error) {
	t.Helper()
	folders := map[uint32]*Folder{}
	for n, dir := range dirs {
		f, err := OpenFolder(smallConfig(dir, -1), false)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		folders[n] = f
	}
	type pair struct{ from, to uint32 }
	plan := map[pair][]uint64{}
	for n, f := range folders {
		h, err := f.Holdings()
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range h.IDs {
			if to := home.Of(id, nodes); to != n {
				plan[pair{n, to}] = append(plan[pair{n, to}], id)
			}
		}
		for _, u := range h.Unfinished {
			from, _ := strconv.ParseUint(u.From, 10, 32)
			plan[pair{uint32(from), n}] = append(plan[pair{uint32(from), n}], u.ID)
		}
	}
	for _, p := range slices.SortedFunc(maps.Keys(plan), func(a, b pair) int { return int(a.from*10+a.to) - int(b.from*10+b.to) }) {
		res, err := move(folders[p.from], folders[p.to], plan[p], strconv.Itoa(int(p.from)), crash)
		if err != nil {
			return moved, err
		}
		if len(res.Refused) > 0 {
			t.Fatalf("refused: %v", res.Refused)
		}
		moved = append(moved, res.IDs...)
	}
	slices.Sort(moved)
	return moved, nil
}

// rawKey is one key of a folder as stored.
type rawKey struct {
	owner   uint64
	owned   bool
	value   string
	expires uint64
}

// dump reads every key of the folder in dir.
func dump(t *testing.T, dir string) map[string]rawKey {
	t.Helper()
	f, err := OpenFolder(smallConfig(dir, -1), false)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]rawKey{}
	err = f.db.View(func(txn *badger.Txn) error {
		return each(txn, nil, func(item *badger.Item) error {
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			id, ok, err := ownerOf(item)
			out[string(item.KeyCopy(nil))] = rawKey{id, ok, string(v), item.ExpiresAt()}
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ownedBy returns the keys of d that id owns, but its mark ('h': a stored
// mark may lag its entries, and a move writes the exact one).
func ownedBy(d map[string]rawKey, id uint64) map[string]rawKey {
	out := map[string]rawKey{}
	for k, v := range d {
		if v.owned && v.owner == id && k[0] != prefixMeta {
			out[k] = v
		}
	}
	return out
}

// mailbox is what a reopened store says of r: its mark and its entries.
type mailbox struct {
	last    uint64
	entries []Entry
}

func readMailbox(t *testing.T, dir string, r uint64) mailbox {
	t.Helper()
	s, err := openBadger(smallConfig(dir, -1).withDefaults(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	last, err := s.LastSeq(r)
	if err != nil {
		t.Fatal(err)
	}
	es, _, err := s.Read(r, 0, 100, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	return mailbox{last, es}
}

// TestMoveToThreeNodes moves the ids homed on two nodes to their homes
// under three: each moved id's keys are in its new home byte for byte
// (entries in order, seqs kept; a stale mark there raises them above it)
// and nowhere else; the ids that stay are untouched; the counts are
// right; and a second run changes nothing.
func TestMoveToThreeNodes(t *testing.T) {
	stale := staleUser(t)
	dirs := moveFixture(t, stale)
	before := map[uint32]map[string]rawKey{}
	boxes := map[uint64]mailbox{}
	for n, dir := range dirs {
		before[n] = dump(t, dir)
	}
	var want []uint64 // the ids that move
	for id := uint64(1); id <= 5008; id++ {
		if (id <= 30 || id > 5000) && home.Of(id, moveOld) != home.Of(id, moveNew) {
			want = append(want, id)
			if id <= 30 {
				boxes[id] = readMailbox(t, dirs[home.Of(id, moveOld)], id)
			}
		}
	}
	staleBox := readMailbox(t, dirs[3], stale)
	if staleBox.last != 502 || len(staleBox.entries) != 0 {
		t.Fatalf("stale mailbox on node 3: %+v", staleBox)
	}

	moved, err := moveAll(t, dirs, moveNew, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(moved, want) {
		t.Fatalf("moved %v, want %v", moved, want)
	}
	after := map[uint32]map[string]rawKey{}
	for n, dir := range dirs {
		after[n] = dump(t, dir)
	}
	for _, id := range want {
		from, to := home.Of(id, moveOld), home.Of(id, moveNew)
		if left := ownedBy(after[from], id); len(left) > 0 || after[from][string(metaKey(id))] != (rawKey{}) {
			t.Errorf("id %d: node %d still holds %d keys of it", id, from, len(left))
		}
		got, old := ownedBy(after[to], id), ownedBy(before[from], id)
		if id == stale {
			// Its own old keys (the dedupe records, the pending
			// receipt of its drained mailbox) stay, and the moved ones
			// come with every seq raised by 502.
			maps.Copy(old, ownedBy(before[to], id))
		}
		if id != stale && !maps.Equal(got, old) {
			t.Errorf("id %d on node %d: %d keys, %d on node %d before the move, or different bytes", id, to, len(got), len(old), from)
		}
		if id == stale && len(got) != len(old) {
			t.Errorf("id %d on node %d: %d keys, want %d", id, to, len(got), len(old))
		}
		if id > 30 {
			continue
		}
		box, was := readMailbox(t, dirs[to], id), boxes[id]
		offset := uint64(0)
		if id == stale {
			offset = 502
		}
		if box.last != was.last+offset || len(box.entries) != len(was.entries) {
			t.Fatalf("user %d on node %d: mark %d, %d entries; was %d, %d (offset %d)", id, to, box.last, len(box.entries), was.last, len(was.entries), offset)
		}
		for i, e := range box.entries {
			w := was.entries[i]
			if e.Seq != w.Seq+offset || e.Sender != w.Sender || e.MsgID != w.MsgID || e.Time != w.Time || !bytes.Equal(e.Value, w.Value) {
				t.Errorf("user %d entry %d: seq %d %q, was seq %d %q", id, i, e.Seq, e.Value, w.Seq, w.Value)
			}
		}
	}
	// The stale user's dedupe records and pending receipt point at the
	// raised seqs.
	s, err := openBadger(smallConfig(dirs[3], -1).withDefaults(), nil)
	if err != nil {
		t.Fatal(err)
	}
	was := boxes[stale]
	if len(was.entries) > 0 {
		w := was.entries[0]
		if d, ok, err := s.Lookup(w.Sender, w.MsgID, stale); err != nil || !ok || d.Seq != w.Seq+502 {
			t.Errorf("lookup of the stale user's first entry: %+v %v %v, want seq %d", d, ok, err, w.Seq+502)
		}
	}
	var pend []PendingReceipt
	if err := s.PendingReceipts(func(p PendingReceipt) bool {
		if p.Acker == stale {
			pend = append(pend, p)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	wantPend := 1 // node 3's own, from its drained mailbox
	if stale%3 == 0 {
		wantPend = 2 // and the one the first ack left at the old home, raised
	}
	if len(pend) != wantPend || pend[0].Seq != 500 || (wantPend == 2 && pend[1].Seq != 1+502) {
		t.Errorf("pending receipts of the stale user on node 3: %+v", pend)
	}
	stored := s.Stats().StoredMessages
	s.Close()
	if n := countKeys(after[3], prefixEntry); stored != uint64(n) {
		t.Errorf("node 3 counts %d stored messages, holds %d entries", stored, n)
	}
	for _, g := range want {
		if g < 5000 {
			continue
		}
		to := home.Of(g, moveNew)
		s, err := openBadger(smallConfig(dirs[to], -1).withDefaults(), nil)
		if err != nil {
			t.Fatal(err)
		}
		ms, err := s.Members(g)
		var evs int
		s.PendingGroupEvents(func(ev GroupEvent) bool {
			if ev.Group == g {
				evs++
			}
			return true
		})
		s.Close()
		if err != nil || len(ms) != 3 || evs != 1 {
			t.Errorf("group %d on node %d: members %v (%v), %d pending events", g, to, ms, err, evs)
		}
	}
	// The ids that stay are untouched, byte for byte, marks included.
	for n := range dirs {
		for k, v := range before[n] {
			if v.owned && !slices.Contains(want, v.owner) && after[n][k] != v {
				t.Errorf("node %d: key %x of id %d that stays changed", n, k, v.owner)
			}
		}
	}

	// A second run finds nothing to move and writes nothing.
	moved, err = moveAll(t, dirs, moveNew, nil)
	if err != nil || len(moved) > 0 {
		t.Fatalf("rerun moved %v, %v", moved, err)
	}
	for n, dir := range dirs {
		if again := dump(t, dir); !maps.Equal(again, after[n]) {
			t.Errorf("node %d changed on the rerun: %d keys, %d before", n, len(again), len(after[n]))
		}
	}
}

// staleUser returns the user of moveFixture moving to node 3 with the most
// entries waiting, preferring one with a pending receipt.
func staleUser(t *testing.T) uint64 {
	t.Helper()
	var best, most uint64
	for u := uint64(1); u <= 30; u++ {
		if home.Of(u, moveNew) != 3 || u%5 == 0 {
			continue // stays, or drained
		}
		score := 2 * (2 + u%4) // entries stored
		if u%3 == 0 {
			score-- // one acked: one entry fewer, a pending receipt more
		}
		if score > most {
			best, most = u, score
		}
	}
	if best == 0 {
		t.Fatal("no user moves to node 3")
	}
	return best
}

func countKeys(d map[string]rawKey, prefix byte) int {
	n := 0
	for k := range d {
		if k[0] == prefix {
			n++
		}
	}
	return n
}

// TestMoveInterrupted stops a move after the destination committed its
// copy and before the source's keys are deleted (a crash at the worst
// moment): both hold the ids, the destination marks the moves unfinished,
// and a rerun leaves exactly one copy, with seqs raised once.
func TestMoveInterrupted(t *testing.T) {
	stale := staleUser(t)
	dirs := moveFixture(t, stale)
	was := readMailbox(t, dirs[home.Of(stale, moveOld)], stale)
	errCrash := errors.New("crash")
	if _, err := moveAll(t, dirs, moveNew, func() error { return errCrash }); !errors.Is(err, errCrash) {
		t.Fatalf("move: %v, want the crash", err)
	}
	f, err := OpenFolder(smallConfig(dirs[3], -1), false)
	if err != nil {
		t.Fatal(err)
	}
	h, err := f.Holdings()
	f.Close()
	if err != nil || len(h.Unfinished) == 0 || !h.Unfinished[0].Copied {
		t.Fatalf("node 3 after the crash: %+v, %v", h.Unfinished, err)
	}
	if box := readMailbox(t, dirs[home.Of(stale, moveOld)], stale); len(box.entries) != len(was.entries) {
		t.Fatalf("the crash deleted %d entries of the source", len(was.entries)-len(box.entries))
	}

	if _, err := moveAll(t, dirs, moveNew, nil); err != nil {
		t.Fatal(err)
	}
	box := readMailbox(t, dirs[3], stale)
	if len(box.entries) != len(was.entries) || box.last != was.last+502 {
		t.Fatalf("after the rerun node 3 holds %d entries up to %d; want %d up to %d", len(box.entries), box.last, len(was.entries), was.last+502)
	}
	for i, e := range box.entries {
		if e.Seq != was.entries[i].Seq+502 || !bytes.Equal(e.Value, was.entries[i].Value) {
			t.Errorf("entry %d: seq %d %q, want %d %q", i, e.Seq, e.Value, was.entries[i].Seq+502, was.entries[i].Value)
		}
	}
	for n, dir := range dirs {
		d := dump(t, dir)
		if c := countKeys(d, prefixMoving); c > 0 {
			t.Errorf("node %d keeps %d move markers", n, c)
		}
		for _, v := range d {
			if v.owned && home.Of(v.owner, moveNew) != n {
				t.Errorf("node %d holds a key of %d, homed on %d", n, v.owner, home.Of(v.owner, moveNew))
			}
		}
	}
}

// TestMoveRefuses leaves an id where it is when its new home holds a
// mailbox of it with entries (two homes held it), and an unfinished move
// of an id from another source.
func TestMoveRefuses(t *testing.T) {
	dirs := map[uint32]string{1: t.TempDir(), 2: t.TempDir()}
	for _, dir := range dirs {
		s, err := openBadger(smallConfig(dir, -1).withDefaults(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := AppendWait(s, Entry{Recipient: 7, Seq: 1, Kind: KindMessage, Sender: 9, MsgID: 1, Value: []byte(dir)}); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	from, err := OpenFolder(smallConfig(dirs[1], -1), false)
	if err != nil {
		t.Fatal(err)
	}
	defer from.Close()
	to, err := OpenFolder(smallConfig(dirs[2], -1), false)
	if err != nil {
		t.Fatal(err)
	}
	defer to.Close()
	res, err := Move(from, to, []uint64{7}, "1")
	if err != nil || len(res.IDs) != 0 || len(res.Refused) != 1 || res.Refused[0].ID != 7 {
		t.Fatalf("move of a mailbox both hold: %+v, %v", res, err)
	}
	if err := to.write(func(wb *badger.WriteBatch) error {
		return wb.Set(markerKey(8), markerValue(moveCopied, 0, "3"))
	}); err != nil {
		t.Fatal(err)
	}
	res, err = Move(from, to, []uint64{8}, "1")
	if err != nil || len(res.IDs) != 0 || len(res.Refused) != 1 || res.Refused[0].ID != 8 {
		t.Fatalf("move over another source's unfinished move: %+v, %v", res, err)
	}
}

// TestOpenFolderInUse: an offline tool cannot open a folder a store has
// open (Badger's lock), and can once it is closed; a source folder that
// does not exist is not created.
func TestOpenFolderInUse(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(smallConfig(dir, -1))
	if err != nil {
		t.Fatal(err)
	}
	if f, err := OpenFolder(smallConfig(dir, -1), false); !errors.Is(err, ErrInUse) {
		if f != nil {
			f.Close()
		}
		t.Fatalf("OpenFolder on a running store: %v, want ErrInUse", err)
	}
	s.Close()
	f, err := OpenFolder(smallConfig(dir, -1), false)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := OpenFolder(smallConfig(dir+"/absent", -1), false); !errors.Is(err, ErrNoStore) {
		t.Fatalf("OpenFolder on an absent folder: %v, want ErrNoStore", err)
	}
}

// TestMoveFinishesPartialDelete: a crash after the copy and in the middle
// of the source's deletion (a large mailbox's deletion takes several
// transactions) leaves the source holding part of the id. The rerun only
// deletes the rest: it does not copy the part again over the whole copy,
// whose mark and count stay those of every entry.
func TestMoveFinishesPartialDelete(t *testing.T) {
	stale := staleUser(t)
	dirs := moveFixture(t, 0)
	from := home.Of(stale, moveOld)
	was := readMailbox(t, dirs[from], stale)
	if len(was.entries) < 2 {
		t.Fatalf("user %d has %d entries; the test needs two", stale, len(was.entries))
	}
	errCrash := errors.New("crash")
	if _, err := moveAll(t, dirs, moveNew, func() error { return errCrash }); !errors.Is(err, errCrash) {
		t.Fatalf("move: %v, want the crash", err)
	}
	f, err := OpenFolder(smallConfig(dirs[from], -1), false)
	if err != nil {
		t.Fatal(err)
	}
	first := was.entries[0].Seq
	err = f.write(func(wb *badger.WriteBatch) error { return wb.Delete(entryKey(stale, first)) })
	f.Close()
	if err != nil {
		t.Fatal(err)
	}

	if _, err := moveAll(t, dirs, moveNew, nil); err != nil {
		t.Fatal(err)
	}
	box := readMailbox(t, dirs[3], stale)
	if len(box.entries) != len(was.entries) || box.last != was.last {
		t.Fatalf("node 3 holds %d entries up to %d, want %d up to %d", len(box.entries), box.last, len(was.entries), was.last)
	}
	v := dump(t, dirs[3])[string(metaKey(stale))]
	m, err := decodeMeta([]byte(v.value))
	if err != nil || m.count != int64(len(was.entries)) || m.hw != was.last {
		t.Errorf("node 3's mark of %d: %+v (%v), want count %d, hw %d", stale, m, err, len(was.entries), was.last)
	}
	if left := ownedBy(dump(t, dirs[from]), stale); len(left) > 0 {
		t.Errorf("node %d still holds %d keys of %d", from, len(left), stale)
	}
}
