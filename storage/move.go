package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// Moving mailboxes between stores, offline (docs/CLUSTER.md, "Changing the
// node list"). Every key but the store-wide ones belongs to one id, the
// user or group whose home stores it (ownerOf):
//
//	'm' recipient seq, 'h' recipient        the recipient's mailbox and mark
//	'd' sender msgid recipient              the recipient (a group change's
//	                                        record names the group there)
//	'p' sender acker seq                    the ACKER: a pending receipt is
//	                                        recorded with the deletion that
//	                                        made it, in the acker's home, and
//	                                        its new home offers it to the
//	                                        sender's at start, as every node
//	                                        does with the receipts it owes
//	'g' group …, 'u' member group           the group (the reverse index is
//	                                        written beside the membership)
//	'e' actor msgid -> group …              the group named in the value
//	't', 'q' sender                         nobody: store-wide sums of the
//	                                        entries, recounted after a move
//	'z', 'v' id                             nobody: scratch; move markers
//
// Move copies every key of each id into the destination, commits and
// syncs it, and only then deletes them from the source. A marker in the
// destination ('v' id) says a move of the id is under way, from where,
// with which seq offset, and whether the copy is whole; it makes a rerun
// after a crash exact: a copy cut short is redone with the same offset (it
// writes the same keys again), a whole copy is not redone and only the
// source's keys are deleted, and the marker goes last.

// prefixMoving is the move marker's prefix:
//
//	'v' id(8) -> state(1) offset(8) len(1) from(len)
const prefixMoving = 'v'

// The states of a move marker.
const (
	moveCopying = 1 // the copy may be partial; the source is whole
	moveCopied  = 2 // the copy is whole and synced; the source may be partly deleted
)

// maxMoveFrom bounds the name of a move's source kept in a marker.
const maxMoveFrom = 255

var (
	// ErrInUse means the folder's Badger lock is held: a server (or
	// another tool) has the store open. Offline operations refuse it.
	ErrInUse = errors.New("storage: the folder is in use: a server or another tool has it open")
	// ErrNoStore means OpenFolder was asked for an existing store in a
	// folder that does not exist.
	ErrNoStore = errors.New("storage: no store in the folder")
	// ErrUnknownKey means a folder holds a key whose owner this build does
	// not know, so it cannot say where it belongs; nothing is moved.
	ErrUnknownKey = errors.New("storage: a key this build does not know")
)

// Folder is a store's folder opened for offline tools (Holdings, Move,
// Recount): Badger alone, with no committer and no housekeeping. It holds
// the folder's lock until Close, so no server can open it meanwhile.
// Its methods are for one goroutine at a time.
type Folder struct {
	db  *badger.DB
	dir string
}

// OpenFolder opens the store in cfg.Dir offline. With create false the
// folder must exist (ErrNoStore otherwise); with create true an absent
// folder is made, empty. A folder a running store holds gives ErrInUse.
func OpenFolder(cfg Config, create bool) (*Folder, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("%w: Dir is required", ErrInvalidConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if _, err := os.Stat(cfg.Dir); errors.Is(err, os.ErrNotExist) && !create {
		return nil, fmt.Errorf("%w: %s does not exist", ErrNoStore, cfg.Dir)
	}
	db, err := openDB(badgerOptions(cfg))
	if err != nil {
		// Badger formats the lock's error with %v, so only its text tells.
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return nil, fmt.Errorf("%w: %s (stop it first)", ErrInUse, cfg.Dir)
		}
		return nil, fmt.Errorf("storage: open %s: %w", cfg.Dir, err)
	}
	// What the server's in-flight log holds goes into Badger first: after
	// a crash, that is where the latest writes are (tier.go).
	if db, err = clearTierLog(db, cfg.Dir, cfg.Logger); err != nil {
		if db != nil {
			_ = db.Close()
		}
		return nil, err
	}
	return &Folder{db: db, dir: cfg.Dir}, nil
}

// Dir returns the folder's path.
func (f *Folder) Dir() string { return f.dir }

// Close closes the store and releases the folder's lock.
func (f *Folder) Close() error {
	if err := f.db.Close(); err != nil {
		return fmt.Errorf("storage: close %s: %w", f.dir, err)
	}
	return nil
}

// Holdings is what a folder holds.
type Holdings struct {
	// IDs are the ids that own at least one key, ascending: users with
	// a mailbox, a mark, dedupe records or pending receipts, and groups.
	IDs []uint64
	// Unfinished are the moves into this folder that were cut short
	// (their marker is still there), by ID.
	Unfinished []Unfinished
}

// Unfinished is a move into a folder that did not finish: rerunning Move
// from From with the ID finishes it.
type Unfinished struct {
	ID     uint64
	From   string // the name Move was given for the source
	Copied bool   // the copy is whole; only the source's deletion is left
}

// Holdings lists the ids the folder holds and the moves into it left
// unfinished. It reads every key but the mailbox entries, of which it
// reads one per mailbox, and keeps the ids in memory (8 bytes each, plus
// a map's overhead while it reads).
func (f *Folder) Holdings() (Holdings, error) {
	var h Holdings
	ids := map[uint64]struct{}{}
	err := f.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid(); {
			item := it.Item()
			k := item.Key()
			if len(k) > 0 && k[0] == prefixMoving {
				u, err := decodeMarkerItem(item)
				if err != nil {
					return err
				}
				h.Unfinished = append(h.Unfinished, u)
				it.Next()
				continue
			}
			id, ok, err := ownerOf(item)
			if err != nil {
				return err
			}
			if ok {
				ids[id] = struct{}{}
			}
			if k[0] == prefixEntry && id < math.MaxUint64 {
				it.Seek(entryPrefix(id + 1)) // one entry per mailbox is enough
				continue
			}
			it.Next()
		}
		return nil
	})
	if err != nil {
		return Holdings{}, fmt.Errorf("storage: listing %s: %w", f.dir, err)
	}
	h.IDs = make([]uint64, 0, len(ids))
	for id := range ids {
		h.IDs = append(h.IDs, id)
	}
	slices.Sort(h.IDs)
	return h, nil
}

// HoldsAny reports whether the folder holds anything an id owns (a
// mailbox, a mark, dedupe records, pending receipts, a group) or a move
// left unfinished, stopping at the first such key: a folder for which it
// is false may be served as any node.
func (f *Folder) HoldsAny() (bool, error) {
	found := false
	err := f.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid() && !found; it.Next() {
			item := it.Item()
			if k := item.Key(); len(k) > 0 && k[0] == prefixMoving {
				found = true
				break
			}
			_, ok, err := ownerOf(item)
			if err != nil {
				return err
			}
			found = ok
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("storage: listing %s: %w", f.dir, err)
	}
	return found, nil
}

// ownerOf returns the id that owns item's key (see the table above), or
// ok false for a store-wide key. A key it does not know is an error: a new
// prefix in keys.go must be given its owner here, or moves refuse to run.
func ownerOf(item *badger.Item) (id uint64, ok bool, err error) {
	return owner(item.Key(), func(fn func([]byte) error) error { return item.Value(fn) })
}

// owner is ownerOf on a key and a way to read its value (for 'e' only).
func owner(k []byte, value func(func(v []byte) error) error) (id uint64, ok bool, err error) {
	bad := func() (uint64, bool, error) {
		return 0, false, fmt.Errorf("%w: %x", errCorrupt, k)
	}
	if len(k) == 0 {
		return bad()
	}
	switch k[0] {
	case prefixEntry:
		if len(k) != entryKeyLen {
			return bad()
		}
		return be64(k[1:]), true, nil
	case prefixMeta:
		if len(k) != metaKeyLen {
			return bad()
		}
		return be64(k[1:]), true, nil
	case prefixDedupe:
		if len(k) != dedupeKeyLen {
			return bad()
		}
		return be64(k[17:]), true, nil
	case prefixGroup:
		if len(k) < groupPrefixSz {
			return bad()
		}
		return be64(k[1:]), true, nil
	case prefixByUser:
		if len(k) != byUserKeyLen {
			return bad()
		}
		return be64(k[9:]), true, nil
	case prefixPending:
		if len(k) != pendingKeyLen {
			return bad()
		}
		return be64(k[9:]), true, nil
	case prefixGroupEvent:
		err := value(func(v []byte) error {
			if len(v) < 8 {
				return errCorrupt
			}
			id = be64(v)
			return nil
		})
		return id, err == nil, err
	case prefixTotals, prefixQuota, prefixScratch, prefixMoving:
		return 0, false, nil
	}
	return 0, false, fmt.Errorf("%w: prefix %q (%x)", ErrUnknownKey, k[0], k)
}

// sidePrefixes are the prefixes of owned keys other than a mailbox's ('m',
// 'h'): Move finds an id's keys among them by scanning each whole, since
// the owner is not the first field of their keys.
var sidePrefixes = []byte{prefixDedupe, prefixGroup, prefixByUser, prefixPending, prefixGroupEvent}

// Moved is what Move did.
type Moved struct {
	IDs        []uint64  // the ids now wholly in the destination, ascending
	Entries    int       // mailbox entries copied
	Keys       int       // keys copied, entries included
	Renumbered []uint64  // ids whose seqs were raised because the destination held a mark for them
	Refused    []Refusal // ids left where they were, and why
}

// Refusal is an id Move left in the source.
type Refusal struct {
	ID     uint64
	Reason string
}

// Move moves every key of ids from the store in from to the one in to,
// both opened offline: each user's mailbox entries (byte for byte, in
// order), mark, dedupe records and pending receipts (those it recorded as
// the acker), and each group's record, memberships, dedupe records and
// pending events. An id that from does not hold is skipped, unless a move
// of it from fromName into to is unfinished: Move finishes it. fromName
// names the source in to's markers (the command uses the node ID); a
// rerun must give the same one.
//
// Seqs keep their values, unless to holds a mark for the id (a drained
// mailbox left there earlier, say by a restore): then every seq is raised
// by that mark, so the new ones are above every seq to ever gave the id,
// and a client's resume point, from either store, never skips an entry
// (it may see entries again, which clients drop by msg id). The mark, the
// floor, the dedupe records' and the pending receipts' seqs move with
// them.
//
// An id is refused, and left in from untouched, when to holds entries or
// a group record of it (two homes held it: merging two mailboxes has no
// exact order), or an unfinished move of it from another source.
//
// The copy is committed and synced in to before anything is deleted from
// from. A crash in between leaves both holding the id; rerunning the same
// Move finishes it without copying anything twice (the marker, above).
// At the end the totals and per-sender counts of both stores are recounted
// from their entries (Recount). Move reads each side prefix of from twice
// (to copy, to delete) and keeps only the ids and their offsets in memory.
func Move(from, to *Folder, ids []uint64, fromName string) (Moved, error) {
	return move(from, to, ids, fromName, nil)
}

// moving is one id of a Move.
type moving struct {
	offset uint64 // added to every seq of the id
	copied bool   // a previous run copied it whole
	marked bool   // to holds its marker
}

// move is Move; afterCopy, when not nil, runs once the copy is synced and
// before the source's deletion, and stops the move with its error (tests:
// a crash at the worst moment).
func move(from, to *Folder, ids []uint64, fromName string, afterCopy func() error) (res Moved, err error) {
	switch {
	case from == to || from.dir == to.dir:
		return res, fmt.Errorf("storage: move: %s into itself", from.dir)
	case fromName == "" || len(fromName) > maxMoveFrom:
		return res, fmt.Errorf("storage: move: the source's name must be 1..%d bytes", maxMoveFrom)
	}
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	plan, err := planMove(from, to, ids, fromName, &res)
	if err != nil {
		return res, err
	}
	if len(plan) == 0 {
		return res, nil
	}
	// Markers first: a copy found later without one would look like a
	// second home's mailbox and be refused.
	if err := to.write(func(wb *badger.WriteBatch) error {
		for id, m := range plan {
			if !m.marked {
				if err := wb.Set(markerKey(id), markerValue(moveCopying, m.offset, fromName)); err != nil {
					return err
				}
			}
		}
		return nil
	}); err != nil {
		return res, fmt.Errorf("storage: move: marking %s: %w", to.dir, err)
	}
	if err := copyIDs(from, to, plan, &res); err != nil {
		return res, fmt.Errorf("storage: move: copying %s into %s: %w", from.dir, to.dir, err)
	}
	if err := to.write(func(wb *badger.WriteBatch) error {
		for id, m := range plan {
			if err := wb.Set(markerKey(id), markerValue(moveCopied, m.offset, fromName)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return res, fmt.Errorf("storage: move: marking %s: %w", to.dir, err)
	}
	if err := to.db.Sync(); err != nil {
		return res, fmt.Errorf("storage: move: syncing %s: %w", to.dir, err)
	}
	if afterCopy != nil {
		if err := afterCopy(); err != nil {
			return res, err
		}
	}
	if err := deleteIDs(from, plan); err != nil {
		return res, fmt.Errorf("storage: move: deleting from %s: %w", from.dir, err)
	}
	if err := from.db.Sync(); err != nil {
		return res, fmt.Errorf("storage: move: syncing %s: %w", from.dir, err)
	}
	if err := to.write(func(wb *badger.WriteBatch) error {
		for id := range plan {
			if err := wb.Delete(markerKey(id)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return res, fmt.Errorf("storage: move: unmarking %s: %w", to.dir, err)
	}
	for id := range plan {
		res.IDs = append(res.IDs, id)
	}
	slices.Sort(res.IDs)
	for _, f := range []*Folder{from, to} {
		if _, err := f.Recount(); err != nil {
			return res, err
		}
	}
	return res, nil
}

// planMove decides, for each id, whether it moves and with which offset.
func planMove(from, to *Folder, ids []uint64, fromName string, res *Moved) (map[uint64]*moving, error) {
	held, err := from.holds(ids)
	if err != nil {
		return nil, err
	}
	plan := map[uint64]*moving{}
	err = to.db.View(func(txn *badger.Txn) error {
		for _, id := range ids {
			u, marked, err := marker(txn, id)
			if err != nil {
				return err
			}
			if marked {
				if u.From != fromName {
					res.Refused = append(res.Refused, Refusal{id, fmt.Sprintf("an unfinished move of it from %s into %s: rerun that move first", u.From, to.dir)})
					continue
				}
				if !u.Copied && !held[id] {
					return fmt.Errorf("%w: %s marks a copy of %d in progress, and %s holds none of it", errCorrupt, to.dir, id, from.dir)
				}
				plan[id] = &moving{offset: u.offset, copied: u.Copied, marked: true}
				continue
			}
			if !held[id] {
				continue
			}
			if n := countPrefix(txn, entryPrefix(id), 1); n > 0 {
				res.Refused = append(res.Refused, Refusal{id, fmt.Sprintf("%s holds entries of it too: merge by hand", to.dir)})
				continue
			}
			if n := countPrefix(txn, groupInfoKey(id), 1); n > 0 {
				res.Refused = append(res.Refused, Refusal{id, fmt.Sprintf("%s holds a group %d too", to.dir, id)})
				continue
			}
			m, err := badgerReader(txn).meta(id)
			if err != nil {
				return err
			}
			plan[id] = &moving{offset: m.hw}
			if m.hw > 0 {
				res.Renumbered = append(res.Renumbered, id)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: move: reading %s: %w", to.dir, err)
	}
	// The raised seqs must fit.
	err = from.db.View(func(txn *badger.Txn) error {
		for id, m := range plan {
			if m.offset == 0 || m.copied {
				continue
			}
			mm, _, err := loadMeta(badgerReader(txn), id)
			if err != nil {
				return err
			}
			if mm.hw > math.MaxUint64-m.offset {
				delete(plan, id)
				res.Renumbered = slices.DeleteFunc(res.Renumbered, func(r uint64) bool { return r == id })
				res.Refused = append(res.Refused, Refusal{id, fmt.Sprintf("its mark %d plus %s's %d overflows", mm.hw, to.dir, m.offset)})
			}
		}
		return nil
	})
	slices.Sort(res.Renumbered)
	slices.SortFunc(res.Refused, func(a, b Refusal) int { return cmpU64(a.ID, b.ID) })
	return plan, err
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// holds reports which of ids own a key in f.
func (f *Folder) holds(ids []uint64) (map[uint64]bool, error) {
	h, err := f.Holdings()
	if err != nil {
		return nil, err
	}
	held := make(map[uint64]bool, len(ids))
	for _, id := range ids {
		if _, ok := slices.BinarySearch(h.IDs, id); ok {
			held[id] = true
		}
	}
	return held, nil
}

// countPrefix counts the keys under prefix, up to limit.
func countPrefix(txn *badger.Txn, prefix []byte, limit int) int {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	n := 0
	for it.Rewind(); it.Valid() && n < limit; it.Next() {
		n++
	}
	return n
}

// copyIDs writes into to every key of the ids of plan not yet copied.
func copyIDs(from, to *Folder, plan map[uint64]*moving, res *Moved) error {
	return to.write(func(wb *badger.WriteBatch) error {
		return from.db.View(func(txn *badger.Txn) error {
			// put copies item, its seqs raised by offset, and returns
			// its value's length.
			put := func(item *badger.Item, k []byte, offset uint64) (int, error) {
				v, err := item.ValueCopy(nil)
				if err != nil {
					return 0, err
				}
				k, v = shiftSeqs(slices.Clone(k), v, offset)
				e := badger.NewEntry(k, v)
				e.ExpiresAt = item.ExpiresAt() // dedupe records keep their TTL
				res.Keys++
				return len(v), wb.SetEntry(e)
			}
			for _, id := range slices.Sorted(mapKeys(plan)) {
				m := plan[id]
				if m.copied {
					continue
				}
				var mt meta
				hasMeta, err := badgerReader(txn).get(metaKey(id), func(v []byte) (err error) {
					mt, err = decodeMeta(v)
					return err
				})
				if err != nil {
					return err
				}
				count, bytes, last := int64(0), int64(0), uint64(0)
				err = each(txn, entryPrefix(id), func(item *badger.Item) error {
					k := item.Key()
					last = be64(k[9:])
					n, err := put(item, k, m.offset)
					if n < entryHeadLen {
						return errors.Join(err, fmt.Errorf("%w: entry %x", errCorrupt, k))
					}
					count++
					bytes += int64(n - entryHeadLen)
					res.Entries++
					return err
				})
				if err != nil {
					return err
				}
				if hasMeta || count > 0 {
					mt = meta{hw: max(mt.hw, last) + m.offset, floor: mt.floor + m.offset, count: count, bytes: bytes}
					res.Keys++
					if err := wb.Set(metaKey(id), putMeta(make([]byte, metaValLen), mt)); err != nil {
						return err
					}
				}
			}
			for _, p := range sidePrefixes {
				err := each(txn, []byte{p}, func(item *badger.Item) error {
					id, ok, err := ownerOf(item)
					if err != nil || !ok {
						return err
					}
					if m := plan[id]; m != nil && !m.copied {
						_, err := put(item, item.Key(), m.offset)
						return err
					}
					return nil
				})
				if err != nil {
					return err
				}
			}
			return nil
		})
	})
}

// deleteIDs deletes from f every key of the ids of plan.
func deleteIDs(f *Folder, plan map[uint64]*moving) error {
	return f.write(func(wb *badger.WriteBatch) error {
		return f.db.View(func(txn *badger.Txn) error {
			del := func(item *badger.Item) error { return wb.Delete(item.KeyCopy(nil)) }
			for _, id := range slices.Sorted(mapKeys(plan)) {
				if err := each(txn, entryPrefix(id), del); err != nil {
					return err
				}
				if err := each(txn, metaKey(id), del); err != nil {
					return err
				}
			}
			for _, p := range sidePrefixes {
				err := each(txn, []byte{p}, func(item *badger.Item) error {
					id, ok, err := ownerOf(item)
					if err != nil || !ok || plan[id] == nil {
						return err
					}
					return del(item)
				})
				if err != nil {
					return err
				}
			}
			return nil
		})
	})
}

// shiftSeqs raises the seqs that k and v hold by offset: an entry's key,
// a pending receipt's key (the seq names the acker's entry), a dedupe
// record's value (a group change's, whose seq is 0, keeps it). Both are
// the caller's copies and are changed in place.
func shiftSeqs(k, v []byte, offset uint64) ([]byte, []byte) {
	if offset == 0 {
		return k, v
	}
	add := func(b []byte) { binary.BigEndian.PutUint64(b, binary.BigEndian.Uint64(b)+offset) }
	switch k[0] {
	case prefixEntry:
		add(k[9:])
	case prefixPending:
		add(k[17:])
	case prefixDedupe:
		if be64(v) != 0 {
			add(v)
		}
	}
	return k, v
}

// each calls fn with every item under prefix, in key order.
func each(txn *badger.Txn, prefix []byte, fn func(*badger.Item) error) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if err := fn(it.Item()); err != nil {
			return err
		}
	}
	return nil
}

func mapKeys[V any](m map[uint64]V) func(func(uint64) bool) {
	return func(yield func(uint64) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// write runs fn on a write batch of f and commits it (in as many
// transactions as it needs).
func (f *Folder) write(fn func(*badger.WriteBatch) error) error {
	wb := f.db.NewWriteBatch()
	defer wb.Cancel()
	if err := fn(wb); err != nil {
		return err
	}
	return wb.Flush()
}

func markerKey(id uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefixMoving
	binary.BigEndian.PutUint64(k[1:], id)
	return k
}

func markerValue(state byte, offset uint64, from string) []byte {
	v := []byte{state}
	v = binary.BigEndian.AppendUint64(v, offset)
	v = append(v, byte(len(from)))
	return append(v, from...)
}

// unfinished is a marker as read.
type unfinished struct {
	Unfinished
	offset uint64
}

// marker reads id's marker in txn.
func marker(txn *badger.Txn, id uint64) (u unfinished, ok bool, err error) {
	item, err := txn.Get(markerKey(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return u, false, nil
	}
	if err != nil {
		return u, false, err
	}
	u, err = decodeMarker(item)
	return u, err == nil, err
}

func decodeMarker(item *badger.Item) (u unfinished, err error) {
	err = item.Value(func(v []byte) error {
		u, err = parseMarker(item.Key(), v)
		return err
	})
	return u, err
}

// parseMarker reads a marker's key and value (markerKey, markerValue).
func parseMarker(k, v []byte) (unfinished, error) {
	if len(k) != 9 || len(v) < 10 || len(v) != 10+int(v[9]) || (v[0] != moveCopying && v[0] != moveCopied) {
		return unfinished{}, fmt.Errorf("%w: move marker %x", errCorrupt, k)
	}
	return unfinished{Unfinished{ID: be64(k[1:]), From: string(v[10:]), Copied: v[0] == moveCopied}, be64(v[1:])}, nil
}

func decodeMarkerItem(item *badger.Item) (Unfinished, error) {
	u, err := decodeMarker(item)
	return u.Unfinished, err
}

// Recount sets the store's totals ('t') and per-sender counts ('q', see
// quota.go) to what its entries add up to, writing only what differs, and
// reports whether anything did. Move calls it on both stores; it is also
// how a store's counts are rebuilt offline. It reads every entry and keeps
// one count per sender with entries waiting.
func (f *Folder) Recount() (changed bool, err error) {
	var tot, was totals
	uses := map[uint64]senderUse{}
	stored := map[uint64]senderUse{}
	err = f.db.View(func(txn *badger.Txn) error {
		bt := badgerReader(txn)
		var err error
		if was, err = bt.totals(); err != nil {
			return err
		}
		err = each(txn, []byte{prefixEntry}, func(item *badger.Item) error {
			return item.Value(func(v []byte) error {
				var e Entry
				if err := decodeEntry(item.Key(), v, &e); err != nil {
					return err
				}
				n := int64(len(e.Value))
				tot.count++
				tot.bytes += n
				if counted(e.Kind, e.Sender) {
					u := uses[e.Sender]
					uses[e.Sender] = senderUse{u.count + 1, u.bytes + n}
				}
				return nil
			})
		})
		if err != nil {
			return err
		}
		return each(txn, []byte{prefixQuota}, func(item *badger.Item) error {
			if len(item.Key()) != 9 {
				return errCorrupt
			}
			return item.Value(func(v []byte) error {
				u, err := decodeUse(v)
				stored[be64(item.Key()[1:])] = u
				return err
			})
		})
	})
	if err != nil {
		return false, fmt.Errorf("storage: recount %s: %w", f.dir, err)
	}
	err = f.write(func(wb *badger.WriteBatch) error {
		if tot != was {
			changed = true
			if err := wb.Set([]byte{prefixTotals}, encodeTotals(tot)); err != nil {
				return err
			}
		}
		for s, u := range uses {
			if stored[s] != u {
				changed = true
				if err := wb.Set(quotaKey(s), encodeUse(u)); err != nil {
					return err
				}
			}
		}
		for s := range stored {
			if _, ok := uses[s]; !ok {
				changed = true
				if err := wb.Delete(quotaKey(s)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("storage: recount %s: %w", f.dir, err)
	}
	if changed {
		err = f.db.Sync()
	}
	return changed, err
}
