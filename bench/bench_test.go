package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"switchboard/delivery"
	"switchboard/gateway"
	"switchboard/node"
	"switchboard/token"
)

// TestMain lets the test binary play a worker process: the multi-process
// test starts os.Executable() with "bench --worker", as the command does.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "bench" && os.Args[2] == "--worker" {
		if err := RunWorker(os.Stdin, os.Stdout); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testServer is a real server on 127.0.0.1:0 over the memory store, and
// the keys file its tokens verify with. Test files may import gateway,
// delivery and storage; bench's own code may not.
type testServer struct {
	addr   string
	keys   string
	srv    *gateway.Server
	router *delivery.Router
}

func startServer(t *testing.T, dcfg delivery.Config) testServer {
	t.Helper()
	secret := make([]byte, 32)
	rand.Read(secret)
	return startServerSecret(t, dcfg, secret)
}

// startServerSecret starts a server through package node, as serve does,
// with its mailboxes in memory and key 3 secret.
func startServerSecret(t *testing.T, dcfg delivery.Config, secret []byte) testServer {
	t.Helper()
	cfg := node.Default()
	cfg.Data, cfg.Memory, cfg.Metrics = "", true, ""
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Delivery = dcfg
	cfg.Gateway.Addr = "127.0.0.1:0"
	cfg.Gateway.Keys = token.Keys{3: secret}
	n, err := node.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Stop(ctx)
	})
	keys := filepath.Join(t.TempDir(), "keys")
	body := "# test keys\n1 " + hex.EncodeToString(make([]byte, 32)) + "\n3 " + hex.EncodeToString(secret) + "\n"
	if err := os.WriteFile(keys, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return testServer{addr: n.Addr().String(), keys: keys, srv: n.Gateway(), router: n.Router()}
}

func (s testServer) config(scenario string) Config {
	return Config{Scenario: scenario, Addr: s.addr, Keys: s.keys, Metrics: "-", Drain: 10 * time.Second}
}

// runOK runs cfg and fails the test on an error or a correctness failure.
func runOK(t *testing.T, cfg Config) *Result {
	t.Helper()
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("%s: %v (failures %v)", cfg.Scenario, err, failures(res))
	}
	if !res.Passed() {
		t.Fatalf("%s: failures: %v", cfg.Scenario, res.Failures)
	}
	return res
}

func failures(r *Result) []string {
	if r == nil {
		return nil
	}
	return r.Failures
}

// checkAllDelivered asserts the counts of a run where every message must arrive once.
func checkAllDelivered(t *testing.T, res *Result, wantSent uint64) {
	t.Helper()
	if res.Sent != wantSent {
		t.Errorf("sent %d, want %d", res.Sent, wantSent)
	}
	if res.Accepted != res.Sent || res.Delivered != res.Sent {
		t.Errorf("sent %d, accepted %d, delivered %d: want all equal", res.Sent, res.Accepted, res.Delivered)
	}
	if res.Lost+res.Duplicates+res.Reordered != 0 {
		t.Errorf("lost %d, duplicates %d, reordered %d", res.Lost, res.Duplicates, res.Reordered)
	}
	// A warm-up's messages have no samples (TestPhoneWarmup counts them).
	if got := uint64(res.SendToAck.TotalCount()); got != res.Accepted && res.Warmup == 0 {
		t.Errorf("send-to-ack samples %d, want %d", got, res.Accepted)
	}
	if res.ReceiptsMissing != 0 {
		t.Errorf("receipts missing %d", res.ReceiptsMissing)
	}
}

// checkLag asserts that an open-loop run's generator lag has a sample for
// each of its want scheduled messages, and that it is part of the
// latency measured from the schedule: no larger than the send-to-ack of
// the same quantile.
func checkLag(t *testing.T, res *Result, want int64) {
	t.Helper()
	lag := res.GeneratorLag
	t.Logf("generator lag p50 %d µs, p99 %d µs, max %d µs", lag.ValueAtQuantile(50), lag.ValueAtQuantile(99), lag.Max())
	if n := lag.TotalCount(); n != want {
		t.Errorf("generator-lag samples %d, want %d", n, want)
	}
	for _, q := range []float64{50, 90} {
		if l, a := lag.ValueAtQuantile(q), res.SendToAck.ValueAtQuantile(q); l > a {
			t.Errorf("generator lag p%v %d µs over send-to-ack's %d µs, which counts from the same schedule", q, l, a)
		}
	}
}

// checkAllReceipted asserts that a run whose drain waited for receipts got
// one for every copy delivered.
func checkAllReceipted(t *testing.T, res *Result) {
	t.Helper()
	t.Logf("delivered %d, receipts %d (again %d), missing %d", res.Delivered, res.Receipts, res.ReceiptsRedelivered, res.ReceiptsMissing)
	if res.Receipts != res.Delivered || res.ReceiptsMissing != 0 {
		t.Errorf("delivered %d, receipts %d, missing %d: want a receipt per copy delivered", res.Delivered, res.Receipts, res.ReceiptsMissing)
	}
}

func TestChatOpenLoop(t *testing.T) {
	srv := startServer(t, delivery.Config{})
	cfg := srv.config("chat")
	cfg.Pairs, cfg.Rate, cfg.Duration = 10, 500, 2*time.Second
	res := runOK(t, cfg)
	checkAllDelivered(t, res, 1000)
	checkAllReceipted(t, res)
	if res.Conns != 20 {
		t.Errorf("conns %d, want 20", res.Conns)
	}
	if got := res.SendToDeliver.TotalCount(); got != 1000 {
		t.Errorf("send-to-deliver samples %d, want 1000", got)
	}
	checkLag(t, res, 1000)
	if res.LoginLatency.TotalCount() != 20 {
		t.Errorf("login samples %d, want 20", res.LoginLatency.TotalCount())
	}
	if res.Figures["wire_bytes_per_msg"] < 100 {
		t.Errorf("wire bytes per message %v: less than the body itself", res.Figures["wire_bytes_per_msg"])
	}
	if res.GeneratorCPU <= 0 {
		t.Error("generator CPU not measured")
	}
}

func TestChatClosedLoop(t *testing.T) {
	srv := startServer(t, delivery.Config{})
	cfg := srv.config("chat")
	cfg.Pairs, cfg.Rate, cfg.Window, cfg.Duration = 5, 0, 4, time.Second
	res := runOK(t, cfg)
	if res.Sent == 0 {
		t.Fatal("closed loop sent nothing")
	}
	checkAllDelivered(t, res, res.Sent)
	checkAllReceipted(t, res)
	if n := res.GeneratorLag.TotalCount(); n != 0 {
		t.Errorf("%d generator-lag samples in closed loop, where nothing is scheduled", n)
	}
}

// TestChatWorkers spreads the pairs over worker processes (the test binary
// re-executed) and merges their counts and histograms.
func TestChatWorkers(t *testing.T) {
	srv := startServer(t, delivery.Config{})
	cfg := srv.config("chat")
	cfg.Pairs, cfg.Rate, cfg.Duration, cfg.PerProcess = 6, 300, time.Second, 4
	res := runOK(t, cfg)
	if res.Processes != 4 { // three workers of two pairs, and the coordinator
		t.Errorf("processes %d, want 4", res.Processes)
	}
	checkAllDelivered(t, res, 300)
	checkAllReceipted(t, res)
	if got := res.SendToDeliver.TotalCount(); got != 300 {
		t.Errorf("merged send-to-deliver samples %d, want 300", got)
	}
	checkLag(t, res, 300)
}

// TestOffline fills ten mailboxes while their owners are away, then logs
// them in: every message arrives once, and the drain's figures are of the
// measured drain.
func TestOffline(t *testing.T) {
	srv := startServer(t, delivery.Config{})
	cfg := srv.config("offline")
	cfg.Pairs, cfg.Messages = 10, 300 // more than a window of backlog each
	res := runOK(t, cfg)
	checkAllDelivered(t, res, 3000)
	checkAllReceipted(t, res)
	if f := res.Figures; f["drain_s"] <= 0 || f["drain_s"] != res.Duration.Seconds() || f["drain_rate_per_s"] != 3000/f["drain_s"] {
		t.Errorf("figures %v, duration %v: want drain_s the measured drain and drain_rate_per_s its 3,000 messages a second", res.Figures, res.Duration)
	}
	// The CPU figures are over the drain and the settling after it.
	if res.CostWindow <= res.Duration {
		t.Errorf("cost window %v, want longer than the drain's %v", res.CostWindow, res.Duration)
	}
}

func TestConnect(t *testing.T) {
	srv := startServer(t, delivery.Config{})
	cfg := srv.config("connect")
	cfg.Conns, cfg.ConnectRate, cfg.Hold, cfg.Burst = 200, 2000, 50*time.Millisecond, 2
	res := runOK(t, cfg)
	if res.Conns != 200 || res.LoginLatency.TotalCount() != 200 {
		t.Errorf("conns %d, logins %d, want 200", res.Conns, res.LoginLatency.TotalCount())
	}
	checkAllDelivered(t, res, 400)
	checkAllReceipted(t, res)
	if res.Figures["connect_rate_per_s"] <= 0 {
		t.Errorf("figures %v", res.Figures)
	}
}

// TestConnectWithoutBurst: a connect run with NoBurst (the command's
// --burst 0) logs in, holds, and sends nothing.
func TestConnectWithoutBurst(t *testing.T) {
	srv := startServer(t, delivery.Config{})
	cfg := srv.config("connect")
	cfg.Conns, cfg.ConnectRate, cfg.Hold, cfg.Burst = 20, 2000, 10*time.Millisecond, NoBurst
	res := runOK(t, cfg)
	if res.Conns != 20 || res.Sent != 0 || res.Delivered != 0 {
		t.Errorf("conns %d, sent %d, delivered %d; want 20 and nothing sent", res.Conns, res.Sent, res.Delivered)
	}
}

// TestStorm drops and reconnects 100 connections holding unacknowledged
// entries: each comes again, and the server's memory is reported before
// the storm, at its peak (sampled while it runs) and after, from metrics
// that charge 1,000 bytes of RSS per open connection.
func TestStorm(t *testing.T) {
	srv := startServer(t, delivery.Config{})
	cfg := srv.config("storm")
	cfg.Conns, cfg.Messages = 100, 5
	const base = 1 << 20
	cfg.Metrics = fakeMetrics(t, srv, base)
	res := runOK(t, cfg)
	if f := res.Figures; f["rss_before_bytes"] != base+100_000 || f["rss_after_bytes"] != base+100_000 ||
		f["rss_peak_bytes"] < base || f["rss_peak_bytes"] > base+100_000 {
		t.Errorf("RSS before %v, at the peak %v, after %v; want %d, %d to %d, %d", f["rss_before_bytes"], f["rss_peak_bytes"], f["rss_after_bytes"],
			base+100_000, base, base+100_000, base+100_000)
	}
	if !slices.ContainsFunc(res.Memory, func(m MemPoint) bool { return m.Label == "peak" && float64(m.RSS) == res.Figures["rss_peak_bytes"] }) {
		t.Errorf("memory points %+v, want the peak's", res.Memory)
	}
	checkAllDelivered(t, res, 500)
	checkAllReceipted(t, res)
	// Every entry was left unacknowledged before the drop, so each comes again.
	if res.Redelivered < 500 {
		t.Errorf("redelivered %d, want at least 500", res.Redelivered)
	}
	if res.LoginLatency.TotalCount() != 200 {
		t.Errorf("logins %d, want 200 (100 before the storm, 100 after)", res.LoginLatency.TotalCount())
	}
}

// TestStormRequiresRedelivery: a storm in which fewer entries came again
// than were held at the drop fails; one in which all came passes.
func TestStormRequiresRedelivery(t *testing.T) {
	res := newResult()
	res.Redelivered = 499
	requireRedelivered(res, 500)
	if res.Passed() || !strings.Contains(strings.Join(res.Failures, "\n"), "1 lost") {
		t.Errorf("499 of 500 came again: failures %q", res.Failures)
	}
	res = newResult()
	res.Redelivered = 500
	requireRedelivered(res, 500)
	if !res.Passed() {
		t.Errorf("all 500 came again: failures %q", res.Failures)
	}
}

func TestSlow(t *testing.T) {
	srv := startServer(t, delivery.Config{SlowAfter: 500 * time.Millisecond})
	cfg := srv.config("slow")
	cfg.Pairs, cfg.Rate, cfg.Duration, cfg.SlowShare = 5, 1000, 2*time.Second, 0.2
	cfg.Size = 2000 // 100 msg/s to the slow reader overfill the server's 128 KiB window within 1.5 s
	cfg.Metrics = cpuPerAccepted(t, srv)
	res := runOK(t, cfg)
	if res.Baseline == nil || res.Baseline.Delivered == 0 {
		t.Fatal("no baseline")
	}
	if res.Closes["SLOW_CONSUMER"] == 0 {
		t.Errorf("closes %v: the server closed no slow reader", res.Closes)
	}
	if slices.ContainsFunc(res.Notes, func(n string) bool { return strings.HasPrefix(n, "the server closed no slow reader") }) {
		t.Errorf("notes %q say no slow reader was closed; %d were", res.Notes, res.Closes["SLOW_CONSUMER"])
	}
	// A CPU second per message accepted: the second phase's CPU is its own
	// messages', not the baseline's too.
	if cpu, want := res.ServerCPU.Seconds(), float64(res.Accepted); cpu < 0.9*want || cpu > 1.1*want {
		t.Errorf("server CPU %.0f s over the slow phase, want about %.0f: a second per message it accepted", cpu, want)
	}
	if got, want := res.Figures["delivered_per_s"], float64(res.Delivered)/res.Duration.Seconds(); got != want {
		t.Errorf("delivered_per_s %v, want %v", got, want)
	}
	if res.Lost+res.Duplicates+res.Reordered != 0 || res.Delivered != res.Sent {
		t.Errorf("sent %d delivered %d lost %d: the slow readers' messages must all arrive once they return", res.Sent, res.Delivered, res.Lost)
	}
	checkAllReceipted(t, res)
	checkAllReceipted(t, res.Baseline)
}

// TestGroup runs the group scenario. While the server refuses group
// operations it must fail fast with a clear error instead of hanging.
func TestGroup(t *testing.T) {
	srv := startServer(t, delivery.Config{})
	cfg := srv.config("group")
	cfg.Groups, cfg.GroupSize, cfg.Rate, cfg.Duration = 3, 4, 60, time.Second
	start := time.Now()
	res, err := Run(context.Background(), cfg)
	if err != nil {
		if !strings.Contains(err.Error(), "server refused group operations") {
			t.Fatalf("err %v, want a refusal of group operations", err)
		}
		if time.Since(start) > 10*time.Second {
			t.Errorf("took %v to fail", time.Since(start))
		}
		if res == nil || res.Passed() {
			t.Error("a run that could not be carried out must not pass")
		}
		return
	}
	if !res.Passed() || res.Sent != 60 || res.Delivered != 60*3 {
		t.Errorf("sent %d delivered %d failures %v: want 60 messages to 3 members each", res.Sent, res.Delivered, res.Failures)
	}
	checkAllReceipted(t, res) // one per member's copy
}

func TestBadKeysFailFast(t *testing.T) {
	srv := startServer(t, delivery.Config{})
	cfg := srv.config("chat")
	keys := filepath.Join(t.TempDir(), "keys")
	os.WriteFile(keys, []byte("1 "+strings.Repeat("ab", 32)+"\n"), 0o600)
	cfg.Keys, cfg.Pairs = keys, 2
	_, err := Run(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "token") {
		t.Fatalf("err %v, want the server's token refusal", err)
	}
}

func TestNoServer(t *testing.T) {
	srv := startServer(t, delivery.Config{})
	cfg := srv.config("chat")
	cfg.Addr, cfg.Pairs, cfg.Retries = "127.0.0.1:1", 1, 1
	if _, err := Run(context.Background(), cfg); err == nil {
		t.Fatal("a run against no server succeeded")
	}
}

// TestReadKeys: the generator mints with the newest key of the server's
// keys file, under the server's rules for that file (package token), and
// its tokens verify with it.
func TestReadKeys(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys")
	secret := strings.Repeat("ab", 32)
	if err := os.WriteFile(path, []byte("9 "+strings.Repeat("cd", 32)+"\n12 "+secret+"\n3 "+strings.Repeat("ef", 16)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := ReadKeys(path)
	if err != nil || k.ID != 12 || hex.EncodeToString(k.Secret) != secret {
		t.Fatalf("ReadKeys = %+v, %v; want key 12", k, err)
	}
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	tok := mintToken([]byte("x"), k, 123456789, exp)
	c, err := token.Keys{12: k.Secret}.Verify(tok[1:], time.Now())
	if err != nil || c.User != 123456789 || c.KeyID != 12 || c.Device != 1 || !c.Expiry.Equal(exp) {
		t.Fatalf("minted token verifies as %+v, %v", c, err)
	}

	// A duplicated id would leave the generator and the server with
	// different secrets; a file others may read is refused as serve does.
	if err := os.WriteFile(path, []byte("2 "+secret+"\n2 "+strings.Repeat("cd", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKeys(path); err == nil || !strings.Contains(err.Error(), "appears twice") {
		t.Errorf("ReadKeys of a file with id 2 twice = %v, want refused", err)
	}
	if err := os.WriteFile(path, []byte("1 "+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKeys(path); !errors.Is(err, token.ErrKeysExposed) {
		t.Errorf("ReadKeys of a mode 0644 file = %v, want ErrKeysExposed", err)
	}
}

// fakeMetrics serves a metrics endpoint for srv whose memory rises by
// exactly 1000 bytes of RSS and 500 of heap per open connection over a
// fixed base, so a run's per-connection figures are known in advance.
func fakeMetrics(t *testing.T, srv testServer, base uint64) string {
	t.Helper()
	h := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n := uint64(srv.srv.Conns())
		fmt.Fprintf(w, "# HELP fake\nprocess_resident_memory_bytes %d\ngo_memstats_heap_inuse_bytes %d\nprocess_cpu_seconds_total %d\nswitchboard_connections %d\n",
			base+1000*n, base/2+500*n, srv.router.Stats().Accepted.Load(), n)
	}))
	t.Cleanup(h.Close)
	return h.URL + "/metrics"
}

// TestConnectTwoServers holds connections on two servers at once, from
// worker processes, each server with its own keys file: every user must
// log in to its home server (a token for the other is refused), each
// server must hold half, and the memory figures must be the servers' sums.
func TestConnectTwoServers(t *testing.T) {
	a, b := startServer(t, delivery.Config{}), startServer(t, delivery.Config{})
	cfg := Config{
		Scenario: "connect",
		Addr:     a.addr + "," + b.addr,
		Keys:     a.keys + "," + b.keys,
		Metrics:  fakeMetrics(t, a, 10<<20) + "," + fakeMetrics(t, b, 30<<20),
		Drain:    10 * time.Second,
		Conns:    200, ConnectRate: 2000, Hold: 50 * time.Millisecond, Burst: 2,
		PerProcess: 60, // four workers of 25 pairs, each talking to both servers
	}
	res := runOK(t, cfg)
	if res.Conns != 200 || res.LoginLatency.TotalCount() != 200 {
		t.Errorf("conns %d, logins %d, want 200", res.Conns, res.LoginLatency.TotalCount())
	}
	if res.Processes != 5 {
		t.Errorf("processes %d, want 5 (four workers and the coordinator)", res.Processes)
	}
	checkAllDelivered(t, res, 400)
	for _, s := range []testServer{a, b} {
		if got := s.srv.Stats().Logins.Load(); got != 100 {
			t.Errorf("server %s: %d logins, want 100", s.addr, got)
		}
		if got := s.router.Stats().Accepted.Load(); got != 200 {
			t.Errorf("server %s accepted %d messages, want 200 (its 100 users' bursts of 2)", s.addr, got)
		}
	}
	if got := res.Figures["idle_per_conn_rss_bytes"]; got != 1000 {
		t.Errorf("idle RSS per connection %v, want 1000 (the sum over both servers over 200 connections)", got)
	}
	if got := res.Figures["idle_per_conn_heap_bytes"]; got != 500 {
		t.Errorf("idle heap per connection %v, want 500", got)
	}
	var idle *MemPoint
	for i := range res.Memory {
		if res.Memory[i].Label == "idle" {
			idle = &res.Memory[i]
		}
	}
	if idle == nil || idle.Conns != 200 || idle.RSS != 40<<20+200_000 {
		t.Errorf("idle memory point %+v, want 200 connections and RSS %d", idle, 40<<20+200_000)
	}
	perServer := false
	for _, n := range res.Notes {
		perServer = perServer || (strings.Contains(n, `at "idle", per server`) && strings.Contains(n, a.addr) && strings.Contains(n, b.addr))
	}
	if !perServer {
		t.Errorf("no per-server memory note in %q", res.Notes)
	}
}

// TestChatTwoServers runs chat over two servers sharing one keys file (one
// --keys path for both): every pair must live on one server, or its
// messages would never reach the other side.
func TestChatTwoServers(t *testing.T) {
	secret := make([]byte, 32)
	rand.Read(secret)
	a, b := startServerSecret(t, delivery.Config{}, secret), startServerSecret(t, delivery.Config{}, secret)
	cfg := a.config("chat")
	cfg.Addr = a.addr + "," + b.addr
	cfg.Pairs, cfg.Rate, cfg.Duration, cfg.PerProcess = 10, 500, time.Second, 8
	res := runOK(t, cfg)
	checkAllDelivered(t, res, 500)
	checkAllReceipted(t, res)
	if res.Conns != 20 || res.LoginLatency.TotalCount() != 20 {
		t.Errorf("conns %d, logins %d, want 20", res.Conns, res.LoginLatency.TotalCount())
	}
	var accepted uint64
	for _, s := range []testServer{a, b} {
		if got := s.srv.Stats().Logins.Load(); got != 10 {
			t.Errorf("server %s: %d logins, want 10 (5 pairs)", s.addr, got)
		}
		n := s.router.Stats().Accepted.Load()
		if n < 200 || n > 300 {
			t.Errorf("server %s accepted %d of 500 messages, want about half", s.addr, n)
		}
		accepted += n
	}
	if accepted != 500 {
		t.Errorf("the servers accepted %d messages, want 500", accepted)
	}
}

// TestPhoneHold runs phone with a hold: the connections must stay logged
// in and idle before the traffic (a memory point labelled "idle" with all
// of them, taken before any message was sent), and the report must carry
// the login rate and the memory per idle connection besides the traffic's
// figures, all of it delivered once.
func TestPhoneHold(t *testing.T) {
	srv := startServer(t, delivery.Config{})
	cfg := srv.config("phone")
	cfg.Metrics = fakeMetrics(t, srv, 10<<20)
	cfg.Pairs, cfg.Rate, cfg.Duration, cfg.Hold = 20, 400, time.Second, 100*time.Millisecond
	res := runOK(t, cfg)
	checkAllDelivered(t, res, 400)
	var labels []string
	var idle *MemPoint
	for i := range res.Memory {
		labels = append(labels, res.Memory[i].Label)
		if res.Memory[i].Label == "idle" {
			idle = &res.Memory[i]
		}
	}
	if idle == nil || idle.Conns != 40 || idle.RSS != 10<<20+40_000 {
		t.Fatalf("memory points %q, idle %+v: want an idle point with 40 connections and RSS %d", labels, idle, 10<<20+40_000)
	}
	if got := strings.Join(labels, ","); got != "baseline,idle,connected,after traffic" {
		t.Errorf("memory points %s, want baseline,idle,connected,after traffic", got)
	}
	if got := res.Figures["idle_per_conn_rss_bytes"]; got != 1000 {
		t.Errorf("idle RSS per connection %v, want 1000", got)
	}
	if res.Figures["connect_rate_per_s"] <= 0 || res.Figures["delivered_per_s"] <= 0 {
		t.Errorf("figures %v: want connect_rate_per_s and delivered_per_s", res.Figures)
	}
}

// TestHoldScenarios checks that --hold is refused where it would be
// ignored, and refused when negative.
func TestHoldScenarios(t *testing.T) {
	for _, tc := range []struct {
		scenario string
		hold     time.Duration
		want     string // "" : valid
	}{
		{"connect", time.Second, ""},
		{"chat", time.Second, ""},
		{"phone", time.Second, ""},
		{"group", time.Second, ""},
		{"sweep", time.Second, "--hold: sweep does not hold"},
		{"storm", time.Second, "--hold: storm does not hold"},
		{"offline", time.Second, "--hold: offline does not hold"},
		{"phone", -time.Second, "--hold must not be negative"},
	} {
		t.Run(fmt.Sprintf("%s %v", tc.scenario, tc.hold), func(t *testing.T) {
			c := Config{Scenario: tc.scenario, Hold: tc.hold, Metrics: "-", Rate: 100}
			c.setDefaults()
			err := c.validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("validate: %v, want no error", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("validate: %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

// TestInterruptEndsTheRun: cancelling a run's context (Ctrl-C) ends the
// step under way, in the coordinator's engine and in worker processes
// alike: Run returns soon, long before the 30 s of traffic asked for,
// with the interrupt as its error and as the result's first failure, and
// with what was sent so far counted.
func TestInterruptEndsTheRun(t *testing.T) {
	for _, tt := range []struct {
		name       string
		perProcess int
		err        string
	}{
		{name: "one process", err: "interrupted: context deadline exceeded"},
		{name: "two workers", perProcess: 4, err: "process 1: interrupted"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, delivery.Config{})
			cfg := srv.config("chat")
			cfg.Pairs, cfg.Rate, cfg.Duration, cfg.PerProcess = 4, 100, 30*time.Second, tt.perProcess
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			start := time.Now()
			res, err := Run(ctx, cfg)
			if took := time.Since(start); took > 15*time.Second {
				t.Errorf("the interrupted run took %v", took)
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("err %v, want one containing %q", err, tt.err)
			}
			if res == nil || len(res.Failures) == 0 || !strings.HasPrefix(res.Failures[0], "the run could not be carried out: ") ||
				!strings.Contains(res.Failures[0], tt.err) {
				t.Fatalf("failures %q, want the interrupt first", failures(res))
			}
			if res.Sent == 0 {
				t.Errorf("nothing sent counted before the interrupt")
			}
		})
	}
}

// TestInterruptEndsTheHold: an interrupt during --hold ends the run then,
// not when the hold is over, with the connections held so far counted.
func TestInterruptEndsTheHold(t *testing.T) {
	for _, scenario := range []string{"connect", "chat"} {
		t.Run(scenario, func(t *testing.T) {
			srv := startServer(t, delivery.Config{})
			cfg := srv.config(scenario)
			cfg.Pairs, cfg.Conns, cfg.Rate, cfg.Duration, cfg.Hold = 4, 8, 100, time.Second, time.Hour
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cfg.Out = interruptAt{"holding them idle", cancel} // Ctrl-C once the hold began
			start := time.Now()
			res, err := Run(ctx, cfg)
			if took := time.Since(start); took > 15*time.Second {
				t.Errorf("the interrupted run took %v", took)
			}
			if err == nil || !strings.Contains(err.Error(), "context canceled") {
				t.Fatalf("err %v, want the interrupt", err)
			}
			if res == nil || res.Conns != 8 {
				t.Errorf("result %+v, want the 8 connections held", res)
			}
		})
	}
}

// interruptAt is a run's Out that calls cancel when the run writes a line
// holding line.
type interruptAt struct {
	line   string
	cancel context.CancelFunc
}

func (w interruptAt) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(w.line)) {
		w.cancel()
	}
	return len(p), nil
}
