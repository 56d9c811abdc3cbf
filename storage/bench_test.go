package storage

import (
	"bufio"
	"fmt"
	"github.com/dgraph-io/badger/v4"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The figures in docs/BENCHMARKS.md "## Storage" come from:
//
//	go test -run '^$' -bench 'Append|Plain' -benchtime 200000x -count 3 ./storage/
//	go test -run '^$' -bench 'Drain' -benchtime 3x ./storage/
//	go test -run '^$' -bench 'Memory' -benchtime 1x ./storage/
//	go test -run '^$' -bench 'Round' -benchtime 20000x -count 3 ./storage/
//
// Every benchmark uses real Badger in b.TempDir(), with the store's default
// RelaxedDelay: urgent appends are synced, acks and receipts ride along.

const benchValueLen = 200

func benchStore(b *testing.B) *engine {
	b.Helper()
	cfg := testConfig(b.TempDir())
	cfg.RelaxedDelay = DefaultRelaxedDelay
	cfg.MaxMailboxMessages = 1 << 40 // one producer fills one mailbox with b.N messages
	cfg.MaxMailboxBytes = 1 << 40
	s, err := openBadger(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

// reportLatency reports p50 and p99 of lat in milliseconds.
func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	ms := func(q float64) float64 {
		return float64(lat[int(q*float64(len(lat)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(ms(0.50), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
}

// reportCommitter reports where the committer's time went, as shares of
// the elapsed time: building batches, committing (fsync) and callbacks.
func reportCommitter(b *testing.B, st Stats, elapsed time.Duration) {
	b.ReportMetric(float64(st.BuildTime)/float64(elapsed), "build-share")
	b.ReportMetric(float64(st.CommitTime)/float64(elapsed), "commit-share")
	b.ReportMetric(float64(st.CallbackTime)/float64(elapsed), "callback-share")
	b.ReportMetric(float64(st.CommitTime.Microseconds())/float64(max(1, st.Commits)), "us/commit")
}

// BenchmarkAppendDurable: P producers, each blocking on its own durable
// append (AppendWait) of a 200-byte message to its own recipient, as P
// concurrent senders would. Latency is Append to done.
func BenchmarkAppendDurable(b *testing.B) {
	for _, producers := range []int{1, 8, 64, 256} {
		b.Run(fmt.Sprintf("producers=%d", producers), func(b *testing.B) {
			s := benchStore(b)
			val := make([]byte, benchValueLen)
			per := (b.N + producers - 1) / producers
			lats := make([][]time.Duration, producers)
			b.ReportAllocs()
			b.SetBytes(benchValueLen)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for p := 0; p < producers; p++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					lat := make([]time.Duration, 0, per)
					for seq := uint64(1); seq <= uint64(per); seq++ {
						t0 := time.Now()
						err := AppendWait(s, Entry{Recipient: uint64(p + 1), Seq: seq, Kind: KindMessage, Sender: 1, MsgID: uint64(p)<<32 | seq, Value: val})
						if err != nil {
							b.Error(err)
							return
						}
						lat = append(lat, time.Since(t0))
					}
					lats[p] = lat
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(per*producers)/elapsed.Seconds(), "appends/s")
			st := s.Stats()
			b.ReportMetric(float64(st.BatchedOps)/float64(max(1, st.Commits)), "ops/commit")
			reportCommitter(b, st, elapsed)
			reportLatency(b, slices.Concat(lats...))
		})
	}
}

// BenchmarkRound: P pairs, each making whole message rounds one at a time,
// as a phone does: the sender's message (urgent: waited for), the
// recipient's ack (with its pending receipt), the receipt entry in the
// sender's mailbox that settles it, and the sender's ack of the receipt.
// Reports syncs and commits per round: the store's share of the cost of a
// message in the phone regime. (A lone pair is not run: its receipt waits
// RelaxedDelay for a send's sync that never comes, and then syncs alone: 2
// syncs a round, which is the design, not a cost.)
func BenchmarkRound(b *testing.B) {
	for _, pairs := range []int{64, 1000} {
		b.Run(fmt.Sprintf("pairs=%d", pairs), func(b *testing.B) {
			s := benchStore(b)
			val := make([]byte, benchValueLen)
			per := (b.N + pairs - 1) / pairs
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for p := 0; p < pairs; p++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					sender, rcpt := uint64(2*p+1), uint64(2*p+2)
					for i := uint64(1); i <= uint64(per); i++ {
						if err := AppendWait(s, Entry{Recipient: rcpt, Seq: i, Kind: KindMessage, Sender: sender, MsgID: i, Value: val}); err != nil {
							b.Error(err)
							return
						}
						res, err := AckWait(s, rcpt, i)
						if err != nil || len(res.Pending) != 1 {
							b.Errorf("ack: %+v %v", res, err)
							return
						}
						rec := Entry{Recipient: sender, Seq: i, Kind: KindReceipt, MsgID: i, Value: val[:4], Settles: res.Pending[0].Key()}
						if err := AppendWait(s, rec); err != nil {
							b.Error(err)
							return
						}
						if _, err := AckWait(s, sender, i); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			rounds := float64(per * pairs)
			st := s.Stats()
			b.ReportMetric(rounds/elapsed.Seconds(), "rounds/s")
			b.ReportMetric(float64(st.Syncs)/rounds, "syncs/round")
			b.ReportMetric(float64(st.Commits)/rounds, "commits/round")
			n := 0
			if err := s.PendingReceipts(func(PendingReceipt) bool { n++; return true }); err != nil || n != 0 {
				b.Fatalf("%d pending receipts left, %v", n, err)
			}
		})
	}
}

// BenchmarkAppendInFlight: a few workers, each with many appends in flight
// through the asynchronous Append, as delivery shards would run.
func BenchmarkAppendInFlight(b *testing.B) {
	for _, c := range []struct{ workers, inflight int }{{4, 64}, {2, 256}} {
		b.Run(fmt.Sprintf("workers=%d/inflight=%d", c.workers, c.inflight), func(b *testing.B) {
			s := benchStore(b)
			val := make([]byte, benchValueLen)
			per := (b.N + c.workers - 1) / c.workers
			b.ReportAllocs()
			b.SetBytes(benchValueLen)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for w := 0; w < c.workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					sem := make(chan struct{}, c.inflight) // bounds this worker's appends in flight
					var done sync.WaitGroup
					for seq := uint64(1); seq <= uint64(per); seq++ {
						sem <- struct{}{}
						done.Add(1)
						r := uint64(w*1000) + seq%16 // 16 recipients per worker
						s.Append(Entry{Recipient: r, Seq: seq, Kind: KindMessage, Sender: 1, MsgID: uint64(w)<<32 | seq, Value: val}, func(err error) {
							if err != nil {
								b.Error(err)
							}
							<-sem
							done.Done()
						})
					}
					done.Wait()
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(per*c.workers)/elapsed.Seconds(), "appends/s")
			st := s.Stats()
			b.ReportMetric(float64(st.BatchedOps)/float64(max(1, st.Commits)), "ops/commit")
		})
	}
}

// drain reads and acks every mailbox 1..recipients in pages of page
// entries, as delivery drains offline backlogs: workers goroutines each take
// every workers-th mailbox, read a page, queue its ack without waiting (up to
// 8 acks in flight) and read on. It returns the entries drained.
func drain(tb testing.TB, s Store, recipients, page, workers int) int {
	var total atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inflight := make(chan struct{}, 8) // this worker's acks in flight
			var acks sync.WaitGroup
			buf := make([]Entry, 0, page)
			for r := uint64(w + 1); r <= uint64(recipients); r += uint64(workers) {
				for from := uint64(0); ; {
					es, next, err := s.Read(r, from, page, 0, buf[:0])
					if err != nil {
						tb.Error(err)
						return
					}
					if len(es) == 0 {
						break
					}
					inflight <- struct{}{}
					acks.Add(1)
					s.Ack(r, es[len(es)-1].Seq, func(_ AckResult, err error) {
						if err != nil {
							tb.Error(err)
						}
						<-inflight
						acks.Done()
					})
					total.Add(int64(len(es)))
					from = next
				}
			}
			acks.Wait()
		}()
	}
	wg.Wait()
	return int(total.Load())
}

// BenchmarkDrain: read and ack a 100,000-message mailbox (one reader), and
// 10,000 mailboxes of 10 (16 readers), in pages of 256. One op is one whole
// drain; the fill before it is not timed.
func BenchmarkDrain(b *testing.B) {
	for _, c := range []struct {
		name                     string
		recipients, per, workers int
	}{{"one-mailbox-100k", 1, 100_000, 1}, {"10k-mailboxes-of-10", 10_000, 10, 16}} {
		b.Run(c.name, func(b *testing.B) {
			s := benchStore(b)
			b.ReportAllocs()
			var total int
			var elapsed time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				// Each round writes above the last round's high-water mark.
				hw, _ := s.LastSeq(1)
				fillFrom(b, s, c.recipients, c.per, hw)
				b.StartTimer()
				start := time.Now()
				if n := drain(b, s, c.recipients, 256, c.workers); n != c.recipients*c.per {
					b.Fatalf("drained %d, want %d", n, c.recipients*c.per)
				}
				elapsed += time.Since(start)
				total += c.recipients * c.per
			}
			b.ReportMetric(float64(total)/elapsed.Seconds(), "msgs/s")
		})
	}
}

// fillFrom is fill with seqs starting after hw.
func fillFrom(t testing.TB, s Store, recipients, per int, hw uint64) {
	t.Helper()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 512)
	val := make([]byte, benchValueLen)
	for seq := hw + 1; seq <= hw+uint64(per); seq++ {
		for r := uint64(1); r <= uint64(recipients); r++ {
			sem <- struct{}{}
			wg.Add(1)
			s.Append(Entry{Recipient: r, Seq: seq, Kind: KindMessage, Sender: 9, MsgID: r<<32 | seq, Value: val}, func(err error) {
				if err != nil {
					t.Error(err)
				}
				<-sem
				wg.Done()
			})
		}
	}
	wg.Wait()
}

// rssBytes is this process's resident set size.
func rssBytes() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return -1
}

// heapBytes is the Go heap in use after a GC.
func heapBytes() int64 {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// BenchmarkMemory: memory of an open store at rest, and after a million
// 200-byte messages (10,000 mailboxes of 100) were written and drained.
// Run it alone (-bench Memory) so other benchmarks' garbage is not counted.
func BenchmarkMemory(b *testing.B) {
	for i := 0; i < b.N; i++ {
		heap0, rss0 := heapBytes(), rssBytes()
		s := benchStore(b)
		heapRest, rssRest := heapBytes(), rssBytes()
		const recipients, per = 10_000, 100
		fillFrom(b, s, recipients, per, 0)
		if n := drain(b, s, recipients, 256, 16); n != recipients*per {
			b.Fatalf("drained %d", n)
		}
		for range 2 { // the second round finds the store quiet and flattens it
			if err := s.housekeep(); err != nil {
				b.Fatal(err)
			}
		}
		heapAfter, rssAfter := heapBytes(), rssBytes()
		// Badger keeps up to 8 table-builder buffers in a pool and frees
		// one per 2 idle seconds; measure again once they are gone.
		time.Sleep(20 * time.Second)
		heapIdle, rssIdle := heapBytes(), rssBytes()
		mib := func(n int64) float64 { return float64(n) / (1 << 20) }
		b.ReportMetric(mib(heapRest-heap0), "rest-heap-MiB")
		b.ReportMetric(mib(rssRest-rss0), "rest-rss-MiB")
		b.ReportMetric(mib(heapAfter-heap0), "after-1M-heap-MiB")
		b.ReportMetric(mib(rssAfter-rss0), "after-1M-rss-MiB")
		b.ReportMetric(mib(heapIdle-heap0), "idle-20s-heap-MiB")
		b.ReportMetric(mib(rssIdle-rss0), "idle-20s-rss-MiB")
		_ = s.Close()
	}
}

// BenchmarkPlainBadgerGroupCommit is the reference the store is measured
// against: the same Badger options, 64 blocking producers, and a bare
// group-commit loop writing one key per message (no dedupe record, no
// high-water meta, no limits). The difference to AppendDurable/producers=64
// is the cost of those.
func BenchmarkPlainBadgerGroupCommit(b *testing.B) {
	const producers = 64
	cfg := testConfig(b.TempDir())
	db, err := badger.Open(badgerOptions(cfg))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	type req struct {
		key  []byte
		done chan error
	}
	q := make(chan req, 4096)
	go func() {
		for r := range q {
			batch := []req{r}
		more:
			for len(batch) < 1024 {
				select {
				case r := <-q:
					batch = append(batch, r)
				default:
					break more
				}
			}
			txn := db.NewTransaction(true)
			for _, r := range batch {
				if err := txn.Set(r.key, make([]byte, benchValueLen)); err != nil {
					b.Error(err)
				}
			}
			err := txn.Commit()
			for _, r := range batch {
				r.done <- err
			}
		}
	}()
	per := (b.N + producers - 1) / producers
	lats := make([][]time.Duration, producers)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			done := make(chan error, 1)
			lat := make([]time.Duration, 0, per)
			for i := 0; i < per; i++ {
				t0 := time.Now()
				q <- req{entryKey(uint64(p), uint64(i+1)), done}
				if err := <-done; err != nil {
					b.Error(err)
					return
				}
				lat = append(lat, time.Since(t0))
			}
			lats[p] = lat
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(per*producers)/time.Since(start).Seconds(), "appends/s")
	b.StopTimer()
	close(q)
	reportLatency(b, slices.Concat(lats...))
}

// BenchmarkGroupCreate: one create of a 1,000-member group, which a group
// worker waits for. It is one transaction and one sync.
//
//	go test -run '^$' -bench 'GroupCreate' -benchtime 20x -count 3 ./storage/
func BenchmarkGroupCreate(b *testing.B) {
	cfg := testConfig(b.TempDir())
	cfg.MaxGroupMembers = 1024
	s, err := openBadger(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	members := make([]uint64, 999)
	for i := range members {
		members[i] = uint64(i + 2)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		g := uint64(1<<28 + i)
		if _, _, err := s.ChangeGroup(GroupChange{Group: g, Actor: 1, MsgID: uint64(i + 1), Op: GroupCreate, Members: members}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/create")
}
