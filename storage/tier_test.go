package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// tierRig is a Badger database with the in-flight tier over it, driven
// directly through the backend, without the engine.
type tierRig struct {
	t   *testing.T
	dir string
	be  *badgerBackend
}

func newTierRig(t *testing.T) *tierRig {
	r := &tierRig{t: t, dir: t.TempDir()}
	r.open()
	return r
}

func (r *tierRig) open() {
	r.t.Helper()
	cfg := testConfig(r.dir)
	db, err := badger.Open(badgerOptions(cfg))
	if err != nil {
		r.t.Fatal(err)
	}
	tr, err := newTier(db, r.dir, time.Hour, 1<<30, time.Now, slog.New(slog.DiscardHandler), new(tierGauges))
	if err != nil {
		r.t.Fatal(err)
	}
	r.be = &badgerBackend{db: db, tier: tr, dir: r.dir, log: slog.New(slog.DiscardHandler)}
}

// crash drops the tier without spilling it and closes Badger, as a kill
// leaves them (Badger's own log replays what it committed), then opens
// both again: the in-flight log is replayed.
func (r *tierRig) crash() {
	r.t.Helper()
	r.be.tier.abandon()
	if err := r.be.db.Close(); err != nil {
		r.t.Fatal(err)
	}
	r.open()
}

// contents reads every key with prefix 'x' through a view, in order.
func (r *tierRig) contents() []string {
	r.t.Helper()
	var got []string
	err := r.be.view(func(rd reader) error {
		return rd.(*badgerTxn).each([]byte{'x'}, func(k, v []byte) bool {
			got = append(got, fmt.Sprintf("%x=%s", k, v))
			return true
		})
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return got
}

func modelContents(m map[string][]byte) []string {
	var got []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		got = append(got, fmt.Sprintf("%x=%s", k, m[k]))
	}
	return got
}

// TestTierMatchesModel writes random batches of sets, deletes and lasting
// keys through the tier, spills some of them into Badger at random, crashes and
// reopens at random, and after each step compares every read (gets in
// the batch, gets and ordered scans in views) with a plain map.
func TestTierMatchesModel(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	r := newTierRig(t)
	model := map[string][]byte{}
	ever := map[string]bool{} // keys ever written: only others may be fresh
	lasting := 0              // lasting keys written, each once: 'x', 'L' and a count
	for round := range 400 {
		w := r.be.begin().(*badgerTxn)
		for range rng.IntN(24) {
			k := []byte{'x', byte(rng.IntN(48)), byte(rng.IntN(2))}
			switch op := rng.IntN(6); {
			case op == 5:
				k = binary.BigEndian.AppendUint16([]byte{'x', 'L'}, uint16(lasting))
				lasting++
				w.kv.set(k, []byte("dup"), 0, keyLasting)
				model[string(k)] = []byte("dup")
			case op < 3:
				v := fmt.Appendf(nil, "v%d", rng.IntN(1000))
				kind := keyAny
				if !ever[string(k)] && rng.IntN(2) == 0 {
					kind = keyFresh
				}
				w.kv.set(k, v, 0, kind)
				model[string(k)] = v
				ever[string(k)] = true
			default:
				w.kv.del(k)
				delete(model, string(k))
			}
			// The batch reads its own writes.
			probe := []byte{'x', byte(rng.IntN(48)), byte(rng.IntN(2))}
			var got []byte
			ok, err := w.get(probe, func(v []byte) error { got = bytes.Clone(v); return nil })
			if want, has := model[string(probe)]; err != nil || ok != has || !bytes.Equal(got, want) {
				t.Fatalf("round %d: get %x in the batch: %q %v %v, want %q %v", round, probe, got, ok, err, want, has)
			}
		}
		if err := w.commit(); err != nil {
			t.Fatal(err)
		}
		switch rng.IntN(6) {
		case 0: // spill everything due now
			r.be.tier.spillAfter = 0
			if err := r.be.tidy(); err != nil {
				t.Fatal(err)
			}
			r.be.tier.spillAfter = time.Hour
		case 1:
			if err := r.be.spillAll(); err != nil {
				t.Fatal(err)
			}
		case 2:
			if rng.IntN(4) == 0 {
				r.crash()
			}
		}
		if got, want := r.contents(), modelContents(model); !slices.Equal(got, want) {
			t.Fatalf("round %d: the view reads\n%v\nwant\n%v", round, got, want)
		}
	}
	if err := r.be.close(); err != nil {
		t.Fatal(err)
	}
	r.open()
	if got, want := r.contents(), modelContents(model); !slices.Equal(got, want) {
		t.Fatalf("after a clean close: the view reads\n%v\nwant\n%v", got, want)
	}
	_ = r.be.close()
}

// TestTierShortLivedNeverReachBadger writes entries and deletes them
// before they are due: Badger holds neither them nor a tombstone, after
// a clean close too. A key spilled before its deletion gets its tombstone.
func TestTierShortLivedNeverReachBadger(t *testing.T) {
	r := newTierRig(t)
	w := r.be.begin().(*badgerTxn)
	for seq := uint64(1); seq <= 100; seq++ {
		if err := w.putEntry(&Entry{Recipient: 7, Seq: seq, Value: []byte("hello")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.commit(); err != nil {
		t.Fatal(err)
	}
	if n, err := r.be.tier.spill(r.be.db, true); err != nil || n != 100 {
		t.Fatalf("spilled %d entries (%v), want all 100", n, err)
	}
	w = r.be.begin().(*badgerTxn)
	for seq := uint64(101); seq <= 200; seq++ {
		if err := w.putEntry(&Entry{Recipient: 7, Seq: seq, Value: []byte("hello")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.commit(); err != nil {
		t.Fatal(err)
	}
	w = r.be.begin().(*badgerTxn)
	for seq := uint64(1); seq <= 200; seq++ {
		if err := w.delEntry(7, seq); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.commit(); err != nil {
		t.Fatal(err)
	}
	if err := r.be.close(); err != nil {
		t.Fatal(err)
	}
	db, err := badger.Open(badgerOptions(testConfig(r.dir)))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var versions []uint64
	err = db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: entryPrefix(7), AllVersions: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			versions = append(versions, be64(it.Item().Key()[9:]))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Seqs 1-100 were spilled: each has its value and its tombstone.
	// 101-200 never reached Badger.
	if len(versions) != 200 || versions[0] != 1 || versions[199] != 100 {
		t.Fatalf("Badger holds %d versions of recipient 7's entries (%v...), want 200: two of each of seqs 1-100", len(versions), versions[:min(4, len(versions))])
	}
	if ents, _ := os.ReadDir(r.dir + "/" + tierLogDir); len(ents) != 0 {
		t.Fatalf("a clean close left %d files in the in-flight log", len(ents))
	}
}

// TestTierTornRecord: a record cut by a crash of the machine (never
// synced, so never acknowledged) and garbage after it are ignored by the
// replay; the records before it are kept.
func TestTierTornRecord(t *testing.T) {
	for _, tc := range []struct {
		name string
		tail func(rec []byte) []byte
	}{
		{"cut", func(rec []byte) []byte { return rec[:len(rec)-3] }},
		{"bad checksum", func(rec []byte) []byte { rec[len(rec)-1] ^= 0xff; return rec }},
		{"garbage", func([]byte) []byte { return bytes.Repeat([]byte{0xa5}, 100) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTierRig(t)
			w := r.be.begin().(*badgerTxn)
			w.kv.set([]byte("xa"), []byte("kept"), 0, keyAny)
			if err := w.commit(); err != nil {
				t.Fatal(err)
			}
			var rec tierRecord
			rec.reset()
			rec.set([]byte("xb"), []byte("torn"), 0)
			l := r.be.tier.log
			if _, err := l.f.WriteAt(tc.tail(bytes.Clone(rec.bytes())), l.off); err != nil {
				t.Fatal(err)
			}
			r.crash()
			if got := r.contents(); !slices.Equal(got, []string{fmt.Sprintf("%x=kept", "xa")}) {
				t.Fatalf("after replay: %v", got)
			}
			_ = r.be.close()
		})
	}
}

// TestTierReplayKeepsExpiry: a key written with an expiry (a dedupe
// record) and replayed from the in-flight log after a crash reaches Badger
// with that expiry, so that Badger still drops it when it is due rather
// than keeping it forever.
func TestTierReplayKeepsExpiry(t *testing.T) {
	r := newTierRig(t)
	expires := uint64(time.Now().Add(time.Hour).Unix())
	w := r.be.begin().(*badgerTxn)
	w.kv.set([]byte("xd"), []byte("dup"), expires, keyLasting)
	if err := w.commit(); err != nil {
		t.Fatal(err)
	}
	r.crash()
	var got uint64
	err := r.be.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte("xd"))
		if err == nil {
			got = item.ExpiresAt()
		}
		return err
	})
	if err != nil || got != expires {
		t.Fatalf("after replay: expires at %d (%v), want %d", got, err, expires)
	}
	_ = r.be.close()
}

// TestListSegmentsSkipsOthers: the log's folder lists its segments in
// order; a file being zeroed (.tmp) or a .log file not named by a segment
// number is not one, and does not keep the store from opening.
func TestListSegmentsSkipsOthers(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{segName(0x12), segName(3), segName(4) + ".tmp", "notes.log", tierRecycled} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if segs, err := listSegments(dir); err != nil || !slices.Equal(segs, []uint64{3, 0x12}) {
		t.Fatalf("listSegments = %v %v, want [3 18]", segs, err)
	}
}

// TestTierSegments writes past a segment's end: records go on in the next
// segment, old segments are deleted once nothing in the tier needs them,
// and a replay reads across segments.
func TestTierSegments(t *testing.T) {
	r := newTierRig(t)
	model, _ := writeSegments(t, r)
	// Seven keys, each overwritten within the last few records: only the
	// last segment or two hold what the tier needs. (Deleting is tried at
	// most every retireEvery, and by one helper at a time: let the last
	// one finish, and try now.)
	if err := awaitRemoval(r.be.tier); err != nil {
		t.Fatal(err)
	}
	r.be.tier.retryRetire = time.Time{}
	if err := r.be.tidy(); err != nil {
		t.Fatal(err)
	}
	if n := len(r.be.tier.log.segs); n > 2 {
		t.Fatalf("%d segments kept, want at most 2", n)
	}
	if err := awaitRemoval(r.be.tier); err != nil {
		t.Fatal(err)
	}
	if err := r.be.tidy(); err != nil { // collects the helper's result
		t.Fatal(err)
	}
	// On disk: the log's segments, and the spare a helper prepares ahead
	// (renamed into place as the next segment when it is ready).
	segs := slices.Clone(r.be.tier.log.segs)
	if sp, ok := awaitSpare(r.be.tier.log); ok {
		segs = append(segs, sp)
	}
	if on, _ := listSegments(r.dir + "/" + tierLogDir); !slices.Equal(on, segs) {
		t.Fatalf("segments on disk %v, want the log's and its spare, %v", on, segs)
	}
	want := modelContents(model)
	r.crash()
	if got := r.contents(); !slices.Equal(got, want) {
		t.Fatalf("after replay across segments: %d keys, want %d", len(got), len(want))
	}
	_ = r.be.close()
}

// awaitSpare waits for the helper preparing the log's next segment, if
// one was asked for, and returns the segment it made, leaving it for the
// log's next rotation.
func awaitSpare(l *tierLog) (uint64, bool) {
	if l.spare == nil {
		return 0, false
	}
	sp := <-l.spare
	l.spare <- sp
	return sp.n, sp.err == nil
}

// awaitRemoval waits for the helper deleting retired segments, if one
// runs, and returns its result, leaving it for the committer's next tidy.
func awaitRemoval(tr *tier) error {
	r := tr.retiring
	if r == nil {
		return nil
	}
	err := <-r.done
	r.done <- err
	return err
}

// writeSegments commits 64 KiB values under seven keys until the log
// spans three segments, tidying after each batch, and returns what the
// keys hold and how many tidies failed with errInjected.
func writeSegments(t *testing.T, r *tierRig) (map[string][]byte, int) {
	t.Helper()
	injected := 0
	val := bytes.Repeat([]byte{'v'}, 64<<10)
	model := map[string][]byte{}
	for i := range 3 * tierSegmentBytes / len(val) {
		w := r.be.begin().(*badgerTxn)
		k := []byte{'x', byte(i % 7)}
		w.kv.set(k, val[:len(val)-i%5], 0, keyAny)
		model[string(k)] = val[:len(val)-i%5]
		if err := w.commit(); err != nil {
			t.Fatal(err)
		}
		if err := r.be.tidy(); errors.Is(err, errInjected) {
			injected++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	return model, injected
}

var errInjected = errors.New("injected")

// TestTierRetireFailure: a segment the helper fails to delete makes the
// committer's next tidy fail (the store then reopens and replays), and it
// stays on disk with every segment after it, to be replayed first.
func TestTierRetireFailure(t *testing.T) {
	defer func(rm func(string) error, mv func(string, string) error) {
		removeSegment, recycleSegment = rm, mv
	}(removeSegment, recycleSegment)
	removeSegment = func(string) error { return errInjected }
	recycleSegment = func(string, string) error { return errInjected }
	r := newTierRig(t)
	model, injected := writeSegments(t, r)
	r.be.tier.retryRetire = time.Time{}
	for range 2 { // collect a helper's result, or start one and collect it
		if err := awaitRemoval(r.be.tier); err != nil && !errors.Is(err, errInjected) {
			t.Fatal(err)
		}
		if err := r.be.tidy(); errors.Is(err, errInjected) {
			injected++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if injected == 0 {
		t.Fatal("no tidy reported the failed deletion")
	}
	segs := slices.Clone(r.be.tier.log.segs)
	if sp, ok := awaitSpare(r.be.tier.log); ok {
		segs = append(segs, sp) // on disk ahead of the log
	}
	on, _ := listSegments(r.dir + "/" + tierLogDir)
	if len(on) <= len(segs) || on[len(on)-1] != segs[len(segs)-1] {
		t.Fatalf("segments on disk %v, the log's and its spare %v: the retired ones should be left", on, segs)
	}
	for i := 1; i < len(on); i++ {
		if on[i] != on[i-1]+1 {
			t.Fatalf("segments on disk %v: a gap", on)
		}
	}
	removeSegment, recycleSegment = os.Remove, os.Rename
	r.crash()
	if got, want := r.contents(), modelContents(model); !slices.Equal(got, want) {
		t.Fatalf("after replaying the left segments: %d keys, want %d", len(got), len(want))
	}
	_ = r.be.close()
}

// TestTierRecycledSegments: retired segments come back as spares instead
// of new files of zeros, and a replay reads only what each segment's
// current life wrote: the records left from an earlier life hold older
// values of the same keys, which must not come back.
func TestTierRecycledSegments(t *testing.T) {
	r := newTierRig(t)
	// Records of one size, so that those of an earlier life line up with
	// this life's, and values that change with every write.
	model := map[string][]byte{}
	l := r.be.tier.log
	// Until a recycled segment is being written, holding two records of
	// this life and, after them, those of its earlier life.
	for i := 0; !l.inRecycled || l.off < int64(tierHeader)+2*(64<<10); i++ {
		if i > 40*tierSegmentBytes/(64<<10) {
			t.Fatal("no recycled segment was written")
		}
		w := r.be.begin().(*badgerTxn)
		k := []byte{'x', byte(i % 7)}
		v := bytes.Repeat([]byte{byte(i)}, 64<<10)
		w.kv.set(k, v, 0, keyAny)
		model[string(k)] = v
		if err := w.commit(); err != nil {
			t.Fatal(err)
		}
		if err := r.be.tidy(); err != nil {
			t.Fatal(err)
		}
		if i%64 == 0 { // let a deletion finish now and then, so that spares can be recycled
			if err := awaitRemoval(r.be.tier); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := r.be.tier.log.recycles.Load(); n == 0 {
		t.Fatal("no spare was a recycled segment")
	}
	seg := l.current()
	r.crash()
	// The replay sealed that segment: its records end at its end mark now,
	// not at those of its earlier life, so a later replay reads it cleanly.
	path := segFile(filepath.Join(r.dir, tierLogDir), seg)
	if torn, _, err := readSegment(path, seg, func([]byte) error { return nil }); err != nil || torn {
		t.Fatalf("after the replay, segment %d reads torn %v (%v), want ended by its mark", seg, torn, err)
	}
	if got, want := r.contents(), modelContents(model); !slices.Equal(got, want) {
		t.Fatalf("after replaying recycled segments: %d keys, want %d", len(got), len(want))
	}
	_ = r.be.close()
	if ents, _ := os.ReadDir(filepath.Join(r.dir, tierLogDir)); len(ents) != 0 {
		t.Fatalf("files left in the log's folder after a clean close: %v", ents)
	}
}

// TestReadSegmentFormats: a segment of the second format ends at its end
// mark, and at a record whose checksum names another segment; one of the
// first format (no magic, checksums of the payload alone) still reads.
func TestReadSegmentFormats(t *testing.T) {
	dir := t.TempDir()
	var rec tierRecord
	rec.reset()
	rec.set([]byte("k"), []byte("v"), 0)
	one := bytes.Clone(rec.bytes())
	record := func(seg uint64) []byte {
		b := bytes.Clone(one)
		binary.BigEndian.PutUint32(b[4:], recordSum(seg, b[8:]))
		return b
	}
	firstFormat := bytes.Clone(one)
	binary.BigEndian.PutUint32(firstFormat[4:], crc32.Checksum(firstFormat[8:], crcTable))
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name    string
		data    []byte
		records int
		torn    bool
	}{
		{"end mark", cat([]byte(tierMagic), record(7), record(7), endMark(7), record(7)), 2, false},
		{"zeros", cat([]byte(tierMagic), record(7), make([]byte, 64)), 1, false},
		{"an earlier life", cat([]byte(tierMagic), record(7), record(3), record(3)), 1, true},
		{"an earlier life's end mark", cat([]byte(tierMagic), record(7), endMark(3), record(7)), 1, true},
		{"first format", cat(firstFormat, firstFormat, make([]byte, 16)), 2, false},
		{"first format, torn", cat(firstFormat, one), 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			n := 0
			torn, _, err := readSegment(path, 7, func(payload []byte) error {
				if !bytes.Equal(payload, one[8:]) {
					t.Fatalf("payload %x", payload)
				}
				n++
				return nil
			})
			if err != nil || n != tc.records || torn != tc.torn {
				t.Fatalf("read %d records, torn %v, err %v; want %d, %v", n, torn, err, tc.records, tc.torn)
			}
		})
	}
}

// TestRemoveSegmentsWaitsForOneMemtable: segments are deleted only after
// a Badger sync with one memtable log in its folder before and after it;
// with two (one switched out and not yet flushed) the helper waits, and a
// stop ends the wait with nothing deleted.
func TestRemoveSegmentsWaitsForOneMemtable(t *testing.T) {
	dir := t.TempDir()
	db, err := badger.Open(badgerOptions(testConfig(dir)))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	segs := t.TempDir()
	var paths []string
	for i := range 2 {
		p := filepath.Join(segs, fmt.Sprintf("seg%d", i))
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	mems, _ := memLogs(db.Opts().Dir)
	if len(mems) != 1 {
		t.Fatalf("Badger's folder holds %d memtable logs, want 1", len(mems))
	}
	second := filepath.Join(db.Opts().Dir, "999999.mem")
	if err := os.WriteFile(second, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- removeSegments(db, paths, stop) }()
	close(stop)
	if err := <-done; !errors.Is(err, errRemovalStopped) {
		t.Fatalf("with two memtable logs: %v, want stopped", err)
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s deleted while a memtable was not flushed: %v", p, err)
		}
	}
	if err := os.Remove(second); err != nil {
		t.Fatal(err)
	}
	if err := removeSegments(db, paths, nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s left: %v", p, err)
		}
	}
}

// TestRemoveSegmentsRecyclesSecondFormatOnly: a retired segment of the
// log's first format is deleted, never recycled (its records' checksums
// name no segment); one of the second format becomes the recycled spare.
func TestRemoveSegmentsRecyclesSecondFormatOnly(t *testing.T) {
	db, err := badger.Open(badgerOptions(testConfig(t.TempDir())))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	dir := t.TempDir()
	first, second := filepath.Join(dir, segName(1)), filepath.Join(dir, segName(2))
	if err := os.WriteFile(first, make([]byte, 64), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(second, append([]byte(tierMagic), make([]byte, 56)...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := removeSegments(db, []string{first, second}, nil); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	// The bytes, not secondFormat, say which one was kept: a first-format
	// segment taken for the second would be recycled, and its records,
	// whose checksums name no segment, would replay as the new segment's.
	kept, _ := os.ReadFile(filepath.Join(dir, tierRecycled))
	if len(ents) != 1 || ents[0].Name() != tierRecycled || !bytes.HasPrefix(kept, []byte(tierMagic)) {
		t.Fatalf("left %v, want only %s of the second format", ents, tierRecycled)
	}
}

// segName is segment n's file name.
func segName(n uint64) string { return filepath.Base(segFile("", n)) }

// TestTierCloseStopsRemoval: a clean close stops a helper still waiting
// for Badger and deletes what it left, with the rest of the log.
func TestTierCloseStopsRemoval(t *testing.T) {
	r := newTierRig(t)
	_, _ = writeSegments(t, r)
	if err := awaitRemoval(r.be.tier); err != nil {
		t.Fatal(err)
	}
	if err := r.be.tidy(); err != nil { // collects the last result, if any
		t.Fatal(err)
	}
	tr := r.be.tier
	// Hold the helper: a second memtable log, as while one is flushed.
	second := filepath.Join(r.be.db.Opts().Dir, "999999.mem")
	if err := os.WriteFile(second, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	paths := tr.log.detach(func(seg uint64) bool { return false })
	if len(paths) == 0 {
		t.Fatal("nothing to retire")
	}
	tr.startRemoval(r.be.db, paths)
	if err := r.be.close(); err != nil {
		t.Fatal(err)
	}
	if on, _ := listSegments(r.dir + "/" + tierLogDir); len(on) != 0 {
		t.Fatalf("segments left after a clean close: %v", on)
	}
}

// FuzzTierRecord: the replay reads any bytes without panicking, and what
// tierRecord writes decodes to the same ops.
func FuzzTierRecord(f *testing.F) {
	var rec tierRecord
	rec.reset()
	rec.set([]byte("key"), []byte("value"), 42)
	rec.del([]byte("gone"))
	f.Add(bytes.Clone(rec.bytes()[8:]))
	f.Add([]byte{tierOpSet, 0x80})
	f.Fuzz(func(t *testing.T, payload []byte) {
		var ops [][]byte
		err := decodeTierOps(payload, func(k, v []byte, expires uint64, del bool) {
			ops = append(ops, k, v)
		})
		if err != nil {
			return
		}
		// Re-encode what decoded: it must decode the same.
		var again tierRecord
		again.reset()
		_ = decodeTierOps(payload, func(k, v []byte, expires uint64, del bool) {
			if del {
				again.del(k)
			} else {
				again.set(k, v, expires)
			}
		})
		var back [][]byte
		if err := decodeTierOps(again.bytes()[8:], func(k, v []byte, _ uint64, _ bool) { back = append(back, k, v) }); err != nil {
			t.Fatalf("re-encoded ops do not decode: %v", err)
		}
		if len(back) != len(ops) {
			t.Fatalf("%d fields decoded, %d after re-encoding", len(ops), len(back))
		}
		for i := range ops {
			if !bytes.Equal(ops[i], back[i]) {
				t.Fatalf("field %d: %q, then %q", i, ops[i], back[i])
			}
		}
	})
}

// TestDecodeTierOpsRefusesMalformed: a payload whose checksum matched but
// whose ops do not decode (an unknown op, a value running past the end, a
// set without its expiry or with one past 64 bits) is an error, never ops
// made up from what is there.
func TestDecodeTierOpsRefusesMalformed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload []byte
	}{
		{"unknown op", []byte{9, 1, 'k'}},
		{"value past the end", []byte{tierOpSet, 1, 'k', 5, 'v'}},
		{"no expiry", []byte{tierOpSet, 1, 'k', 1, 'v'}},
		{"expiry past 64 bits", append([]byte{tierOpSet, 1, 'k', 1, 'v'}, append(bytes.Repeat([]byte{0xff}, 10), 1)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops := 0
			err := decodeTierOps(tc.payload, func([]byte, []byte, uint64, bool) { ops++ })
			if !errors.Is(err, errTierRecord) || ops != 0 {
				t.Fatalf("decoding %x: %d ops, %v; want none and errTierRecord", tc.payload, ops, err)
			}
		})
	}
}

// TestTierSpillsOnlyWhatWaits: messages acknowledged within SpillAfter
// leave Badger with their dedupe records only (Stats.Spilled), and those
// in chunks: 100 messages, one a batch, spill one chunk of 64 and keep the
// other 36 records for the next; with SpillAfter negative every write
// reaches Badger at the end of its batch.
func TestTierSpillsOnlyWhatWaits(t *testing.T) {
	for _, tc := range []struct {
		name       string
		spillAfter time.Duration
		check      func(st Stats) bool
	}{
		{"default", 0, func(st Stats) bool { return st.Spilled == tierLastingChunk && st.TierBytes > 0 }},
		{"at once", -1, func(st Stats) bool { return st.Spilled > 300 && st.TierBytes == 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t.TempDir())
			cfg.SpillAfter = tc.spillAfter
			cfg = cfg.withDefaults()
			s, err := openBadger(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for seq := uint64(1); seq <= 100; seq++ {
				if err := AppendWait(s, Entry{Recipient: 5, Seq: seq, Kind: KindMessage, Sender: 6, MsgID: seq, Value: []byte("hi")}); err != nil {
					t.Fatal(err)
				}
			}
			if res, err := AckWait(s, 5, 100); err != nil || res.Deleted != 100 {
				t.Fatalf("ack: %+v %v", res, err)
			}
			// The ack's batch follows the last append's tidy.
			if st := s.Stats(); !tc.check(st) || st.LogSegments != 1 {
				t.Fatalf("spilled %d, tier bytes %d, log segments %d", st.Spilled, st.TierBytes, st.LogSegments)
			}
		})
	}
}

// TestTierLastingChunks: lasting items (dedupe records) reach Badger a
// chunk of tierLastingChunk at a time, or without one once the oldest has
// waited spillAfter or the tier is over its budget; until then reads find
// them in the tier, and a crash loses none of them.
func TestTierLastingChunks(t *testing.T) {
	r := newTierRig(t)
	clock := time.Now()
	r.be.tier.now = func() time.Time { return clock }
	written := 0
	write := func(n int) {
		t.Helper()
		for range n {
			w := r.be.begin().(*badgerTxn)
			w.kv.set(fmt.Appendf(nil, "xL%04d", written), []byte("dup"), 0, keyLasting)
			if err := w.commit(); err != nil {
				t.Fatal(err)
			}
			if err := r.be.tidy(); err != nil {
				t.Fatal(err)
			}
			written++
		}
	}
	inBadger := func() int {
		t.Helper()
		n := 0
		err := r.be.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("xL")})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				n++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	check := func(step string, wantBadger int) {
		t.Helper()
		if got := inBadger(); got != wantBadger {
			t.Fatalf("%s: %d of %d in Badger, want %d", step, got, written, wantBadger)
		}
		if got := len(r.contents()); got != written {
			t.Fatalf("%s: a view reads %d of %d", step, got, written)
		}
	}
	write(tierLastingChunk - 1)
	check("a chunk but one", 0)
	write(1)
	check("a chunk", tierLastingChunk)
	write(1)
	check("one more", tierLastingChunk)
	r.be.tier.budget = 0
	if err := r.be.tidy(); err != nil {
		t.Fatal(err)
	}
	r.be.tier.budget = 1 << 30
	check("over the budget", tierLastingChunk+1)
	write(1)
	clock = clock.Add(time.Hour)
	if err := r.be.tidy(); err != nil {
		t.Fatal(err)
	}
	check("after spillAfter", tierLastingChunk+2)
	write(5)
	check("five more", tierLastingChunk+2)
	r.crash()
	if got := len(r.contents()); got != written {
		t.Fatalf("after a crash: a view reads %d of %d", got, written)
	}
	_ = r.be.close()
}

// TestTierConcurrentReads reads mailboxes from other goroutines while the
// committer appends, acks and spills (SpillAfter negative: keys move into
// Badger all the time): every read is a consistent view, in which a
// mailbox's entries are contiguous from its floor to its high-water mark.
// Under -race it also checks the tier's copies are shared safely.
func TestTierConcurrentReads(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.SpillAfter = -1
	s, err := openBadger(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const recipients, rounds = 4, 300
	done := make(chan struct{})
	errs := make(chan error, 2)
	go func() {
		defer close(done)
		for seq := uint64(1); seq <= rounds; seq++ {
			for r := uint64(1); r <= recipients; r++ {
				if err := AppendWait(s, Entry{Recipient: r, Seq: seq, Kind: KindMessage, Sender: 9, MsgID: r<<32 | seq, Value: []byte("v")}); err != nil {
					errs <- err
					return
				}
				if seq%3 == 0 {
					if _, err := AckWait(s, r, seq-1); err != nil {
						errs <- err
						return
					}
				}
			}
		}
	}()
	reads := 0
	for running := true; running; reads++ {
		select {
		case <-done:
			running = false
		default:
		}
		r := uint64(reads%recipients + 1)
		page, _, err := s.Read(r, 0, 1000, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(page); i++ {
			if page[i].Seq != page[i-1].Seq+1 {
				t.Fatalf("read %d of recipient %d: seq %d after %d", reads, r, page[i].Seq, page[i-1].Seq)
			}
		}
	}
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	for r := uint64(1); r <= recipients; r++ {
		page, _, err := s.Read(r, 0, 1000, 0, nil)
		if err != nil || len(page) != 1 || page[0].Seq != rounds {
			t.Fatalf("recipient %d ends with %d entries (%v), want seq %d alone", r, len(page), err, rounds)
		}
	}
	t.Logf("%d reads during %d appends", reads, recipients*rounds)
}

// TestTierOfflineFolderReplays: a folder a crash left with writes only in
// the in-flight log is seen whole by the offline tools (OpenFolder), which
// replay the log into Badger and delete it; a server opening the folder
// afterwards finds the same, with nothing left to replay.
func TestTierOfflineFolderReplays(t *testing.T) {
	r := newTierRig(t)
	w := r.be.begin().(*badgerTxn)
	for seq := uint64(1); seq <= 3; seq++ {
		e := &Entry{Recipient: 42, Seq: seq, Kind: KindMessage, Sender: 1, MsgID: seq, Time: time.Now().UnixMilli(), Value: []byte("kept")}
		if err := w.putEntry(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.putMeta(42, meta{hw: 3, count: 3, bytes: 12}); err != nil {
		t.Fatal(err)
	}
	if err := w.commit(); err != nil {
		t.Fatal(err)
	}
	// A kill: the tier is never spilled, Badger never saw the writes.
	r.be.tier.abandon()
	if err := r.be.db.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := OpenFolder(testConfig(r.dir), false)
	if err != nil {
		t.Fatal(err)
	}
	h, err := f.Holdings()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(h.IDs, 42) {
		t.Fatalf("holdings %v after a crash: recipient 42, whose entries were only in the log, is missing", h.IDs)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if segs, _ := listSegments(r.dir + "/" + tierLogDir); len(segs) != 0 {
		t.Fatalf("the offline open left segments %v", segs)
	}
	s, err := openBadger(testConfig(r.dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	page, _, err := s.Read(42, 0, 10, 0, nil)
	if err != nil || len(page) != 3 || string(page[2].Value) != "kept" {
		t.Fatalf("read after the offline replay: %d entries, %v", len(page), err)
	}
}

// TestTierSpillsWhenQuiet: what a store wrote before it went quiet is
// spilled by the next housekeeping round once due, not kept in memory
// until the next write.
func TestTierSpillsWhenQuiet(t *testing.T) {
	var mu sync.Mutex
	clock := time.Now()
	cfg := testConfig(t.TempDir())
	cfg.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	s, err := openBadger(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for seq := uint64(1); seq <= 10; seq++ {
		if err := AppendWait(s, Entry{Recipient: 3, Seq: seq, Kind: KindMessage, Sender: 4, MsgID: seq, Time: clock.UnixMilli(), Value: []byte("offline")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.housekeep(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.TierBytes == 0 || st.Spilled != 0 {
		t.Fatalf("before SpillAfter: tier bytes %d, spilled %d; want the entries and their 10 dedupe records held (fewer than a chunk)", st.TierBytes, st.Spilled)
	}
	mu.Lock()
	clock = clock.Add(cfg.SpillAfter + time.Second)
	mu.Unlock()
	if err := s.housekeep(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.TierBytes != 0 || st.Spilled < 20 {
		t.Fatalf("after SpillAfter, quiet: tier bytes %d, spilled %d; want an empty tier, the 10 entries, their 10 dedupe records and the metas spilled", st.TierBytes, st.Spilled)
	}
	page, _, err := s.Read(3, 0, 100, 0, nil)
	if err != nil || len(page) != 10 {
		t.Fatalf("read after the spill: %d entries, %v", len(page), err)
	}
}

// TestOpenAfterKillDuringFileCreate: a kill between creating a Badger log
// file and writing its header leaves a file of zero bytes, a value log (at
// every open) or a memtable log (at every memtable switch), and Badger
// then refused every open. The store opens, with what it held.
func TestOpenAfterKillDuringFileCreate(t *testing.T) {
	for _, name := range []string{"000042.vlog", "00042.mem"} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t.TempDir())
			s, err := openBadger(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := AppendWait(s, Entry{Recipient: 1, Seq: 1, Kind: KindMessage, Sender: 2, MsgID: 1, Value: []byte("kept")}); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(cfg.Dir, name), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err = openBadger(cfg, nil)
			if err != nil {
				t.Fatalf("open with an empty %s: %v", name, err)
			}
			defer s.Close()
			page, _, err := s.Read(1, 0, 10, 0, nil)
			if err != nil || len(page) != 1 || string(page[0].Value) != "kept" {
				t.Fatalf("read after the open: %d entries, %v", len(page), err)
			}
		})
	}
}

// TestItemLess holds the tier's order to bytes.Compare's, keys of every
// length from 0 to 30 bytes that share prefixes, end in zeros or differ
// only past the 24 bytes its words cover.
func TestItemLess(t *testing.T) {
	var keys [][]byte
	for n := range 31 {
		for _, fill := range []byte{0x00, 0x01, 0xff} {
			k := bytes.Repeat([]byte{fill}, n)
			keys = append(keys, k)
			if n > 0 {
				for _, at := range []int{0, n / 2, n - 1} {
					v := bytes.Clone(k)
					v[at]++
					keys = append(keys, v)
				}
			}
		}
	}
	keys = append(keys, entryKey(7, 4321), entryKey(7, 4322), entryKey(8, 1), metaKey(7), metaKey(7)[:8])
	for _, a := range keys {
		for _, b := range keys {
			x, y := newTitem(a), newTitem(b)
			if got, want := itemLess(x, y), bytes.Compare(a, b) < 0; got != want {
				t.Fatalf("itemLess(%x, %x) = %v, bytes.Compare says %v", a, b, got, want)
			}
		}
	}
}
