package main

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"switchboard/node"
	"switchboard/protocol"
	"switchboard/storage"
)

// metricsHandler exposes the counters of every component, and the process's
// own (RSS, CPU, descriptors), in Prometheus' format. No per-user labels.
func metricsHandler(n *node.Node) http.Handler {
	srv, r, st := n.Gateway(), n.Router(), n.Store()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(collectors.NewGoCollector())

	counter := func(name, help string, v *atomic.Uint64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(v.Load()) }))
	}
	gs := srv.Stats()
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_connections", Help: "Open client connections."},
		func() float64 { return float64(srv.Conns()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_connection_cap", Help: "Connections accepted now: --max-conns, or fewer when the open-file limit minus the reserve for other files is lower."}, func() float64 { return float64(gs.ConnCap.Load()) }))
	counter("switchboard_connections_accepted_total", "Connections opened.", &gs.Accepted)
	counter("switchboard_connections_refused_total", "Connections refused at the cap or while stopping.", &gs.Refused)
	counter("switchboard_logins_total", "Successful logins.", &gs.Logins)
	counter("switchboard_frames_in_total", "Frames received.", &gs.FramesIn)
	counter("switchboard_frames_out_total", "Frames sent.", &gs.FramesOut)
	counter("switchboard_bytes_out_total", "Bytes written to connections.", &gs.BytesOut)
	counter("switchboard_frames_over_rate_total", "Frames over a connection's rate limit (--rate, --rate-burst): SENDs and GROUPs refused with RETRY_LATER, SIGNALs dropped, others served.", &gs.OverRate)
	counter("switchboard_prelogin_evicted_total", "Connections closed before login to make room for a newer one (--max-prelogin).", &gs.PreLoginEvicted)
	counter("switchboard_panics_total", "Panics while handling one connection.", &gs.Panics)
	closes := prometheus.NewDesc("switchboard_closes_total", "Connections closed, by reason.", []string{"reason"}, nil)
	reg.MustRegister(collectorFunc{desc: closes, collect: func(ch chan<- prometheus.Metric) {
		for code := range gs.Closes {
			n := gs.Closes[code].Load()
			if n == 0 {
				continue
			}
			reason := "peer"
			if code > 0 {
				reason = protocol.Code(code).String()
			}
			ch <- prometheus.MustNewConstMetric(closes, prometheus.CounterValue, float64(n), reason)
		}
	}})

	rs := r.Stats()
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
	counter("switchboard_slow_consumers_total", "Connections closed because their window stayed full.", &rs.SlowConsumers)
	counter("switchboard_storage_errors_total", "Storage reads and commits that failed.", &rs.StorageErrors)
	counter("switchboard_worker_crashes_total", "Panics of a routing shard or group worker; each was restarted with its state reloaded from storage.", &rs.Crashes)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_ready", Help: "1 while /readyz answers 200: the gateway accepts connections and is not stopping, every routing worker runs, and the store takes writes; 0 once a worker crashed 5 times within a minute and was left down, the store's committer panicked 5 times within a minute, free disk space is below --min-free, or commits are failing while the store recovers (/readyz says which)."},
		func() float64 {
			if n.Ready() != nil {
				return 0
			}
			return 1
		}))

	storeValue := func(name, help string, kind prometheus.ValueType, get func(storage.Stats) float64) {
		desc := prometheus.NewDesc(name, help, nil, nil)
		reg.MustRegister(collectorFunc{desc: desc, collect: func(ch chan<- prometheus.Metric) {
			ch <- prometheus.MustNewConstMetric(desc, kind, get(st.Stats()))
		}})
	}
	storeStat := func(name, help string, kind prometheus.ValueType, get func(storage.Stats) uint64) {
		storeValue(name, help, kind, func(s storage.Stats) float64 { return float64(get(s)) })
	}
	seconds := func(name, help string, get func(storage.Stats) time.Duration) {
		storeValue(name, help, prometheus.CounterValue, func(s storage.Stats) float64 { return get(s).Seconds() })
	}
	storeStat("switchboard_store_commits_total", "Group commits.", prometheus.CounterValue, func(s storage.Stats) uint64 { return s.Commits })
	storeStat("switchboard_store_commit_errors_total", "Failed group commits.", prometheus.CounterValue, func(s storage.Stats) uint64 { return s.CommitErrors })
	storeStat("switchboard_store_syncs_total", "Syncs of the store to disk (fsync or msync): one per batch holding a send or group change, plus one per due group of receipts.", prometheus.CounterValue, func(s storage.Stats) uint64 { return s.Syncs })
	storeStat("switchboard_store_panics_total", "Panics contained on the store's committer (the batch failed and the database was reopened).", prometheus.CounterValue, func(s storage.Stats) uint64 { return s.Panics })
	storeStat("switchboard_store_recoveries_total", "Times the store reopened its database after a failed commit.", prometheus.CounterValue, func(s storage.Stats) uint64 { return s.Recoveries })
	storeStat("switchboard_store_sender_quota_total", "Messages refused because their sender had as much waiting in others' mailboxes as it may (--sender-max-messages, --sender-max-bytes).", prometheus.CounterValue, func(s storage.Stats) uint64 { return s.RefusedQuota })
	storeStat("switchboard_store_disk_full_total", "Messages and group changes refused because free disk space was below the floor (--min-free).", prometheus.CounterValue, func(s storage.Stats) uint64 { return s.RefusedDiskFull })
	storeStat("switchboard_store_disk_low", "1 while free disk space is below the floor and new messages are refused.", prometheus.GaugeValue, func(s storage.Stats) uint64 { return s.DiskLow })
	storeStat("switchboard_store_appends_total", "Entries committed.", prometheus.CounterValue, func(s storage.Stats) uint64 { return s.Appends })
	storeStat("switchboard_store_expired_total", "Entries expired before delivery.", prometheus.CounterValue, func(s storage.Stats) uint64 { return s.ExpiredDeleted })
	storeStat("switchboard_store_expired_receipts_total", "Expired receipts owed to senders (one per run of msg ids that expired unfetched).", prometheus.CounterValue, func(s storage.Stats) uint64 { return s.ExpiredReceipts })
	storeStat("switchboard_store_mailbox_full_total", "Appends refused by a full mailbox.", prometheus.CounterValue, func(s storage.Stats) uint64 { return s.RefusedFull })
	storeStat("switchboard_store_batched_ops_total", "Writes (appends, acks, group changes) carried by the group commits.", prometheus.CounterValue, func(s storage.Stats) uint64 { return s.BatchedOps })
	seconds("switchboard_store_build_seconds_total", "Committer time spent building batches (waiting for ops included).", func(s storage.Stats) time.Duration { return s.BuildTime })
	seconds("switchboard_store_commit_seconds_total", "Committer time spent in the database commit, sync included (switchboard_store_sync_seconds_total alone).", func(s storage.Stats) time.Duration { return s.CommitTime })
	seconds("switchboard_store_sync_seconds_total", "Committer time spent in syncs (fsync or msync) of the store.", func(s storage.Stats) time.Duration { return s.SyncTime })
	seconds("switchboard_store_callback_seconds_total", "Committer time spent calling back after commits.", func(s storage.Stats) time.Duration { return s.CallbackTime })
	storeStat("switchboard_store_messages", "Entries waiting in all mailboxes.", prometheus.GaugeValue, func(s storage.Stats) uint64 { return s.StoredMessages })
	storeStat("switchboard_store_bytes", "Value bytes waiting in all mailboxes.", prometheus.GaugeValue, func(s storage.Stats) uint64 { return s.StoredBytes })

	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// collectorFunc is a prometheus.Collector of one description.
type collectorFunc struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
