package main

import (
	"bufio"
	"context"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// broker is a QoS 1 broker just large enough for mqttref: it answers
// CONNECT and SUBSCRIBE, acknowledges every PUBLISH and forwards it to the
// topic's subscriber under its own packet id. With drop or dup set, it
// leaves out, or sends twice, every drop-th or dup-th message it forwards;
// with wrongAck, it acknowledges every PUBLISH under the next packet id;
// with mute, it stops answering PUBLISHes after the first mute.
type broker struct {
	ln        net.Listener
	drop, dup int
	wrongAck  bool
	mute      int
	// pubackDelay holds each PUBACK back this long, as a slow broker
	// would; set before the run connects, read under mu.
	pubackDelay time.Duration

	mu        sync.Mutex
	subs      map[string]*brokerConn
	forwarded int
}

type brokerConn struct {
	nc     net.Conn
	wmu    sync.Mutex
	nextID uint16
}

func (c *brokerConn) write(b []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, _ = c.nc.Write(b)
}

func startBroker(t *testing.T, drop, dup int, wrongAck bool, mute int) *broker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &broker{ln: ln, drop: drop, dup: dup, wrongAck: wrongAck, mute: mute, subs: map[string]*brokerConn{}}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = nc.Close() })
			go b.serve(&brokerConn{nc: nc})
		}
	}()
	return b
}

func (b *broker) serve(c *brokerConn) {
	rd := bufio.NewReader(c.nc)
	var buf []byte
	for {
		p, nb, err := readPacket(rd, buf)
		buf = nb
		if err != nil {
			return
		}
		switch p.kind() {
		case typeConnect:
			c.write([]byte{typeConnack << 4, 2, 0, 0})
		case typeSubscribe:
			id, _ := p.packetID()
			n := int(p.body[2])<<8 | int(p.body[3])
			b.mu.Lock()
			b.subs[string(p.body[4:4+n])] = c
			b.mu.Unlock()
			c.write([]byte{typeSuback << 4, 3, byte(id >> 8), byte(id), 1})
		case typePublish:
			id, payload, err := p.publish()
			if err != nil {
				return
			}
			b.mu.Lock()
			muted := b.mute > 0 && b.forwarded >= b.mute
			delay := b.pubackDelay
			b.mu.Unlock()
			if muted {
				continue
			}
			time.Sleep(delay) // the slow broker's own time, not a test's wait
			if b.wrongAck {
				id++
			}
			c.write(appendPuback(nil, id))
			n := int(p.body[0])<<8 | int(p.body[1])
			topic := string(p.body[2 : 2+n])
			b.mu.Lock()
			to := b.subs[topic]
			b.forwarded++
			times := 1
			if b.drop > 0 && b.forwarded%b.drop == 0 {
				times = 0
			}
			if b.dup > 0 && b.forwarded%b.dup == 0 {
				times = 2
			}
			b.mu.Unlock()
			for range times {
				to.wmu.Lock()
				to.nextID++
				out := appendPublish(nil, to.nextID, topic, payload)
				_, _ = to.nc.Write(out)
				to.wmu.Unlock()
			}
		}
	}
}

func testConfig(addr string) Config {
	return Config{Addr: addr, Pairs: 20, Rate: 400, Window: 1, Size: 100,
		Warmup: 300 * time.Millisecond, Duration: time.Second, Drain: 5 * time.Second}
}

// TestRunOpenLoop: 40 senders, one message each 100 ms on staggered
// schedules, for 1.3 s: 13 messages each, every one acknowledged and
// delivered once, and the latencies of the 10 each due after the warm-up.
func TestRunOpenLoop(t *testing.T) {
	b := startBroker(t, 0, 0, false, 0)
	cfg := testConfig(b.ln.Addr().String())
	cfg.Pid = os.Getpid() // this process is the broker here
	res, err := run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 520 || res.Acked != 520 || res.Delivered != 520 || res.Lost != 0 || res.Duplicates != 0 || res.Reordered != 0 {
		t.Errorf("sent %d acked %d delivered %d lost %d duplicates %d reordered %d, want 520 of each and none lost, twice or out of order",
			res.Sent, res.Acked, res.Delivered, res.Lost, res.Duplicates, res.Reordered)
	}
	if res.SendAck.Samples != 400 || res.SendDeliver.Samples != 400 {
		t.Errorf("latency samples %d and %d, want 400: the messages due in the measured phase", res.SendAck.Samples, res.SendDeliver.Samples)
	}
	if res.GeneratorLag.Samples != 400 || res.GeneratorLag.P50 > res.SendAck.P50 {
		t.Errorf("generator lag %+v, want 400 samples, within send → puback (p50 %.0f µs), which counts from the same schedule", res.GeneratorLag, res.SendAck.P50)
	}
	if res.Measured < 300 || res.Measured > 500 || res.ServerCPUPerMsg <= 0 {
		t.Errorf("measured %d messages at %.1f µs of the broker's CPU each, want about 400 and a cost", res.Measured, res.ServerCPUPerMsg)
	}
	if !(res.SendDeliver.P50 <= res.SendDeliver.P99 && res.SendDeliver.P99 <= res.SendDeliver.Max) {
		t.Errorf("latency quantiles out of order: %+v", res.SendDeliver)
	}
}

// TestRunLagLeavesTheBrokersWait: a broker that holds every PUBACK 60 ms
// makes senders due every 50 ms fall behind. Their latencies count from
// their slots and grow, but the generator's lag does not take in the wait
// for the previous PUBACK: every slot has a sample, and most are far
// below the broker's delay.
func TestRunLagLeavesTheBrokersWait(t *testing.T) {
	b := startBroker(t, 0, 0, false, 0)
	b.mu.Lock()
	b.pubackDelay = 60 * time.Millisecond
	b.mu.Unlock()
	cfg := testConfig(b.ln.Addr().String())
	cfg.Pairs, cfg.Rate, cfg.Warmup, cfg.Duration = 2, 80, 0, time.Second
	res, err := run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("send → puback p50 %.0f µs max %.0f µs; generator lag p50 %.0f µs p90 %.0f µs", res.SendAck.P50, res.SendAck.Max, res.GeneratorLag.P50, res.GeneratorLag.P90)
	if res.Sent != 80 || res.Delivered != 80 {
		t.Errorf("sent %d delivered %d, want the 80 slots' messages", res.Sent, res.Delivered)
	}
	if res.SendAck.Max < 200_000 {
		t.Errorf("send → puback max %.0f µs: the wait for the previous PUBACK was not charged to the latency", res.SendAck.Max)
	}
	if res.GeneratorLag.Samples != 80 || res.GeneratorLag.P90 >= 60_000 {
		t.Errorf("generator lag %+v, want 80 samples, p90 under the broker's 60 ms: the wait for a PUBACK is the broker's", res.GeneratorLag)
	}
}

// TestRunClosedLoop: each sender keeps two in flight until delivered and
// acknowledged; everything sent arrives once.
func TestRunClosedLoop(t *testing.T) {
	b := startBroker(t, 0, 0, false, 0)
	cfg := testConfig(b.ln.Addr().String())
	cfg.Rate, cfg.Window, cfg.Duration = 0, 2, 500*time.Millisecond
	res, err := run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent == 0 || res.Acked != res.Sent || res.Delivered != res.Sent || res.Lost != 0 || res.Duplicates != 0 {
		t.Errorf("sent %d acked %d delivered %d lost %d duplicates %d", res.Sent, res.Acked, res.Delivered, res.Lost, res.Duplicates)
	}
	if !strings.Contains(res.Regime, "closed loop, 2 in flight") {
		t.Errorf("regime %q", res.Regime)
	}
	if res.GeneratorLag.Samples != 0 {
		t.Errorf("%d generator-lag samples in closed loop, where nothing is scheduled", res.GeneratorLag.Samples)
	}
}

// TestRunCountsLossAndDuplicates: a broker that leaves out or repeats
// messages is caught.
func TestRunCountsLossAndDuplicates(t *testing.T) {
	for _, tc := range []struct {
		name      string
		drop, dup int
	}{{"drop", 50, 0}, {"dup", 0, 50}} {
		t.Run(tc.name, func(t *testing.T) {
			b := startBroker(t, tc.drop, tc.dup, false, 0)
			cfg := testConfig(b.ln.Addr().String())
			cfg.Drain = 300 * time.Millisecond
			res, err := run(context.Background(), cfg)
			switch {
			case tc.drop > 0 && (res == nil || res.Lost != 520/50 || res.Reordered == 0 || err == nil):
				t.Errorf("a broker dropping one message in %d: result %+v, error %v; want %d lost, some delivered past a gap, and the drain's error", tc.drop, res, err, 520/50)
			case tc.dup > 0 && (err != nil || res.Duplicates != 520/50 || res.Delivered != 520):
				t.Errorf("a broker repeating one message in %d: %d duplicates, %d delivered, error %v; want %d and 520", tc.dup, res.Duplicates, res.Delivered, err, 520/50)
			}
		})
	}
}

// TestRunRefusesWrongPuback: a PUBACK must name the PUBLISH in flight,
// and the failure ends the run there, not at the end of its schedule.
func TestRunRefusesWrongPuback(t *testing.T) {
	b := startBroker(t, 0, 0, true, 0)
	cfg := testConfig(b.ln.Addr().String())
	cfg.Duration = time.Hour
	done := make(chan error, 1)
	go func() {
		_, err := run(context.Background(), cfg)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not of the oldest PUBLISH in flight") {
			t.Errorf("error %v, want the PUBACK's packet id refused", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the run went on after a connection failed")
	}
}

// TestRunEndsWhenBrokerStops: a broker that stops answering leaves
// senders waiting for room; the run still ends, --drain after the
// sending, with the messages counted lost.
func TestRunEndsWhenBrokerStops(t *testing.T) {
	b := startBroker(t, 0, 0, false, 100)
	cfg := testConfig(b.ln.Addr().String())
	cfg.Drain = 300 * time.Millisecond
	type outcome struct {
		res *Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := run(context.Background(), cfg)
		done <- outcome{res, err}
	}()
	select {
	case o := <-done:
		if o.err == nil || !strings.Contains(o.err.Error(), "not acknowledged or not delivered") || o.res.Delivered != 100 || o.res.Lost != o.res.Sent-100 {
			t.Errorf("result %+v, error %v; want 100 delivered, the rest lost, and the drain's error", o.res, o.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the run did not end after the broker stopped answering")
	}
}

// TestRunRefusesBadConfig names every bad setting at once.
func TestRunRefusesBadConfig(t *testing.T) {
	_, err := run(context.Background(), Config{Pairs: 0, Window: 0, Size: 8, Duration: 0, Drain: time.Second})
	for _, want := range []string{"--pairs", "--window", "--size", "--duration"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
	if _, _, err := parseFlags([]string{"--rate", "-1"}, os.Stderr); err == nil || !strings.Contains(err.Error(), "--rate") {
		t.Errorf("--rate -1: error %v", err)
	}
}

// TestProcCPU reads this process's CPU time after it burned some.
func TestProcCPU(t *testing.T) {
	before, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
	}
	after, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 20*time.Millisecond {
		t.Errorf("CPU grew %v over 50 ms of spinning", after-before)
	}
	if _, err := procCPU(-1); err == nil {
		t.Error("no error for pid -1")
	}
}
