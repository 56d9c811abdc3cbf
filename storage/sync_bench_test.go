package storage

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"
)

// The cost of making one small write durable, by the ways the store could
// do it. docs/DESIGN.md ("What was weighed and not built") rests on:
//
//	go test -run '^$' -bench 'DurableWrite' -benchtime 3000x -count 3 ./storage/
//
// Each reports cpu-us/op: the process's CPU (user + system, from
// getrusage) per write, which is what a low message rate pays. Wall time per
// op is mostly the disk and says less.

// processCPU is the CPU this process has used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64((processCPU()-start).Microseconds())/float64(b.N), "cpu-us/op")
}

// BenchmarkDurableWrite/badger: one 200-byte Set per transaction with the
// store's Badger options, then DB.Sync, as the committer does for a lone
// urgent append. DB.Sync msyncs the memtable's log and the value log, and the
// next write through the memtable's mapping faults its page writable again.
//
// BenchmarkDurableWrite/log: pwrite of 200 bytes into a pre-zeroed file,
// then fdatasync, as a sequential log for what is in flight would; its
// sync-us/op is the wall time of the write and its sync.
//
// BenchmarkDurableWrite/mmap-log: the same log written through a shared
// mapping and msynced, to separate the mapping's cost from Badger's.
//
// BenchmarkDurableWrite/dsync-log and direct-dsync-log: the same log opened
// O_DSYNC (one pwrite, no fdatasync), and O_DIRECT|O_DSYNC (the 4 KiB block
// the record starts in, written whole from an aligned buffer past the page
// cache): one system call a write instead of two.
func BenchmarkDurableWrite(b *testing.B) {
	val := make([]byte, benchValueLen)
	b.Run("badger", func(b *testing.B) {
		db, err := badger.Open(badgerOptions(testConfig(b.TempDir())))
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		b.ResetTimer()
		start := processCPU()
		for i := 0; i < b.N; i++ {
			txn := db.NewTransaction(true)
			if err := txn.Set(entryKey(1, uint64(i+1)), val); err != nil {
				b.Fatal(err)
			}
			if err := txn.Commit(); err != nil {
				b.Fatal(err)
			}
			if err := db.Sync(); err != nil {
				b.Fatal(err)
			}
		}
		reportCPU(b, start)
	})
	b.Run("log", func(b *testing.B) { logSyncs(b, 0) })
	b.Run("mmap-log", func(b *testing.B) {
		f := preZeroed(b, b.N*len(val))
		m, err := unix.Mmap(int(f.Fd()), 0, b.N*len(val), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			b.Fatal(err)
		}
		defer unix.Munmap(m)
		b.ResetTimer()
		start := processCPU()
		for i := 0; i < b.N; i++ {
			copy(m[i*len(val):], val)
			if err := unix.Msync(m, unix.MS_SYNC); err != nil {
				b.Fatal(err)
			}
		}
		reportCPU(b, start)
	})
	b.Run("dsync-log", func(b *testing.B) { flaggedLog(b, unix.O_DSYNC) })
	b.Run("direct-dsync-log", func(b *testing.B) { flaggedLog(b, unix.O_DIRECT|unix.O_DSYNC) })
}

// flaggedLog reopens a pre-zeroed log with flags and writes 200 bytes into
// it b.N times, each durable on its own; with O_DIRECT it writes the whole
// 4 KiB block the record starts in (its tail past the block is dropped: the
// cost is the write's, not the bytes').
func flaggedLog(b *testing.B, flags int) {
	val := make([]byte, benchValueLen)
	zeroed := preZeroed(b, b.N*len(val)+4096)
	f, err := os.OpenFile(zeroed.Name(), os.O_RDWR|flags, 0)
	if err != nil {
		b.Skipf("opening the log with flags %#x: %v", flags, err)
	}
	defer f.Close()
	direct := flags&unix.O_DIRECT != 0
	// An aligned block: O_DIRECT needs the buffer, offset and length on
	// the device's block size.
	raw := make([]byte, 2*4096)
	off := 4096 - int(uintptr(unsafe.Pointer(&raw[0]))&4095)
	block := raw[off : off+4096]
	b.ResetTimer()
	start := processCPU()
	for i := 0; i < b.N; i++ {
		at := int64(i * len(val))
		var err error
		if direct {
			copy(block[at%4096:], val)
			_, err = f.WriteAt(block, at&^4095)
		} else {
			_, err = f.WriteAt(val, at)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}

// logSyncs writes 200 bytes into a pre-zeroed file and fdatasyncs it, b.N
// times, pausing pause before each; it reports the CPU per op (the pause's
// wake-up included) and sync-us/op, the write and its sync alone.
func logSyncs(b *testing.B, pause time.Duration) {
	val := make([]byte, benchValueLen)
	f := preZeroed(b, b.N*len(val))
	var spent time.Duration
	b.ResetTimer()
	start := processCPU()
	for i := 0; i < b.N; i++ {
		if pause > 0 {
			time.Sleep(pause)
		}
		t := time.Now()
		if _, err := f.WriteAt(val, int64(i*len(val))); err != nil {
			b.Fatal(err)
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
		spent += time.Since(t)
	}
	reportCPU(b, start)
	b.ReportMetric(float64(spent.Microseconds())/float64(b.N), "sync-us/op")
}

// BenchmarkAfterIdle: what an event costs when it comes after an idle gap,
// as every SEND and every sync does at 300 msg/s (docs/BENCHMARKS.md,
// "Where a message's CPU goes at 300 and 5,000 msg/s"):
//
//	go test -run '^$' -bench 'DurableWrite/log$|AfterIdle' -benchtime 500x -count 2 ./storage/
//
// pause-<d>: the CPU of a thread woken after d idle. log-every-3ms:
// DurableWrite/log with a 3 ms pause before each write; its cpu-us/op
// includes the pause's wake-up (pause-3ms), its sync-us/op does not.
func BenchmarkAfterIdle(b *testing.B) {
	for _, pause := range []time.Duration{time.Millisecond, 3 * time.Millisecond, 10 * time.Millisecond} {
		b.Run("pause-"+pause.String(), func(b *testing.B) {
			start := processCPU()
			for i := 0; i < b.N; i++ {
				time.Sleep(pause)
			}
			reportCPU(b, start)
		})
	}
	b.Run("log-every-3ms", func(b *testing.B) { logSyncs(b, 3*time.Millisecond) })
}

// preZeroed is a file of n zero bytes (rounded up to 1 MiB) written and
// synced, so that later writes into it change no metadata but the mtime.
func preZeroed(b *testing.B, n int) *os.File {
	f, err := os.Create(b.TempDir() + "/log")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = f.Close() })
	zero := make([]byte, 1<<20)
	for w := 0; w < n; w += len(zero) {
		if _, err := f.Write(zero); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	return f
}

// BenchmarkSyncWhileZeroing: how long a small durable write (600 bytes,
// then fdatasync, as the committer's lone urgent batch) waits while the
// next log segment is zeroed beside it, with the segment written whole and
// synced once ("whole", as the store did before) or written out every
// tierZeroChunk and synced once ("chunked", writeZeros, the store's way).
// Each op is one segment zeroed while the writes go on; the metrics are the
// writes' slowest and 99th-percentile sync over the run:
//
//	go test -run '^$' -bench 'SyncWhileZeroing' -benchtime 20x -count 3 ./storage/
func BenchmarkSyncWhileZeroing(b *testing.B) {
	whole := func(f *os.File) error {
		_, err := f.Write(make([]byte, tierSegmentBytes))
		return err
	}
	chunked := func(f *os.File) error { return writeZeros(f, tierSegmentBytes, tierZeroChunk) }
	for _, c := range []struct {
		name string
		zero func(*os.File) error
	}{{"whole", whole}, {"chunked", chunked}} {
		b.Run(c.name, func(b *testing.B) {
			log := preZeroed(b, tierSegmentBytes)
			dir := b.TempDir()
			rec := make([]byte, 600)
			stop := make(chan struct{})
			syncs := make(chan []time.Duration)
			failed := make(chan error, 1)
			go func() {
				var lat []time.Duration
				defer func() { syncs <- lat }()
				off := int64(0)
				for {
					select {
					case <-stop:
						return
					default:
					}
					t := time.Now()
					if _, err := log.WriteAt(rec, off%(tierSegmentBytes-int64(len(rec)))); err != nil {
						failed <- err
						<-stop
						return
					}
					if err := unix.Fdatasync(int(log.Fd())); err != nil {
						failed <- err
						<-stop
						return
					}
					lat = append(lat, time.Since(t))
					off += int64(len(rec))
				}
			}()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				f, err := os.Create(filepath.Join(dir, "spare"))
				if err != nil {
					b.Fatal(err)
				}
				if err := c.zero(f); err != nil {
					b.Fatal(err)
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
				_ = f.Close()
				time.Sleep(20 * time.Millisecond) // writes alone between segments, as in the store
			}
			b.StopTimer()
			close(stop)
			lat := <-syncs
			select {
			case err := <-failed:
				b.Fatal(err)
			default:
			}
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-sync-us")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-sync-us")
			}
		})
	}
}
