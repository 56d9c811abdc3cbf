package cluster

import (
	"fmt"
	"net/url"

	"github.com/nats-io/nats-server/v2/server"
)

// NATSOptions configures a standalone NATS server started by StartNATS.
type NATSOptions struct {
	// Name is the NATS cluster's name; routes join only servers of the same
	// name. Required when Route is set.
	Name string
	// Client is the host:port of the client listener (what Config.External
	// names). Required.
	Client string
	// Route is the host:port of the route listener; empty: no routes.
	Route string
	// Advertise is the route address this server announces to the others;
	// empty: Route. A test that puts a proxy in front of Route names the
	// proxy here, so that no server dials around it.
	Advertise string
	// Routes are the host:port route addresses this server dials and keeps
	// redialling (every second) while they do not answer.
	Routes []string
}

// StartNATS starts a NATS server in this process, tuned as the embedded one
// (route pings every 500 ms, 3 unanswered; the same write deadline and
// pending limit), to stand for an external NATS cluster (Config.External).
// It is for tests and tools: a node embeds its own server otherwise. stop
// shuts it down and waits until it is gone; its ports are then free again.
func StartNATS(o NATSOptions) (stop func(), err error) {
	host, port, err := splitPort(o.Client)
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName:    "nats-" + o.Client,
		Host:          host,
		Port:          port,
		NoSigs:        true,
		NoLog:         true,
		PingInterval:  clientPing,
		MaxPingsOut:   clientMaxPingsOut,
		WriteDeadline: writeDeadline,
		MaxPending:    maxPending,
	}
	if o.Route != "" {
		rhost, rport, err := splitPort(o.Route)
		if err != nil {
			return nil, err
		}
		opts.Cluster = server.ClusterOpts{
			Name:          o.Name,
			Host:          rhost,
			Port:          rport,
			Advertise:     o.Advertise,
			NoAdvertise:   true,
			PoolSize:      -1,
			PingInterval:  routePing,
			MaxPingsOut:   routeMaxPingsOut,
			WriteDeadline: writeDeadline,
		}
		for _, r := range o.Routes {
			opts.Routes = append(opts.Routes, &url.URL{Scheme: "nats-route", Host: r})
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("cluster: NATS server: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(readyTimeout) {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, fmt.Errorf("cluster: NATS server not listening on %s after %v", o.Client, readyTimeout)
	}
	return func() { s.Shutdown(); s.WaitForShutdown() }, nil
}
