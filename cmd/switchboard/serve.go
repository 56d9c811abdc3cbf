package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"switchboard/delivery"
	"switchboard/gateway"
	"switchboard/storage"
)

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var (
		listen      = fs.String("listen", "127.0.0.1:7070", "TCP address to listen on, host:port")
		data        = fs.String("data", "data", "data folder: the mailboxes (Badger) and the token keys, created on first run")
		metrics     = fs.String("metrics", "127.0.0.1:9070", "address of the Prometheus /metrics, /readyz (503 once a routing worker crashed, or the store's committer panicked, 5 times within a minute) and /debug/pprof/ endpoints (keep it private); empty: none")
		loops       = fs.Int("loops", 0, "event loops; 0: one per core")
		shards      = fs.Int("shards", 0, "routing workers; 0: two per core")
		maxConns    = fs.Int("max-conns", 0, "connection cap; 0: as many as the open-file limit allows. Either way a connection is refused (SERVER_FULL) while open connections plus a reserve would pass the limit: the reserve is the files open besides connections (storage, which grows, listeners), counted every second, plus 64 and a quarter of them. A value above what the limit allows at start is an error")
		outCap      = fs.Int("outbound-cap", 0, "per-connection unsent bytes before a slow reader is closed; 0: 256 KiB")
		window      = fs.Int("window", 0, "mailbox entries sent and not yet acknowledged per connection; 0: 256")
		ttl         = fs.Duration("ttl", 0, "how long a message waits for its recipient; 0: 30 days")
		relaxed     = fs.Duration("relaxed-delay", 0, "how long acks and receipts may wait to share a disk sync with a send (and receipts then for the sync); 0: 10ms; negative: no wait")
		minFree     = fs.Int64("min-free", 0, "bytes of free disk space under --data below which new messages are refused (retryable) while acks go on; 0: 256 MiB; negative: no floor")
		senderMsgs  = fs.Int64("sender-max-messages", 0, "message entries one sender may have waiting in other users' mailboxes (a group message counts per member); over it its sends are refused (QUOTA, retry_after 60 s) until recipients ack; 0: 100,000")
		senderBytes = fs.Int64("sender-max-bytes", 0, "bytes (as stored, decompressed) one sender may have waiting in other users' mailboxes; 0: 256 MiB")
		logLevel    = fs.String("log", "info", "log level: debug, info, warn, error")
		preLogin    = fs.Int("max-prelogin", 0, "connections that have not logged in yet; past half of them new ones get 3s instead of 10s to log in, past all of them the oldest is closed to make room; 0: a quarter of the connection cap")
		rate        = fs.Int("rate", 0, "frames per second a connection may send, sustained (every frame but an ACK that advances); over it a SEND or GROUP is refused with RETRY_LATER and the wait, a SIGNAL dropped, and a connection that sends on far past it closed (RATE_LIMITED); 0: 1000")
		burst       = fs.Int("rate-burst", 0, "frames a connection may send at once beyond --rate (the token bucket's depth); 0: twice --rate")
		stopWait    = fs.Duration("shutdown-timeout", 0, "how long the gateway's stop may take (commits in flight, GOAWAYs, the engine) before it gives up on what hangs and logs it; closing the store then gets as long again; 0: 10s")
		gcPct       = fs.Int("gc-percent", 25, "Go GC target: garbage allowed before a collection, percent of the heap grown since start (connections, queues; not the storage arena); the GOGC environment variable, when set, wins and is used as is")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	// Most of the heap is long-lived connection state plus Badger's memtable
	// arena, which counts as live although its untouched pages cost no RSS.
	// Go's default (100%) would let garbage grow to the size of all that
	// before collecting, which shows up as hundreds of bytes of RSS per idle
	// connection. The target is 25%, and once the store is open the tuner
	// (gctune.go) applies it to the heap grown since, not to the arena
	// (docs/BENCHMARKS.md, "Server").
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(*gcPct)
	}

	keys, _, err := loadKeys(*data, true)
	if err != nil {
		return err
	}
	store, err := storage.Open(storage.Config{Dir: filepath.Join(*data, "mailboxes"), Logger: log, MessageTTL: *ttl, MinFreeBytes: *minFree, RelaxedDelay: *relaxed,
		MaxSenderPendingMessages: *senderMsgs, MaxSenderPendingBytes: *senderBytes})
	if err != nil {
		return err
	}
	router, err := delivery.New(delivery.Config{Shards: *shards, Window: *window, Logger: log}, store)
	if err != nil {
		store.Close()
		return err
	}
	srv, err := gateway.New(gateway.Config{
		Addr: *listen, Loops: *loops, Keys: keys, MaxConns: *maxConns, OutboundCap: *outCap, Logger: log,
		MaxPreLogin: *preLogin, RateLimit: *rate, RateBurst: *burst, ShutdownTimeout: *stopWait,
	}, router)
	if err != nil {
		store.Close()
		if *maxConns > 0 && errors.Is(err, gateway.ErrFileLimit) {
			err = fmt.Errorf("--max-conns %d: %w", *maxConns, err)
		}
		return err
	}
	router.Start()
	if os.Getenv("GOGC") == "" {
		tunerStop := make(chan struct{})
		defer close(tunerStop)
		tuneGC(*gcPct, tunerStop)
	}

	if *metrics != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", metricsHandler(srv, router, store))
		mux.Handle("/readyz", readyHandler(router, store))
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		hs := &http.Server{Addr: *metrics, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := hs.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics endpoint failed", "addr", *metrics, "err", err)
			}
		}()
		defer hs.Close()
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run() }()
	go func() {
		if addr, err := srv.Addr(ctx); err == nil {
			log.Info("switchboard serving", "addr", addr.String(), "data", *data, "metrics", *metrics)
		}
	}()

	select {
	case err := <-runErr:
		store.Close()
		if err == nil {
			err = errors.New("the network engine stopped on its own")
		}
		return err
	case <-ctx.Done():
	}
	log.Info("stopping: telling clients to reconnect later")
	timeout := *stopWait
	if timeout <= 0 {
		timeout = 10 * time.Second // gateway.Config.ShutdownTimeout's default
	}
	// Shutdown returns by its deadline whatever hangs; Run returns soon
	// after unless a loop hangs.
	srv.Drain()
	routerDone := make(chan struct{})
	go func() { router.Stop(); close(routerDone) }()
	select {
	case <-routerDone:
	case <-time.After(timeout * 3 / 4):
		log.Error("stopping: gave up waiting for the router to finish the commits in flight; their clients will resend")
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		log.Error("shutdown", "err", err)
	}
	select {
	case <-runErr:
	case <-time.After(time.Second):
		log.Error("stopping: gave up waiting for the network engine to return")
	}
	// The store is crash-safe: one that cannot close in time is left as a
	// crash would leave it, and the next start recovers it.
	closed := make(chan error, 1)
	go func() { closed <- store.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			return fmt.Errorf("closing storage: %w", err)
		}
	case <-time.After(timeout):
		return fmt.Errorf("closing storage: gave up after %v", timeout)
	}
	log.Info("stopped")
	return nil
}
