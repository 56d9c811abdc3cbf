package node

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"switchboard/noise"
	"switchboard/protocol"
	"switchboard/storage"
	"switchboard/token"
)

// testConfig is a node on 127.0.0.1:0 with its admin listener, in a
// temporary data folder.
func testConfig(t *testing.T) (Config, []byte) {
	secret := make([]byte, token.SecretLen)
	for i := range secret {
		secret[i] = byte(i*3 + 5)
	}
	c := Default()
	c.Data = t.TempDir()
	c.Metrics = "127.0.0.1:0"
	c.Logger = slog.New(slog.DiscardHandler)
	if os.Getenv("NODE_TEST_LOG") != "" {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	c.Gateway.Addr = "127.0.0.1:0"
	c.Gateway.Loops = 2
	c.Gateway.Keys = token.Keys{1: secret}
	c.Gateway.ShutdownTimeout = 5 * time.Second
	return c, secret
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestLifecycle: Start brings up a node that serves a round trip and
// answers /healthz and /readyz; Stop sends GOAWAY to a connected client,
// closes the store, ends the engine, is not ready any more, and returns
// well within the deadline; a second Stop returns the same at once.
func TestLifecycle(t *testing.T) {
	cfg, secret := testConfig(t)
	routed := false
	cfg.AdminRoutes = func(n *Node, mux *http.ServeMux) {
		routed = n.Router() != nil
		mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("up 1\n")) })
	}
	n, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			n.Stop(context.Background())
		}
	})
	if got := n.Config().Storage.Dir; got != filepath.Join(cfg.Data, "mailboxes") {
		t.Errorf("store in %q, want data/mailboxes", got)
	}
	admin := "http://" + n.AdminAddr().String()
	for path, want := range map[string]string{"/healthz": "alive\n", "/readyz": "ready\n", "/metrics": "up 1\n"} {
		if code, body := get(t, admin+path); code != 200 || body != want {
			t.Errorf("%s: %d %q, want 200 %q", path, code, body, want)
		}
	}
	if !routed {
		t.Error("AdminRoutes was not called with the parts in place")
	}
	if code, _ := get(t, admin+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("pprof on the admin listener: %d, want 404", code)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	token := func(user uint64) []byte {
		return token.Mint(secret, token.Claims{KeyID: 1, User: user, Device: 1, Expiry: time.Now().Add(time.Hour)})
	}
	a, err := protocol.Dial(ctx, n.Addr().String(), protocol.ClientOptions{Token: token(1)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := protocol.Dial(ctx, n.Addr().String(), protocol.ClientOptions{Token: token(2)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	id, err := a.Send(2, []byte("through the node"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.WaitAccept(ctx, id); err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := b.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := ev.(*protocol.Deliver); ok {
			if d.From != 1 || string(d.Body) != "through the node" {
				t.Fatalf("delivered %d %q", d.From, d.Body)
			}
			break
		}
	}

	start := time.Now()
	err = n.Stop(context.Background())
	stopped = true
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if took > cfg.Gateway.ShutdownTimeout {
		t.Errorf("Stop took %v, deadline %v", took, cfg.Gateway.ShutdownTimeout)
	}
	var goaway protocol.Code
	for {
		ev, err := b.Recv(ctx)
		if err != nil {
			break
		}
		if g, ok := ev.(*protocol.GoAway); ok {
			goaway = g.Code
		}
	}
	if goaway != protocol.CodeShuttingDown {
		t.Errorf("client got GOAWAY %v, want SHUTTING_DOWN", goaway)
	}
	select {
	case <-n.Done():
	default:
		t.Error("the engine has not stopped")
	}
	if err := n.Err(); err != nil {
		t.Errorf("Err after Stop: %v", err)
	}
	if _, _, err := n.Store().Read(2, 1, 10, 1<<20, nil); err == nil {
		t.Error("the store still reads after Stop")
	}
	if err := n.Ready(); err == nil || !strings.Contains(err.Error(), "stopping") {
		t.Errorf("Ready after Stop: %v", err)
	}
	if _, err := http.Get(admin + "/healthz"); err == nil {
		t.Error("the admin listener still answers after Stop")
	}
	again := time.Now()
	if err := n.Stop(context.Background()); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if d := time.Since(again); d > 100*time.Millisecond {
		t.Errorf("second Stop took %v", d)
	}
}

// TestStartRefuses: an invalid configuration opens nothing and says
// every problem; a missing key, or a Noise keys file that does not read,
// is refused.
func TestStartRefuses(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.Transport = TransportPlain // frames past a Noise transport message's
	cfg.Gateway.MaxBody, cfg.Gateway.MaxFrame = 200<<10, 201<<10
	cfg.Storage.MaxValueBytes = 100 << 10
	_, err := Start(cfg)
	if err == nil || len(joined(err)) != 2 {
		t.Fatalf("Start: %v, want two problems", err)
	}
	cfg, _ = testConfig(t)
	cfg.Gateway.Keys = nil
	if _, err := Start(cfg); err == nil || !strings.Contains(err.Error(), "token keys") {
		t.Fatalf("Start without keys: %v", err)
	}
	cfg, _ = testConfig(t)
	if err := os.WriteFile(filepath.Join(cfg.Data, noise.KeysFileName), []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Start(cfg); err == nil || !strings.Contains(err.Error(), noise.KeysFileName) {
		t.Fatalf("Start with a Noise keys file that does not read: %v", err)
	}
	cfg, _ = testConfig(t)
	cfg.Pprof = "127.0.0.1:0"
	n, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Stop(context.Background()); err != nil && !errors.Is(err, ErrStopTimeout) {
		t.Fatal(err)
	}
}

// TestReadyzWhileDraining: once the gateway drains, /readyz answers 503
// and says why, while /healthz still answers 200.
func TestReadyzWhileDraining(t *testing.T) {
	cfg, _ := testConfig(t)
	n, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop(context.Background())
	admin := "http://" + n.AdminAddr().String()
	n.Gateway().Drain()
	if code, body := get(t, admin+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "stopping") {
		t.Errorf("/readyz while draining: %d %q, want 503 naming the stop", code, body)
	}
	if code, _ := get(t, admin+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while draining: %d, want 200", code)
	}
}

// TestMemoryNode: a node with Memory needs no data folder, writes nothing
// to disk, and stores what it accepts until it stops.
func TestMemoryNode(t *testing.T) {
	cfg, secret := testConfig(t)
	cfg.Data = ""
	if err := cfg.Validate(); err == nil {
		t.Fatal("a node without a data folder nor Memory validated")
	}
	cfg.Memory = true
	cfg.Metrics = ""
	n, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok := token.Mint(secret, token.Claims{KeyID: 1, User: 1, Device: 1, Expiry: time.Now().Add(time.Hour)})
	a, err := protocol.Dial(ctx, n.Addr().String(), protocol.ClientOptions{Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	id, err := a.Send(2, []byte("kept in memory"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.WaitAccept(ctx, id); err != nil {
		t.Fatal(err)
	}
	entries, _, err := n.Store().Read(2, 0, 10, 1<<20, nil)
	if err != nil || len(entries) != 1 || entries[0].Sender != 1 || entries[0].MsgID != id || !strings.Contains(string(entries[0].Value), "kept in memory") {
		t.Fatalf("the memory store holds %d entries (%v), want the message", len(entries), err)
	}
	if _, err := os.Stat("data"); err == nil {
		t.Error("a memory node made a data folder in the working directory")
	}
}

// TestEngineStopsOnItsOwn: while the engine runs Err is nil; when it ends
// without Stop (its gateway shut down underneath the node), Done closes,
// Err says the engine stopped on its own, so that serve exits 1 and its
// service manager starts it again.
func TestEngineStopsOnItsOwn(t *testing.T) {
	cfg, _ := testConfig(t)
	n, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop(context.Background())
	if err := n.Err(); err != nil {
		t.Fatalf("Err while serving: %v", err)
	}
	if err := n.Gateway().Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-n.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done did not close when the engine stopped")
	}
	if err := n.Err(); err == nil || err.Error() != "node: the network engine stopped on its own" {
		t.Errorf("Err after the engine stopped on its own: %v", err)
	}
}

// closingStore is a store whose Close is close.
type closingStore struct {
	storage.Store
	close func() error
}

func (s closingStore) Close() error { return s.close() }

// TestStopReportsTheStore: a store that fails to close makes Stop's error
// say so and wrap the store's; one that does not close within the
// shutdown timeout is left, and Stop returns ErrStopTimeout naming it.
func TestStopReportsTheStore(t *testing.T) {
	diskGone := errors.New("disk gone")
	for _, tc := range []struct {
		name string
		// close closes store, the node's, as the node stops; stuck is
		// closed once Stop returned.
		close func(store storage.Store, stuck <-chan struct{}) error
		want  error  // what Stop's error wraps
		says  string // what it says
	}{
		{"fails", func(store storage.Store, _ <-chan struct{}) error {
			store.Close()
			return diskGone
		}, diskGone, "node: closing storage: disk gone"},
		{"hangs", func(store storage.Store, stuck <-chan struct{}) error {
			<-stuck
			return store.Close()
		}, ErrStopTimeout, "node: stop deadline passed: closing storage (the next start recovers it)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _ := testConfig(t)
			cfg.Gateway.ShutdownTimeout = time.Second
			n, err := Start(cfg)
			if err != nil {
				t.Fatal(err)
			}
			stuck, closed := make(chan struct{}), make(chan struct{})
			p := *n.parts.Load()
			store := p.store
			p.store = closingStore{Store: store, close: func() error {
				defer close(closed)
				return tc.close(store, stuck)
			}}
			n.parts.Store(&p)
			err = n.Stop(context.Background())
			if !errors.Is(err, tc.want) || err.Error() != tc.says {
				t.Errorf("Stop: %v, want %q", err, tc.says)
			}
			close(stuck)
			<-closed // the real store closes before its folder goes
		})
	}
}
