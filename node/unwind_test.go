package node

import (
	"context"
	"errors"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"switchboard/cluster"
	"switchboard/gateway"
	"switchboard/internal/testutil"
)

// TestFailedStartReleases: a start that fails after the store opened (the
// client address is taken, in a cluster too, or the cluster's NATS port,
// so that it cannot join) or after the gateway listened (the admin or
// pprof address is taken, or another process listens on the handover
// socket) says which and releases everything it took: the data
// folder's lock, the client, admin and cluster ports, its goroutines and
// its files. Once the address is free again, the same configuration starts
// on the same folder and ports.
func TestFailedStartReleases(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cluster bool
		// take occupies something the start needs and returns what it
		// took: closing it frees it.
		take func(t *testing.T, cfg Config) func() error
		want string
	}{
		{name: "client address", take: func(t *testing.T, cfg Config) func() error { return listenOn(t, cfg.Gateway.Addr) }, want: "address already in use by another process"},
		{name: "client address in a cluster", cluster: true, take: func(t *testing.T, cfg Config) func() error { return listenOn(t, cfg.Gateway.Addr) }, want: "address already in use by another process"},
		{name: "cluster address", cluster: true, take: func(t *testing.T, cfg Config) func() error { return listenOn(t, cfg.Cluster.Nodes[0].NATS) }, want: "node: joining cluster \"unwind\" as node 1: "},
		{name: "admin address", take: func(t *testing.T, cfg Config) func() error { return listenOn(t, cfg.Metrics) }, want: "metrics listener (--metrics 127.0.0.1:"},
		{name: "pprof address", take: func(t *testing.T, cfg Config) func() error { return listenOn(t, cfg.Pprof) }, want: "pprof listener (--pprof 127.0.0.1:"},
		{name: "handover socket", take: func(t *testing.T, cfg Config) func() error {
			ln, err := net.Listen("unixpacket", cfg.handoverPath())
			if err != nil {
				t.Fatal(err)
			}
			return ln.Close
		}, want: "another process listens there"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _ := testConfig(t)
			a := testutil.FreeAddrs(t, 5)
			cfg.Gateway.Addr, cfg.Metrics, cfg.Pprof = a[0], a[1], a[2]
			if tc.cluster {
				cfg.Cluster = cluster.Config{Name: "unwind", Self: 1, Nodes: []cluster.NodeAddr{{ID: 1, Client: a[0], Route: a[3], NATS: a[4]}}}
			}
			goroutines, files := runtime.NumGoroutine(), countFiles(t)
			free := tc.take(t, cfg)
			_, err := Start(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Start with the %s taken: %v, want an error saying %q", tc.name, err, tc.want)
			}
			if err := free(); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 5*time.Second, "the failed start's goroutines to end", func() bool {
				return runtime.NumGoroutine() <= goroutines
			}, func() string { return goroutineDump() })
			testutil.Eventually(t, 5*time.Second, "the failed start's files to close", func() bool {
				return countFiles(t) <= files
			}, func() string { return strings.Join(testutil.OpenFiles(t), "\n") })
			if _, err := os.Stat(cfg.handoverPath()); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the failed start left its handover socket (%v)", err)
			}

			n, err := Start(cfg)
			if err != nil {
				t.Fatalf("Start again on the same folder and ports: %v", err)
			}
			defer n.Stop(context.Background())
			if n.Addr().String() != cfg.Gateway.Addr || n.AdminAddr().String() != cfg.Metrics {
				t.Errorf("started on %s, admin %s; want %s, %s", n.Addr(), n.AdminAddr(), cfg.Gateway.Addr, cfg.Metrics)
			}
		})
	}
}

// listenOn listens on addr until the returned function closes it.
func listenOn(t *testing.T, addr string) func() error {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Close
}

// countFiles counts this process's open descriptors.
func countFiles(t *testing.T) int { return len(testutil.OpenFiles(t)) }

// goroutineDump is every goroutine's stack.
func goroutineDump() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// TestStartOverTheFileLimit: a connection cap the open-file limit cannot
// hold fails the start naming the setting (ErrFileLimit), and lets go of
// the data folder: the same folder starts at once with the default cap.
func TestStartOverTheFileLimit(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.Gateway.MaxConns = 1 << 40
	_, err := Start(cfg)
	if !errors.Is(err, gateway.ErrFileLimit) || !strings.HasPrefix(err.Error(), "--max-conns 1099511627776 (gateway.max-conns): ") {
		t.Fatalf("Start with MaxConns over the file limit: %v, want ErrFileLimit naming --max-conns", err)
	}
	cfg.Gateway.MaxConns = 0
	n, err := Start(cfg)
	if err != nil {
		t.Fatalf("Start again on the same folder: %v", err)
	}
	n.Stop(context.Background())
}
