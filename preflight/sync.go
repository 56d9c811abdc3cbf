package preflight

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// Sync is what a durable write cost on the data folder's disk, written the
// way the server's in-flight log writes one (storage/tierlog.go): a record
// put with pwrite into a file whose blocks were all written before, then
// fdatasync. Every ACCEPT follows such a sync, which the sends queued
// together share, so its wall time is the floor of a send's latency here
// and its CPU a part of every message's. Times are in microseconds.
type Sync struct {
	Count int     `json:"count"`        // writes timed
	Bytes int     `json:"record_bytes"` // bytes of each
	P50   float64 `json:"p50_us"`       // wall time of a write and its sync
	P99   float64 `json:"p99_us"`
	Max   float64 `json:"max_us"`
	CPU   float64 `json:"cpu_us"` // CPU (user and system) of a write and its sync
}

// syncRecordBytes is a message round's share of the log: the SEND's
// record, its delete and the receipt's (docs/DESIGN.md, "The in-flight
// tier"). syncFileBytes is the probe file, written whole before the timed
// writes go round it.
const (
	syncRecordBytes = 600
	syncFileBytes   = 1 << 20
)

// slowSyncMicros is the p50 above which the report calls the disk slow for
// a messaging server: every message waits that long at least.
const slowSyncMicros = 2000

// probeSync times n durable writes in a file it creates in dir and
// removes.
func probeSync(dir string, n int) (*Sync, error) {
	// The CPU is the probing thread's, read before and after.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f, err := os.CreateTemp(dir, ".switchboard-preflight-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("preflight: a durable write in %s: %w", dir, err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	fail := func(err error) (*Sync, error) {
		return nil, fmt.Errorf("preflight: a durable write in %s: %w", dir, err)
	}
	if _, err := f.Write(make([]byte, syncFileBytes)); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	rec := make([]byte, syncRecordBytes)
	walls := make([]time.Duration, n)
	cpu0, err := threadCPU()
	if err != nil {
		return fail(err)
	}
	fd := int(f.Fd())
	for i := range n {
		rec[0] = byte(i) // not a page of zeros the disk might skip
		off := int64(i*syncRecordBytes) % (syncFileBytes - syncRecordBytes)
		start := time.Now()
		if _, err := unix.Pwrite(fd, rec, off); err != nil {
			return fail(err)
		}
		if err := unix.Fdatasync(fd); err != nil {
			return fail(err)
		}
		walls[i] = time.Since(start)
	}
	cpu1, err := threadCPU()
	if err != nil {
		return fail(err)
	}
	slices.Sort(walls)
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	return &Sync{
		Count: n, Bytes: syncRecordBytes,
		P50: us(walls[(n-1)/2]), P99: us(walls[(n*99+99)/100-1]), Max: us(walls[n-1]),
		CPU: us(cpu1-cpu0) / float64(n),
	}, nil
}

// threadCPU is the calling thread's user and system time.
func threadCPU() (time.Duration, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
