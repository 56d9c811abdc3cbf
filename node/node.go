package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"switchboard/cluster"
	"switchboard/delivery"
	"switchboard/gateway"
	"switchboard/storage"
)

// ErrStopTimeout means Stop gave up on a step that did not finish within
// its deadline; the error and the log name it.
var ErrStopTimeout = errors.New("node: stop deadline passed")

// Node is a running Switchboard process: a store, a router and a gateway,
// and the admin listeners. Start makes one; Stop ends it.
type Node struct {
	// Immutable after Start.
	cfg  Config
	log  *slog.Logger
	srv  *gateway.Server
	addr net.Addr

	// parts are the store, the router and the cluster membership: replaced
	// only when a handover fails and the node takes its connections back
	// (handover.go).
	parts  atomic.Pointer[parts]
	handed atomic.Bool // a successor took the connections (HandedOver)
	// adminAddr is the admin listener's address (a net.Addr); unset: none.
	// Set again when a handover fails and the node listens once more.
	adminAddr atomic.Value
	// failed is why the node stopped itself after a handover failed past
	// the point of taking its connections back (handover.go); Err reports
	// it, so that the process exits with an error and its service manager
	// starts it again.
	failed atomic.Pointer[error]

	// life serialises the lifecycle's transitions: a handover and Stop.
	life    sync.Mutex
	admin   []*http.Server    // guarded by life: the admin and pprof listeners that serve
	handing *net.UnixListener // guarded by life: where a successor asks to take over; nil: none
	ps      *peers            // the cluster's peers, for a router made again; nil: alone

	runErr  chan error    // gateway.Run's result; sent once
	engDone chan struct{} // closed when Run has returned
	runMu   sync.Mutex
	ranErr  error // guarded by runMu; set before engDone closes

	health health

	stopOnce sync.Once
	stopErr  error
}

// Start validates cfg and brings the process up in order: it opens the
// store, starts the router, starts the gateway and waits until it listens,
// then the admin listeners. What fails unwinds what was started. cfg's
// gateway token keys are required.
func Start(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	if len(cfg.Gateway.Keys) == 0 {
		return nil, errors.New("node: no token keys: at least one is required to verify logins")
	}
	if cfg.Takeover {
		return takeOver(cfg) // it loads the Noise keys once a server answers
	}
	if err := cfg.noiseKeys(); err != nil {
		return nil, err
	}
	n, err := start(cfg, 0)
	if err != nil {
		return nil, err
	}
	if err := n.listenHandover(false); err != nil {
		n.unwind()
		return nil, err
	}
	return n, nil
}

// start brings the parts up (Start's doc). inherited is how many
// descriptors the process holds for connections it is about to adopt:
// they count as connections, not in the gateway's reserve for other files.
func start(cfg Config, inherited int) (*Node, error) {
	n := &Node{cfg: cfg, log: cfg.Logger, runErr: make(chan error, 1), engDone: make(chan struct{})}
	cfg.Gateway.Inherited = inherited
	open := storage.Open
	if cfg.Memory {
		open = storage.NewMemory
	}
	if err := checkHomes(cfg); err != nil {
		return nil, err
	}
	store, err := open(cfg.Storage)
	if err != nil {
		return nil, err
	}
	if err := recordHomes(cfg); err != nil {
		store.Close()
		return nil, err
	}
	router, err := delivery.New(cfg.Delivery, store)
	if err != nil {
		store.Close()
		return nil, err
	}
	var ps *peers
	if cfg.clustered() {
		ps = &peers{cfg: cfg.Cluster}
		router.Join(ps, 0)
		cfg.Gateway.HomeAddr = homeAddr(cfg.Cluster)
	}
	n.ps = ps
	p := &parts{store: store, router: router}
	n.parts.Store(p)
	srv, err := gateway.New(cfg.Gateway, router)
	if err != nil {
		store.Close()
		if cfg.Gateway.MaxConns > 0 && errors.Is(err, gateway.ErrFileLimit) {
			err = fmt.Errorf("--max-conns %d (gateway.max-conns): %w", cfg.Gateway.MaxConns, err)
		}
		return nil, err
	}
	n.srv = srv
	router.Start(srv)
	if ps != nil {
		// After the router started (FromPeer needs it), before clients
		// come: until the peers are up, SENDs to them are refused,
		// retryable.
		cl, err := ps.join(router.FromPeer)
		if err != nil {
			router.Stop()
			store.Close()
			return nil, fmt.Errorf("node: joining cluster %q as node %d: %w", cfg.Cluster.Name, cfg.Cluster.Self, err)
		}
		p.cluster = cl
	}
	go func() {
		err := srv.Run()
		n.runMu.Lock()
		n.ranErr = err
		n.runMu.Unlock()
		close(n.engDone)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Gateway.ShutdownTimeout)
	defer cancel()
	booted := make(chan error, 1)
	go func() { _, err := srv.Addr(ctx); booted <- err }()
	select {
	case err := <-booted:
		if err != nil {
			n.unwind()
			return nil, fmt.Errorf("node: the gateway did not listen within %v", cfg.Gateway.ShutdownTimeout)
		}
	case <-n.engDone:
		if p.cluster != nil {
			p.cluster.Close() // its NATS server and route ports, as Stop does
		}
		router.Stop()
		store.Close()
		if err := n.engineErr(); err != nil {
			return nil, err
		}
		return nil, errors.New("node: the gateway stopped before it listened")
	}
	n.addr, _ = srv.Addr(ctx)
	n.health.start(n)
	if err := n.serveAdmin(); err != nil {
		n.unwind()
		return nil, err
	}
	return n, nil
}

// unwind stops a node whose start failed after the gateway ran.
func (n *Node) unwind() {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Gateway.ShutdownTimeout)
	defer cancel()
	n.Stop(ctx)
}

// serveAdmin starts the admin listener (/healthz, /readyz, /backup and
// what AdminRoutes adds) and, when asked for, the pprof listener.
func (n *Node) serveAdmin() error {
	if n.cfg.Metrics != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", n.serveHealthz)
		mux.HandleFunc("/readyz", n.serveReadyz)
		mux.HandleFunc("GET /backup", n.serveBackup)
		if n.cfg.AdminRoutes != nil {
			n.cfg.AdminRoutes(n, mux)
		}
		addr, err := n.listen("metrics", n.cfg.Metrics, mux)
		if err != nil {
			return err
		}
		n.adminAddr.Store(addr)
	}
	if n.cfg.Pprof != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		if _, err := n.listen("pprof", n.cfg.Pprof, mux); err != nil {
			return err
		}
	}
	return nil
}

// listen serves h on addr; the listener is open when it returns.
func (n *Node) listen(what, addr string, h http.Handler) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("node: %s listener (--%s %s): %w", what, what, addr, err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	n.admin = append(n.admin, hs)
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("node: listener failed", "listener", what, "addr", addr, "err", err)
		}
	}()
	return ln.Addr(), nil
}

// Addr returns the address clients connect to.
func (n *Node) Addr() net.Addr { return n.addr }

// AdminAddr returns the admin listener's address, or nil when there is none.
func (n *Node) AdminAddr() net.Addr {
	a, _ := n.adminAddr.Load().(net.Addr)
	return a
}

// Config returns the configuration in force (defaults applied).
func (n *Node) Config() Config { return n.cfg }

// Store, Router and Gateway return the parts, for metrics and tests. The
// caller must not stop them: Stop does.
func (n *Node) Store() storage.Store     { return n.parts.Load().store }
func (n *Node) Router() *delivery.Router { return n.parts.Load().router }

// parts are what a node serves with besides its gateway.
type parts struct {
	store   storage.Store
	router  *delivery.Router
	cluster *cluster.Cluster // nil: a node alone
}

func (n *Node) Gateway() *gateway.Server { return n.srv }

// Cluster returns this node's cluster membership, nil for a node alone.
func (n *Node) Cluster() *cluster.Cluster { return n.parts.Load().cluster }

// Done is closed when the gateway's engine has stopped: after Stop, or on
// its own (Err then says why).
func (n *Node) Done() <-chan struct{} { return n.engDone }

// Err returns why the engine stopped on its own, once Done is closed and
// Stop was not called, or why the node stopped itself when a handover
// failed after its commit was due; nil otherwise.
func (n *Node) Err() error {
	select {
	case <-n.engDone:
	default:
		return nil
	}
	if err := n.failed.Load(); err != nil {
		return *err
	}
	if n.health.stopping.Load() {
		return nil
	}
	if err := n.engineErr(); err != nil {
		return err
	}
	return errors.New("node: the network engine stopped on its own")
}

func (n *Node) engineErr() error {
	n.runMu.Lock()
	defer n.runMu.Unlock()
	return n.ranErr
}

// Stop stops the process gracefully, in the reverse order of Start, each
// part by its own owner: the gateway drains (no new connections, no more
// frames read), the router finishes the commits in flight (their ACCEPTs
// are queued), the gateway writes what is queued and a GOAWAY to every
// connection and stops, then the store closes, then the admin listeners.
//
// The router gets three quarters of gateway.Config.ShutdownTimeout (or of
// what is left of ctx's deadline, if sooner), the gateway the rest, and the
// store as long again; a step that does not finish is logged and left (a
// store left open is recovered at the next start, as after a crash), and
// the error wraps ErrStopTimeout. Stop is idempotent: later calls wait for
// nothing and return the first call's result.
func (n *Node) Stop(ctx context.Context) error {
	n.life.Lock() // after a handover in progress, which may end the node itself
	defer n.life.Unlock()
	n.stopOnce.Do(func() { n.stopErr = n.stop(ctx) })
	return n.stopErr
}

func (n *Node) stop(ctx context.Context) error {
	n.health.stopping.Store(true)
	budget := n.cfg.Gateway.ShutdownTimeout
	deadline := time.Now().Add(budget)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	var errs []error
	gaveUp := func(step string) {
		n.log.Error("node: stop gave up waiting", "step", step)
		errs = append(errs, fmt.Errorf("%w: %s", ErrStopTimeout, step))
	}

	if n.handing != nil {
		n.handing.Close()
	}
	p := n.parts.Load()
	n.srv.Drain()
	if p.cluster != nil {
		// Before the router: no more SENDs from peers. What they had in
		// flight here is answered or times out there, and their clients
		// resend with flag B.
		if err := p.cluster.Close(); err != nil {
			errs = append(errs, fmt.Errorf("node: leaving the cluster: %w", err))
		}
	}
	routerDone := make(chan struct{})
	go func() { p.router.Stop(); close(routerDone) }()
	select {
	case <-routerDone:
	case <-time.After(time.Until(deadline) * 3 / 4):
		gaveUp("the router's commits in flight (their clients will resend)")
	}

	gctx, cancel := context.WithDeadline(context.Background(), deadline)
	if err := n.srv.Shutdown(gctx); err != nil {
		errs = append(errs, err)
	}
	cancel()
	select {
	case <-n.engDone:
	case <-time.After(time.Second):
		gaveUp("the network engine to return")
	}

	closed := make(chan error, 1)
	go func() { closed <- p.store.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			errs = append(errs, fmt.Errorf("node: closing storage: %w", err))
		}
	case <-time.After(budget):
		gaveUp("closing storage (the next start recovers it)")
	}
	n.health.stop()
	for _, hs := range n.admin {
		hs.Close()
	}
	return errors.Join(errs...)
}
