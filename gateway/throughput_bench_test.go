package gateway_test

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"switchboard/gateway"
	"switchboard/protocol"
)

// BenchmarkEndToEnd measures 1:1 messaging through the whole server in one
// process: pairs of blocking clients, each sender keeping a window of sends
// in flight (closed loop), each receiver acknowledging every batch it reads.
// Every ACCEPT is durable (group commit with fsync). It reports delivered
// messages per second and the send-to-deliver latency percentiles.
//
//	go test -run '^$' -bench EndToEnd -benchtime 200000x ./gateway/
func BenchmarkEndToEnd(b *testing.B) {
	const (
		pairs  = 64
		window = 32
		size   = 100
	)
	// Each sender here writes more than the default per-connection frame
	// limit (1,000/s, sized for people): lift it, this measures the server.
	ts := startServer(b, serverOptions{gw: func(c *gateway.Config) { c.RateLimit = 1 << 20 }})
	senders := make([]*protocol.Client, pairs)
	receivers := make([]*protocol.Client, pairs)
	for i := range pairs {
		senders[i] = ts.Dial(uint64(1_000_000+i), protocol.ClientOptions{})
		receivers[i] = ts.Dial(uint64(2_000_000+i), protocol.ClientOptions{AutoAck: true, Events: 4096})
	}
	per := max(b.N/pairs, 1)
	var (
		mu        sync.Mutex
		hist      = hdrhistogram.New(1, 10_000_000, 3)
		delivered atomic.Int64
		wg        sync.WaitGroup
	)
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range pairs {
		wg.Add(2)
		go func() { // sender: window sends in flight until ACCEPT
			defer wg.Done()
			c, to := senders[i], uint64(2_000_000+i)
			body := make([]byte, size)
			inflight, sent, accepted := 0, 0, 0
			ctx := ctxFor(b, time.Minute)
			for accepted < per {
				for inflight < window && sent < per {
					binary.LittleEndian.PutUint64(body, uint64(time.Now().UnixNano()))
					if _, err := c.Send(to, body); err != nil {
						b.Error(err)
						return
					}
					inflight++
					sent++
				}
				ev, err := c.Recv(ctx)
				if err != nil {
					b.Error(err)
					return
				}
				switch ev := ev.(type) {
				case *protocol.Accept:
					n := int(ev.More) + 1
					inflight -= n
					accepted += n
				case *protocol.Refuse:
					b.Errorf("refused: %v", ev.Code)
					return
				}
			}
		}()
		go func() { // receiver
			defer wg.Done()
			c := receivers[i]
			local := hdrhistogram.New(1, 10_000_000, 3)
			ctx := ctxFor(b, time.Minute)
			for got := 0; got < per; {
				ev, err := c.Recv(ctx)
				if err != nil {
					b.Error(err)
					return
				}
				if d, ok := ev.(*protocol.Deliver); ok {
					sentAt := int64(binary.LittleEndian.Uint64(d.Body))
					_ = local.RecordValue(max(time.Now().UnixNano()-sentAt, 0) / 1000)
					got++
					delivered.Add(1)
				}
			}
			mu.Lock()
			hist.Merge(local)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(delivered.Load())/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(hist.ValueAtQuantile(50)), "p50-µs")
	b.ReportMetric(float64(hist.ValueAtQuantile(99)), "p99-µs")
	b.ReportMetric(float64(hist.ValueAtQuantile(99.9)), "p99.9-µs")
}
