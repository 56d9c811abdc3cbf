package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Disk space comes back in two ways. Small values (all of ours, see
// badgerOptions) live in the LSM tree: an ack writes tombstones, and the
// space returns when compaction carries the tombstones to the last level,
// where the deleted keys and the tombstones both vanish. Badger compacts by
// level size, so after a mailbox drain most of the garbage can sit in
// levels that are not full enough to compact; reclaim forces it. Large
// values would live in the value log, which only value-log GC shrinks.

// reclaimMinGarbage is the LSM garbage (on-disk tables minus live value
// bytes) below which reclaim leaves compaction to Badger: flattening
// rewrites every live byte, so it pays only when garbage dominates.
const reclaimMinGarbage = 16 << 20

// gcDiscardRatio: rewrite a value-log file when half of it is garbage,
// Badger's recommended ratio.
const gcDiscardRatio = 0.5

// reclaim runs value-log GC until it finds nothing to rewrite, then, when
// the store is quiet and the LSM tree holds more garbage than live data,
// flushes the memtables and flattens the tree so the tombstones reach the
// last level. (Under traffic the dedupe records, kept for their window,
// count as garbage here, so the test would pass every round.)
func (b *badgerBackend) reclaim(live int64, quiet bool, c *counters, e *engine) error {
	// The tier spills after a batch; a store that went quiet spills here
	// what has been due since, so its memory and log shrink.
	if err := e.exclusiveTidy(b.tidy); err != nil {
		return err
	}
	for {
		err := b.db.RunValueLogGC(gcDiscardRatio)
		if err != nil {
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
				return fmt.Errorf("storage: value-log GC: %w", err)
			}
			break
		}
		c.gcRewrites.Add(1)
	}
	if !quiet {
		return nil
	}
	used := b.diskBytes()
	if garbage := used - live; garbage < reclaimMinGarbage || garbage < live {
		return nil
	}
	start := time.Now()
	// Writing and dropping the scratch key makes Badger flush the
	// memtables, tombstones included. DropPrefix blocks writes, so it runs
	// on the committer between two batches.
	err := e.exclusive(func() error {
		if err := b.db.Update(func(txn *badger.Txn) error {
			return txn.Set([]byte{prefixScratch}, nil)
		}); err != nil {
			return err
		}
		return b.db.DropPrefix([]byte{prefixScratch})
	})
	if err != nil {
		return fmt.Errorf("storage: flush memtables: %w", err)
	}
	if err := b.db.Flatten(1); err != nil {
		return fmt.Errorf("storage: flatten: %w", err)
	}
	c.flattens.Add(1)
	b.log.Info("storage: reclaimed disk space", "disk_before", used, "disk_after", b.diskBytes(),
		"live_bytes", live, "took", time.Since(start))
	return nil
}

// diskBytes is the space Badger's files take on disk now: allocated blocks,
// since Badger's logs are sparse files (db.Size is refreshed only once a
// minute and leaves out the memtable logs).
func (b *badgerBackend) diskBytes() int64 {
	var n int64
	entries, err := os.ReadDir(b.dir)
	if err != nil {
		return 0
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || info.IsDir() {
			continue
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		} else {
			n += info.Size()
		}
	}
	return n
}

func be64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

// nowUnix is the wall clock for Badger TTLs, which Badger checks against
// its own wall clock, not Config.Now.
func nowUnix() int64 { return time.Now().Unix() }
