package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"switchboard/bench"
)

const benchUsage = `Usage: switchboard bench <scenario> [flags]

Load-generates against a running server, checks that every message is
delivered exactly once and in order per sender, and reports. The exit
status is non-zero when a message was lost, duplicated or reordered, or
when the run could not be carried out.

Scenarios:
  connect  ramp to --conns logged-in connections at --connect-rate, hold them
           idle for --hold, then send a --burst on each and drain it, receipts
           included: connect rate, login latency, server memory per
           connection (idle and after traffic)
  chat     --pairs pairs exchange --size-byte messages for --duration, open
           loop at --rate or closed loop (--rate 0) with --window: delivered/s,
           send-to-ack and send-to-deliver latency, wire bytes per message
  phone    the capacity planner's regime: --pairs pairs (default 1000) at --rate
           msg/s in all, both users of a pair sending, each on its own evenly
           spaced schedule (rate ÷ 2·pairs msg/s, senders staggered), never
           with two messages unaccepted: a message due while the previous one
           waits for its ACCEPT goes when the ACCEPT comes, timed from when it
           was due. Slots stop after --duration; owed messages may go out for
           --duration more, then count as unsent. Latency percentiles, server
           CPU and store syncs (fsyncs) per delivered message. With --hold
           (chat and group too), the connections stay idle that long first:
           login rate and server memory per idle connection as well
  sweep    phone runs at each of --rates for --duration each, over the same
           connections, a drain between: per step offered and delivered msg/s,
           server CPU per message, send-to-deliver p50/p99/p99.9, syncs per
           message, and whether p99 < --p99; then the highest rate that holds
           it (with every lower rate holding too). A step that fails the
           checks ends the sweep and fails it
  overload does the server keep delivering when offered twice its capacity?
           Finds the capacity (--capacity, or a probe: open loop at each of
           --rates for 2 s until one is not kept up), then offers twice it
           open loop for --duration from --pairs pairs (default 1000) whose
           clients back off as PROTOCOL.md 8.5 says (resend after
           retry_after with flag B, nothing new on the connection meanwhile).
           Passes when goodput (distinct messages delivered per second while
           offered) is at least 90% of the capacity and nothing accepted is
           lost, duplicated or reordered; reports busy refusals, resends and
           the retry_after distribution
  group    --groups groups of --group-size members, --senders of each send
           at --rate: deliveries/s, latency to the last member
  offline  fill the mailboxes of --pairs absent receivers with --messages
           each, then bring them back: drain time and rate
  storm    --conns connections drop and reconnect at once: time until all
           are logged in and drained, server memory before, at peak, after;
           fails unless every entry held before the drop comes again
  slow     chat twice: all reading (baseline), then with --slow-share of the
           receivers not reading: their closes, the others' latency

With the defaults, 'switchboard bench chat' runs against 'make run' on this
machine (server 127.0.0.1:7070, metrics 127.0.0.1:9070, keys in data/keys).
Past one process's open-file limit the connections are spread over worker
processes, each dialling from its own source address in 127.0.0.0/8.

Sizing a host: a phone run at one rate, or a sweep to find the rate that
holds a latency target (report.md then charts p99 and CPU per message
against the offered rate):

  switchboard bench phone --rate 5000 --duration 20s
  switchboard bench sweep --rates 300,1000,2000,5000,10000 --duration 20s --p99 3ms

Overload: whether the server still delivers at its capacity when offered
twice as much (the capacity is probed first unless given):

  switchboard bench overload --duration 10s
  switchboard bench overload --capacity 20000 --duration 10s

Several servers: one server process holds fewer connections than its
open-file limit (about 19,500 under a limit of 20,000), so to go past it
start independent servers, each with its own data folder and ports, and
list them all; pairs and groups are spread evenly over them (the u-th is
homed on server u mod N, all its users there) and memory and CPU are
summed over the servers. For 100,000 connections with a 20,000 limit:

  switchboard serve --data /tmp/s1 --listen 127.0.0.1:7071 --metrics 127.0.0.1:9071 &
  (and likewise /tmp/s2 … /tmp/s6 on ports 7072 … 7076 and 9072 … 9076)
  switchboard bench connect --conns 100000 \
      --addr 127.0.0.1:7071,127.0.0.1:7072,…,127.0.0.1:7076 \
      --metrics 127.0.0.1:9071,127.0.0.1:9072,…,127.0.0.1:9076 \
      --keys /tmp/s1/keys,/tmp/s2/keys,…,/tmp/s6/keys

(--keys may name one file when every data folder holds a copy of it.)

A cluster (docs/CLUSTER.md): --cluster-nodes N says that --addr lists the
client addresses of one cluster's N nodes, node 1 first; every user logs
in to its home node, and --cross sets the share of pairs whose two users
are homed on different nodes (default 1: every message and receipt crosses
between nodes; 0: none), or in group, the share of groups whose members
are spread over the nodes (member j of a group on node x+j mod N: each
spans min(--group-size, N) nodes; 0: each group's members on one node).
--metrics lists every node's admin address; CPU is summed over the nodes
and noted per node. Cross-node against same-node on 'make cluster':

  switchboard bench phone --rate 2000 --duration 15s --cluster-nodes 3 --cross 1 \
      --addr 127.0.0.1:7071,127.0.0.1:7072,127.0.0.1:7073 \
      --metrics 127.0.0.1:9071,127.0.0.1:9072,127.0.0.1:9073 --keys cluster-data/n1/keys

Encrypted: --noise xx or ik runs every scenario over the Noise transport
(PROTOCOL.md 3.1), with a device key per user and tokens bound to it; the
report names the transport and counts the handshakes by pattern. ik takes
the server's key from the noise-keys file beside --keys, or --noise-key:

  switchboard bench connect --conns 19000 --noise ik
  switchboard bench phone --rate 5000 --duration 20s --noise ik

Flags:
`

func benchCmd(args []string) error {
	if len(args) > 0 && args[0] == "--worker" {
		return bench.RunWorker(os.Stdin, os.Stdout)
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), benchUsage)
		fs.PrintDefaults()
	}
	var cfg bench.Config
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:7070", "server address, host:port; several independent servers: comma-separated, users spread evenly over them; with --cluster-nodes: every node of one cluster, node 1 first")
	fs.StringVar(&cfg.Metrics, "metrics", "http://127.0.0.1:9070/metrics", "server's Prometheus endpoint for its memory and CPU: a URL, or host:port for http://host:port/metrics; several servers: one per --addr, comma-separated, in the same order (figures are summed); \"-\": none")
	fs.StringVar(&cfg.Keys, "keys", "data/keys", "the server's token keys file (path): tokens are minted from its newest key; several servers: one per --addr, comma-separated, in the same order, or one file for all")
	fs.StringVar(&cfg.Noise, "noise", "", "the Noise transport (PROTOCOL.md 3.1): xx (every login a first contact, 1.5 round trips) or ik (the server's key known, one round trip); logins use tokens bound to each user's device key, derived per run; empty: plain")
	fs.StringVar(&cfg.NoiseKey, "noise-key", "", "with --noise ik: the server's Noise public key (hex, as switchboard noise-key prints it); several servers: one per --addr, comma-separated, or one for all; empty: read from the noise-keys file beside --keys")
	fs.IntVar(&cfg.ClusterNodes, "cluster-nodes", 0, "the number of nodes (count) of one cluster that --addr lists, node 1 first: each user logs in to its home node; 0: --addr lists independent servers")
	cross := fs.Float64("cross", 1, "with --cluster-nodes: share of pairs whose two users are homed on different nodes, or of groups whose members are spread over the nodes (fraction, 0..1, rounded to whole pairs or groups)")
	fs.IntVar(&cfg.Conns, "conns", 1000, "connect, storm: connections (count, even: they pair up)")
	fs.IntVar(&cfg.Pairs, "pairs", 0, "chat, phone, sweep, overload, offline, slow: pairs of users (count; 2 connections each); 0: 100, phone, sweep and overload 1000")
	fs.IntVar(&cfg.Groups, "groups", 10, "group: groups (count)")
	fs.IntVar(&cfg.GroupSize, "group-size", 10, "group: members per group (count, 2..1025)")
	fs.IntVar(&cfg.Senders, "senders", 1, "group: members of each group that send (count)")
	fs.Float64Var(&cfg.Rate, "rate", 2000, "chat, phone, group, slow: messages per second for the whole run (open loop); 0: closed loop with --window (not phone)")
	rates := fs.String("rates", "", "sweep: offered rates, messages per second for the whole run, comma-separated and rising; one phone run of --duration each (default 300,1000,2000,5000,10000). overload: the capacity probe's rates, open loop for 2 s each (default 5000,7500,…,25000,30000,35000,40000)")
	fs.Float64Var(&cfg.Capacity, "capacity", 0, "overload: the server's capacity (messages per second for the whole run); the run offers twice it; 0: probe it with --rates")
	fs.StringVar(&cfg.Arrivals, "arrivals", "even", "phone, sweep: how the sends are spaced: even (each sender on its own evenly spaced schedule: the latency tail is the server's) or poisson (at random moments at the same mean rate, as phones' sends reach a server)")
	fs.DurationVar(&cfg.P99, "p99", 3*time.Millisecond, "sweep: the latency target (duration): a step holds it when its send-to-deliver p99 is below it")
	fs.IntVar(&cfg.Window, "window", 8, "closed loop: messages each sender keeps in flight until delivered (count, 1..256)")
	fs.IntVar(&cfg.Size, "size", 100, "message body (bytes, 24..65536): a 24-byte header for the checks, then filler")
	fs.DurationVar(&cfg.Duration, "duration", 0, "chat, phone, group, slow, overload: how long to send (duration; sweep: each step; slow: each of its two phases; overload: the overloaded phase); 0: 10s, slow: 60s (a slow reader's window must fill, then stay full for the server's 30s slow-consumer timeout)")
	fs.Float64Var(&cfg.ConnectRate, "connect-rate", 1000, "new connections per second for the whole run; 0: all at once")
	fs.DurationVar(&cfg.Warmup, "warmup", 0, "chat, phone, group, sweep (each step): how long to send first, the same way, straight into the measured --duration (duration; 0: none). Its messages are checked with the rest; the rates, latencies, CPU and syncs are of --duration alone, so they show the server settled: serve tunes its Go processors to the load over about ten seconds")
	fs.DurationVar(&cfg.Hold, "hold", 0, "connect: how long the connections stay idle before the server's memory is read (duration; 0: 5s); chat, phone, group: how long the logged-in connections stay idle before the traffic, adding the login rate and the servers' memory per idle connection to the report (0: no hold)")
	fs.IntVar(&cfg.Burst, "burst", 10, "connect: messages each connection sends after the hold (count; 0: none)")
	fs.IntVar(&cfg.Messages, "messages", 0, "offline: messages per sender (default 100); storm: per connection before the drop (default 10, at most 200)")
	fs.Float64Var(&cfg.SlowShare, "slow-share", 0.1, "slow: share of receivers that stop reading (fraction, 0..1)")
	fs.DurationVar(&cfg.Drain, "drain", 30*time.Second, "how long to wait for outstanding deliveries once sending stops (duration); what is still missing then is lost")
	fs.IntVar(&cfg.PerProcess, "per-process", 0, "most connections per generator process (count); 0: the open-file limit minus a reserve, at most 15000")
	fs.IntVar(&cfg.Procs, "procs", 0, "generator processes (count); 0: as many as the connections need")
	sources := fs.String("sources", "", "source IP addresses, comma-separated, one per process; empty: 127.0.0.2, .3… when several processes dial a loopback server")
	fs.IntVar(&cfg.Loops, "loops", 0, "event loops per generator process (count); 0: one per core but one")
	fs.Uint64Var(&cfg.UserBase, "user-base", 0, "first user id the generator logs in as; the run uses the ids after it; 0: a fresh range above 10^9 per run (1000 ids further each second)")
	fs.IntVar(&cfg.ConnFrameCap, "conn-frame-cap", 500, "most frames per second one connection writes (count/s): half the server's rate limit")
	fs.DurationVar(&cfg.Ping, "ping", 300*time.Second, "keepalive interval asked of the server (duration, 10s..600s)")
	fs.IntVar(&cfg.Retries, "retries", 5, "failed logins retried per connection before the run fails (count): 5 spans a few seconds; a run across a server's restart needs more (scripts/takeover.sh uses 1000)")
	out := fs.String("out", "", "report folder (path) for report.md, result.json and the PNG charts; default bench-results/<scenario>-<time>; \"-\": none")
	asJSON := fs.Bool("json", false, "print the result as JSON on stdout instead of the table")
	cpuProfile := fs.String("cpuprofile", "", "write the generator's CPU profile (pprof) to this path (the coordinator process: all connections when there is one process)")

	scenario := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		scenario, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	if scenario == "" && fs.NArg() > 0 {
		scenario = fs.Arg(0)
	}
	if scenario == "" {
		fs.Usage()
		return usageError{errors.New("name a scenario")}
	}
	cfg.Scenario = scenario
	crossSet := false
	fs.Visit(func(f *flag.Flag) { crossSet = crossSet || f.Name == "cross" })
	if cfg.ClusterNodes > 0 || crossSet {
		// Without a cluster the default means nothing; given, it is an error.
		cfg.Cross = *cross
	}
	if *sources != "" {
		cfg.Sources = strings.Split(*sources, ",")
	}
	for _, f := range strings.Split(*rates, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return usageError{fmt.Errorf("--rates: %q is not a rate in messages per second", f)}
		}
		cfg.Rates = append(cfg.Rates, v)
	}
	cfg.Params = map[string]string{}
	fs.Visit(func(f *flag.Flag) { cfg.Params[f.Name] = f.Value.String() })
	if cfg.Burst == 0 { // the flag's default is 10: 0 was asked for (Params keeps "0")
		cfg.Burst = bench.NoBurst
	}
	if _, ok := cfg.Params["rate"]; ok && (scenario == "sweep" || scenario == "overload") {
		what := map[string]string{"sweep": "sweep offers each of --rates", "overload": "overload offers twice --capacity, or probes --rates for it"}[scenario]
		return usageError{fmt.Errorf("--rate is for chat, phone, group and slow: %s", what)}
	}
	if _, ok := cfg.Params["p99"]; ok && cfg.P99 <= 0 {
		return usageError{fmt.Errorf("--p99 %v: the latency target must be positive, a duration such as 10ms", cfg.P99)}
	}
	cfg.Out = os.Stderr

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, runErr := bench.Run(ctx, cfg)
	if res == nil {
		if errors.Is(runErr, bench.ErrConfig) {
			return usageError{runErr}
		}
		return runErr
	}
	if *asJSON {
		if err := bench.WriteJSON(os.Stdout, res); err != nil {
			return err
		}
	} else {
		bench.PrintSummary(os.Stdout, res)
	}
	dir := *out
	if dir == "" {
		dir = filepath.Join("bench-results", scenario+"-"+res.Started.Format("20060102-150405"))
	}
	if dir != "-" {
		if err := bench.WriteReport(dir, res); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench: report in %s\n", filepath.Join(dir, "report.md"))
	}
	if runErr != nil {
		return runErr
	}
	return failedRun(res)
}

// failedRun is the error a run ends with when it failed: how many failures
// it found, its losses, and the first failure in words, which need not be
// a loss (a goodput not held, a capacity not found). nil when it passed.
func failedRun(res *bench.Result) error {
	if res.Passed() {
		return nil
	}
	return fmt.Errorf("%d failures (lost %d, duplicated %d, reordered %d); the first: %s", res.FailureCount(), res.Lost, res.Duplicates, res.Reordered, res.Failures[0])
}
