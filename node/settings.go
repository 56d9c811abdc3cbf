package node

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Unit names the form a setting's value takes in a file, the environment
// and a flag.
type Unit string

// The units of settings.
const (
	UnitDuration Unit = "duration" // Go duration with an optional day suffix: 10s, 250ms, 720h, 30d
	UnitBytes    Unit = "bytes"    // a byte count, with an optional binary suffix: 4096, 256KiB, 64MiB, 16GiB
	UnitCount    Unit = "count"    // a whole number
	UnitRate     Unit = "per second"
	UnitBool     Unit = "bool"    // true or false
	UnitAddress  Unit = "address" // host:port; port 0 picks a free one
	UnitText     Unit = "text"
)

// A Setting is one value an operator may set. Its Key names it in a TOML
// file ("section.name", or "name" for the process's own), Flag on the
// command line (--name) and Env in the environment
// (SWITCHBOARD_NAME_IN_CAPITALS).
type Setting struct {
	Key, Flag, Env string
	Unit           Unit
	// Default says what an unset value means, in the setting's unit or in
	// words ("one per core").
	Default string
	// Usage says what the setting does and why its default is what it is.
	Usage string

	field string // the Go field, to name the setting in a package's errors
	get   func(*Config) string
	set   func(*Config, string) error
}

// Get returns the value of s in c, formatted in s's unit.
func (s Setting) Get(c *Config) string { return s.get(c) }

// Set parses v in s's unit and stores it in c.
func (s Setting) Set(c *Config, v string) error {
	if err := s.set(c, strings.TrimSpace(v)); err != nil {
		return fmt.Errorf("%s (--%s, %s): %w", s.Key, s.Flag, s.Env, err)
	}
	return nil
}

func setting(section, name, field string, unit Unit, def, usage string, get func(*Config) string, set func(*Config, string) error) Setting {
	key := name
	if section != "" {
		key = section + "." + name
	}
	return Setting{Key: key, Flag: name, Env: "SWITCHBOARD_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")),
		Unit: unit, Default: def, Usage: usage, field: field, get: get, set: set}
}

// numberErr says what is wrong with v as a whole number, in the
// setting's words rather than strconv's.
func numberErr(v string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, strconv.ErrRange):
		return fmt.Errorf("%s is out of range", v)
	}
	return fmt.Errorf("%q is not a whole number", v)
}

func durationSetting(section, name, field, def, usage string, p func(*Config) *time.Duration) Setting {
	return setting(section, name, field, UnitDuration, def, usage,
		func(c *Config) string { return formatDuration(*p(c)) },
		func(c *Config, v string) error {
			d, err := parseDuration(v)
			*p(c) = d
			return err
		})
}

func bytesSetting(section, name, field, def, usage string, p func(*Config) *int) Setting {
	return setting(section, name, field, UnitBytes, def, usage,
		func(c *Config) string { return formatSize(int64(*p(c))) },
		func(c *Config, v string) error {
			n, err := parseSize(v)
			if err == nil && (n > math.MaxInt32 || n < math.MinInt32) {
				err = fmt.Errorf("%s is out of range", v)
			}
			*p(c) = int(n)
			return err
		})
}

func bytes64Setting(section, name, field, def, usage string, p func(*Config) *int64) Setting {
	return setting(section, name, field, UnitBytes, def, usage,
		func(c *Config) string { return formatSize(*p(c)) },
		func(c *Config, v string) error {
			n, err := parseSize(v)
			*p(c) = n
			return err
		})
}

func intSetting(section, name, field string, unit Unit, def, usage string, p func(*Config) *int) Setting {
	return setting(section, name, field, unit, def, usage,
		func(c *Config) string { return strconv.Itoa(*p(c)) },
		func(c *Config, v string) error {
			n, err := strconv.Atoi(strings.ReplaceAll(v, "_", ""))
			*p(c) = n
			return numberErr(v, err)
		})
}

func int64Setting(section, name, field, def, usage string, p func(*Config) *int64) Setting {
	return setting(section, name, field, UnitCount, def, usage,
		func(c *Config) string { return strconv.FormatInt(*p(c), 10) },
		func(c *Config, v string) error {
			n, err := strconv.ParseInt(strings.ReplaceAll(v, "_", ""), 10, 64)
			*p(c) = n
			return numberErr(v, err)
		})
}

func boolSetting(section, name, field, def, usage string, p func(*Config) *bool) Setting {
	return setting(section, name, field, UnitBool, def, usage,
		func(c *Config) string { return strconv.FormatBool(*p(c)) },
		func(c *Config, v string) error {
			b, err := strconv.ParseBool(v)
			*p(c) = b
			if err != nil {
				return fmt.Errorf("%q is not true or false", v)
			}
			return nil
		})
}

func textSetting(section, name, field string, unit Unit, def, usage string, p func(*Config) *string) Setting {
	return setting(section, name, field, unit, def, usage,
		func(c *Config) string { return *p(c) },
		func(c *Config, v string) error { *p(c) = v; return nil })
}

// Sections of the file, in the order Print writes them.
var sections = []string{"", "storage", "delivery", "gateway", "cluster"}

// Settings returns every setting, grouped by section in file order. The
// table is the one source of the flags, the environment variables, the
// file keys, `serve --help` and docs/CONFIG.md.
func Settings() []Setting {
	return []Setting{
		textSetting("", "data", "Data", UnitText, "data", "data folder: the mailboxes (Badger, in data/mailboxes) and the token keys (data/keys), created on first run", func(c *Config) *string { return &c.Data }),
		textSetting("", "log", "LogLevel", UnitText, "info", "log level: debug, info, warn or error; nothing is logged per frame at info", func(c *Config) *string { return &c.LogLevel }),
		intSetting("", "gc-percent", "GCPercent", UnitCount, "25", "Go GC target: garbage allowed before a collection, percent of the heap grown since start (connections, queues; not the storage arena); most of the heap is long-lived, so Go's 100 would let garbage grow to its size; 0: leave the GC alone (Go's 100, unlike the zero of other settings); -1: no collection at all; the GOGC environment variable, when set, wins", func(c *Config) *int { return &c.GCPercent }),
		intSetting("", "procs", "Procs", UnitCount, "0", "Go processors (GOMAXPROCS) the server runs goroutines on; 0: as few as the load needs, between 1 and the cores, retuned every second (an idle processor costs a thread wake-up for most hand-offs between goroutines); N: exactly N; the GOMAXPROCS environment variable, when set, wins", func(c *Config) *int { return &c.Procs }),
		textSetting("", "metrics", "Metrics", UnitAddress, "127.0.0.1:9070", "admin listener: Prometheus /metrics, /healthz (alive), /readyz (503 with the reason while the store refuses writes or is recovering, a routing worker is down, the gateway is not accepting, or the server is stopping) and GET /backup (a consistent backup of the mailboxes, docs/OPERATIONS.md); keep it private: it serves every mailbox; empty: none", func(c *Config) *string { return &c.Metrics }),
		boolSetting("", "takeover", "Takeover", "false", "take over from the server running on the same data folder: its listener and every live connection, with each session's state, move to this process, and clients see a pause, never a disconnect (docs/OPERATIONS.md, \"Upgrading\"); the old process exits once this one serves", func(c *Config) *bool { return &c.Takeover }),
		durationSetting("", "handover-timeout", "HandoverTimeout", "30s", "how long a handover may take from the store's close to the successor's commit: past it the old process takes its connections back and serves on; the successor's store open and listen must fit", func(c *Config) *time.Duration { return &c.HandoverTimeout }),
		textSetting("", "pprof", "Pprof", UnitAddress, "none", "address serving /debug/pprof/ alone, only when set: profiling costs nothing until asked for and stays off the admin listener; keep it private", func(c *Config) *string { return &c.Pprof }),

		durationSetting("storage", "ttl", "MessageTTL", "30d", "how long a message waits for its recipient; a phone off for a month still finds its backlog, older than that the sender's copy is what counts", func(c *Config) *time.Duration { return &c.Storage.MessageTTL }),
		durationSetting("storage", "dedupe-window", "DedupeWindow", "48h", "how long a committed (sender, msg id, recipient) is remembered, so a retried SEND is not stored twice; covers a phone that lost the ACCEPT on Friday evening and retries on Sunday, for about 50 bytes of disk per message", func(c *Config) *time.Duration { return &c.Storage.DedupeWindow }),
		int64Setting("storage", "mailbox-max-messages", "MaxMailboxMessages", "100000", "entries waiting for one recipient; past it sends to them are refused (MAILBOX_FULL); a month offline in busy groups stays under it", func(c *Config) *int64 { return &c.Storage.MaxMailboxMessages }),
		bytes64Setting("storage", "mailbox-max-bytes", "MaxMailboxBytes", "64MiB", "value bytes waiting for one recipient: 100,000 text messages of ~600 bytes; one recipient cannot take more of the disk", func(c *Config) *int64 { return &c.Storage.MaxMailboxBytes }),
		bytes64Setting("storage", "store-max-bytes", "MaxTotalBytes", "16GiB", "value bytes waiting in all mailboxes together: a quarter of a 64 GiB volume, leaving room for key overhead (~60 bytes per entry) and up to 2x space amplification before compaction", func(c *Config) *int64 { return &c.Storage.MaxTotalBytes }),
		bytesSetting("storage", "max-value-bytes", "MaxValueBytes", "256KiB", "largest stored entry (a message's record: its body plus up to 41 bytes); well above the default body limit, below Badger's 1 MiB value threshold so values stay in the LSM; at most 512KiB", func(c *Config) *int { return &c.Storage.MaxValueBytes }),
		int64Setting("storage", "sender-max-messages", "MaxSenderPendingMessages", "100000", "message entries one sender may have waiting in other users' mailboxes (a group message counts per member); over it its sends are refused (QUOTA, retry_after 60 s) until recipients ack", func(c *Config) *int64 { return &c.Storage.MaxSenderPendingMessages }),
		bytes64Setting("storage", "sender-max-bytes", "MaxSenderPendingBytes", "256MiB", "bytes (as stored, decompressed) one sender may have waiting in other users' mailboxes: 1/64 of store-max-bytes, so it takes 64 senders at their cap to fill the store", func(c *Config) *int64 { return &c.Storage.MaxSenderPendingBytes }),
		intSetting("storage", "group-max-members", "MaxGroupMembers", UnitCount, "1024", "members of one group (WhatsApp's cap)", func(c *Config) *int { return &c.Storage.MaxGroupMembers }),
		intSetting("storage", "commit-queue", "QueueLen", UnitCount, "4096", "writes waiting for the committer, shared by all writers (a writer blocks while it is full): four full batches, ~1 MiB of queued headers", func(c *Config) *int { return &c.Storage.QueueLen }),
		intSetting("storage", "batch-max-ops", "MaxBatch", UnitCount, "1024", "writes in one group commit (appends, deleted entries, group changes): 1024 appends of 200 bytes are ~300 KiB and one fsync; a bigger batch only makes its first writer wait longer; at most 8192", func(c *Config) *int { return &c.Storage.MaxBatch }),
		bytesSetting("storage", "batch-max-bytes", "MaxBatchBytes", "512KiB", "value bytes in one group commit (one larger entry still commits, alone); only binds for large values; with batch-max-ops, max-value-bytes and group-max-members it must fit 15% of memtable-size", func(c *Config) *int { return &c.Storage.MaxBatchBytes }),
		intSetting("storage", "meta-cache-entries", "MetaCacheEntries", UnitCount, "65536", "recipients whose mailbox metadata the committer keeps cached, ~100 bytes each (~6 MiB): the active recipients of a host", func(c *Config) *int { return &c.Storage.MetaCacheEntries }),
		durationSetting("storage", "housekeeping-interval", "HousekeepingInterval", "1m", "period of the TTL sweep, compaction and value-log GC: disk space comes back within minutes of a drain, and an idle store does no work in between; negative: off", func(c *Config) *time.Duration { return &c.Storage.HousekeepingInterval }),
		bytes64Setting("storage", "min-free", "MinFreeBytes", "256MiB", "free disk space under the data folder below which new messages are refused (retryable STORAGE) while acks go on: what Badger may still write after the last accepted message (two memtables' logs, a flush and a compaction); negative: no floor", func(c *Config) *int64 { return &c.Storage.MinFreeBytes }),
		durationSetting("storage", "relaxed-delay", "RelaxedDelay", "10ms", "how long a receipt, committed, may wait to share a disk sync with a send before it is synced on its own (acks need no sync); at a few hundred messages a second a send comes every few ms, so receipts almost always ride on one; at most 1s; negative: no wait", func(c *Config) *time.Duration { return &c.Storage.RelaxedDelay }),
		durationSetting("storage", "sync-delay", "SyncDelay", "250µs", "how long a send may wait, from when it was queued, for other sends to share its disk sync: only while sends arrive more often than one per sync-delay, and only for as many as that rate puts inside it; at 5,000 msg/s it cut the syncs per message from 0.8 to 0.5 and the CPU per message by about a tenth, for 0.1 ms more at the median; at most 10ms; negative: no wait", func(c *Config) *time.Duration { return &c.Storage.SyncDelay }),
		durationSetting("storage", "spill-after", "SpillAfter", "5s", "how long a write stays in the in-flight tier (memory and its own log) before it is written into Badger: a message acknowledged sooner, with its receipt and both acks, never reaches Badger; the tier holds at most twice memtable-size, beyond which the oldest spill sooner; negative: at the end of each batch", func(c *Config) *time.Duration { return &c.Storage.SpillAfter }),
		bytes64Setting("storage", "memtable-size", "MemTableSize", "24MiB", "Badger's memtable (up to two in memory): 16 MiB is the smallest whose 15% transaction cap holds a full default batch; 24 MiB flushes a third less often, 4-8% less CPU per message, for ~20 MiB more RAM under load", func(c *Config) *int64 { return &c.Storage.MemTableSize }),

		intSetting("delivery", "shards", "Shards", UnitCount, "2 × cores", "routing workers; two per core, so one waiting on a storage read leaves the others busy", func(c *Config) *int { return &c.Delivery.Shards }),
		intSetting("delivery", "routing-queue", "QueueLen", UnitCount, "4096", "requests waiting for one routing worker; a full queue refuses (RETRY_LATER): about a tenth of a second of a busy worker's work", func(c *Config) *int { return &c.Delivery.QueueLen }),
		intSetting("delivery", "max-in-flight", "MaxInFlight", UnitCount, "8192", "appends and acks one routing worker has handed to storage and not seen completed; at the bound it stops taking requests: several group commits' worth, so storage always has a full batch", func(c *Config) *int { return &c.Delivery.MaxInFlight }),
		intSetting("delivery", "window", "Window", UnitCount, "256", "mailbox entries sent to a connection and not yet acknowledged: a phone acks well before that, and 256 small messages fill a mobile link for a second or more", func(c *Config) *int { return &c.Delivery.Window }),
		bytesSetting("delivery", "window-bytes", "WindowBytes", "128KiB", "record bytes sent to a connection since it last acknowledged everything (one larger entry still goes, alone); the protocol's figure; with the largest entry it must fit outbound-cap", func(c *Config) *int { return &c.Delivery.WindowBytes }),
		bytesSetting("delivery", "page-bytes", "PageBytes", "128KiB", "value bytes of one storage read when draining a backlog (one larger entry is still read); more than window-bytes is never used", func(c *Config) *int { return &c.Delivery.PageBytes }),
		durationSetting("delivery", "slow-after", "SlowAfter", "30s", "how long a connection's window may stay full before it is closed as a slow consumer: a full window of small messages crosses even a poor mobile link in a few seconds", func(c *Config) *time.Duration { return &c.Delivery.SlowAfter }),

		textSetting("gateway", "listen", "Addr", UnitAddress, "127.0.0.1:7070", "TCP address clients connect to", func(c *Config) *string { return &c.Gateway.Addr }),
		textSetting("gateway", "transport", "Transport", UnitText, "auto", "transports offered (PROTOCOL.md 3): plain, noise, both, or auto: both on a loopback listen address, noise alone on any other, so that nothing crosses a network in the clear unless plain or both is set explicitly; Noise's static keys are data/noise-keys, created on first run", func(c *Config) *string { return &c.Transport }),
		boolSetting("gateway", "noise-unbound-tokens", "NoiseUnboundTokens", "false", "let a Noise login use a token not bound to the device's key; by default only bound tokens log in over Noise, so a stolen token alone logs in nowhere (PROTOCOL.md 8.1)", func(c *Config) *bool { return &c.Gateway.NoiseUnboundTokens }),
		intSetting("gateway", "max-handshakes", "MaxHandshakes", UnitCount, "1024", "Noise handshake steps waiting for or running on a worker (about 0.4 ms of CPU each); past it a new handshake is refused with GOAWAY RETRY_LATER (one already started is finished), so a reconnect storm queues at most a second or two of work", func(c *Config) *int { return &c.Gateway.MaxHandshakes }),
		intSetting("gateway", "loops", "Loops", UnitCount, "one per core but one", "event loops (gnet), each serving its own connections and their timers; each waits for its sockets holding one of the Go processors, so the default leaves one processor to spare for the rest of the server (a goroutine that finds none waits for the Go runtime, up to 10 ms)", func(c *Config) *int { return &c.Gateway.Loops }),
		intSetting("gateway", "max-conns", "MaxConns", UnitCount, "0 (the open-file limit)", "connection cap; either way a connection is refused (SERVER_FULL) while open connections plus a reserve would pass the open-file limit (the files open besides connections, counted every second, plus fd-headroom and a quarter of them); a value above what the limit allows at start is an error", func(c *Config) *int { return &c.Gateway.MaxConns }),
		intSetting("gateway", "fd-headroom", "FDHeadroom", UnitCount, "64", "fixed part of the descriptors kept free beyond those open besides connections: what a small store may open between two counts, a second apart", func(c *Config) *int { return &c.Gateway.FDHeadroom }),
		durationSetting("gateway", "handshake-timeout", "HandshakeTimeout", "10s", "time to send the preface and a valid LOGIN: a slow mobile link's TCP and first round trips, with margin; at least 1s", func(c *Config) *time.Duration { return &c.Gateway.HandshakeTimeout }),
		durationSetting("gateway", "handshake-timeout-busy", "HandshakeTimeoutBusy", "3s", "handshake-timeout for a connection opened while over half of max-prelogin wait to log in: three round trips of a slow mobile link with margin; at most handshake-timeout", func(c *Config) *time.Duration { return &c.Gateway.HandshakeTimeoutBusy }),
		intSetting("gateway", "max-prelogin", "MaxPreLogin", UnitCount, "a quarter of the connection cap", "connections that have not logged in yet; past half of them new ones get handshake-timeout-busy, past all of them the oldest is closed to make room, so sockets that never log in hold at most a quarter of the slots", func(c *Config) *int { return &c.Gateway.MaxPreLogin }),
		durationSetting("gateway", "partial-frame-timeout", "PartialFrameTimeout", "10s", "how long a started frame may go without a new byte: a mobile link's stall between two cells, while a half-sent frame pins a read buffer; at least 1s", func(c *Config) *time.Duration { return &c.Gateway.PartialFrameTimeout }),
		intSetting("gateway", "partial-frame-min-rate", "PartialFrameMinRate", UnitRate, "512", "slowest a frame may arrive, bytes per second averaged from its first byte, after one partial-frame-timeout of grace: a largest frame may take 140 s, a 2G uplink is ten times faster", func(c *Config) *int { return &c.Gateway.PartialFrameMinRate }),
		durationSetting("gateway", "ping-default", "PingDefault", "2m", "ping interval granted when LOGIN asks for 0: NAT mappings on mobile networks outlive it, and a phone's radio wakes rarely", func(c *Config) *time.Duration { return &c.Gateway.PingDefault }),
		durationSetting("gateway", "ping-min", "PingMin", "10s", "shortest ping interval a client may ask for", func(c *Config) *time.Duration { return &c.Gateway.PingMin }),
		durationSetting("gateway", "ping-max", "PingMax", "10m", "longest ping interval a client may ask for; at most 1h", func(c *Config) *time.Duration { return &c.Gateway.PingMax }),
		bytesSetting("gateway", "max-frame", "MaxFrame", "65KiB", "largest frame accepted from a client, compressed or decompressed (announced in WELCOME): max-body plus room for the ids in front of it; at most 256KiB, and at most 65,455 bytes (the default then) when Noise is offered, so that every frame fits one transport message", func(c *Config) *int { return &c.Gateway.MaxFrame }),
		bytesSetting("gateway", "max-body", "MaxBody", "64KiB", "largest message body accepted (BODY_TOO_LARGE over it): chat text, keys and thumbnails; media goes by reference; 1 KiB below max-frame when that is lower (64,431 bytes when Noise is offered); a SEND of it must fit max-frame, its record max-value-bytes, a window of them outbound-cap", func(c *Config) *int { return &c.Gateway.MaxBody }),
		bytesSetting("gateway", "outbound-cap", "OutboundCap", "256KiB", "unsent bytes per connection before a slow reader is closed (SLOW_CONSUMER; its messages stay stored): a full window-bytes of entries plus one largest entry, with room to spare; at least 4KiB", func(c *Config) *int { return &c.Gateway.OutboundCap }),
		intSetting("gateway", "rate", "RateLimit", UnitRate, "1000", "frames a connection may send per second, sustained (every frame but an ACK that advances); over it a SEND or GROUP is refused with RETRY_LATER and the wait, a SIGNAL dropped, and one that sends on far past it is closed (RATE_LIMITED): far above a person or a phone's one-in-flight sender, low enough that one connection cannot starve a loop; above 1000000: no limit", func(c *Config) *int { return &c.Gateway.RateLimit }),
		intSetting("gateway", "rate-burst", "RateBurst", UnitCount, "2 × rate", "frames a connection may send at once beyond rate (the token bucket's depth): a reconnect resends a window of SENDs plus its pipelined traffic without a refusal; at most 600 × rate", func(c *Config) *int { return &c.Gateway.RateBurst }),
		boolSetting("gateway", "no-compression", "DisableCompression", "false", "do not offer the compression dictionary at login; every frame then goes uncompressed", func(c *Config) *bool { return &c.Gateway.DisableCompression }),
		durationSetting("gateway", "goaway-after", "GoAwayAfter", "2s", "shortest reconnect window told to clients in the GOAWAY at shutdown: each reconnects after a random delay in [0, window]; goaway-rate makes it longer with more connections; at most 10m", func(c *Config) *time.Duration { return &c.Gateway.GoAwayAfter }),
		intSetting("gateway", "goaway-rate", "GoAwayRate", UnitRate, "10000", "logins per second the shutdown GOAWAY's reconnect window is sized to: the window is the open connections divided by it (a million take 100 s), at least goaway-after and at most 10m, so the clients of a stopped server come back no faster than a host of 2 cores accepts plain logins (13,000 a second or more); a Noise handshake costs ten times as much: set it lower where clients use Noise", func(c *Config) *int { return &c.Gateway.GoAwayRate }),
		durationSetting("gateway", "shutdown-timeout", "ShutdownTimeout", "10s", "how long a graceful stop may take: the router's commits in flight get three quarters of it, the GOAWAYs and the engine the rest, and closing the store as long again; only reached when something hangs, and within an orchestrator's 30 s grace", func(c *Config) *time.Duration { return &c.Gateway.ShutdownTimeout }),
		textSetting("cluster", "cluster-name", "Name", UnitText, "none: a node alone", "the cluster's name, the same on every node (letters, digits, - and _); set it, with cluster-node and cluster-nodes, to make this process one node of a cluster (docs/CLUSTER.md)", func(c *Config) *string { return &c.Cluster.Name }),
		setting("cluster", "cluster-node", "Self", UnitCount, "none", "this node's id in cluster-nodes",
			func(c *Config) string { return strconv.FormatUint(uint64(c.Cluster.Self), 10) },
			func(c *Config, v string) error {
				n, err := strconv.ParseUint(v, 10, 32)
				c.Cluster.Self = uint32(n)
				return err
			}),
		setting("cluster", "cluster-nodes", "Nodes", UnitText, "none", "every node of the cluster, the same list on every node: id=client/route/nats, comma separated, where client is the address its clients dial (logins of users homed there are redirected to it), route its NATS cluster listener and nats its NATS client listener",
			func(c *Config) string { return formatNodes(c.Cluster.Nodes) },
			func(c *Config, v string) (err error) { c.Cluster.Nodes, err = parseNodes(v); return err }),
		durationSetting("cluster", "cluster-heartbeat", "Heartbeat", "250ms", "how often this node announces itself to the others; each node hears every other's, so a cluster of N nodes delivers N² heartbeats per interval: lengthen it past a few dozen nodes on a small host", func(c *Config) *time.Duration { return &c.Cluster.Heartbeat }),
		durationSetting("cluster", "cluster-down-after", "DownAfter", "2s, or 8 × cluster-heartbeat when longer", "how long a node may go unheard (no heartbeat nor payload) before the others take it down and refuse sends to its users, retryably: the time to notice a dead node; at least twice cluster-heartbeat", func(c *Config) *time.Duration { return &c.Cluster.DownAfter }),
		textSetting("cluster", "cluster-nats", "External", UnitText, "none: NATS embedded", "URLs of an existing NATS cluster to join as a client (nats://host:port,…) instead of embedding a NATS server; route and nats in cluster-nodes are then unused", func(c *Config) *string { return &c.Cluster.External }),
	}
}

// annotate names the setting in each of a package's validation errors,
// which name the Go field ("gateway: OutboundCap 100 must be ...").
func annotate(section string, err error) error {
	if err == nil {
		return nil
	}
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	settings := Settings()
	out := make([]error, 0, len(list))
	for _, e := range list {
		msg := e.Error()
		var names []string
		said := msg
		for _, s := range settings {
			if re := fieldRE(s.field); strings.HasPrefix(s.Key, section+".") && re.MatchString(msg) {
				names = append(names, fmt.Sprintf("%s (--%s)", s.Key, s.Flag))
				said = re.ReplaceAllLiteralString(said, "--"+s.Flag)
			}
		}
		if len(names) > 0 {
			// In the words of the command line: the flags, not the Go
			// fields, and without the package's prefix.
			said = strings.TrimPrefix(said, section+": ")
			said = strings.TrimPrefix(said, "invalid config: ")
			e = annotated{msg: strings.Join(names, ", ") + ": " + said, err: e}
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

// annotated is a package's validation error said in settings' terms.
type annotated struct {
	msg string
	err error
}

func (a annotated) Error() string { return a.msg }
func (a annotated) Unwrap() error { return a.err }

// fieldRE matches a Go field name as a word.
func fieldRE(field string) *regexp.Regexp {
	return regexp.MustCompile(`\b` + regexp.QuoteMeta(field) + `\b`)
}

// sizeUnits are the binary suffixes of a byte count, largest first.
var sizeUnits = []struct {
	name  string
	shift uint
}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}}

// parseSize parses a byte count: digits (underscores allowed), optionally
// followed by B, KiB, MiB, GiB or TiB (also K, M, G, T, KB, MB, GB, TB,
// all binary). A leading minus is allowed (some settings give it a meaning).
func parseSize(s string) (int64, error) {
	t := strings.ReplaceAll(strings.TrimSpace(s), "_", "")
	i := 0
	if i < len(t) && (t[i] == '-' || t[i] == '+') {
		i++
	}
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	num, suffix := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a byte count (e.g. 4096, 256KiB, 64MiB)", s)
	}
	var shift uint
	switch suffix {
	case "", "b":
	case "k", "kb", "kib":
		shift = 10
	case "m", "mb", "mib":
		shift = 20
	case "g", "gb", "gib":
		shift = 30
	case "t", "tb", "tib":
		shift = 40
	default:
		return 0, fmt.Errorf("%q: unknown unit %q (use B, KiB, MiB, GiB or TiB)", s, t[i:])
	}
	if n > math.MaxInt64>>shift || n < math.MinInt64>>shift {
		return 0, fmt.Errorf("%q is out of range", s)
	}
	return n << shift, nil
}

// formatSize writes n in the largest binary unit that holds it exactly.
func formatSize(n int64) string {
	if n != 0 {
		for _, u := range sizeUnits {
			if m := n >> u.shift; m<<u.shift == n {
				return strconv.FormatInt(m, 10) + u.name
			}
		}
	}
	return strconv.FormatInt(n, 10)
}

// ParseDuration parses a duration as the settings take it: a Go duration,
// or a whole number of days ("30d"), for commands whose flags take one too.
func ParseDuration(s string) (time.Duration, error) { return parseDuration(s) }

// parseDuration parses a Go duration, or a whole number of days ("30d").
func parseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n > math.MaxInt64/int64(24*time.Hour) || n < math.MinInt64/int64(24*time.Hour) {
			return 0, fmt.Errorf("%q is not a duration (e.g. 250ms, 10s, 2m, 720h, 30d)", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (e.g. 250ms, 10s, 2m, 720h, 30d)", s)
	}
	return d, nil
}

// formatDuration writes d the way parseDuration reads it, whole days as
// "30d" and without Go's trailing zero units ("2m", not "2m0s").
func formatDuration(d time.Duration) string {
	if d != 0 && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
