package cluster

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
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
	}
	for _, n := range cfg.Nodes {
		if n.ID != cfg.Self {
			opts.Routes = append(opts.Routes, &url.URL{Scheme: "nats-route", Host: n.Route})
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("cluster: embedded NATS server: %w", err)
	}
	s.SetLoggerV2(natsLogger{log}, false, false, false)
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
// banners, routes coming and going) at Debug, warnings and errors as such.
type natsLogger struct{ log *slog.Logger }

func (l natsLogger) Noticef(format string, v ...any) {
	l.log.Debug("nats: " + fmt.Sprintf(format, v...))
}
func (l natsLogger) Warnf(format string, v ...any) { l.log.Warn("nats: " + fmt.Sprintf(format, v...)) }
func (l natsLogger) Fatalf(format string, v ...any) {
	l.log.Error("nats: " + fmt.Sprintf(format, v...))
}
func (l natsLogger) Errorf(format string, v ...any) {
	l.log.Error("nats: " + fmt.Sprintf(format, v...))
}
func (l natsLogger) Debugf(format string, v ...any) {}
func (l natsLogger) Tracef(format string, v ...any) {}
