package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/spf13/pflag"

	"switchboard/node"
)

func serve(args []string) error {
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, by main
	node.Flags(fs)
	printConfig := fs.Bool("print-config", false, "print the configuration in force as a TOML file (what --config reads) and exit")
	fs.Usage = func() { serveUsage(os.Stdout) }
	if err := fs.Parse(longFlags(args)); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return errHelp
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	cfg, err := node.Load(fs, os.Environ())
	if err != nil {
		return usageError{err}
	}
	if err := cfg.Validate(); err != nil {
		return usageError{fmt.Errorf("invalid configuration:\n%w", err)}
	}
	if *printConfig {
		return node.Print(os.Stdout, cfg)
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.Level()}))
	cfg.Logger = log
	// Most of the heap is long-lived connection state plus Badger's memtable
	// arena, which counts as live although its untouched pages cost no RSS.
	// Go's default (100%) would let garbage grow to the size of all that
	// before collecting, which shows up as hundreds of bytes of RSS per idle
	// connection. The target is 25%, and once the store is open the tuner
	// (gctune.go) applies it to the heap grown since, not to the arena
	// (docs/BENCHMARKS.md, "Server").
	tuneGCNow := os.Getenv("GOGC") == "" && cfg.GCPercent != 0
	if tuneGCNow {
		debug.SetGCPercent(cfg.GCPercent)
	}

	// Processors: fixed before the gateway sizes its event loops and
	// workers by them; tuned once it has (procs.go).
	procsSet := os.Getenv("GOMAXPROCS") != ""
	if !procsSet && cfg.Procs > 0 {
		runtime.GOMAXPROCS(cfg.Procs)
	}
	tuneProcsNow := !procsSet && cfg.Procs == 0

	// A takeover creates nothing: the server it takes over from made the
	// token keys when it first started (and a folder without them has had
	// no server).
	keys, _, err := loadKeys(cfg.Data, !cfg.Takeover)
	if cfg.Takeover && errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("--takeover: no server to take over from: %s has no token keys, which a server makes when it first starts", cfg.Data)
	}
	if err != nil {
		return err
	}
	cfg.Gateway.Keys = keys
	cfg.AdminRoutes = func(n *node.Node, mux *http.ServeMux) {
		mux.Handle("/metrics", metricsHandler(n))
	}
	// Signals are caught before the start, which can take a while (the
	// in-flight log's replay): a stop asked for meanwhile is graceful once
	// serving, and an upgrade comes after it. SIGHUP (a closed terminal)
	// stops as SIGTERM does.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	usr2 := make(chan os.Signal, 1)
	signal.Notify(usr2, syscall.SIGUSR2)
	defer signal.Stop(usr2)
	n, err := node.Start(cfg)
	if err != nil {
		return err
	}
	tunerStop := make(chan struct{})
	defer close(tunerStop)
	if tuneGCNow {
		tuneGC(cfg.GCPercent, n.Gateway().Stats().Logins.Load, tunerStop)
	}
	if tuneProcsNow {
		tuneProcs(log, cfg.Gateway.WithDefaults().Loops, tunerStop)
	}
	admin := ""
	if a := n.AdminAddr(); a != nil {
		admin = a.String()
	}
	transport := "plain"
	switch nz, plain := cfg.Transports(); {
	case nz && plain:
		transport = "noise and plain"
	case nz:
		transport = "noise"
	}
	log.Info("switchboard serving", "addr", n.Addr().String(), "transport", transport, "data", cfg.Data, "metrics", admin, "pprof", cfg.Pprof)

	up := newUpgrader(log)
	for {
		select {
		case <-usr2:
			up.start()
			continue
		case <-n.Done():
			err := n.Err()
			n.Stop(context.Background())
			if err == nil && n.HandedOver() {
				if pid := up.handedTo(); pid != 0 {
					if err := notifyMainPID(pid); err != nil {
						log.Error("upgrade: telling the service manager the successor's pid", "pid", pid, "err", err)
					}
				}
				log.Info("handed over; exiting")
			}
			return err
		case <-ctx.Done():
		}
		break
	}
	log.Info("stopping: telling clients to reconnect later")
	if err := n.Stop(context.Background()); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// serveUsage writes serve's help: how settings are read, then every one.
func serveUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: switchboard serve [flags]

Runs the server. Every setting comes from, lowest to highest precedence: its
default, a TOML file (--config FILE or SWITCHBOARD_CONFIG), an environment
variable (SWITCHBOARD_ and the flag's name in capitals, - as _), a flag.
Durations: 250ms, 10s, 2m, 720h, 30d. Bytes: 4096, 256KiB, 64MiB, 16GiB.
docs/CONFIG.md explains each setting and the limits that must agree.

  --config file
        TOML file of settings (see --print-config) (SWITCHBOARD_CONFIG)
  --print-config
        print the configuration in force as a TOML file (what --config reads)
        and exit
  -h, --help
        this help
`)
	node.Usage(w)
}

// longFlags turns the single-dash long flags Go's flag package accepts
// (-data dir, -log=debug) into the double-dash ones serve's parser reads,
// so older command lines keep working. A negative number is left alone.
func longFlags(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "--" {
			copy(out[i:], args[i:])
			break
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' && (a[1] >= 'a' && a[1] <= 'z') {
			a = "-" + a
		}
		out[i] = a
	}
	return out
}

// errHelp is returned by a subcommand that printed its help as asked.
var errHelp = errors.New("help requested")

// usageError is a command line or configuration the subcommand cannot
// run with: main exits 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }
