package cluster

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// The embedded server's tuning. NATS's defaults suit long-haul clusters of
// many clients: a route ping every 2 minutes and a silent server swept
// after 150 s. A Switchboard cluster is a few nodes on one network that must
// notice a dead peer in about 2 s.
const (
	// routePing and routeMaxPingsOut: a route that stops answering is
	// closed after about 3 × 500 ms, so the server's own view of a dead peer
	// agrees with the heartbeats' DefaultDownAfter.
	routePing        = 500 * time.Millisecond
	routeMaxPingsOut = 3
	// clientPing and clientMaxPingsOut: the node's own client, on loopback;
	// a stuck one is closed after about 2 s.
	clientPing        = time.Second
	clientMaxPingsOut = 2
	// writeDeadline is how long one write to a route or a client may
	// block. Long enough for a burst to drain on a busy 2-core host (the
	// 500,000-message test), short enough that a hung peer is cut well
	// before NATS's default 10 s.
	writeDeadline = 5 * time.Second
	// maxPending is the most bytes the server buffers for one connection
	// (route or client) before cutting it as a slow consumer: twice NATS's
	// 64 MiB default, so that a burst of 500,000 small payloads (about
	// 40 MiB on the wire) fits at once. It bounds memory per connection, and
	// a node has one route per peer and one client.
	maxPending = 128 << 20
	// readyTimeout bounds how long Start waits for the embedded server's
	// listeners.
	readyTimeout = 5 * time.Second
)

// newServer configures and starts the embedded NATS server: a client
// listener on self.NATS (TCP, never DontListen, which silently stops
// clustering: nats-server#5174), a route listener on self.Route, and an
// explicit route to every other node.
func newServer(cfg Config, self NodeAddr, log *slog.Logger) (*server.Server, error) {
	host, port, err := splitPort(self.NATS)
	if err != nil {
		return nil, err
	}
	rhost, rport, err := splitPort(self.Route)
	if err != nil {
		return nil, err
	}
	// NATS reports a listener it could not open only by never becoming
	// ready: find out first, and say which.
	for _, l := range []struct{ what, addr string }{{"nats", self.NATS}, {"route", self.Route}} {
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			return nil, fmt.Errorf("cluster: node %d's %s address %s: %w (is node %d already running on this host?)", cfg.Self, l.what, l.addr, err, cfg.Self)
		}
		ln.Close()
	}
	opts := &server.Options{
		ServerName:    fmt.Sprintf("%s-%d", cfg.Name, cfg.Self),
		Host:          host,
		Port:          port,
		NoSigs:        true,
		PingInterval:  clientPing,
		MaxPingsOut:   clientMaxPingsOut,
		WriteDeadline: writeDeadline,
		MaxPending:    maxPending,
		Cluster: server.ClusterOpts{
			Name:          cfg.Name,
			Host:          rhost,
			Port:          rport,
			NoAdvertise:   true, // clients talk to their own node only
			PoolSize:      -1,   // one route per peer: a few nodes, one account
			PingInterval:  routePing,
			MaxPingsOut:   routeMaxPingsOut,
			WriteDeadline: writeDeadline,
		},
		CustomClientAuthentication: keyAuth{name: cfg.Name, keys: cfg.Keys},
		CustomRouterAuthentication: keyAuth{name: cfg.Name, keys: cfg.Keys},
	}
	for _, n := range cfg.Nodes {
		if n.ID != cfg.Self {
			opts.Routes = append(opts.Routes, cfg.routeURL(n.Route))
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("cluster: embedded NATS server: %w", err)
	}
	s.SetLoggerV2(&natsLogger{log: log}, false, false, false)
	s.Start()
	if !s.ReadyForConnections(readyTimeout) {
		s.Shutdown()
		return nil, fmt.Errorf("cluster: embedded NATS server not listening on %s and %s after %v", self.NATS, self.Route, readyTimeout)
	}
	return s, nil
}

// splitPort splits a validated host:port.
func splitPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("cluster: address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	return host, port, err
}

// natsLogger passes the embedded server's log to slog: its notices (startup
// banners, routes coming and going) at Debug, warnings and errors as such,
// but for two kinds of error. A failed dial of a route is a peer down or
// not started yet, which the cluster's own "node down" line says: Debug. A
// connection refused for lacking the token keys is said in the cluster's
// words, at most once per authSayEvery (NATS retries each route every
// second).
type natsLogger struct {
	log      *slog.Logger
	authSaid atomic.Int64 // time.Now().UnixNano() of the last key-mismatch line
}

// authSayEvery spaces the key-mismatch lines of one node.
const authSayEvery = 30 * time.Second

func (l *natsLogger) Noticef(format string, v ...any) {
	l.log.Debug("nats: " + fmt.Sprintf(format, v...))
}
func (l *natsLogger) Warnf(format string, v ...any) { l.log.Warn("nats: " + fmt.Sprintf(format, v...)) }
func (l *natsLogger) Fatalf(format string, v ...any) {
	l.log.Error("nats: " + fmt.Sprintf(format, v...))
}
func (l *natsLogger) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	switch {
	case strings.Contains(msg, "Error trying to connect to route"):
		l.log.Debug("nats: " + msg)
	case strings.Contains(msg, "authentication error") || strings.Contains(msg, "Authorization Violation"):
		now, last := time.Now().UnixNano(), l.authSaid.Load()
		if now-last < int64(authSayEvery) || !l.authSaid.CompareAndSwap(last, now) {
			l.log.Debug("nats: " + msg)
			return
		}
		l.log.Error("cluster: NATS refused a connection that does not prove this node's token keys and cluster name: a node with another keys file (copy one keys file to every node) or another cluster-name, or not a node at all; repeats are logged at debug for "+authSayEvery.String(), "nats", msg)
	default:
		l.log.Error("nats: " + msg)
	}
}
func (l *natsLogger) Debugf(format string, v ...any) {}
func (l *natsLogger) Tracef(format string, v ...any) {}
