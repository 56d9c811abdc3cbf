package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/tidwall/btree"
)

// The in-flight tier keeps what was committed recently in memory, in front
// of Badger, made durable by its own log (tierlog.go). Most of what a
// message round writes lives for milliseconds: the entry until its ack, the
// pending receipt until the receipt entry settles it, the receipt entry
// until the sender's ack, the metas and totals until the next batch rewrites
// them. In Badger each of those was a memtable insert and a write to its
// log, and each deletion a tombstone that lived on through compactions. In
// the tier they are a B-tree insert and a few bytes of a sequential log, and
// a key written and deleted within the tier never reaches Badger at all.
//
// What is still there SpillAfter after its last write (an entry whose
// recipient is offline, a dedupe record, which lives for the dedupe window)
// is spilled: written into Badger, and dropped from the tier. So is the
// oldest, whatever its age, while the tier holds more than its budget.
//
// # Why nothing committed is lost
//
//   - A batch is one log record (length, checksum, its writes), written
//     before the batch is applied to the tier. A crash of the process keeps
//     it (the page cache). A sync of the log (fdatasync) is what the engine
//     calls a sync: only after it is an urgent write acknowledged.
//   - Badger only ever receives a spill of a write whose record was synced
//     (spill syncs the log first when it must). So whatever Badger holds
//     from the tier, the log can give again.
//   - A segment of the log is deleted only when no key's latest write in
//     the tier lies in it or before it, and once Badger holds what was
//     spilled durably: synced, with no memtable but the active one left
//     unflushed (DB.Sync syncs only the active one's log). Every write the
//     segment held is then either overwritten by a later record or in
//     Badger for good. Segments go oldest first, deleted by one helper
//     goroutine at a time that stops at its first failure, so the segments
//     on disk are always a run ending at the newest, and a replay never
//     applies an old write over a newer one.
//   - Recovery is replay, then serve: at open (and after a failed commit)
//     every record of every segment is applied in order, the final value
//     or deletion of each key is written into Badger, and only then does
//     the store serve. The replayed segments stay until retire may delete
//     them, like any other. A record torn by a crash of the machine was
//     never synced, so never acknowledged; the replay of its segment stops
//     at it. Replaying again after a crash during replay gives the same
//     result.
//   - A clean close spills everything, closes Badger (which flushes its
//     memtables) and deletes the log.
//
// # Reads
//
// A read sees the tier over Badger: the tier's value, its deletion (which
// hides Badger's), or Badger's. Views read a copy of the tier taken at the
// last commit (a copy-on-write B-tree: taking it costs nothing, and the
// committer's next writes copy only the nodes they change) and then a
// Badger snapshot, in that order, so that a key spilled in between is in
// one or the other. The committer's batch reads its own writes, then the
// tier, then Badger, as Badger's own transactions did.

// Limits of the tier. How long a write stays is Config.SpillAfter; what
// the tier may hold, twice Config.MemTableSize.
const (
	// tierSpillChunk bounds what one round of spilling writes into one
	// Badger transaction, so a round never outgrows one.
	tierSpillChunk = 512
	// tierLastingChunk is how many lasting items wait for one another to
	// be spilled together (tier.lastingDue).
	tierLastingChunk = 64
	// tierItemOverhead is what an item costs beyond its key and value: the
	// item (120 bytes, allocated as 128), its pointer in the B-tree and in
	// the spill queue.
	tierItemOverhead = 144
)

// titem is a key's latest write in the tier: a value or a deletion. Items
// are never changed once in a tree: copies of the tree share them.
type titem struct {
	// w is the key's first 24 bytes as big-endian words, zero-padded
	// (keyWords): comparisons between keys that differ there, almost
	// all of them, read neither key's bytes.
	w        [3]uint64
	key, val []byte
	expires  uint64 // Badger's ExpiresAt (dedupe records), 0 for none
	tomb     bool   // a deletion
	// base: Badger may hold the key, so a deletion must reach it. A key
	// written fresh (an entry's seq above the high-water mark, a pending
	// receipt) is not in Badger until it is spilled: deleting it in the
	// tier needs no tombstone anywhere.
	base bool
	// lasting: the key is never overwritten nor deleted while the tier
	// could hold it (a dedupe record, which expires after the dedupe
	// window): it is bound for Badger, and spilled with others
	// (tier.lastingDue).
	lasting bool
	seg     uint64 // log segment of its record
	end     int64  // where its record ends in the segment
	at      int64  // time of its commit (unix ns)
	// gone: it left master (overwritten, deleted or spilled). Committer
	// goroutine only, like the queues that hold it.
	gone bool
}

func (it *titem) size() int64 { return int64(len(it.key)+len(it.val)) + tierItemOverhead }

// itemLess orders items as bytes.Compare orders their keys. Words that
// differ decide as the bytes would: at the first byte where two padded
// keys differ, either both keys have a byte, or the shorter one has ended
// and the longer one goes on with bytes that are not all zero, so the
// shorter one is its prefix and sorts first.
func itemLess(a, b *titem) bool {
	for i := range a.w {
		if a.w[i] != b.w[i] {
			return a.w[i] < b.w[i]
		}
	}
	return bytes.Compare(a.key, b.key) < 0
}

// keyWords returns k's first 24 bytes as big-endian words, zero-padded.
func keyWords(k []byte) (w [3]uint64) {
	for i := range w {
		if len(k) >= 8 {
			w[i], k = binary.BigEndian.Uint64(k), k[8:]
			continue
		}
		for j := range 8 {
			w[i] <<= 8
			if j < len(k) {
				w[i] |= uint64(k[j])
			}
		}
		k = nil
	}
	return w
}

// newTitem returns an item for key k, which it keeps.
func newTitem(k []byte) *titem { return &titem{w: keyWords(k), key: k} }

// setKey makes k the item's key, which it keeps (a probe's).
func (it *titem) setKey(k []byte) { it.w, it.key = keyWords(k), k }

type ttree = btree.BTreeG[*titem]

func newTTree() *ttree {
	return btree.NewBTreeGOptions(itemLess, btree.Options{NoLocks: true})
}

// tierGauges are the tier's figures for Stats. They outlive a tier
// replaced by a reopen. Written by the committer, read by any goroutine.
type tierGauges struct {
	spilled, bytes, segments, spillNanos atomic.Int64
}

func (g *tierGauges) fill(st *Stats) {
	st.SpillTime = time.Duration(g.spillNanos.Load())
	st.Spilled = uint64(g.spilled.Load())
	st.TierBytes = uint64(max(0, g.bytes.Load()))
	st.LogSegments = uint64(g.segments.Load())
}

// tier is the in-flight tier of a badgerBackend.
type tier struct {
	gauges     *tierGauges
	log        *tierLog
	spillAfter time.Duration
	budget     int64            // bytes of items; beyond it the oldest spill
	now        func() time.Time // Config.Now: what ages items
	logger     *slog.Logger

	// master is written by the committer only, under mu; the committer reads
	// it without mu. pub is the copy views read, taken under mu by the
	// first view after a commit; nil when master changed since.
	mu     sync.Mutex
	master *ttree
	pub    *ttree

	// Committer goroutine only.
	batch       *ttree           // the open batch's writes
	rec         tierRecord       // the open batch's record
	order       deque[*titem]    // items in commit order, for spilling; gone ones are skipped
	lasting     deque[*titem]    // lasting items, in commit order
	live        map[uint64]int64 // items in master, by segment of their record
	bytes       int64            // size of the items in master
	retryRetire time.Time        // no attempt to delete segments before
	retiring    *segmentRemoval  // the helper deleting retired segments; nil when none runs
	leftover    []string         // retired segments a stopped or failed helper may have left
}

// newTier replays what the log in dir holds into db and starts a new
// segment. The replayed segments stay until retire finds Badger has made
// what they held durable.
func newTier(db *badger.DB, dir string, spillAfter time.Duration, budget int64, now func() time.Time, logger *slog.Logger, gauges *tierGauges) (*tier, error) {
	old, err := replayTierLog(db, dir, logger)
	if err != nil {
		return nil, err
	}
	l, err := openTierLog(dir, old, logger)
	if err != nil {
		return nil, err
	}
	t := &tier{
		gauges: gauges, log: l, spillAfter: max(0, spillAfter), budget: budget, now: now, logger: logger,
		master: newTTree(), batch: newTTree(), live: map[uint64]int64{},
	}
	t.publish()
	return t, nil
}

// publish updates the gauges. Committer goroutine only.
func (t *tier) publish() {
	t.gauges.bytes.Store(t.bytes)
	t.gauges.segments.Store(int64(len(t.log.segs)))
}

// snapshot returns a copy of master as of the last commit, for a view.
func (t *tier) snapshot() *ttree {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pub == nil {
		t.pub = t.master.IsoCopy()
	}
	return t.pub
}

// commit writes the open batch's record to the log and applies the batch to
// master. Nothing is applied if the write fails.
func (t *tier) commit() error {
	defer t.batch.Clear()
	if t.rec.empty() {
		return nil
	}
	if err := t.log.append(t.rec.bytes()); err != nil {
		return err
	}
	seg, end, now := t.log.current(), t.log.off, t.now().UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pub = nil
	t.batch.Scan(func(it *titem) bool {
		it.seg, it.end, it.at = seg, end, now
		var prev *titem
		var had bool
		if it.tomb && !it.base {
			prev, had = t.master.Delete(it)
		} else {
			prev, had = t.master.Set(it)
			t.live[seg]++
			t.bytes += it.size()
			if it.lasting {
				t.lasting.pushBack(it)
			} else {
				t.order.pushBack(it)
			}
		}
		if had {
			t.forget(prev)
		}
		return true
	})
	t.compact()
	return nil
}

// compact drops gone items from the middle of order, where spill does not
// reach them until those in front are due: they hold their keys and
// values. It runs when order holds twice what master does, so each item
// is copied at most twice on average.
func (t *tier) compact() {
	if t.order.len() < 2*t.master.Len()+1024 {
		return
	}
	t.order.filter(func(it *titem) bool { return !it.gone })
}

// forget accounts for an item leaving master.
func (t *tier) forget(it *titem) {
	it.gone = true
	t.live[it.seg]--
	t.bytes -= it.size()
}

// tidy spills what is due, and deletes the segments no longer needed.
// Committer goroutine only, between batches.
func (t *tier) tidy(db *badger.DB) error {
	start := time.Now()
	defer func() { t.gauges.spillNanos.Add(int64(time.Since(start))) }()
	for {
		n, err := t.spill(db, false)
		if err != nil {
			return err
		}
		if n < tierSpillChunk {
			break
		}
	}
	err := t.retire(db)
	t.publish()
	return err
}

// spill writes up to tierSpillChunk items into db: lasting ones when they
// are due or with force, then the oldest of the others that are older than
// spillAfter, or over the budget, or all with force; and drops them from
// master. It reports how many it wrote.
func (t *tier) spill(db *badger.DB, force bool) (int, error) {
	now := t.now().UnixNano()
	var due []*titem
	if force || t.lastingDue(now) {
		for len(due) < tierSpillChunk {
			it, ok := t.lasting.popFront()
			if !ok {
				break
			}
			if !it.gone {
				due = append(due, it)
			}
		}
	}
	for len(due) < tierSpillChunk {
		it, ok := t.order.front()
		if !ok {
			break
		}
		if it.gone {
			t.order.popFront()
			continue
		}
		if !force && now-it.at < int64(t.spillAfter) && t.bytes <= t.budget {
			break
		}
		t.order.popFront()
		due = append(due, it)
	}
	needSync := false
	for _, it := range due {
		if it.seg == t.log.current() && it.end > t.log.syncedOff {
			needSync = true
		}
	}
	if len(due) == 0 {
		return 0, nil
	}
	// Badger may only hold what the log can give again after a crash of
	// the machine (see "Why nothing committed is lost").
	if needSync {
		if err := t.log.sync(); err != nil {
			return 0, err
		}
	}
	txn := db.NewTransaction(true)
	defer txn.Discard()
	for _, it := range due {
		var err error
		if it.tomb {
			err = txn.Delete(it.key)
		} else {
			err = txn.SetEntry(&badger.Entry{Key: it.key, Value: it.val, ExpiresAt: it.expires})
		}
		if err != nil {
			return 0, fmt.Errorf("storage: spilling the in-flight tier: %w", err)
		}
	}
	if err := txn.Commit(); err != nil {
		return 0, fmt.Errorf("storage: spilling the in-flight tier: %w", err)
	}
	t.mu.Lock()
	t.pub = nil
	for _, it := range due {
		t.master.Delete(it)
		t.forget(it)
	}
	t.mu.Unlock()
	t.gauges.spilled.Add(int64(len(due))) // added, not stored: a reopened store's tier counts on
	return len(due), nil
}

// lastingDue reports whether the lasting items are to be spilled: there
// are tierLastingChunk of them, or the oldest has waited spillAfter, or
// the tier is over its budget. At 300 msg/s a batch holds one message and
// its dedupe record, and a Badger write for each was 11% of a CPU profile
// there (docs/BENCHMARKS.md, "The committer yields after its callbacks;
// dedupe records spilled in chunks").
func (t *tier) lastingDue(now int64) bool {
	it, ok := t.lasting.front()
	if !ok {
		return false
	}
	return t.lasting.len() >= tierLastingChunk || now-it.at >= int64(t.spillAfter) || t.bytes > t.budget
}

// retireEvery spaces the attempts to delete segments while Badger flushes.
const retireEvery = 100 * time.Millisecond

// retire hands the oldest segments that no item of master needs to a
// helper goroutine (removeSegments), which deletes them once Badger holds
// durably what was spilled from them. Syncing Badger and deleting an 8 MiB
// file took 3.5–5.7 ms at 5,000 msg/s, every few seconds, and on the
// committer every send waited that long. It first collects the result of
// the helper before, if one ran: one helper at a time, so that segments
// are deleted oldest first and a failure stops the deleting (the segments
// left on disk are then the oldest, and the next replay reads them first).
func (t *tier) retire(db *badger.DB) error {
	if r := t.retiring; r != nil {
		select {
		case err := <-r.done:
			t.retiring = nil
			if err != nil {
				return err
			}
		default:
			return nil // still deleting
		}
	}
	segs := t.log.segs
	if len(segs) < 2 || t.live[segs[0]] > 0 {
		return nil
	}
	now := time.Now()
	if now.Before(t.retryRetire) {
		return nil
	}
	t.retryRetire = now.Add(retireEvery)
	if !badgerFlushed(db.Opts().Dir) {
		return nil
	}
	paths := t.log.detach(func(seg uint64) bool { return t.live[seg] > 0 })
	for seg := range t.live {
		if seg < t.log.segs[0] {
			delete(t.live, seg)
		}
	}
	t.startRemoval(db, paths)
	return nil
}

// startRemoval starts the helper deleting paths (removeSegments).
func (t *tier) startRemoval(db *badger.DB, paths []string) {
	r := &segmentRemoval{paths: paths, stop: make(chan struct{}), done: make(chan error, 1)}
	t.retiring = r
	go func() { r.done <- removeSegments(db, paths, r.stop) }()
}

// segmentRemoval is a helper deleting retired segments.
type segmentRemoval struct {
	paths []string
	stop  chan struct{} // closed by endRemoval to end the helper's wait
	done  chan error    // the helper's one result
}

// errRemovalStopped is removeSegments' result when stopped before it
// deleted anything.
var errRemovalStopped = errors.New("storage: in-flight log: deleting segments stopped")

// removeSegment deletes one segment file, and recycleSegment renames one;
// tests replace them.
var (
	removeSegment  = os.Remove
	recycleSegment = os.Rename
)

// removeSegments deletes paths, in order, once Badger holds durably what
// was spilled from them; one of them is recycled instead (renamed to
// tierRecycled, for the next spare) when none waits to be.
//
// Those writes were committed before the committer saw one memtable log in
// Badger's folder, so they are in that memtable or in one flushed since.
// DB.Sync syncs the active memtable's log; the sync counts only if the
// folder held the same single memtable log before and after it (a memtable
// switched out meanwhile is durable only once flushed, and Badger does not
// sync its log). Otherwise it tries again every retireEvery until stop is
// closed.
func removeSegments(db *badger.DB, paths []string, stop <-chan struct{}) error {
	dir := db.Opts().Dir
	for {
		before, err := memLogs(dir)
		if err == nil && len(before) <= 1 {
			if err := db.Sync(); err != nil {
				return fmt.Errorf("storage: in-flight log: syncing Badger before deleting a segment: %w", err)
			}
			after, err := memLogs(dir)
			if err == nil && slices.Equal(before, after) {
				break
			}
		}
		wait := time.NewTimer(retireEvery)
		select {
		case <-stop:
			wait.Stop()
			return errRemovalStopped
		case <-wait.C:
		}
	}
	for _, p := range paths {
		// Recycled while none waits to be, unless of the log's first
		// format; deleted otherwise.
		pool := filepath.Join(filepath.Dir(p), tierRecycled)
		var err error
		if _, serr := os.Lstat(pool); errors.Is(serr, fs.ErrNotExist) && secondFormat(p) {
			err = recycleSegment(p, pool)
		} else {
			err = removeSegment(p)
		}
		if err != nil {
			return fmt.Errorf("storage: in-flight log: %w", err)
		}
	}
	return nil
}

// endRemoval stops the helper deleting segments, if one runs, and waits
// for it. What it did not delete stays on disk: a replay reads it first,
// and removeLog deletes it after a clean close.
func (t *tier) endRemoval() {
	r := t.retiring
	if r == nil {
		return
	}
	close(r.stop)
	if err := <-r.done; err != nil {
		t.leftover = r.paths
		if !errors.Is(err, errRemovalStopped) {
			t.logger.Warn("storage: in-flight log: deleting retired segments", "err", err)
		}
	}
	t.retiring = nil
}

// badgerFlushed reports whether Badger in dir has no memtable but the
// active one: at most one memtable log (.mem) file.
func badgerFlushed(dir string) bool {
	mems, err := memLogs(dir)
	return err == nil && len(mems) <= 1
}

// memLogs lists the memtable log (.mem) files of Badger in dir, sorted.
func memLogs(dir string) ([]string, error) {
	return filepath.Glob(filepath.Join(dir, "*.mem"))
}

// spillAll writes everything the tier holds into db and syncs it; the log
// then holds nothing Badger lacks.
func (t *tier) spillAll(db *badger.DB) error {
	for t.master.Len() > 0 {
		n, err := t.spill(db, true)
		if err != nil {
			return err
		}
		if n == 0 {
			// What is in master is always queued; this cannot happen, but a
			// loop that cannot finish must not spin.
			return errors.New("storage: in-flight tier: items left that are not queued")
		}
	}
	return db.Sync()
}

// close spills everything into db and closes the log. Once db is closed
// (which flushes its memtables), removeLog may delete the log; if
// spilling fails, the log stays, and the next open replays it.
func (t *tier) close(db *badger.DB) error {
	t.endRemoval()
	err := t.spillAll(db)
	if cerr := t.log.close(); err == nil {
		err = cerr
	}
	return err
}

// removeLog deletes every segment, after close and after Badger closed,
// the retired ones a helper left included.
func (t *tier) removeLog() error {
	for _, p := range append(t.leftover, filepath.Join(t.log.dir, tierRecycled)) {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("storage: in-flight log: %w", err)
		}
	}
	t.leftover = nil
	for _, seg := range t.log.segs {
		if err := os.Remove(t.log.segPath(seg)); err != nil {
			return fmt.Errorf("storage: in-flight log: %w", err)
		}
	}
	return nil
}

// abandon closes the log without spilling, after a failed commit: the next
// replay starts from what is on disk.
func (t *tier) abandon() {
	t.endRemoval()
	if err := t.log.close(); err != nil {
		t.logger.Warn("storage: in-flight log: closing after a failed commit", "err", err)
	}
}

// replayTierLog applies every record of the log in dir to db (the final
// value or deletion of each key) and syncs db's active memtable. It
// returns the segments it read: they may be deleted once Badger has
// flushed (tier.retire, or clearTierLog offline).
func replayTierLog(db *badger.DB, dir string, logger *slog.Logger) ([]uint64, error) {
	logDir := filepath.Join(dir, tierLogDir)
	if tmps, _ := filepath.Glob(filepath.Join(logDir, "*.tmp")); len(tmps) > 0 {
		for _, p := range tmps {
			_ = os.Remove(p) // a spare being zeroed, or a retired segment kept for recycling
		}
	}
	segs, err := listSegments(logDir)
	if err != nil || len(segs) == 0 {
		return nil, err
	}
	type final struct {
		val     []byte
		expires uint64
		del     bool
	}
	last := map[string]final{}
	records := 0
	for i, seg := range segs {
		path := segFile(logDir, seg)
		torn, end, err := readSegment(path, seg, func(payload []byte) error {
			records++
			return decodeTierOps(payload, func(k, v []byte, expires uint64, del bool) {
				last[string(k)] = final{val: bytes.Clone(v), expires: expires, del: del}
			})
		})
		if err != nil {
			return nil, err
		}
		switch {
		case torn && i < len(segs)-1:
			logger.Warn("storage: in-flight log: a segment that is not the last ends in a torn record", "segment", seg)
		case torn && secondFormat(path):
			if err := sealSegment(path, seg, end); err != nil {
				return nil, err
			}
		}
	}
	wb := db.NewWriteBatch()
	defer wb.Cancel()
	for k, f := range last {
		if f.del {
			err = wb.Delete([]byte(k))
		} else {
			err = wb.SetEntry(&badger.Entry{Key: []byte(k), Value: f.val, ExpiresAt: f.expires})
		}
		if err != nil {
			return nil, fmt.Errorf("storage: replaying the in-flight log: %w", err)
		}
	}
	if err := wb.Flush(); err != nil {
		return nil, fmt.Errorf("storage: replaying the in-flight log: %w", err)
	}
	if err := db.Sync(); err != nil {
		return nil, fmt.Errorf("storage: replaying the in-flight log: %w", err)
	}
	if records > 0 {
		logger.Info("storage: in-flight log replayed into Badger", "segments", len(segs), "records", records, "keys", len(last))
	}
	return segs, nil
}

// clearTierLog replays the in-flight log in dir into db, for a folder
// opened offline, and deletes it: db is closed (which flushes everything
// it holds) before the segments go, and opened again. It returns the open
// database.
func clearTierLog(db *badger.DB, dir string, logger *slog.Logger) (*badger.DB, error) {
	segs, err := replayTierLog(db, dir, logger)
	if err != nil || len(segs) == 0 {
		return db, err
	}
	opts := db.Opts()
	if err := db.Close(); err != nil {
		return nil, fmt.Errorf("storage: replaying the in-flight log: %w", err)
	}
	logDir := filepath.Join(dir, tierLogDir)
	for _, seg := range segs {
		if err := os.Remove(segFile(logDir, seg)); err != nil {
			return nil, fmt.Errorf("storage: in-flight log: %w", err)
		}
	}
	if err := syncDir(logDir); err != nil {
		return nil, fmt.Errorf("storage: in-flight log: %w", err)
	}
	return openDB(opts)
}

// tierTxn reads the tier over Badger, and, in a batch, writes the tier.
// layers are searched in order: the batch's writes (nil in a view), then
// master or a copy of it. rd is a read-only Badger transaction.
type tierTxn struct {
	t      *tier
	layers [2]*ttree
	rd     *badger.Txn
	probe  titem
}

// find returns the newest item for k in the layers, if any.
func (x *tierTxn) find(k []byte) (*titem, bool) {
	x.probe.setKey(k)
	for _, l := range x.layers {
		if l == nil {
			continue
		}
		if it, ok := l.Get(&x.probe); ok {
			return it, true
		}
	}
	return nil, false
}

// get calls fn with k's value; ok is false if k does not exist.
func (x *tierTxn) get(k []byte, fn func(v []byte) error) (bool, error) {
	if it, ok := x.find(k); ok {
		if it.tomb {
			return false, nil
		}
		return true, fn(it.val)
	}
	item, err := x.rd.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, item.Value(fn)
}

// How a write's key stands to what is there.
type keyKind uint8

const (
	keyAny     keyKind = iota // overwritten and deleted at will
	keyFresh                  // never in Badger before: an entry, a pending receipt
	keyLasting                // never overwritten nor deleted: a dedupe record
)

// set writes k = v in the batch.
func (x *tierTxn) set(k, v []byte, expires uint64, kind keyKind) {
	base := kind != keyFresh
	if kind == keyAny {
		if prev, ok := x.find(k); ok {
			base = prev.base
		}
	}
	buf := make([]byte, len(k)+len(v))
	copy(buf, k)
	copy(buf[len(k):], v)
	it := newTitem(buf[:len(k):len(k)])
	it.val, it.expires, it.base, it.lasting = buf[len(k):], expires, base, kind == keyLasting
	x.t.batch.Set(it)
	x.t.rec.set(k, v, expires)
}

// del deletes k in the batch.
func (x *tierTxn) del(k []byte) {
	base := true
	if prev, ok := x.find(k); ok {
		base = prev.base
	}
	it := newTitem(bytes.Clone(k))
	it.tomb, it.base = true, base
	x.t.batch.Set(it)
	x.t.rec.del(k)
}

// iter returns an iterator over the keys with prefix, in key order; with
// withBatch false it leaves out the open batch's own writes.
func (x *tierTxn) iter(prefix []byte, withBatch bool) *mergeIter {
	m := &mergeIter{prefix: prefix}
	for i, l := range x.layers {
		if l == nil || (i == 0 && !withBatch) {
			continue
		}
		m.src = append(m.src, mergeSrc{it: l.Iter()})
	}
	m.bi = x.rd.NewIterator(badger.IteratorOptions{Prefix: prefix})
	return m
}

// mergeIter walks the tier's layers and Badger together: the first layer
// holding a key wins, and a deletion hides the key.
type mergeIter struct {
	prefix []byte
	src    []mergeSrc
	bi     *badger.Iterator
	probe  titem
	// The current key: from src[cur], or from Badger when cur is -1.
	cur   int
	key   []byte
	valid bool
}

type mergeSrc struct {
	it   btree.IterG[*titem]
	item *titem // nil when exhausted
}

func (s *mergeSrc) set(ok bool, prefix []byte) {
	s.item = nil
	if ok && bytes.HasPrefix(s.it.Item().key, prefix) {
		s.item = s.it.Item()
	}
}

// Seek moves to the first key >= k.
func (m *mergeIter) Seek(k []byte) {
	m.probe.setKey(k)
	for i := range m.src {
		m.src[i].set(m.src[i].it.Seek(&m.probe), m.prefix)
	}
	m.bi.Seek(k)
	m.settle()
}

// Rewind moves to the first key.
func (m *mergeIter) Rewind() { m.Seek(m.prefix) }

// settle makes the smallest key of the sources current, skipping deleted
// keys.
func (m *mergeIter) settle() {
	for {
		var min []byte
		m.cur, m.valid = -1, false
		for i := range m.src {
			if it := m.src[i].item; it != nil && (min == nil || bytes.Compare(it.key, min) < 0) {
				min, m.cur, m.valid = it.key, i, true
			}
		}
		if m.bi.ValidForPrefix(m.prefix) {
			if k := m.bi.Item().Key(); min == nil || bytes.Compare(k, min) < 0 {
				min, m.cur, m.valid = k, -1, true
			}
		}
		m.key = min
		if !m.valid || m.cur < 0 || !m.src[m.cur].item.tomb {
			return
		}
		m.advance()
	}
}

// advance moves every source past the current key.
func (m *mergeIter) advance() {
	k := m.key
	for i := range m.src {
		if it := m.src[i].item; it != nil && bytes.Equal(it.key, k) {
			m.src[i].set(m.src[i].it.Next(), m.prefix)
		}
	}
	if m.bi.ValidForPrefix(m.prefix) && bytes.Equal(m.bi.Item().Key(), k) {
		m.bi.Next()
	}
}

func (m *mergeIter) Valid() bool { return m.valid }

func (m *mergeIter) ValidForPrefix(p []byte) bool { return m.valid && bytes.HasPrefix(m.key, p) }

func (m *mergeIter) Next() {
	m.advance()
	m.settle()
}

// Key is the current key, valid until Next or Seek.
func (m *mergeIter) Key() []byte { return m.key }

// Value calls fn with the current value.
func (m *mergeIter) Value(fn func(v []byte) error) error {
	if m.cur >= 0 {
		return fn(m.src[m.cur].item.val)
	}
	return m.bi.Item().Value(fn)
}

func (m *mergeIter) Close() {
	for i := range m.src {
		m.src[i].it.Release()
	}
	m.bi.Close()
}
