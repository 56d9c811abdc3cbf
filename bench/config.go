package bench

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"switchboard/client"
)

// Scenarios, in the order the help lists them.
var Scenarios = []string{"connect", "chat", "phone", "sweep", "overload", "group", "offline", "storm", "slow"}

// Config is one run as the command line describes it. The zero value of
// each field selects its default (see Defaults); Run fills them.
// NoBurst is Config.Burst for a connect run that sends nothing after its
// hold (0 is the default's, 10).
const NoBurst = -1

type Config struct {
	Scenario string

	// Addr is the servers, host:port, comma-separated: independent server
	// processes, each the home of an even share of the users (see
	// makePlan), or with ClusterNodes the nodes of one cluster, node 1
	// first. Default 127.0.0.1:7070 (make run's).
	Addr string
	// Metrics is each server's Prometheus endpoint, comma-separated in
	// Addr's order: a URL, or host:port for http://host:port/metrics; "-"
	// for none. Default http://127.0.0.1:9070/metrics (one server only).
	Metrics string
	// ClusterNodes, when above 0, says that Addr lists the client
	// addresses of the nodes of one cluster, node 1 first, and that there
	// are this many: every user then logs in to its home node (home.Of
	// over IDs 1..ClusterNodes), and a pair's two users, or a group's
	// members, may be homed on different nodes (Cross). 0: Addr lists
	// independent servers.
	ClusterNodes int
	// Cross is, with ClusterNodes, the share of units that span nodes,
	// 0..1, rounded to whole units: of pairs, those whose two users are
	// homed on different nodes (1 sends every message and receipt between
	// nodes, 0 none); of groups, those whose members are spread over
	// min(GroupSize, ClusterNodes) nodes, the others having all their
	// members on one node (see placeUnits). It must be 0 without
	// ClusterNodes. No default here (0 is a setting); the command's
	// --cross defaults to 1 in a cluster.
	Cross float64
	// Keys is each server's token keys file, comma-separated in Addr's
	// order, or one file for every server (their data folders hold copies
	// of it). Default data/keys (make run's data folder).
	Keys string
	// Noise is the transport (PROTOCOL.md 3.1): "" plain, NoiseXX ("xx":
	// every login a first contact) or NoiseIK ("ik": the server's key
	// known, one round trip). Logins over Noise use tokens bound to each
	// user's device key (noise.go).
	Noise string
	// NoiseKey is, with NoiseIK, the servers' Noise static public keys in
	// hex, comma-separated in Addr's order or one for all. "": each read
	// from the noise-keys file beside its Keys file (its data folder).
	NoiseKey string

	Conns       int           // connect, storm: connections. Default 1000.
	Pairs       int           // chat, phone, sweep, overload, offline, slow: pairs of users. Default 100; phone, sweep, overload: 1000.
	Groups      int           // group: groups. Default 10.
	GroupSize   int           // group: members per group. Default 10.
	Senders     int           // group: members of each group that send. Default 1.
	Rate        float64       // chat, phone, group, slow: messages per second, whole run; 0: closed loop (phone: invalid; no default: the command's flag defaults to 2000).
	Window      int           // closed loop: messages in flight per sender until delivered. Default 8.
	Size        int           // message body, bytes (at least 24). Default 100.
	Duration    time.Duration // chat, phone, group, slow, overload: how long to send (slow: each of its two phases; sweep: each step; overload: the overload phase). Default 10 s; slow: 60 s.
	ConnectRate float64       // new connections per second, whole run; 0: all at once. Default 1000.
	Warmup      time.Duration // chat, phone, group, sweep (each step): how long to send first, the same way, before the measured --duration; checked, not measured. 0 (the default): none.
	Hold        time.Duration // connect: idle time before memory is read, default 5 s; chat, phone, group: idle time between the logins and the traffic, memory read after it, 0 (the default): none.
	Burst       int           // connect: messages each connection sends after the hold. Default 10; NoBurst: none.
	Messages    int           // offline: messages per sender; storm: per connection before the drop. Default 100 (offline), 10 (storm).
	SlowShare   float64       // slow: share of receivers that stop reading, 0..1. Default 0.1.
	Drain       time.Duration // how long to wait for outstanding deliveries after sending. Default 30 s.

	// Rates is the sweep's offered rates in messages per second, whole
	// run, one phone run of Duration each, rising. Default 300, 1000,
	// 2000, 5000, 10000: from well below to past what a 2-core host holds
	// under 3 ms (docs/BENCHMARKS.md), so the knee falls inside. In the
	// overload run: the capacity probe's ladder, open loop for 2 s each
	// (default defaultProbeRates).
	Rates []float64
	// Capacity is the overload run's capacity in messages per second: it
	// offers twice this. 0: found by the probe (Rates).
	Capacity float64
	// P99 is the sweep's latency target: a step holds it when its
	// send-to-deliver p99 is below it and it kept up (SweepStep.KeptUp). Default 3 ms, the p99 goal of
	// docs/BENCHMARKS.md.
	P99 time.Duration
	// Arrivals is how the phone regime (phone, sweep) spaces the sends:
	// "even" (default: each sender on its own evenly spaced schedule, so
	// the latency tail is the server's, not the arrivals') or "poisson"
	// (the sends reach the server at random moments, at the same mean
	// rate, as phones' do: some come together and share a sync).
	Arrivals string

	PerProcess   int           // most connections per generator process; 0: from the open-file limit (at most 15,000).
	Procs        int           // generator processes; 0: as many as the connections need.
	Sources      []string      // source IPs, one per process; nil: 127.0.0.2, .3… when more than one process talks to a loopback server.
	Loops        int           // event loops per process; 0: one per core but one.
	UserBase     uint64        // first user id. Default: a fresh range per run above 10^9 (see setDefaults).
	ConnFrameCap int           // frames per second per connection. Default 500.
	Ping         time.Duration // keepalive interval asked of the server. Default 300 s.
	Retries      int           // failed logins retried per connection. Default 5.

	Params map[string]string // the flags as given, for the report
	Out    io.Writer         // progress and notes; nil: discarded
}

// Defaults of Config. Each says why.
const (
	// defaultPerProcessMax keeps one process's connections well under the
	// 20,000 open files a process gets here, and under the ~28,000 ports
	// one source address has towards one server.
	defaultPerProcessMax = 15000
	// fdReserve is the descriptors a process keeps for itself (epoll,
	// pipes, the metrics client, Go's runtime).
	fdReserve = 200
	// defaultConnFrameCap is half the server's default per-connection
	// limit (1000 frames/s): the server counts in its own seconds, so two
	// of ours can fall in one of its.
	defaultConnFrameCap = 500
)

func (c *Config) setDefaults() {
	defStr := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	defInt := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	defDur := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	defStr(&c.Addr, "127.0.0.1:7070")
	defStr(&c.Metrics, "http://127.0.0.1:9070/metrics")
	defStr(&c.Keys, "data/keys")
	defInt(&c.Conns, 1000)
	if c.Pairs == 0 {
		c.Pairs = 100
		if c.Scenario == "phone" || c.Scenario == "sweep" || c.Scenario == "overload" {
			// Many phones with little traffic each, as a capacity plan
			// has them: 2,000 connections.
			c.Pairs = 1000
		}
	}
	if c.Rates == nil {
		c.Rates = []float64{300, 1000, 2000, 5000, 10000}
		if c.Scenario == "overload" {
			c.Rates = defaultProbeRates
		}
	}
	defDur(&c.P99, 3*time.Millisecond)
	defStr(&c.Arrivals, "even")
	defInt(&c.Groups, 10)
	defInt(&c.GroupSize, 10)
	defInt(&c.Senders, 1)
	defInt(&c.Window, 8)
	defInt(&c.Size, 100)
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
		if c.Scenario == "slow" {
			// The server closes a reader whose window (256 entries) stayed
			// full for 30 s (delivery.Config.SlowAfter); at the default
			// 10 msg/s per receiver the window fills in 26 s: 60 s shows
			// the closes.
			c.Duration = 60 * time.Second
		}
	}
	if c.Scenario == "connect" {
		// connect is there to read idle memory, so it always holds.
		defDur(&c.Hold, 5*time.Second)
	}
	defInt(&c.Burst, 10)
	if c.Messages == 0 {
		c.Messages = 100
		if c.Scenario == "storm" {
			c.Messages = 10 // below the server's 256-entry window: they are held unacknowledged
		}
	}
	if c.SlowShare == 0 {
		c.SlowShare = 0.1
	}
	defDur(&c.Drain, 30*time.Second)
	if c.UserBase == 0 {
		// A fresh range each run, 1000 ids further every second: the
		// mailboxes of an earlier run's users may still hold its last
		// entries, and a user that logs in again from a new process (LOGIN
		// ack 0) after acknowledging more than a window (256) of entries
		// stalls on this server version until it is closed as a slow
		// consumer. Ids stay near 10^9: five varint bytes, as for real users.
		c.UserBase = 1_000_000_000 + uint64(time.Now().Unix()%1_000_000)*1000
	}
	defInt(&c.ConnFrameCap, defaultConnFrameCap)
	defDur(&c.Ping, 300*time.Second)
	defInt(&c.Retries, 5)
	if c.Out == nil {
		c.Out = io.Discard
	}
}

// ErrConfig is wrapped by Run's error when the Config cannot be run: a
// value out of range or an unknown scenario.
var ErrConfig = errors.New("bench: invalid configuration")

// validate reports every invalid value at once, wrapping ErrConfig.
func (c *Config) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	known := false
	for _, s := range Scenarios {
		known = known || s == c.Scenario
	}
	check(known, "unknown scenario %q (want one of %v)", c.Scenario, Scenarios)
	check(c.Conns >= 2, "--conns %d must be at least 2", c.Conns)
	check(c.Pairs >= 1, "--pairs %d must be at least 1", c.Pairs)
	check(c.Groups >= 1, "--groups %d must be at least 1", c.Groups)
	check(c.GroupSize >= 2 && c.GroupSize <= 1025, "--group-size %d must be in [2, 1025]", c.GroupSize)
	check(c.Senders >= 1 && c.Senders <= c.GroupSize, "--senders %d must be in [1, --group-size]", c.Senders)
	check(c.Rate >= 0, "--rate %v must not be negative", c.Rate)
	check(c.Window >= 1 && c.Window <= 256, "--window %d must be in [1, 256] (the server's window)", c.Window)
	check(c.Size >= bodyHeaderLen && c.Size <= 64<<10, "--size %d must be in [%d, 65536] bytes", c.Size, bodyHeaderLen)
	check(c.Noise == "" || c.Noise == NoiseXX || c.Noise == NoiseIK, "--noise %q: want xx or ik", c.Noise)
	check(c.NoiseKey == "" || c.Noise == NoiseIK, "--noise-key needs --noise ik")
	check(c.Noise == "" || c.Size <= client.MaxNoiseBody, "--size %d: at most %d bytes with --noise (a frame fits one transport message)", c.Size, client.MaxNoiseBody)
	check(c.Duration > 0, "--duration must be positive")
	check(c.Hold >= 0, "--hold must not be negative")
	switch c.Scenario {
	case "connect", "chat", "phone", "group":
	default:
		check(c.Hold == 0, "--hold: %s does not hold its connections idle (connect, chat, phone and group do)", c.Scenario)
	}
	check(c.Warmup >= 0, "--warmup must not be negative")
	switch c.Scenario {
	case "chat", "phone", "group", "sweep":
	default:
		check(c.Warmup == 0, "--warmup: %s has no warm-up (chat, phone, group and sweep do)", c.Scenario)
	}
	check(c.ConnectRate >= 0, "--connect-rate must not be negative")
	check(c.Burst >= NoBurst, "--burst must not be negative")
	check(c.Messages >= 1, "--messages must be at least 1")
	check(c.SlowShare > 0 && c.SlowShare < 1, "--slow-share %v must be in (0, 1)", c.SlowShare)
	check(c.PerProcess >= 0, "--per-process must not be negative")
	check(c.ConnFrameCap >= 10, "--conn-frame-cap must be at least 10")
	check(c.Ping >= 10*time.Second && c.Ping <= 600*time.Second, "--ping must be in [10s, 600s] (the server's bounds)")
	if c.Scenario == "storm" {
		check(c.Messages <= 200, "--messages %d must be at most 200 in storm: they wait unacknowledged within the server's 256-entry window", c.Messages)
	}
	if c.Scenario == "phone" {
		check(c.Rate > 0, "--rate %v: phone is open loop and needs a rate above 0 (msg/s)", c.Rate)
	}
	if c.Scenario == "sweep" || (c.Scenario == "overload" && c.Capacity == 0) {
		check(len(c.Rates) > 0, "--rates names no rate")
		for i, r := range c.Rates {
			check(r > 0, "--rates: %v must be above 0 (msg/s)", r)
			check(i == 0 || r > c.Rates[i-1], "--rates: %v after %v: the rates must rise", r, c.Rates[max(i-1, 0)])
		}
	}
	if c.Scenario == "sweep" {
		check(c.P99 > 0, "--p99 must be positive")
	}
	check(c.Arrivals == "even" || c.Arrivals == "poisson", "--arrivals %q: want even or poisson", c.Arrivals)
	check(c.Arrivals == "even" || c.Scenario == "phone" || c.Scenario == "sweep", "--arrivals %s: only phone and sweep send on a schedule of arrivals", c.Arrivals)
	check(c.Capacity >= 0, "--capacity %v must not be negative", c.Capacity)
	rate, flag := c.Rate, "--rate"
	switch {
	case c.Scenario == "sweep" && len(c.Rates) > 0:
		rate, flag = slices.Max(c.Rates), "the highest of --rates,"
	case c.Scenario == "overload" && c.Capacity > 0:
		rate, flag = overloadFactor*c.Capacity, "twice --capacity,"
	case c.Scenario == "overload" && len(c.Rates) > 0:
		// The probe may find the highest rate, and the run then offers twice it.
		rate, flag = overloadFactor*slices.Max(c.Rates), "twice the highest of --rates,"
	}
	if rate > 0 && (c.Scenario == "chat" || c.Scenario == "phone" || c.Scenario == "sweep" || c.Scenario == "overload" || c.Scenario == "group" || c.Scenario == "slow") {
		senders := c.senders()
		perConn := rate / float64(max(senders, 1))
		// Each message also draws about one ACK from its receiver.
		check(perConn*2 <= float64(c.ConnFrameCap), "%s %v over %d senders is %.0f msg/s per connection; with the ACKs that exceeds --conn-frame-cap %d: add pairs or lower the rate", flag, rate, senders, perConn, c.ConnFrameCap)
	}
	check(c.Cross >= 0 && c.Cross <= 1, "--cross %v must be in [0, 1]", c.Cross)
	if c.ClusterNodes != 0 {
		n := len(splitList(c.Addr))
		check(c.ClusterNodes == n, "--cluster-nodes %d, but --addr lists %d nodes: list every node's client address, node 1 first", c.ClusterNodes, n)
		check(c.ClusterNodes >= 1 && c.ClusterNodes <= maxClusterNodes, "--cluster-nodes %d must be in [0, %d]", c.ClusterNodes, maxClusterNodes)
		check(c.Cross == 0 || c.ClusterNodes >= 2, "--cross %v needs at least two nodes", c.Cross)
	} else {
		check(c.Cross == 0, "--cross %v needs --cluster-nodes: without it --addr lists independent servers, and no message crosses between them", c.Cross)
	}
	for _, s := range c.Sources {
		_, err := netip.ParseAddr(s)
		check(err == nil, "--sources: %q is not an IP address", s)
	}
	if _, err := c.targets(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
}

// target is one server of a run as the flags name it.
type target struct {
	addr    string // host:port
	metrics string // the endpoint's URL; "": not scraped
	keys    string // the keys file's path
}

// targets pairs the comma-separated lists of Addr, Metrics and Keys into
// one target per server, and reports every mismatch at once.
func (c *Config) targets() ([]target, error) {
	var errs []error
	addrs := splitList(c.Addr)
	if len(addrs) == 0 {
		return nil, errors.New("--addr names no server")
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		if seen[a] {
			// Twice the same server would put "two servers'" users on one
			// and report a spread the run did not have.
			errs = append(errs, fmt.Errorf("--addr lists %s twice", a))
		}
		seen[a] = true
	}
	var metrics []string
	if m := strings.TrimSpace(c.Metrics); m != "-" && m != "none" {
		metrics = splitList(m)
		if len(metrics) != len(addrs) {
			errs = append(errs, fmt.Errorf("--metrics lists %d endpoints for %d servers: give one per server in --addr's order, or \"-\" for none", len(metrics), len(addrs)))
		}
		for _, m := range metrics {
			if m == "-" || m == "none" {
				// A sum over some of the servers would pass for all of them.
				errs = append(errs, errors.New("--metrics: every server needs an endpoint, or \"-\" alone for none"))
				break
			}
		}
	}
	keys := splitList(c.Keys)
	if len(keys) != 1 && len(keys) != len(addrs) {
		errs = append(errs, fmt.Errorf("--keys lists %d files for %d servers: give one per server in --addr's order, or one for all", len(keys), len(addrs)))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	ts := make([]target, len(addrs))
	for i, a := range addrs {
		ts[i] = target{addr: a, keys: keys[min(i, len(keys)-1)]}
		if metrics != nil {
			ts[i].metrics = metricsURL(metrics[i])
		}
	}
	return ts, nil
}

// splitList splits a comma-separated flag value, dropping spaces and
// empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// metricsURL returns the URL of one metrics endpoint: host:port stands
// for http://host:port/metrics, the path `switchboard serve --metrics`
// serves.
func metricsURL(s string) string {
	if strings.Contains(s, "://") {
		return s
	}
	return "http://" + s + "/metrics"
}

// shape returns the run's units (pairs or groups) and connections per unit.
func (c *Config) shape() (units, size int) {
	switch c.Scenario {
	case "connect", "storm":
		return c.Conns / 2, 2
	case "group":
		return c.Groups, c.GroupSize
	}
	return c.Pairs, 2
}

// senders returns how many connections send in the main traffic phase.
func (c *Config) senders() int {
	units, size := c.shape()
	if c.Scenario == "group" {
		return units * c.Senders
	}
	return units * size
}

// plan is how the run is spread over processes and servers.
type plan struct {
	specs   []Spec
	local   bool       // one process: the coordinator runs the engine itself
	cluster *placement // with ClusterNodes: where every user is homed; nil: independent servers
}

// spanningUnits returns how many of the run's units (pairs, groups) span
// nodes: Cross of them, rounded.
func (c *Config) spanningUnits() int {
	units, _ := c.shape()
	return int(math.Round(c.Cross * float64(units)))
}

// makePlan spreads the units over processes of at most PerProcess
// connections each, every process on its own source address, and over
// the servers: the run's u-th unit (counted across processes) is homed
// on servers[u % len(servers)], so each server gets the same number of
// units, give or take one, and every process talks to every server. A
// unit's users all live on its server, as they live on one loop: the
// servers are independent, and a message only reaches users of the
// server it was sent to. In a cluster (ClusterNodes) the users are
// chosen by placeUnits instead, each on its home node; a unit still lives
// on one loop, whichever nodes its users are homed on.
func (c *Config) makePlan(servers []Target, runID uint64) (plan, error) {
	units, size := c.shape()
	per := c.PerProcess
	if per == 0 {
		per = defaultPerProcessMax
		var lim unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil {
			per = min(per, int(lim.Cur)-fdReserve)
		}
	}
	perUnits := per / size
	if perUnits < 1 {
		return plan{}, fmt.Errorf("a process may hold %d connections, fewer than one unit of %d", per, size)
	}
	procs := (units + perUnits - 1) / perUnits
	if c.Procs > procs {
		procs = min(c.Procs, units)
	}
	slow := 0
	if c.Scenario == "slow" {
		slow = max(1, int(math.Round(float64(units)*c.SlowShare)))
	}
	loopback4 := true
	for _, t := range servers {
		ap, err := resolve(t.Addr)
		if err != nil {
			return plan{}, err
		}
		loopback4 = loopback4 && ap.Addr().IsLoopback() && ap.Addr().Is4()
	}
	sources := c.Sources
	if len(sources) == 0 && procs > 1 && loopback4 {
		for i := 0; i < procs; i++ {
			sources = append(sources, fmt.Sprintf("127.0.0.%d", 2+i%250))
		}
	}
	p := plan{local: procs == 1}
	if c.ClusterNodes > 0 {
		cp, err := placeUnits(c.UserBase, units, size, c.spanningUnits(), len(servers))
		if err != nil {
			return plan{}, err
		}
		p.cluster = &cp
	}
	done, slowLeft := 0, slow
	for i := 0; i < procs; i++ {
		n := units / procs
		if i < units%procs {
			n++
		}
		s := Spec{
			Servers: servers, FirstUnit: done, RunID: runID,
			UserBase: c.UserBase + uint64(done*size),
			Units:    n, UnitSize: size, Size: c.Size, Loops: c.Loops, Senders: c.Senders,
			Weight:       float64(n) / float64(units),
			ConnFrameCap: c.ConnFrameCap, Retries: c.Retries, Ping: c.Ping, Noise: c.Noise,
			HandshakeTimeout: 10 * time.Second,
		}
		if len(sources) > 0 {
			s.Source = sources[i%len(sources)]
		}
		if p.cluster != nil {
			s.Users = p.cluster.users[done*size : (done+n)*size]
			s.Homes = p.cluster.homes[done*size : (done+n)*size]
		}
		// Spread the slow units like the others.
		s.Slow = min(slowLeft, (slow*(done+n)+units-1)/units-(slow-slowLeft))
		slowLeft -= s.Slow
		done += n
		p.specs = append(p.specs, s)
	}
	return p, nil
}
