package main

import (
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"switchboard/cluster"
	"switchboard/delivery"
	"switchboard/gateway"
	"switchboard/node"
	"switchboard/protocol"
	"switchboard/storage"
)

// Every field of gateway.Stats, gateway.Gauges, gateway.SlowConsumers,
// delivery.Stats, delivery.Gauges, storage.Stats and cluster.Stats is
// exported here; TestEveryStatExported fails when one is not.
// docs/METRICS.md lists them with what an operator does when they move.

// metricsHandler exposes the counters and gauges of every component of n,
// and the process's own (RSS, CPU, descriptors), in Prometheus' format.
func metricsHandler(n *node.Node) http.Handler {
	srv, r, st, cfg := n.Gateway(), n.Router(), n.Store(), n.Config().Storage
	reg := newMetrics(metricSources{
		gateway:       srv.Stats(),
		gatewayGauges: srv.Gauges,
		slow:          srv.SlowConsumers,
		conns:         srv.Conns,
		router:        r.Stats(),
		routerGauges:  r.Gauges,
		acceptLatency: r.AcceptLatency,
		store:         st.Stats,
		ready:         n.Ready,
		commitCap:     cfg.QueueLen,
		storeMax:      cfg.MaxTotalBytes,
		disk:          func() (int64, int64, error) { return storage.DiskSpace(cfg.Dir) },
		cluster: func() cluster.Stats {
			if c := n.Cluster(); c != nil {
				return c.Stats()
			}
			return cluster.Stats{}
		},
	})
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(collectors.NewGoCollector())
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// metricSources is what the metrics read: a running node's parts, or a
// test's fakes. Each function may be called from any goroutine.
type metricSources struct {
	gateway       *gateway.Stats
	gatewayGauges func() gateway.Gauges
	slow          func() gateway.SlowConsumers
	conns         func() int
	router        *delivery.Stats
	routerGauges  func() delivery.Gauges
	acceptLatency func() delivery.Latency // nil: not exported
	store         func() storage.Stats
	ready         func() error
	commitCap     int   // storage.Config.QueueLen (--commit-queue)
	storeMax      int64 // storage.Config.MaxTotalBytes (--store-max-bytes)
	// disk returns the free bytes and the size of the file system of the
	// store's folder; an error leaves both out of the scrape.
	disk func() (free, size int64, err error)
	// cluster returns the cluster transport's counters; nil: a node alone,
	// whose cluster series are zero.
	cluster func() cluster.Stats
}

// statValue registers one series read from a component's Stats at each
// scrape.
func statValue[S any](reg *prometheus.Registry, stats func() S, name, help string, kind prometheus.ValueType, get func(S) float64) {
	desc := prometheus.NewDesc(name, help, nil, nil)
	reg.MustRegister(collectorFunc{desc: desc, collect: func(ch chan<- prometheus.Metric) {
		ch <- prometheus.MustNewConstMetric(desc, kind, get(stats()))
	}})
}

// newMetrics returns a registry of the metrics read from src. No metric
// has a per-user label: labels are a close reason, a slow-consumer cause,
// a connection state, or a worker's index (at most --shards).
func newMetrics(src metricSources) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	counter := func(name, help string, v *atomic.Uint64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(v.Load()) }))
	}
	gauge := func(name, help string, get func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, get))
	}

	// The gateway.
	gs := src.gateway
	gauge("switchboard_connections", "Open client connections.", func() float64 { return float64(src.conns()) })
	gauge("switchboard_connection_cap", "Connections accepted now: --max-conns, or fewer when the open-file limit minus the reserve for other files is lower.", func() float64 { return float64(gs.ConnCap.Load()) })
	gauge("switchboard_fd_reserve", "Descriptors kept for everything but connections: those open besides connections when last counted, plus --fd-headroom and a quarter more; the connection cap is the open-file limit minus this.", func() float64 { return float64(gs.FDReserve.Load()) })
	counter("switchboard_connections_accepted_total", "Connections opened.", &gs.Accepted)
	counter("switchboard_connections_refused_total", "Connections refused at the cap or while stopping.", &gs.Refused)
	counter("switchboard_logins_total", "Successful logins.", &gs.Logins)
	counter("switchboard_frames_in_total", "Frames received.", &gs.FramesIn)
	counter("switchboard_frames_out_total", "Frames sent.", &gs.FramesOut)
	counter("switchboard_bytes_out_total", "Bytes written to connections.", &gs.BytesOut)
	counter("switchboard_frames_over_rate_total", "Frames over a connection's rate limit (--rate, --rate-burst): SENDs and GROUPs refused with RETRY_LATER, SIGNALs dropped, others served.", &gs.OverRate)
	counter("switchboard_prelogin_evicted_total", "Connections closed before login to make room for a newer one (--max-prelogin).", &gs.PreLoginEvicted)
	counter("switchboard_panics_total", "Panics while handling one connection.", &gs.Panics)
	counter("switchboard_noise_handshakes_total", "Noise handshakes completed.", &gs.Handshakes)
	counter("switchboard_noise_handshakes_failed_total", "Noise handshakes that failed: a message that did not verify.", &gs.HandshakesFailed)
	counter("switchboard_noise_handshakes_refused_total", "Noise handshakes refused with GOAWAY RETRY_LATER at --max-handshakes.", &gs.HandshakesRefused)
	counter("switchboard_connections_adopted_total", "Connections this process adopted from the one it took over from (or took back after a failed handover).", &gs.Adopted)
	counter("switchboard_noise_frames_too_large_total", "Frames too large for one Noise transport message; the connection was closed.", &gs.NoiseFrameTooLarge)
	counter("switchboard_wake_errors_total", "Wakes of an event loop for pushed frames that failed because the engine was stopping.", &gs.WakeErrors)
	closes := prometheus.NewDesc("switchboard_closes_total", "Connections closed, by reason.", []string{"reason"}, nil)
	reg.MustRegister(collectorFunc{desc: closes, collect: func(ch chan<- prometheus.Metric) {
		for code := range gs.Closes {
			n := gs.Closes[code].Load()
			reason := "peer"
			if code > 0 {
				reason = protocol.Code(code).String()
			}
			// Every reason a connection can be closed with is served from
			// the start, at 0, so that a rate over it reads 0, not "no
			// data", on a server that has not closed one yet.
			if n == 0 && code > 0 && (!protocol.Code(code).Fatal() || strings.HasPrefix(reason, "CODE_")) {
				continue
			}
			ch <- prometheus.MustNewConstMetric(closes, prometheus.CounterValue, float64(n), reason)
		}
	}})
	byState := prometheus.NewDesc("switchboard_connections_by_state", "Open connections by state: pre_login (no LOGIN verified yet), logged_in, closing (asked to close by the router or an over-full queue, not yet closed by its loop).", []string{"state"}, nil)
	reg.MustRegister(collectorFunc{desc: byState, collect: func(ch chan<- prometheus.Metric) {
		g := src.gatewayGauges()
		ch <- prometheus.MustNewConstMetric(byState, prometheus.GaugeValue, float64(g.PreLogin), "pre_login")
		ch <- prometheus.MustNewConstMetric(byState, prometheus.GaugeValue, float64(g.LoggedIn), "logged_in")
		ch <- prometheus.MustNewConstMetric(byState, prometheus.GaugeValue, float64(g.Closing), "closing")
	}})
	gauge("switchboard_draining", "1 once the gateway is stopping: no new connections, no frames read, GOAWAY to every connection.", func() float64 {
		if src.gatewayGauges().Draining {
			return 1
		}
		return 0
	})
	gauge("switchboard_outbound_queued_bytes", "Bytes pushed to connections that their event loops have not yet taken to write, summed over connections (each is capped by --outbound-cap).", func() float64 { return float64(src.gatewayGauges().OutboundBytes) })
	slow := prometheus.NewDesc("switchboard_slow_consumers_total", "Connections closed as slow consumers (SLOW_CONSUMER), by cause: window (no ACK reopened its flow window within --slow-after), outbound_cap (more pushed than its queue's --outbound-cap between two writes), write_buffer (written bytes the socket did not take passed --outbound-cap: the client does not read).", []string{"cause"}, nil)
	reg.MustRegister(collectorFunc{desc: slow, collect: func(ch chan<- prometheus.Metric) {
		s := src.slow()
		ch <- prometheus.MustNewConstMetric(slow, prometheus.CounterValue, float64(src.router.SlowConsumers.Load()), "window")
		ch <- prometheus.MustNewConstMetric(slow, prometheus.CounterValue, float64(s.OutboundCap), "outbound_cap")
		ch <- prometheus.MustNewConstMetric(slow, prometheus.CounterValue, float64(s.WriteBuffer), "write_buffer")
	}})

	// The router.
	rs := src.router
	counter("switchboard_sends_total", "SEND requests taken by the router.", &rs.Sends)
	counter("switchboard_accepted_total", "Sends made durable and acknowledged.", &rs.Accepted)
	counter("switchboard_duplicates_total", "Retried sends acknowledged without a second copy.", &rs.Duplicates)
	counter("switchboard_refused_total", "Sends refused after storage failed or a mailbox was full.", &rs.Refused)
	counter("switchboard_busy_total", "Requests refused because a routing queue was full.", &rs.Busy)
	counter("switchboard_delivered_live_total", "Entries pushed as soon as they were committed.", &rs.DeliveredLive)
	counter("switchboard_delivered_stored_total", "Entries pushed from storage (backlog, window refill).", &rs.DeliveredStored)
	counter("switchboard_acks_total", "Cumulative acknowledgements applied.", &rs.Acks)
	counter("switchboard_receipts_total", "Receipt entries stored.", &rs.Receipts)
	counter("switchboard_receipts_held_total", "Times delivered receipts waited for room in their sender's routing queue.", &rs.ReceiptsHeld)
	counter("switchboard_receipts_dropped_total", "Receipts put off because their sender's routing queue stayed full past the hold limit; they stay pending in storage and are offered again.", &rs.ReceiptsDropped)
	counter("switchboard_receipts_refused_total", "Receipt entries the store refused (sender's mailbox full, storage recovering); delivered ones stay pending and are offered again.", &rs.ReceiptsRefused)
	counter("switchboard_receipts_replayed_total", "Pending receipts offered again from storage (at start, or after some were put off).", &rs.ReceiptsReplayed)
	counter("switchboard_reads_dropped_total", "Read receipts lost because the sender's and the reader's routing queues were full.", &rs.ReadsDropped)
	counter("switchboard_signals_dropped_total", "Signals for offline users or behind a full queue (a group signal counts each member).", &rs.SignalsDropped)
	counter("switchboard_signal_requests_total", "Signal requests handed to routing shards (a group signal: at most one per shard).", &rs.SignalRequests)
	counter("switchboard_group_events_redone_total", "Group events announced again after a stop, a crash or a failed copy.", &rs.GroupEventsRedone)
	counter("switchboard_replaced_total", "Connections closed because a newer login of their user took over (REPLACED).", &rs.Replaced)
	counter("switchboard_storage_errors_total", "Storage reads and commits that failed.", &rs.StorageErrors)
	counter("switchboard_worker_crashes_total", "Panics of a routing shard or group worker; each was restarted with its state reloaded from storage.", &rs.Crashes)
	counter("switchboard_forwarded_total", "1:1 SENDs and group requests handed to the home node of their recipient or group (a cluster).", &rs.Forwarded)
	counter("switchboard_forward_timeouts_total", "Forwarded SENDs whose answer did not come in time; their senders were told to retry.", &rs.ForwardTimeouts)
	counter("switchboard_home_down_total", "SENDs and group requests refused at once because the home node of their recipient, their group or one of its members was down.", &rs.HomeDown)
	counter("switchboard_receipts_forwarded_total", "Receipts handed to their sender's home node (a cluster).", &rs.ReceiptsForwarded)
	counter("switchboard_peer_errors_total", "Payloads from other nodes that did not decode (a mismatched build).", &rs.PeerErrors)
	counter("switchboard_fanouts_forwarded_total", "Group fan-outs handed to another node for the members it homes: one per node per group message or event (a cluster).", &rs.FanoutsForwarded)
	queues := func(name, help, label string, get func(delivery.Gauges) []int) {
		desc := prometheus.NewDesc(name, help, []string{label}, nil)
		reg.MustRegister(collectorFunc{desc: desc, collect: func(ch chan<- prometheus.Metric) {
			for i, n := range get(src.routerGauges()) {
				ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(n), strconv.Itoa(i))
			}
		}})
	}
	queues("switchboard_shard_queue_length", "Requests waiting in each routing shard's queue; at switchboard_routing_queue_capacity the shard refuses new requests with RETRY_LATER.", "shard", func(g delivery.Gauges) []int { return g.ShardQueues })
	queues("switchboard_group_queue_length", "Requests waiting in each group worker's queue; at switchboard_routing_queue_capacity GROUP requests and group sends are refused with RETRY_LATER.", "worker", func(g delivery.Gauges) []int { return g.GroupQueues })
	queues("switchboard_receipts_held", "Receipts each shard holds because their sender's shard queue was full; past switchboard_routing_queue_capacity they are put off (switchboard_receipts_dropped_total).", "shard", func(g delivery.Gauges) []int { return g.HeldReceipts })
	acceptSeconds := prometheus.NewDesc("switchboard_send_accept_seconds", "Time from the router taking a 1:1 SEND to it pushing the ACCEPT: the shard's queue, the commit queue, the group commit and its sync.", nil, nil)
	reg.MustRegister(collectorFunc{desc: acceptSeconds, collect: func(ch chan<- prometheus.Metric) {
		if src.acceptLatency == nil {
			return
		}
		l := src.acceptLatency()
		buckets := make(map[float64]uint64, len(l.Counts))
		for i, n := range l.Counts {
			buckets[delivery.AcceptBounds[i].Seconds()] = n
		}
		ch <- prometheus.MustNewConstHistogram(acceptSeconds, l.Count, l.Sum.Seconds(), buckets)
	}})
	gauge("switchboard_routing_queue_capacity", "The bound of each shard's and group worker's queue, and of each shard's held receipts (--routing-queue).", func() float64 { return float64(src.routerGauges().QueueLen) })
	gauge("switchboard_ready", "1 while /readyz answers 200: the gateway accepts connections and is not stopping, every routing worker runs, and the store takes writes; 0 once a worker crashed 5 times within a minute and was left down, the store's committer panicked 5 times within a minute, free disk space is below --min-free, or commits are failing while the store recovers (/readyz says which).",
		func() float64 {
			if src.ready() != nil {
				return 0
			}
			return 1
		})

	// The store.
	storeValue := func(name, help string, kind prometheus.ValueType, get func(storage.Stats) float64) {
		statValue(reg, src.store, name, help, kind, get)
	}
	storeCounter := func(name, help string, get func(storage.Stats) uint64) {
		storeValue(name, help, prometheus.CounterValue, func(s storage.Stats) float64 { return float64(get(s)) })
	}
	storeGauge := func(name, help string, get func(storage.Stats) uint64) {
		storeValue(name, help, prometheus.GaugeValue, func(s storage.Stats) float64 { return float64(get(s)) })
	}
	seconds := func(name, help string, get func(storage.Stats) time.Duration) {
		storeValue(name, help, prometheus.CounterValue, func(s storage.Stats) float64 { return get(s).Seconds() })
	}
	storeCounter("switchboard_store_commits_total", "Group commits.", func(s storage.Stats) uint64 { return s.Commits })
	storeCounter("switchboard_store_commit_errors_total", "Failed group commits.", func(s storage.Stats) uint64 { return s.CommitErrors })
	storeCounter("switchboard_store_sync_waits_total", "Batches whose sync waited (at most --sync-delay from the oldest send's queueing) for more sends to share it, because sends were arriving more often than one per --sync-delay.", func(s storage.Stats) uint64 { return s.SyncWaits })
	storeCounter("switchboard_store_syncs_total", "Syncs of the store to disk (fdatasync of the in-flight log): one per batch holding a send or group change, plus one per due group of receipts.", func(s storage.Stats) uint64 { return s.Syncs })
	storeCounter("switchboard_store_panics_total", "Panics contained on the store's committer (the batch failed and the database was reopened).", func(s storage.Stats) uint64 { return s.Panics })
	storeGauge("switchboard_store_down", "1 once the store's committer panicked 5 times within a minute and writes are refused for good: replace the process.", func(s storage.Stats) uint64 { return s.Down })
	storeCounter("switchboard_store_recoveries_total", "Times the store reopened its database after a failed commit.", func(s storage.Stats) uint64 { return s.Recoveries })
	storeCounter("switchboard_store_sender_quota_total", "Messages refused because their sender had as much waiting in others' mailboxes as it may (--sender-max-messages, --sender-max-bytes).", func(s storage.Stats) uint64 { return s.RefusedQuota })
	storeCounter("switchboard_store_disk_full_total", "Messages and group changes refused because free disk space was below the floor (--min-free).", func(s storage.Stats) uint64 { return s.RefusedDiskFull })
	storeGauge("switchboard_store_disk_low", "1 while free disk space is below the floor and new messages are refused.", func(s storage.Stats) uint64 { return s.DiskLow })
	storeCounter("switchboard_store_store_full_total", "Appends refused because all mailboxes together hold --store-max-bytes (REFUSE STORAGE to the sender).", func(s storage.Stats) uint64 { return s.RefusedStoreFull })
	storeCounter("switchboard_store_mailbox_full_total", "Appends refused by a full mailbox.", func(s storage.Stats) uint64 { return s.RefusedFull })
	storeCounter("switchboard_store_duplicates_total", "Appends refused as duplicates of one made within the dedupe window (the sender is acknowledged without a second copy).", func(s storage.Stats) uint64 { return s.Duplicates })
	storeCounter("switchboard_store_seq_order_total", "Appends refused because their seq was not above the mailbox's high-water mark; a router bug if it grows.", func(s storage.Stats) uint64 { return s.RefusedSeqOrder })
	storeCounter("switchboard_store_appends_total", "Entries committed.", func(s storage.Stats) uint64 { return s.Appends })
	storeCounter("switchboard_store_appended_bytes_total", "Value bytes of the entries committed.", func(s storage.Stats) uint64 { return s.AppendedBytes })
	storeCounter("switchboard_store_acks_total", "Acknowledgements committed (including those that deleted nothing).", func(s storage.Stats) uint64 { return s.Acks })
	storeCounter("switchboard_store_deleted_total", "Entries deleted by acknowledgements.", func(s storage.Stats) uint64 { return s.Deleted })
	storeCounter("switchboard_store_ack_receipts_total", "Delivered receipts owed to senders by committed acknowledgements (one per run of msg ids).", func(s storage.Stats) uint64 { return s.Receipts })
	storeCounter("switchboard_store_read_entries_total", "Entries read from mailboxes (backlogs and window refills).", func(s storage.Stats) uint64 { return s.ReadEntries })
	storeCounter("switchboard_store_expired_skipped_total", "Expired entries skipped by reads; one entry may count more than once.", func(s storage.Stats) uint64 { return s.ExpiredSkipped })
	storeCounter("switchboard_store_expired_total", "Entries expired before delivery.", func(s storage.Stats) uint64 { return s.ExpiredDeleted })
	storeCounter("switchboard_store_expired_receipts_total", "Expired receipts owed to senders (one per run of msg ids that expired unfetched).", func(s storage.Stats) uint64 { return s.ExpiredReceipts })
	storeCounter("switchboard_store_spilled_total", "Writes the in-flight tier wrote into Badger because they were still there --spill-after after they were made (offline recipients' entries, dedupe records); the others were overwritten or deleted in memory first.", func(s storage.Stats) uint64 { return s.Spilled })
	storeGauge("switchboard_store_tier_bytes", "Bytes the in-flight tier holds in memory; at twice --memtable-size its oldest writes spill early.", func(s storage.Stats) uint64 { return s.TierBytes })
	storeGauge("switchboard_store_log_segments", "Segment files of the in-flight log that hold records (8 MiB each); one at rest.", func(s storage.Stats) uint64 { return s.LogSegments })
	storeCounter("switchboard_store_batched_ops_total", "Writes (appends, acks, group changes) carried by the group commits.", func(s storage.Stats) uint64 { return s.BatchedOps })
	storeGauge("switchboard_store_max_batch_ops", "The most writes one group commit has carried since the start.", func(s storage.Stats) uint64 { return s.MaxBatchOps })
	storeGauge("switchboard_store_commit_queue_length", "Writes waiting in the commit queue for the committer; at --commit-queue writers (routing shards) block.", func(s storage.Stats) uint64 { return s.Queued })
	storeCounter("switchboard_store_housekeeping_rounds_total", "Housekeeping rounds completed (TTL sweep, value-log GC).", func(s storage.Stats) uint64 { return s.Housekeeps })
	storeCounter("switchboard_store_gc_rewrites_total", "Badger value-log files rewritten by garbage collection.", func(s storage.Stats) uint64 { return s.GCRewrites })
	storeCounter("switchboard_store_flattens_total", "Badger LSM flattens run to drop tombstones.", func(s storage.Stats) uint64 { return s.Flattens })
	seconds("switchboard_store_spill_seconds_total", "Committer time spent writing the in-flight tier's spills into Badger and deleting log segments.", func(s storage.Stats) time.Duration { return s.SpillTime })
	seconds("switchboard_store_build_seconds_total", "Committer time spent building batches (waiting for ops included).", func(s storage.Stats) time.Duration { return s.BuildTime })
	seconds("switchboard_store_commit_seconds_total", "Committer time spent in the database commit, sync included (switchboard_store_sync_seconds_total alone).", func(s storage.Stats) time.Duration { return s.CommitTime })
	seconds("switchboard_store_sync_wait_seconds_total", "Committer time spent waiting for more sends to share a sync (switchboard_store_sync_waits_total).", func(s storage.Stats) time.Duration { return s.SyncWaitTime })
	seconds("switchboard_store_sync_seconds_total", "Committer time spent in syncs (fsync or msync) of the store.", func(s storage.Stats) time.Duration { return s.SyncTime })
	seconds("switchboard_store_callback_seconds_total", "Committer time spent calling back after commits.", func(s storage.Stats) time.Duration { return s.CallbackTime })
	storeGauge("switchboard_store_messages", "Entries waiting in all mailboxes.", func(s storage.Stats) uint64 { return s.StoredMessages })
	storeGauge("switchboard_store_bytes", "Value bytes waiting in all mailboxes.", func(s storage.Stats) uint64 { return s.StoredBytes })
	gauge("switchboard_store_commit_queue_capacity", "The bound of the store's commit queue (--commit-queue); at it, writers (routing shards) block.", func() float64 { return float64(src.commitCap) })
	gauge("switchboard_store_max_bytes", "Value bytes all mailboxes together may hold (--store-max-bytes); at it, sends are refused with STORAGE.", func() float64 { return float64(src.storeMax) })

	// The cluster's transport: zero on a node alone.
	clusterStats := func() cluster.Stats {
		if src.cluster == nil {
			return cluster.Stats{}
		}
		return src.cluster()
	}
	clusterValue := func(name, help string, kind prometheus.ValueType, get func(cluster.Stats) uint64) {
		statValue(reg, clusterStats, name, help, kind, func(s cluster.Stats) float64 { return float64(get(s)) })
	}
	clusterValue("switchboard_cluster_peers_down", "Other nodes of the cluster's configuration this node sees down now: no heartbeat within --cluster-down-after, or a heartbeat from a node with another configuration.", prometheus.GaugeValue, func(s cluster.Stats) uint64 { return s.PeersDown })
	clusterValue("switchboard_cluster_sent_total", "Payloads handed to NATS for other nodes.", prometheus.CounterValue, func(s cluster.Stats) uint64 { return s.Sent })
	clusterValue("switchboard_cluster_send_refused_total", "Payloads not sent because their node was down, the NATS connection was not up, or the payload was over 1 MiB.", prometheus.CounterValue, func(s cluster.Stats) uint64 { return s.SendRefused })
	clusterValue("switchboard_cluster_received_total", "Payloads from other nodes passed to routing.", prometheus.CounterValue, func(s cluster.Stats) uint64 { return s.Received })
	clusterValue("switchboard_cluster_dropped_total", "Payloads from other nodes lost before routing: malformed, from a node not in the configuration, or past NATS's pending limit.", prometheus.CounterValue, func(s cluster.Stats) uint64 { return s.Dropped })
	clusterValue("switchboard_cluster_events_dropped_total", "Node up and down events not logged because their queue was full.", prometheus.CounterValue, func(s cluster.Stats) uint64 { return s.Events })
	clusterValue("switchboard_cluster_malformed_total", "Control messages on the cluster's subjects that were not heartbeats.", prometheus.CounterValue, func(s cluster.Stats) uint64 { return s.Malformed })

	free := prometheus.NewDesc("switchboard_store_disk_free_bytes", "Bytes free to the server on the file system of the store's folder (what --min-free is compared with).", nil, nil)
	size := prometheus.NewDesc("switchboard_store_disk_size_bytes", "Size of the file system of the store's folder.", nil, nil)
	reg.MustRegister(collectorFunc{descs: []*prometheus.Desc{free, size}, collect: func(ch chan<- prometheus.Metric) {
		if src.disk == nil {
			return
		}
		f, sz, err := src.disk()
		if err != nil {
			return // absent from this scrape; the store's own check logs the failure
		}
		ch <- prometheus.MustNewConstMetric(free, prometheus.GaugeValue, float64(f))
		ch <- prometheus.MustNewConstMetric(size, prometheus.GaugeValue, float64(sz))
	}})
	return reg
}

// collectorFunc is a prometheus.Collector of one description, or of
// several (descs).
type collectorFunc struct {
	desc    *prometheus.Desc
	descs   []*prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) {
	if c.desc != nil {
		ch <- c.desc
	}
	for _, d := range c.descs {
		ch <- d
	}
}
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
