package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"switchboard/delivery"
	"switchboard/gateway"
	"switchboard/storage"
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
	addr string
	keys string
}

func startServer(t *testing.T, dcfg delivery.Config) testServer {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := storage.NewMemory(storage.Config{})
	if err != nil {
		t.Fatal(err)
	}
	dcfg.Logger = quiet
	r, err := delivery.New(dcfg, st)
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	srv, err := gateway.New(gateway.Config{Addr: "127.0.0.1:0", Keys: gateway.Keys{3: secret}, Logger: quiet}, r)
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	ran := make(chan error, 1)
	go func() { ran <- srv.Run() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr, err := srv.Addr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-ran
		st.Close()
	})
	keys := filepath.Join(t.TempDir(), "keys")
	body := "# test keys\n1 " + hex.EncodeToString(make([]byte, 32)) + "\n3 " + hex.EncodeToString(secret) + "\n"
	if err := os.WriteFile(keys, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return testServer{addr: addr.String(), keys: keys}
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
	if got := uint64(res.SendToAck.TotalCount()); got != res.Accepted {
		t.Errorf("send-to-ack samples %d, want %d", got, res.Accepted)
	}
}

func TestChatOpenLoop(t *testing.T) {
	srv := startServer(t, delivery.Config{})
	cfg := srv.config("chat")
	cfg.Pairs, cfg.Rate, cfg.Duration = 10, 500, 2*time.Second
	res := runOK(t, cfg)
	checkAllDelivered(t, res, 1000)
	if res.Conns != 20 {
		t.Errorf("conns %d, want 20", res.Conns)
	}
	if got := res.SendToDeliver.TotalCount(); got != 1000 {
		t.Errorf("send-to-deliver samples %d, want 1000", got)
	}
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
	if got := res.SendToDeliver.TotalCount(); got != 300 {
		t.Errorf("merged send-to-deliver samples %d, want 300", got)
	}
}

func TestOffline(t *testing.T) {
	srv := startServer(t, delivery.Config{})
	cfg := srv.config("offline")
	cfg.Pairs, cfg.Messages = 10, 300 // more than a window of backlog each
	res := runOK(t, cfg)
	checkAllDelivered(t, res, 3000)
	if res.Figures["drain_s"] <= 0 || res.Figures["drain_rate_per_s"] <= 0 {
		t.Errorf("figures %v", res.Figures)
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
	if res.Figures["connect_rate_per_s"] <= 0 {
		t.Errorf("figures %v", res.Figures)
	}
}

func TestStorm(t *testing.T) {
	srv := startServer(t, delivery.Config{})
	cfg := srv.config("storm")
	cfg.Conns, cfg.Messages = 100, 5
	res := runOK(t, cfg)
	checkAllDelivered(t, res, 500)
	// Every entry was left unacknowledged before the drop, so each comes again.
	if res.Redelivered < 500 {
		t.Errorf("redelivered %d, want at least 500", res.Redelivered)
	}
	if res.LoginLatency.TotalCount() != 200 {
		t.Errorf("logins %d, want 200 (100 before the storm, 100 after)", res.LoginLatency.TotalCount())
	}
}

func TestSlow(t *testing.T) {
	srv := startServer(t, delivery.Config{SlowAfter: 500 * time.Millisecond})
	cfg := srv.config("slow")
	cfg.Pairs, cfg.Rate, cfg.Duration, cfg.SlowShare = 5, 1000, 2*time.Second, 0.2
	cfg.Size = 2000 // 100 msg/s to the slow reader overfill the server's 128 KiB window within 1.5 s
	res := runOK(t, cfg)
	if res.Baseline == nil || res.Baseline.Delivered == 0 {
		t.Fatal("no baseline")
	}
	if res.Closes["SLOW_CONSUMER"] == 0 {
		t.Errorf("closes %v: the server closed no slow reader", res.Closes)
	}
	if res.Lost+res.Duplicates+res.Reordered != 0 || res.Delivered != res.Sent {
		t.Errorf("sent %d delivered %d lost %d: the slow readers' messages must all arrive once they return", res.Sent, res.Delivered, res.Lost)
	}
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

func TestTokenMatchesGateway(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	k := Key{ID: 7, Secret: secret}
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	tok := mintToken(nil, k, 123456789, exp)
	c, err := gateway.Keys{7: secret}.Verify(tok, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if c.User != 123456789 || c.KeyID != 7 || c.Device != 1 || !c.Expiry.Equal(exp) {
		t.Errorf("claims %+v", c)
	}
	want := gateway.MintToken(secret, gateway.Claims{KeyID: 7, User: 123456789, Device: 1, Expiry: exp})
	if string(tok) != string(want) {
		t.Errorf("token %x, gateway mints %x", tok, want)
	}
}
