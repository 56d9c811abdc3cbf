package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"switchboard/cluster"
	"switchboard/delivery"
	"switchboard/gateway"
	"switchboard/protocol"
	"switchboard/storage"
	"switchboard/token"
)

// statSeries names, for every field of the structs the components report,
// the series that exports it; %d in a name is a slice's index. A field
// missing here fails TestEveryStatExported: export it in metrics.go, add
// it here and to docs/METRICS.md.
var statSeries = map[string]string{
	"cluster.Stats.PeersDown":   "switchboard_cluster_peers_down",
	"cluster.Stats.Sent":        "switchboard_cluster_sent_total",
	"cluster.Stats.SendRefused": "switchboard_cluster_send_refused_total",
	"cluster.Stats.Received":    "switchboard_cluster_received_total",
	"cluster.Stats.Dropped":     "switchboard_cluster_dropped_total",
	"cluster.Stats.Events":      "switchboard_cluster_events_dropped_total",
	"cluster.Stats.Malformed":   "switchboard_cluster_malformed_total",

	"gateway.Stats.ConnCap":            "switchboard_connection_cap",
	"gateway.Stats.FDReserve":          "switchboard_fd_reserve",
	"gateway.Stats.Accepted":           "switchboard_connections_accepted_total",
	"gateway.Stats.Refused":            "switchboard_connections_refused_total",
	"gateway.Stats.Logins":             "switchboard_logins_total",
	"gateway.Stats.Adopted":            "switchboard_connections_adopted_total",
	"gateway.Stats.FramesIn":           "switchboard_frames_in_total",
	"gateway.Stats.FramesOut":          "switchboard_frames_out_total",
	"gateway.Stats.BytesOut":           "switchboard_bytes_out_total",
	"gateway.Stats.OverRate":           "switchboard_frames_over_rate_total",
	"gateway.Stats.PreLoginEvicted":    "switchboard_prelogin_evicted_total",
	"gateway.Stats.Panics":             "switchboard_panics_total",
	"gateway.Stats.Handshakes":         "switchboard_noise_handshakes_total",
	"gateway.Stats.HandshakesFailed":   "switchboard_noise_handshakes_failed_total",
	"gateway.Stats.HandshakesRefused":  "switchboard_noise_handshakes_refused_total",
	"gateway.Stats.NoiseFrameTooLarge": "switchboard_noise_frames_too_large_total",
	"gateway.Stats.WakeErrors":         "switchboard_wake_errors_total",
	"gateway.Stats.Closes":             `switchboard_closes_total{reason="%s"}`,

	"gateway.Gauges.PreLogin":      `switchboard_connections_by_state{state="pre_login"}`,
	"gateway.Gauges.LoggedIn":      `switchboard_connections_by_state{state="logged_in"}`,
	"gateway.Gauges.Closing":       `switchboard_connections_by_state{state="closing"}`,
	"gateway.Gauges.Draining":      "switchboard_draining",
	"gateway.Gauges.OutboundBytes": "switchboard_outbound_queued_bytes",

	"gateway.SlowConsumers.OutboundCap": `switchboard_slow_consumers_total{cause="outbound_cap"}`,
	"gateway.SlowConsumers.WriteBuffer": `switchboard_slow_consumers_total{cause="write_buffer"}`,

	"delivery.Stats.Sends":             "switchboard_sends_total",
	"delivery.Stats.Accepted":          "switchboard_accepted_total",
	"delivery.Stats.Duplicates":        "switchboard_duplicates_total",
	"delivery.Stats.Refused":           "switchboard_refused_total",
	"delivery.Stats.Busy":              "switchboard_busy_total",
	"delivery.Stats.DeliveredLive":     "switchboard_delivered_live_total",
	"delivery.Stats.DeliveredStored":   "switchboard_delivered_stored_total",
	"delivery.Stats.Acks":              "switchboard_acks_total",
	"delivery.Stats.Receipts":          "switchboard_receipts_total",
	"delivery.Stats.ReceiptsHeld":      "switchboard_receipts_held_total",
	"delivery.Stats.ReceiptsDropped":   "switchboard_receipts_dropped_total",
	"delivery.Stats.ReceiptsRefused":   "switchboard_receipts_refused_total",
	"delivery.Stats.ReceiptsReplayed":  "switchboard_receipts_replayed_total",
	"delivery.Stats.ReadsDropped":      "switchboard_reads_dropped_total",
	"delivery.Stats.SignalsDropped":    "switchboard_signals_dropped_total",
	"delivery.Stats.GroupEventsRedone": "switchboard_group_events_redone_total",
	"delivery.Stats.SignalRequests":    "switchboard_signal_requests_total",
	"delivery.Stats.SlowConsumers":     `switchboard_slow_consumers_total{cause="window"}`,
	"delivery.Stats.Replaced":          "switchboard_replaced_total",
	"delivery.Stats.StorageErrors":     "switchboard_storage_errors_total",
	"delivery.Stats.Crashes":           "switchboard_worker_crashes_total",
	"delivery.Stats.Forwarded":         "switchboard_forwarded_total",
	"delivery.Stats.ForwardTimeouts":   "switchboard_forward_timeouts_total",
	"delivery.Stats.HomeDown":          "switchboard_home_down_total",
	"delivery.Stats.ReceiptsForwarded": "switchboard_receipts_forwarded_total",
	"delivery.Stats.PeerErrors":        "switchboard_peer_errors_total",
	"delivery.Stats.FanoutsForwarded":  "switchboard_fanouts_forwarded_total",

	"delivery.Gauges.ShardQueues":  `switchboard_shard_queue_length{shard="%d"}`,
	"delivery.Gauges.GroupQueues":  `switchboard_group_queue_length{worker="%d"}`,
	"delivery.Gauges.HeldReceipts": `switchboard_receipts_held{shard="%d"}`,
	"delivery.Gauges.QueueLen":     "switchboard_routing_queue_capacity",

	"storage.Stats.Appends":          "switchboard_store_appends_total",
	"storage.Stats.AppendedBytes":    "switchboard_store_appended_bytes_total",
	"storage.Stats.Commits":          "switchboard_store_commits_total",
	"storage.Stats.CommitErrors":     "switchboard_store_commit_errors_total",
	"storage.Stats.Syncs":            "switchboard_store_syncs_total",
	"storage.Stats.SyncWaits":        "switchboard_store_sync_waits_total",
	"storage.Stats.Recoveries":       "switchboard_store_recoveries_total",
	"storage.Stats.Spilled":          "switchboard_store_spilled_total",
	"storage.Stats.TierBytes":        "switchboard_store_tier_bytes",
	"storage.Stats.LogSegments":      "switchboard_store_log_segments",
	"storage.Stats.SpillTime":        "switchboard_store_spill_seconds_total",
	"storage.Stats.Panics":           "switchboard_store_panics_total",
	"storage.Stats.Down":             "switchboard_store_down",
	"storage.Stats.BatchedOps":       "switchboard_store_batched_ops_total",
	"storage.Stats.MaxBatchOps":      "switchboard_store_max_batch_ops",
	"storage.Stats.Acks":             "switchboard_store_acks_total",
	"storage.Stats.Deleted":          "switchboard_store_deleted_total",
	"storage.Stats.Receipts":         "switchboard_store_ack_receipts_total",
	"storage.Stats.ReadEntries":      "switchboard_store_read_entries_total",
	"storage.Stats.ExpiredSkipped":   "switchboard_store_expired_skipped_total",
	"storage.Stats.ExpiredDeleted":   "switchboard_store_expired_total",
	"storage.Stats.ExpiredReceipts":  "switchboard_store_expired_receipts_total",
	"storage.Stats.Duplicates":       "switchboard_store_duplicates_total",
	"storage.Stats.RefusedFull":      "switchboard_store_mailbox_full_total",
	"storage.Stats.RefusedStoreFull": "switchboard_store_store_full_total",
	"storage.Stats.RefusedDiskFull":  "switchboard_store_disk_full_total",
	"storage.Stats.RefusedQuota":     "switchboard_store_sender_quota_total",
	"storage.Stats.DiskLow":          "switchboard_store_disk_low",
	"storage.Stats.RefusedSeqOrder":  "switchboard_store_seq_order_total",
	"storage.Stats.Housekeeps":       "switchboard_store_housekeeping_rounds_total",
	"storage.Stats.GCRewrites":       "switchboard_store_gc_rewrites_total",
	"storage.Stats.Flattens":         "switchboard_store_flattens_total",
	"storage.Stats.BuildTime":        "switchboard_store_build_seconds_total",
	"storage.Stats.CommitTime":       "switchboard_store_commit_seconds_total",
	"storage.Stats.SyncTime":         "switchboard_store_sync_seconds_total",
	"storage.Stats.SyncWaitTime":     "switchboard_store_sync_wait_seconds_total",
	"storage.Stats.CallbackTime":     "switchboard_store_callback_seconds_total",
	"storage.Stats.StoredMessages":   "switchboard_store_messages",
	"storage.Stats.StoredBytes":      "switchboard_store_bytes",
	"storage.Stats.Queued":           "switchboard_store_commit_queue_length",
}

// scrape returns every series h serves, "name{labels}" to value.
func scrape(t *testing.T, h http.Handler) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	return parseSeries(t, rec.Body)
}

func parseSeries(t *testing.T, r io.Reader) map[string]float64 {
	t.Helper()
	series := map[string]float64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("series %q: %v", line, err)
		}
		series[line[:i]] = v
	}
	return series
}

// fill sets every field of the struct v points to a value of its own,
// taken from *next, and returns each field's name (qualified with prefix)
// and the series values it must show as: one per field, one per element
// of a slice or array (keyed by its index, or reason for gateway closes).
func fill(t *testing.T, prefix string, v any, next *int) map[string][]float64 {
	t.Helper()
	want := map[string][]float64{}
	rv := reflect.ValueOf(v).Elem()
	for i := range rv.NumField() {
		f, name := rv.Field(i), prefix+"."+rv.Type().Field(i).Name
		take := func() int { *next++; return *next }
		set := func(f reflect.Value) float64 {
			n := take()
			switch {
			case f.Type() == reflect.TypeFor[time.Duration]():
				f.SetInt(int64(time.Duration(n) * time.Second))
			case f.Kind() == reflect.Bool:
				f.SetBool(true)
				return 1
			case f.CanInt():
				f.SetInt(int64(n))
			case f.CanUint():
				f.SetUint(uint64(n))
			case f.Type() == reflect.TypeFor[atomic.Uint64]():
				f.Addr().Interface().(*atomic.Uint64).Store(uint64(n))
			case f.Type() == reflect.TypeFor[atomic.Int64]():
				f.Addr().Interface().(*atomic.Int64).Store(int64(n))
			default:
				t.Fatalf("%s: fields of type %v are not handled: add them to fill", name, f.Type())
			}
			return float64(n)
		}
		switch f.Kind() {
		case reflect.Slice:
			f.Set(reflect.MakeSlice(f.Type(), 3, 3))
			fallthrough
		case reflect.Array:
			for j := range f.Len() {
				want[name] = append(want[name], set(f.Index(j)))
			}
		default:
			want[name] = []float64{set(f)}
		}
	}
	return want
}

// TestEveryStatExported: every field of every struct of counters and
// gauges the components report is a series of the metrics handler, with
// its value: each field is set to a value no other field has, and must
// show under the series statSeries names for it.
func TestEveryStatExported(t *testing.T) {
	var (
		gs  gateway.Stats
		gg  gateway.Gauges
		gsl gateway.SlowConsumers
		rs  delivery.Stats
		rg  delivery.Gauges
		ss  storage.Stats
		cs  cluster.Stats
	)
	next := 100
	want := map[string][]float64{}
	for prefix, v := range map[string]any{
		"gateway.Stats": &gs, "gateway.Gauges": &gg, "gateway.SlowConsumers": &gsl,
		"delivery.Stats": &rs, "delivery.Gauges": &rg, "storage.Stats": &ss,
		"cluster.Stats": &cs,
	} {
		for name, vals := range fill(t, prefix, v, &next) {
			want[name] = vals
		}
	}
	reg := newMetrics(metricSources{
		gateway:       &gs,
		gatewayGauges: func() gateway.Gauges { return gg },
		slow:          func() gateway.SlowConsumers { return gsl },
		conns:         func() int { return 1 },
		router:        &rs,
		routerGauges:  func() delivery.Gauges { return rg },
		store:         func() storage.Stats { return ss },
		ready:         func() error { return nil },
		cluster:       func() cluster.Stats { return cs },
	})
	got := scrape(t, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	for field, vals := range want {
		pattern, ok := statSeries[field]
		if !ok {
			t.Errorf("%s is not exported: add a metric to metrics.go, a row to statSeries and a line to docs/METRICS.md", field)
			continue
		}
		for i, v := range vals {
			series := pattern
			switch {
			case strings.Contains(pattern, "%d"):
				series = fmt.Sprintf(pattern, i)
			case strings.Contains(pattern, "%s"): // closes by reason
				reason := "peer"
				if i > 0 {
					reason = protocol.Code(i).String()
				}
				series = fmt.Sprintf(pattern, reason)
			}
			if g, ok := got[series]; !ok || g != v {
				t.Errorf("%s: series %s = %v (present %v), want %v", field, series, g, ok, v)
			}
		}
	}
	for field := range statSeries {
		if _, ok := want[field]; !ok {
			t.Errorf("statSeries names %s, which is no field any more", field)
		}
	}
}

// TestAcceptLatencyExported: the router's send→ACCEPT histogram is the
// Prometheus histogram switchboard_send_accept_seconds, its buckets in
// seconds.
func TestAcceptLatencyExported(t *testing.T) {
	counts := make([]uint64, len(delivery.AcceptBounds))
	for i := range counts {
		counts[i] = uint64(10 * (i + 1))
	}
	reg := newMetrics(metricSources{
		gateway:       &gateway.Stats{},
		gatewayGauges: func() gateway.Gauges { return gateway.Gauges{} },
		slow:          func() gateway.SlowConsumers { return gateway.SlowConsumers{} },
		conns:         func() int { return 0 },
		router:        &delivery.Stats{},
		routerGauges:  func() delivery.Gauges { return delivery.Gauges{} },
		acceptLatency: func() delivery.Latency {
			return delivery.Latency{Counts: counts, Count: 125, Sum: 1500 * time.Millisecond}
		},
		store: func() storage.Stats { return storage.Stats{} },
		ready: func() error { return nil },
	})
	got := scrape(t, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	want := map[string]float64{
		`switchboard_send_accept_seconds_bucket{le="0.0005"}`: 10,
		`switchboard_send_accept_seconds_bucket{le="0.005"}`:  40,
		`switchboard_send_accept_seconds_bucket{le="2.5"}`:    120,
		`switchboard_send_accept_seconds_bucket{le="+Inf"}`:   125,
		"switchboard_send_accept_seconds_count":               125,
		"switchboard_send_accept_seconds_sum":                 1.5,
	}
	for series, w := range want {
		if v, ok := got[series]; !ok || v != w {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, w)
		}
	}
}

// TestMetricsOfRunningNode scrapes the admin listener of a running node
// with a client logged in: every gauge is there, with a value that fits.
func TestMetricsOfRunningNode(t *testing.T) {
	secret := make([]byte, token.SecretLen)
	for i := range secret {
		secret[i] = byte(i*5 + 3)
	}
	cfg := nodeConfig(t.TempDir(), token.Keys{1: secret})
	cfg.Gateway.Loops, cfg.Delivery.Shards = 2, 4
	n := startConfig(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok := token.Mint(secret, token.Claims{KeyID: 1, User: 7, Device: 1, Expiry: time.Now().Add(time.Hour)})
	cl, err := protocol.Dial(ctx, n.Addr().String(), protocol.ClientOptions{Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	var got map[string]float64
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + n.AdminAddr().String() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		got = parseSeries(t, resp.Body)
		resp.Body.Close()
		if got[`switchboard_connections_by_state{state="logged_in"}`] == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	const queueLen = 4096 // the default --routing-queue and --commit-queue
	exact := map[string]float64{
		"switchboard_connections":                                1,
		`switchboard_connections_by_state{state="pre_login"}`:    0,
		`switchboard_connections_by_state{state="logged_in"}`:    1,
		`switchboard_connections_by_state{state="closing"}`:      0,
		"switchboard_draining":                                   0,
		"switchboard_ready":                                      1,
		"switchboard_routing_queue_capacity":                     queueLen,
		"switchboard_store_commit_queue_capacity":                queueLen,
		"switchboard_store_max_bytes":                            16 << 30, // the default --store-max-bytes
		"switchboard_store_down":                                 0,
		"switchboard_store_disk_low":                             0,
		`switchboard_slow_consumers_total{cause="window"}`:       0,
		`switchboard_slow_consumers_total{cause="outbound_cap"}`: 0,
		`switchboard_slow_consumers_total{cause="write_buffer"}`: 0,
	}
	for i := range 4 {
		exact[fmt.Sprintf(`switchboard_receipts_held{shard="%d"}`, i)] = 0
	}
	for series, want := range exact {
		if v, ok := got[series]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
	within := map[string][2]float64{
		"switchboard_connection_cap":                 {1, 1 << 30},
		"switchboard_fd_reserve":                     {1, 1 << 20},
		"switchboard_outbound_queued_bytes":          {0, float64(cfg.Gateway.OutboundCap)},
		"switchboard_store_commit_queue_length":      {0, queueLen},
		"switchboard_store_max_batch_ops":            {0, 1 << 20},
		`switchboard_group_queue_length{worker="0"}`: {0, queueLen},
		`switchboard_group_queue_length{worker="1"}`: {0, queueLen},
	}
	for i := range 4 {
		within[fmt.Sprintf(`switchboard_shard_queue_length{shard="%d"}`, i)] = [2]float64{0, queueLen}
	}
	for series, r := range within {
		if v, ok := got[series]; !ok || v < r[0] || v > r[1] {
			t.Errorf("%s = %v (present %v), want within [%v, %v]", series, v, ok, r[0], r[1])
		}
	}
	// The store's folder is in the test's temporary folder: its file
	// system is the one the test sees.
	free, size, err := storage.DiskSpace(cfg.Data)
	if err != nil {
		t.Fatal(err)
	}
	if got := got["switchboard_store_disk_size_bytes"]; got != float64(size) {
		t.Errorf("switchboard_store_disk_size_bytes = %v, want %d", got, size)
	}
	if got := got["switchboard_store_disk_free_bytes"]; got <= 0 || math.Abs(got-float64(free)) > float64(size)/100 {
		t.Errorf("switchboard_store_disk_free_bytes = %v, want about %d", got, free)
	}
	for _, series := range []string{`switchboard_shard_queue_length{shard="4"}`, `switchboard_group_queue_length{worker="2"}`} {
		if _, ok := got[series]; ok {
			t.Errorf("%s present: more workers than the 4 shards and 2 group workers", series)
		}
	}
}

// TestMetricsDocumented: docs/METRICS.md names every metric the handler
// registers, and no metric it does not.
func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/METRICS.md")
	if err != nil {
		t.Fatal(err)
	}
	reg := newMetrics(metricSources{
		gateway:       &gateway.Stats{},
		gatewayGauges: func() gateway.Gauges { return gateway.Gauges{} },
		slow:          func() gateway.SlowConsumers { return gateway.SlowConsumers{} },
		conns:         func() int { return 0 },
		router:        &delivery.Stats{},
		routerGauges: func() delivery.Gauges {
			return delivery.Gauges{ShardQueues: []int{0}, GroupQueues: []int{0}, HeldReceipts: []int{0}}
		},
		store: func() storage.Stats { return storage.Stats{} },
		ready: func() error { return nil },
		disk:  func() (int64, int64, error) { return 0, 0, nil },
		acceptLatency: func() delivery.Latency {
			return delivery.Latency{Counts: make([]uint64, len(delivery.AcceptBounds))}
		},
	})
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	registered := map[string]bool{}
	for _, f := range families {
		registered[f.GetName()] = true
	}
	// Every close reason is served from the start, at 0.
	if !registered["switchboard_closes_total"] {
		t.Error("switchboard_closes_total has no series while no connection has closed")
	}
	for _, f := range families {
		if f.GetName() != "switchboard_closes_total" {
			continue
		}
		reasons := map[string]bool{}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				reasons[l.GetValue()] = true
			}
		}
		for _, want := range []string{"peer", "IDLE_TIMEOUT", "SLOW_CONSUMER", "REPLACED", "BAD_TOKEN"} {
			if !reasons[want] {
				t.Errorf("switchboard_closes_total{reason=%q} not served before any close (reasons %v)", want, reasons)
			}
		}
		for r := range reasons {
			if strings.HasPrefix(r, "CODE_") || r == "RETRY_LATER" {
				t.Errorf("switchboard_closes_total serves reason %q, which closes nothing", r)
			}
		}
	}
	for name := range registered {
		if !strings.Contains(string(doc), "`"+name) {
			t.Errorf("docs/METRICS.md does not list %s", name)
		}
	}
	for _, m := range regexp.MustCompile("`(switchboard_[a-z_]+)").FindAllStringSubmatch(string(doc), -1) {
		if !registered[m[1]] {
			t.Errorf("docs/METRICS.md lists %s, which is not registered", m[1])
		}
	}
}
