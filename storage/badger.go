package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// valueThreshold: values up to 1 MiB stay in the LSM tree, next to their
// keys (every message does: MaxValueBytes is far below it).
const valueThreshold = 1 << 20

// Open opens (or creates) the Badger store in cfg.Dir. The store holds the
// directory lock until Close.
func Open(cfg Config) (Store, error) {
	err := cfg.Validate()
	if cfg.Dir == "" {
		err = errors.Join(err, fmt.Errorf("%w: Dir is required", ErrInvalidConfig))
	}
	if err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return openBadger(cfg, nil)
}

// openBadger opens the store; failCommit, when not nil, is called before
// each commit and fails it with its error (tests only).
func openBadger(cfg Config, failCommit func() error) (*engine, error) {
	guard := newDiskGuard(cfg)
	warn := func(msg string, args ...any) { cfg.Logger.Warn(msg, args...) }
	guard.releaseReserve(warn)
	db, err := openDB(badgerOptions(cfg))
	if err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", cfg.Dir, err)
	}
	guard.ensureReserve(warn)
	be := &badgerBackend{db: db, opts: badgerOptions(cfg), dir: cfg.Dir, log: cfg.Logger, failCommit: failCommit,
		spillAfter: cfg.SpillAfter, tierBudget: 2 * cfg.MemTableSize, now: cfg.Now}
	if be.tier, err = newTier(db, cfg.Dir, be.spillAfter, be.tierBudget, cfg.Now, cfg.Logger, &be.gauges); err != nil {
		_ = db.Close()
		return nil, err
	}
	s, err := newEngine(cfg, be)
	if err != nil {
		_ = be.close()
		return nil, err
	}
	return s, nil
}

// badgerOptions tunes Badger for small durable records and a small memory
// footprint.
func badgerOptions(cfg Config) badger.Options {
	return badger.DefaultOptions(cfg.Dir).
		// Badger receives only what the in-flight tier spills, whose log
		// holds it until Badger has it durably (tier.go): Badger's own
		// commits need no sync.
		WithSyncWrites(false).
		WithLogger(badgerLogger{cfg.Logger}).
		// Values are end-to-end encrypted: compression would cost CPU and
		// save nothing. Without compression Badger needs no block cache and
		// reads blocks straight from the mmapped tables.
		WithCompression(options.None).
		WithBlockCacheSize(0).
		WithIndexCacheSize(0).
		// Two memtables (one filling, one flushing) instead of five.
		WithMemTableSize(cfg.MemTableSize).
		WithNumMemtables(2).
		// Compact L0 at 10 tables, twice Badger's default: most of what
		// reaches L0 is entries with their tombstones, so compacting it
		// less often saves work (5% of the server's CPU per message under
		// chat load), and point reads, which pay for every L0 table, are
		// rare (first touch of a user, retried sends). Compacting at 2
		// (tried, to make tombstones vanish sooner) cost 20% of the append
		// rate and tripled the p99 on two cores; reclaim forces
		// compaction when it pays.
		WithNumLevelZeroTables(10).
		WithNumLevelZeroTablesStall(20).
		WithNumCompactors(2).
		// Values up to 1 MiB live in the LSM tree next to their key
		// (MaxValueBytes is at most 512 KiB), so the value log stays
		// empty and compaction alone returns space. Badger still msyncs
		// the mapped value-log file on every commit, and that costs in
		// proportion to the mapping (~90 us a commit at 64 MiB, measured
		// with strace): the smallest file Badger allows makes it ~free.
		WithValueThreshold(valueThreshold).
		WithValueLogFileSize(1 << 20).
		// One writer (the committer): no conflict detection needed.
		WithDetectConflicts(false).
		// Badger's expvar metrics are process-global; ours are in Stats.
		WithMetricsEnabled(false)
}

// openDB opens Badger, after deleting the value-log and memtable-log
// files that a crash left empty. Badger creates such a file (a value log at
// every open, a memtable log at every memtable switch) and writes its
// header right after; killed in between, it leaves a file of zero bytes,
// and then refuses to open ("Open existing file ... Create a new file", or
// "while opening fid: N err: Create a new file") until the file is gone.
// An empty file holds nothing, so nothing is lost.
func openDB(opts badger.Options) (*badger.DB, error) {
	vlogs, _ := filepath.Glob(filepath.Join(opts.ValueDir, "*.vlog"))
	mems, _ := filepath.Glob(filepath.Join(opts.Dir, "*.mem"))
	for _, p := range append(vlogs, mems...) {
		if fi, err := os.Stat(p); err == nil && fi.Size() == 0 {
			if err := os.Remove(p); err != nil {
				return nil, err
			}
		}
	}
	return badger.Open(opts)
}

// badgerLogger sends Badger's logs to slog. Badger logs every compaction at
// Info, so Info becomes Debug, and its per-write Debug becomes Debug-4.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) logf(level slog.Level, format string, args []any) {
	if !b.l.Enabled(context.Background(), level) {
		return
	}
	b.l.Log(context.Background(), level, "badger: "+strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func (b badgerLogger) Errorf(f string, a ...any)   { b.logf(slog.LevelError, f, a) }
func (b badgerLogger) Warningf(f string, a ...any) { b.logf(slog.LevelWarn, f, a) }
func (b badgerLogger) Infof(f string, a ...any)    { b.logf(slog.LevelDebug, f, a) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.logf(slog.LevelDebug-4, f, a) }

// badgerBackend keeps the store in Badger, behind the in-flight tier
// (tier.go); see keys.go for the key space.
type badgerBackend struct {
	// Immutable after construction.
	opts       badger.Options
	dir        string
	log        *slog.Logger
	spillAfter time.Duration
	tierBudget int64
	now        func() time.Time
	failCommit func() error // tests only
	failSync   func() error // tests only: fails a sync like failCommit
	gauges     tierGauges

	// db and tier are replaced by reopen, which holds mu for writing;
	// views hold it for reading. The committer (the only caller of reopen)
	// and housekeeping (which the engine keeps out of a reopen) use them
	// without it.
	mu   sync.RWMutex
	db   *badger.DB
	tier *tier

	// Owned by the committer (the one goroutine that begins and commits).
	slab slab
}

func (b *badgerBackend) begin() writer {
	b.slab.reset()
	b.tier.rec.reset()
	t := b.tier
	return &badgerTxn{kv: &tierTxn{t: t, layers: [2]*ttree{t.batch, t.master}, rd: b.db.NewTransaction(false)}, be: b, write: true}
}

// slab holds the keys and values a batch builds, carved from a few large
// allocations instead of one small one per write; the tier copies what it
// keeps. The next batch's begin reuses the latest chunk (a chunk filled up
// mid-batch is left to the collector).
type slab struct {
	bytes []byte
}

// slabBytes sizes a chunk: a typical batch (hundreds of writes of a few
// hundred bytes) fits in one.
const slabBytes = 256 << 10

func (s *slab) reset() { s.bytes = s.bytes[:0] }

// take returns n bytes of the slab, not zeroed: every caller fills all of
// them (the put functions of keys.go).
func (s *slab) take(n int) []byte {
	if len(s.bytes)+n > cap(s.bytes) {
		s.bytes = make([]byte, 0, max(slabBytes, n))
	}
	b := s.bytes[len(s.bytes) : len(s.bytes)+n : len(s.bytes)+n]
	s.bytes = s.bytes[:len(s.bytes)+n]
	return b
}

func (b *badgerBackend) view(fn func(reader) error) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.db == nil {
		return ErrRecovering // a failed reopen left none
	}
	t := b.tier
	pub := t.snapshot() // before Badger's snapshot: see tier.go, "Reads"
	return b.db.View(func(txn *badger.Txn) error {
		return fn(&badgerTxn{kv: &tierTxn{t: t, layers: [2]*ttree{nil, pub}, rd: txn}, be: b})
	})
}

// sync syncs the in-flight log, which holds every commit Badger lacks.
func (b *badgerBackend) sync() error {
	if b.failSync != nil {
		if err := b.failSync(); err != nil {
			return err
		}
	}
	return b.tier.log.sync()
}

// tidy spills from the tier what is due and deletes what the log no longer
// needs.
func (b *badgerBackend) tidy() error { return b.tier.tidy(b.db) }

// fill adds the tier's gauges, which outlive a tier that reopen replaces.
func (b *badgerBackend) fill(st *Stats) { b.gauges.fill(st) }

// spillAll writes everything the tier holds into Badger. Committer
// goroutine only (Backup runs it through exclusive).
func (b *badgerBackend) spillAll() error {
	if b.db == nil {
		return ErrRecovering
	}
	return b.tier.spillAll(b.db)
}

// reopen drops the tier, closes Badger (which flushes what it can), opens
// it again (replaying its own log), and replays the in-flight log into it.
// If the close fails, the files are still released and the open replays
// from them.
func (b *badgerBackend) reopen() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tier != nil {
		b.tier.abandon()
		b.tier = nil
	}
	if b.db != nil {
		if err := b.db.Close(); err != nil {
			b.log.Warn("storage: closing Badger to reopen it", "err", err)
		}
		b.db = nil
	}
	db, err := openDB(b.opts)
	if err != nil {
		return fmt.Errorf("storage: reopen %s: %w", b.dir, err)
	}
	t, err := newTier(db, b.dir, b.spillAfter, b.tierBudget, b.now, b.log, &b.gauges)
	if err != nil {
		_ = db.Close()
		return fmt.Errorf("storage: reopen %s: %w", b.dir, err)
	}
	b.db, b.tier = db, t
	return nil
}

func (b *badgerBackend) snapshot() (reader, func(), bool) {
	t := b.tier
	pub := t.snapshot()
	txn := b.db.NewTransaction(false)
	return &badgerTxn{kv: &tierTxn{t: t, layers: [2]*ttree{nil, pub}, rd: txn}, be: b}, txn.Discard, true
}

// close spills the tier into Badger, deletes its log and closes Badger.
func (b *badgerBackend) close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.db == nil {
		return nil // a failed reopen left none
	}
	var err error
	if b.tier != nil {
		if err = b.tier.close(b.db); err != nil {
			err = fmt.Errorf("storage: close: the in-flight log stays, to be replayed at the next open: %w", err)
		}
	}
	if cerr := b.db.Close(); cerr != nil {
		return errors.Join(err, fmt.Errorf("storage: close: %w", cerr))
	}
	// Badger flushed its memtables as it closed: the log holds nothing it
	// lacks.
	if err == nil && b.tier != nil {
		err = b.tier.removeLog()
	}
	return err
}

// badgerTxn is the tier over Badger seen as a reader and, from begin, a
// writer.
type badgerTxn struct {
	kv    *tierTxn
	be    *badgerBackend
	write bool // from begin: writes go into the tier's batch
}

// badgerReader reads Badger alone, for a folder opened offline, whose
// in-flight log was replayed at open (OpenFolder).
func badgerReader(txn *badger.Txn) *badgerTxn {
	return &badgerTxn{kv: &tierTxn{rd: txn}}
}

func (t *badgerTxn) commit() error {
	defer t.kv.rd.Discard()
	if t.be.failCommit != nil {
		if err := t.be.failCommit(); err != nil {
			t.kv.t.batch.Clear()
			return err
		}
	}
	return t.kv.t.commit()
}

func (t *badgerTxn) discard() {
	t.kv.rd.Discard()
	t.kv.t.batch.Clear()
}

// get calls fn with the value of k; ok is false if k does not exist.
func (t *badgerTxn) get(k []byte, fn func(v []byte) error) (ok bool, err error) {
	return t.kv.get(k, fn)
}

func (t *badgerTxn) meta(r uint64) (m meta, err error) {
	_, err = t.get(metaKey(r), func(v []byte) (err error) {
		m, err = decodeMeta(v)
		return err
	})
	return m, err
}

// scan reads what was committed before the batch, in a batch too: it never
// needs the batch's own writes, since acks and expiry only reach committed
// entries, and the floor (kept in the meta) already skips entries the batch
// deleted.
func (t *badgerTxn) scan(r, from uint64, fn func(e *Entry) bool) error {
	it := t.kv.iter(entryPrefix(r), false)
	defer it.Close()
	var e Entry
	for it.Seek(entryKey(r, from)); it.Valid(); it.Next() {
		stop := false
		err := it.Value(func(v []byte) error {
			if err := decodeEntry(it.Key(), v, &e); err != nil {
				return err
			}
			stop = !fn(&e)
			return nil
		})
		if err != nil || stop {
			return err
		}
	}
	return nil
}

func (t *badgerTxn) dedupe(sender, msgID, r uint64) (d Dup, ok bool, err error) {
	ok, err = t.get(dedupeKey(sender, msgID, r), func(v []byte) (err error) {
		d, err = decodeDup(r, v)
		return err
	})
	return d, ok, err
}

func (t *badgerTxn) group(g uint64) (gi groupInfo, ok bool, err error) {
	ok, err = t.get(groupInfoKey(g), func(v []byte) (err error) {
		gi, err = decodeGroup(v)
		return err
	})
	return gi, ok, err
}

// each calls fn with every key of prefix and its value, in key order,
// until fn returns false.
func (t *badgerTxn) each(prefix []byte, fn func(k, v []byte) bool) error {
	it := t.kv.iter(prefix, true)
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		stop := false
		if err := it.Value(func(v []byte) error { stop = !fn(it.Key(), v); return nil }); err != nil || stop {
			return err
		}
	}
	return nil
}

func (t *badgerTxn) members(g uint64, fn func(Member) bool) error {
	return t.each(memberPrefix(g), func(k, v []byte) bool {
		if len(k) != memberKeyLen || len(v) != 1 {
			return true
		}
		return fn(Member{ID: be64(k[groupPrefixSz+1:]), Role: Role(v[0])})
	})
}

func (t *badgerTxn) role(g, m uint64) (role Role, ok bool, err error) {
	ok, err = t.get(byUserKey(m, g), func(v []byte) error {
		if len(v) != 1 {
			return errCorrupt
		}
		role = Role(v[0])
		return nil
	})
	return role, ok, err
}

func (t *badgerTxn) groupsOf(m uint64, fn func(uint64) bool) error {
	prefix := byUserKey(m, 0)[:9]
	return t.each(prefix, func(k, _ []byte) bool {
		if len(k) != byUserKeyLen {
			return true // not a membership key: skipped, as members skips its own
		}
		return fn(be64(k[9:]))
	})
}

func (t *badgerTxn) totals() (tot totals, err error) {
	_, err = t.get([]byte{prefixTotals}, func(v []byte) (err error) {
		tot, err = decodeTotals(v)
		return err
	})
	return tot, err
}

// heads walks the meta keys and, for each non-empty mailbox, seeks one
// shared iterator to its first entry, just above its floor: one seek per
// recipient, never a walk over tombstones.
func (t *badgerTxn) heads(fn func(r uint64, m meta, headTime int64) bool) error {
	entries := t.kv.iter([]byte{prefixEntry}, true)
	defer entries.Close()
	var inner error
	err := t.each([]byte{prefixMeta}, func(k, v []byte) bool {
		m, err := decodeMeta(v)
		if err != nil || len(k) != metaKeyLen {
			inner = errCorrupt
			return false
		}
		if m.count == 0 {
			// Empty (a stored count is low by at most the appends since the
			// meta was written, but never 0 for a non-empty mailbox). Do not
			// seek: past this mailbox's floor lie other mailboxes'
			// tombstones, and the seek would walk them.
			return true
		}
		r := be64(k[1:])
		entries.Seek(entryKey(r, m.floor+1))
		if !entries.ValidForPrefix(entryPrefix(r)) {
			return true
		}
		var head int64
		inner = entries.Value(func(v []byte) error {
			if len(v) < entryHeadLen {
				return errCorrupt
			}
			head = int64(be64(v[17:]))
			return nil
		})
		return inner == nil && fn(r, m, head)
	})
	return errors.Join(err, inner)
}

func (t *badgerTxn) pending(fn func(PendingReceipt) bool) error {
	var inner error
	err := t.each([]byte{prefixPending}, func(k, v []byte) bool {
		p, err := decodePending(k, v)
		if err != nil {
			inner = err
			return false
		}
		return fn(p)
	})
	return errors.Join(err, inner)
}

func (t *badgerTxn) groupEvent(actor, msgID uint64) (ev GroupEvent, ok bool, err error) {
	k := groupEventKey(actor, msgID)
	ok, err = t.get(k, func(v []byte) (err error) {
		ev, err = decodeGroupEvent(k, v)
		return err
	})
	return ev, ok, err
}

func (t *badgerTxn) groupEvents(fn func(GroupEvent) bool) error {
	var inner error
	err := t.each([]byte{prefixGroupEvent}, func(k, v []byte) bool {
		ev, err := decodeGroupEvent(k, v)
		if err != nil {
			inner = err
			return false
		}
		return fn(ev)
	})
	return errors.Join(err, inner)
}

func (t *badgerTxn) putGroupEvent(ev *GroupEvent) error {
	return t.set(groupEventKey(ev.Actor, ev.MsgID), encodeGroupEvent(ev))
}

func (t *badgerTxn) delGroupEvent(actor, msgID uint64) error {
	return t.del(groupEventKey(actor, msgID))
}

func (t *badgerTxn) set(k, v []byte) error {
	t.kv.set(k, v, 0, keyAny)
	return nil
}

func (t *badgerTxn) del(k []byte) error {
	t.kv.del(k)
	return nil
}

// putPending writes a pending receipt. Its key is fresh: (acker, seq)
// names the first of the entries whose deletion made it, and an entry is
// deleted once.
func (t *badgerTxn) putPending(p *PendingReceipt) error {
	s := &t.be.slab
	t.kv.set(putPendingKey(s.take(pendingKeyLen), p.Sender, p.Key()), putPending(s.take(pendingValLen), p), 0, keyFresh)
	return nil
}

func (t *badgerTxn) delPending(sender uint64, key ReceiptKey) error {
	return t.del(putPendingKey(t.be.slab.take(pendingKeyLen), sender, key))
}

func (t *badgerTxn) putMeta(r uint64, m meta) error {
	s := &t.be.slab
	return t.set(putMetaKey(s.take(metaKeyLen), r), putMeta(s.take(metaValLen), m))
}

// putEntry writes an entry. Its key is fresh: the engine gives an entry a
// seq above the recipient's high-water mark, which no key ever had.
func (t *badgerTxn) putEntry(e *Entry) error {
	s := &t.be.slab
	t.kv.set(putEntryKey(s.take(entryKeyLen), e.Recipient, e.Seq), putEntry(s.take(entryHeadLen+len(e.Value)), e), 0, keyFresh)
	return nil
}

func (t *badgerTxn) delEntry(r, seq uint64) error {
	return t.del(putEntryKey(t.be.slab.take(entryKeyLen), r, seq))
}

// putDedupe writes a dedupe record. It stays until it expires, in Badger:
// the tier spills it with the next chunk of them (keyLasting).
func (t *badgerTxn) putDedupe(sender, msgID uint64, d Dup, ttlSeconds int64) error {
	s := &t.be.slab
	expires := uint64(nowUnix() + ttlSeconds) // wall clock: Badger compares with it
	t.kv.set(putDedupeKey(s.take(dedupeKeyLen), sender, msgID, d.Recipient), putDup(s.take(dedupeValLen), d), expires, keyLasting)
	return nil
}

func (t *badgerTxn) senderUse(sender uint64) (u senderUse, err error) {
	_, err = t.get(quotaKey(sender), func(v []byte) (err error) {
		u, err = decodeUse(v)
		return err
	})
	return u, err
}

func (t *badgerTxn) putSenderUse(sender uint64, u senderUse) error {
	if u == (senderUse{}) {
		return t.del(quotaKey(sender))
	}
	return t.set(quotaKey(sender), encodeUse(u))
}

func (t *badgerTxn) putTotals(tot totals) error {
	return t.set([]byte{prefixTotals}, encodeTotals(tot))
}

func (t *badgerTxn) putGroup(g uint64, gi groupInfo) error {
	return t.set(groupInfoKey(g), encodeGroup(gi))
}

func (t *badgerTxn) delGroup(g uint64) error { return t.del(groupInfoKey(g)) }

func (t *badgerTxn) putMember(g, m uint64, role Role) error {
	if err := t.set(memberKey(g, m), []byte{byte(role)}); err != nil {
		return err
	}
	return t.set(byUserKey(m, g), []byte{byte(role)})
}

func (t *badgerTxn) delMember(g, m uint64) error {
	if err := t.del(memberKey(g, m)); err != nil {
		return err
	}
	return t.del(byUserKey(m, g))
}
