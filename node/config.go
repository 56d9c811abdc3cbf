package node

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"switchboard/cluster"
	"switchboard/delivery"
	"switchboard/gateway"
	"switchboard/noise"
	"switchboard/storage"
	"switchboard/token"
)

// Config configures a whole Switchboard process. The packages' configs are
// held as they are, and keep their meaning: a zero field selects that
// package's default. Default returns the process's own defaults; Load
// reads a Config from a file, the environment and flags.
type Config struct {
	// Data is the data folder: the mailboxes (Badger, in Data/mailboxes,
	// unless Storage.Dir is set) and, for cmd/switchboard, the keys file.
	// Required unless Memory.
	Data string
	// Memory keeps the mailboxes in memory (storage.NewMemory) instead of
	// Badger: nothing survives Stop. For tests and for measuring the rest
	// of the path without the store's cost; not a setting of serve, which
	// must never accept a message it can lose.
	Memory bool
	// LogLevel is the lowest level logged: debug, info, warn or error.
	// Empty means info. Read by whoever builds Logger.
	LogLevel string
	// GCPercent is the Go GC target applied by cmd/switchboard (a
	// GOGC environment variable wins). 0 leaves the GC as it is.
	GCPercent int
	// Procs is the number of Go processors (GOMAXPROCS) cmd/switchboard
	// runs on (a GOMAXPROCS environment variable wins). 0 lets it tune
	// them to the load, between one and the cores.
	Procs int
	// Metrics is the address (host:port) of the admin listener: /metrics
	// (added through AdminRoutes), /healthz, /readyz and /backup. Empty:
	// none. Keep it private: /backup serves every mailbox.
	Metrics string
	// Transport names the transports offered: "plain", "noise", "both",
	// or "auto" (also ""): both on a loopback Gateway.Addr, Noise alone on
	// any other. With Noise, Gateway.NoiseKeys are required by Start
	// (cmd/switchboard loads them from Data/noise-keys).
	Transport string
	// Pprof is the address (host:port) of a listener serving only
	// /debug/pprof/. Empty: none. It is never on the admin listener, so
	// profiling stays off unless asked for.
	Pprof string
	// Takeover makes Start take over from the process serving on Data
	// instead of starting afresh (handover.go).
	Takeover bool
	// HandoverTimeout bounds a handover from the old process's store close
	// to the successor's commit; past it the old process takes its
	// connections back. 0: 30 s.
	HandoverTimeout time.Duration

	Storage  storage.Config
	Delivery delivery.Config
	Gateway  gateway.Config
	// Cluster, when its Name is set, makes this process one node of a
	// cluster (docs/CLUSTER.md): mailboxes homed on other nodes are reached
	// through them, and logins of their users are redirected there. Its
	// Logger defaults to Logger. Zero: a node alone, as always.
	Cluster cluster.Config

	// Logger is given to each package whose config has none. Nil:
	// slog.Default().
	Logger *slog.Logger
	// AdminRoutes, when set, is called by Start once the parts exist and
	// before the admin listener serves, to add handlers such as /metrics.
	AdminRoutes func(n *Node, mux *http.ServeMux)
}

// Default returns the process's defaults: data in ./data, logs at info, a
// GC target of 25%, the admin listener on 127.0.0.1:9070, no pprof. The
// packages' configs are zero: their own defaults.
func Default() Config {
	return Config{Data: "data", LogLevel: "info", GCPercent: 25, Metrics: "127.0.0.1:9070"}
}

// WithDefaults returns c with every package's defaults applied, the
// mailboxes folder derived from Data, and Logger handed down: the
// configuration in force.
func (c Config) WithDefaults() Config {
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.HandoverTimeout <= 0 {
		c.HandoverTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Storage.Dir == "" && c.Data != "" {
		c.Storage.Dir = filepath.Join(c.Data, "mailboxes")
	}
	if c.Storage.Logger == nil {
		c.Storage.Logger = c.Logger
	}
	if c.Delivery.Logger == nil {
		c.Delivery.Logger = c.Logger
	}
	if c.Gateway.Logger == nil {
		c.Gateway.Logger = c.Logger
	}
	if c.Cluster.Heartbeat == 0 {
		c.Cluster.Heartbeat = cluster.DefaultHeartbeat
	}
	if c.Cluster.DownAfter == 0 {
		c.Cluster.DownAfter = cluster.DownAfterFor(c.Cluster.Heartbeat)
	}
	if c.clustered() && c.Cluster.Logger == nil {
		c.Cluster.Logger = c.Logger
	}
	if c.clustered() && c.Cluster.Keys == nil {
		c.Cluster.Keys = c.Gateway.Keys // nodes prove the shared token keys to each other's NATS
	}
	if c.Transport == "" {
		c.Transport = TransportAuto
	}
	noise, plain := c.Transports()
	c.Gateway.RefusePlain = noise && !plain
	if noise && c.Gateway.MaxFrame == 0 {
		c.Gateway.MaxFrame = gateway.NoiseMaxFrame // every frame fits one transport message
	}
	c.Storage = c.Storage.WithDefaults()
	c.Delivery = c.Delivery.WithDefaults()
	c.Gateway = c.Gateway.WithDefaults()
	return c
}

// Transports.
const (
	TransportAuto  = "auto"
	TransportPlain = "plain"
	TransportNoise = "noise"
	TransportBoth  = "both"
)

// Transports reports which transports c offers: auto means both on a
// loopback listen address and Noise alone on any other.
func (c Config) Transports() (noise, plain bool) {
	switch c.Transport {
	case TransportPlain:
		return false, true
	case TransportNoise:
		return true, false
	case TransportBoth:
		return true, true
	}
	addr := c.Gateway.Addr
	if addr == "" {
		addr = gateway.Config{}.WithDefaults().Addr
	}
	return true, loopbackAddr(addr)
}

// noiseKeys fills Gateway.NoiseKeys when c offers Noise and has none: the
// static keys file in Data (noise.KeysFileName), created on the first
// run, or with no data folder (Memory) a key of this process alone. It
// clears them when c does not offer Noise.
func (c *Config) noiseKeys() error {
	noiseOn, _ := c.Transports()
	switch {
	case !noiseOn:
		c.Gateway.NoiseKeys = nil
	case len(c.Gateway.NoiseKeys) > 0:
	case c.Data != "":
		keys, err := noise.LoadKeys(filepath.Join(c.Data, noise.KeysFileName), true)
		if err != nil {
			return err
		}
		c.Gateway.NoiseKeys = keys
	default:
		k, err := noise.NewKeypair(nil)
		if err != nil {
			return err
		}
		c.Gateway.NoiseKeys = []noise.Keypair{k}
	}
	return nil
}

// loopbackAddr reports whether addr (host:port) listens on loopback only.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// placeholderKeys stand in for the token keys while checking settings:
// keys come from the data folder, not from configuration, and New checks
// that there are some.
var placeholderKeys = token.Keys{1: make([]byte, token.SecretLen)}

// placeholderNoiseKeys stand in for the Noise static keys likewise.
var placeholderNoiseKeys = []noise.Keypair{{}}

// Validate applies the defaults, runs every package's checks and the
// checks across packages (crosscheck.go), and reports every problem at
// once, each naming its setting (the file key and the flag). It does not
// require token keys (they are not configuration; Start does) nor check
// the open-file limit (gateway.New does, with the store open).
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	if c.Data == "" && c.Storage.Dir == "" && !c.Memory {
		errs = append(errs, errors.New("data (--data): a data folder is required"))
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, fmt.Errorf("log (--log): %w", err))
	}
	if c.GCPercent < -1 {
		errs = append(errs, fmt.Errorf("gc-percent (--gc-percent) %d must be positive, 0 (leave the GC alone) or -1 (off)", c.GCPercent))
	}
	if c.Procs < 0 {
		errs = append(errs, fmt.Errorf("procs (--procs) %d must be positive, or 0 (as many as the load needs, up to the cores)", c.Procs))
	}
	g := c.Gateway
	if len(g.Keys) == 0 {
		g.Keys = placeholderKeys
	}
	switch c.Transport {
	case TransportAuto, TransportPlain, TransportNoise, TransportBoth:
	default:
		errs = append(errs, fmt.Errorf("gateway.transport (--transport) %q: want plain, noise, both or auto", c.Transport))
	}
	if noise, _ := c.Transports(); noise && len(g.NoiseKeys) == 0 {
		g.NoiseKeys = placeholderNoiseKeys
	}
	errs = append(errs, annotate("storage", c.Storage.Validate()))
	errs = append(errs, annotate("delivery", c.Delivery.Validate()))
	errs = append(errs, annotate("gateway", g.Validate()))
	if c.clustered() {
		errs = append(errs, annotate("cluster", c.Cluster.Validate()))
		if c.Memory {
			errs = append(errs, errors.New("cluster: a node of a cluster keeps its mailboxes on disk (Memory is for tests of a node alone)"))
		}
	} else if c.Cluster.Self != 0 || len(c.Cluster.Nodes) > 0 || c.Cluster.External != "" {
		// A node whose name was lost (an environment variable not passed)
		// would otherwise start alone and serve every user's mailbox.
		errs = append(errs, errors.New("cluster: cluster-node, cluster-nodes or cluster-nats given without cluster-name: set cluster-name (--cluster-name) to make this process a node of that cluster, or remove them to run alone"))
	}
	errs = append(errs, crossCheck(c)...)
	return errors.Join(errs...)
}

// parseLevel parses a log level name.
func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("%q is not a log level (debug, info, warn or error)", s)
	}
	return l, nil
}

// Level returns the log level LogLevel names (info when empty or invalid;
// Validate reports an invalid one).
func (c Config) Level() slog.Level {
	l, err := parseLevel(c.LogLevel)
	if err != nil || c.LogLevel == "" {
		return slog.LevelInfo
	}
	return l
}
