package top

import (
	"math"
	"time"
)

// The limits Over compares with.
const (
	// QueueNear is the fill of a bounded queue (of its capacity) marked as
	// over its limit. A queue refuses only when full, but one that stays
	// above four fifths is one burst from refusing: its consumer is not
	// keeping up, which is why queues are watched first.
	QueueNear = 0.8
	// DiskFreeMin is the share of the data folder's file system that must
	// stay free. Below a tenth, one compaction or a day's growth can reach
	// the store's own floor (--min-free), where it refuses messages.
	DiskFreeMin = 0.10
	// SyncsPerMessageMax is the most syncs per accepted message before it
	// is marked: group commit should share one sync among many messages,
	// so more than one each means batches of one and a disk-bound server.
	SyncsPerMessageMax = 1.0
)

// The metrics top reads (docs/METRICS.md).
const (
	mConns          = "switchboard_connections"
	mConnsByState   = "switchboard_connections_by_state"
	mConnCap        = "switchboard_connection_cap"
	mLogins         = "switchboard_logins_total"
	mAccepted       = "switchboard_accepted_total"
	mDeliveredLive  = "switchboard_delivered_live_total"
	mDeliveredStore = "switchboard_delivered_stored_total"
	mAcceptSeconds  = "switchboard_send_accept_seconds"
	mShardQueue     = "switchboard_shard_queue_length"
	mGroupQueue     = "switchboard_group_queue_length"
	mHeld           = "switchboard_receipts_held"
	mRoutingCap     = "switchboard_routing_queue_capacity"
	mCommitQueue    = "switchboard_store_commit_queue_length"
	mCommitCap      = "switchboard_store_commit_queue_capacity"
	mSlow           = "switchboard_slow_consumers_total"
	mStoreBytes     = "switchboard_store_bytes"
	mStoreMax       = "switchboard_store_max_bytes"
	mDiskFree       = "switchboard_store_disk_free_bytes"
	mDiskSize       = "switchboard_store_disk_size_bytes"
	mSyncs          = "switchboard_store_syncs_total"
	mStorageErrors  = "switchboard_storage_errors_total"
	mCommitErrors   = "switchboard_store_commit_errors_total"
	mReady          = "switchboard_ready"
)

// Figures is what top shows of one server, or of a cluster summed. A
// figure the server does not export (an older version) or that needs two
// scrapes (a rate, before the second) is NaN and shown as "–".
type Figures struct {
	Addr     string
	Servers  int      // servers summed: 1 for one server
	Down     []string // the servers that did not answer, with why: "addr: error"
	NotReady int      // servers whose switchboard_ready is 0

	Conns, ConnCap              float64
	PreLogin, LoggedIn, Closing float64

	// Per second over the interval between the last two scrapes.
	LoginsPerSec float64
	InPerSec     float64 // sends accepted (made durable and acknowledged)
	OutPerSec    float64 // entries pushed to recipients, live or from storage
	SlowPerSec   float64 // connections closed as slow consumers

	// The longest queue of each kind (of all shards or workers) and the
	// bound they share; for a cluster, the longest and largest of all.
	ShardQueue, GroupQueue, Held, RoutingCap float64
	CommitQueue, CommitCap                   float64

	SlowCloses  float64 // since the server started
	StoreBytes  float64 // value bytes waiting in mailboxes
	StoreMax    float64 // --store-max-bytes
	DiskFree    float64 // bytes free under the data folder
	DiskSize    float64 // size of its file system
	StoreErrors float64 // storage errors and failed commits since start

	// Counts over the interval, for the ratios.
	syncs, accepted float64
	accept          []bucket         // send→ACCEPT observations in the interval
	interval        bool             // the rates and counts above are over an interval
	overAny         [numFigures]bool // a cluster: the figure is over its limit in some server
}

// AcceptP99 is the 99th percentile, in seconds, of the time from the
// router taking a SEND to it pushing the ACCEPT, over the interval.
func (f Figures) AcceptP99() float64 {
	if !f.interval {
		return math.NaN()
	}
	return quantile(0.99, f.accept)
}

// SyncsPerMessage is the store's syncs over the interval per message
// accepted in it; NaN when none was accepted.
func (f Figures) SyncsPerMessage() float64 {
	if !f.interval || math.IsNaN(f.accepted) || f.accepted <= 0 || math.IsNaN(f.syncs) {
		return math.NaN()
	}
	return f.syncs / f.accepted
}

// DiskFreeShare is the free share of the data folder's file system.
func (f Figures) DiskFreeShare() float64 {
	if f.DiskSize <= 0 {
		return math.NaN()
	}
	return f.DiskFree / f.DiskSize
}

// Figure names a figure for Over.
type Figure int

// The figures that have a limit.
const (
	FigDown Figure = iota
	FigConns
	FigShardQueue
	FigGroupQueue
	FigHeld
	FigCommitQueue
	FigSlow
	FigStore
	FigDisk
	FigSyncs
	FigStoreErrors
	numFigures
)

// Over reports whether figure fig is over its limit.
func (f Figures) Over(fig Figure) bool {
	if fig >= 0 && fig < numFigures && f.overAny[fig] {
		return true
	}
	// A capacity of 0 is a limit, not its absence: a connection cap the
	// gateway lowered to 0 (its reserve grew past the open-file limit)
	// refuses every connection. An unknown capacity (NaN) marks nothing.
	near := func(v, capacity float64) bool { return capacity >= 0 && v >= QueueNear*capacity }
	switch fig {
	case FigDown:
		return len(f.Down) > 0 || f.NotReady > 0
	case FigConns:
		return near(f.Conns, f.ConnCap)
	case FigShardQueue:
		return near(f.ShardQueue, f.RoutingCap)
	case FigGroupQueue:
		return near(f.GroupQueue, f.RoutingCap)
	case FigHeld:
		return near(f.Held, f.RoutingCap)
	case FigCommitQueue:
		return near(f.CommitQueue, f.CommitCap)
	case FigSlow:
		return f.SlowPerSec > 0
	case FigStore:
		return near(f.StoreBytes, f.StoreMax)
	case FigDisk:
		return f.DiskFreeShare() < DiskFreeMin
	case FigSyncs:
		return f.SyncsPerMessage() > SyncsPerMessageMax
	case FigStoreErrors:
		return f.StoreErrors > 0
	}
	return false
}

// figures computes one server's figures from its last sample and the one
// before (prev.Err non-nil or a zero prev: no rates).
func figures(prev, cur Sample) Figures {
	f := Figures{Addr: cur.Addr, Servers: 1}
	nan := math.NaN()
	if cur.Err != nil {
		f.Down = []string{cur.Addr + ": " + cur.Err.Error()}
		f.setNaN()
		return f
	}
	get := func(name string) float64 {
		if v, ok := cur.sum(name); ok {
			return v
		}
		return nan
	}
	top := func(name string) float64 {
		if v, ok := cur.max(name); ok {
			return v
		}
		return nan
	}
	state := func(s string) float64 {
		if v, ok := cur.labelled(mConnsByState, "state", s); ok {
			return v
		}
		return nan
	}
	if ready, ok := cur.sum(mReady); ok && ready == 0 {
		f.NotReady = 1
	}
	f.Conns, f.ConnCap = get(mConns), get(mConnCap)
	f.PreLogin, f.LoggedIn, f.Closing = state("pre_login"), state("logged_in"), state("closing")
	f.ShardQueue, f.GroupQueue, f.Held, f.RoutingCap = top(mShardQueue), top(mGroupQueue), top(mHeld), get(mRoutingCap)
	f.CommitQueue, f.CommitCap = get(mCommitQueue), get(mCommitCap)
	f.SlowCloses = get(mSlow)
	f.StoreBytes, f.StoreMax = get(mStoreBytes), get(mStoreMax)
	f.DiskFree, f.DiskSize = get(mDiskFree), get(mDiskSize)
	f.StoreErrors = get(mStorageErrors) + get(mCommitErrors)

	f.LoginsPerSec, f.InPerSec, f.OutPerSec, f.SlowPerSec = nan, nan, nan, nan
	f.syncs, f.accepted = nan, nan
	dt := cur.At.Sub(prev.At).Seconds()
	if prev.metrics == nil || prev.Err != nil || dt <= 0 {
		return f
	}
	f.interval = true
	delta := func(names ...string) float64 {
		d := 0.0
		for _, name := range names {
			c, okc := cur.sum(name)
			p, okp := prev.sum(name)
			switch {
			case !okc:
				return nan
			case !okp || c < p: // new, or the server restarted: counted from zero
				d += c
			default:
				d += c - p
			}
		}
		return d
	}
	f.LoginsPerSec = delta(mLogins) / dt
	f.accepted = delta(mAccepted)
	f.InPerSec = f.accepted / dt
	f.OutPerSec = delta(mDeliveredLive, mDeliveredStore) / dt
	f.SlowPerSec = delta(mSlow) / dt
	f.syncs = delta(mSyncs)
	f.accept = subBuckets(cur.histogram(mAcceptSeconds), prev.histogram(mAcceptSeconds))
	return f
}

// setNaN marks every figure of a server that did not answer unknown.
func (f *Figures) setNaN() {
	nan := math.NaN()
	for _, p := range []*float64{&f.Conns, &f.ConnCap, &f.PreLogin, &f.LoggedIn, &f.Closing,
		&f.LoginsPerSec, &f.InPerSec, &f.OutPerSec, &f.SlowPerSec, &f.ShardQueue, &f.GroupQueue,
		&f.Held, &f.RoutingCap, &f.CommitQueue, &f.CommitCap, &f.SlowCloses, &f.StoreBytes,
		&f.StoreMax, &f.DiskFree, &f.DiskSize, &f.StoreErrors, &f.syncs, &f.accepted} {
		*p = nan
	}
}

// clusterOf returns the cluster's figures: counts and rates summed, the longest
// queue of each kind and the largest capacity, the disk of the server
// with the least free share, and the send→ACCEPT buckets merged (so the
// p99 is the cluster's, not a mean of the servers'). A figure is over its
// limit in the cluster when it is in any server.
func clusterOf(fs []Figures) Figures {
	nan := math.NaN()
	c := Figures{Addr: "cluster"}
	c.setNaN()
	add := func(a *float64, b float64) {
		switch {
		case math.IsNaN(b):
		case math.IsNaN(*a):
			*a = b
		default:
			*a += b
		}
	}
	most := func(a *float64, b float64) {
		if !math.IsNaN(b) && (math.IsNaN(*a) || b > *a) {
			*a = b
		}
	}
	c.interval = len(fs) > 0
	for _, f := range fs {
		c.Servers += f.Servers
		c.Down = append(c.Down, f.Down...)
		c.NotReady += f.NotReady
		if len(f.Down) > 0 {
			continue
		}
		add(&c.Conns, f.Conns)
		add(&c.ConnCap, f.ConnCap)
		add(&c.PreLogin, f.PreLogin)
		add(&c.LoggedIn, f.LoggedIn)
		add(&c.Closing, f.Closing)
		add(&c.SlowCloses, f.SlowCloses)
		add(&c.StoreBytes, f.StoreBytes)
		add(&c.StoreMax, f.StoreMax)
		add(&c.StoreErrors, f.StoreErrors)
		most(&c.ShardQueue, f.ShardQueue)
		most(&c.GroupQueue, f.GroupQueue)
		most(&c.Held, f.Held)
		most(&c.RoutingCap, f.RoutingCap)
		most(&c.CommitQueue, f.CommitQueue)
		most(&c.CommitCap, f.CommitCap)
		for fig := range c.overAny {
			c.overAny[fig] = c.overAny[fig] || f.Over(Figure(fig))
		}
		if !math.IsNaN(f.DiskFreeShare()) && (math.IsNaN(c.DiskFreeShare()) || f.DiskFreeShare() < c.DiskFreeShare()) {
			c.DiskFree, c.DiskSize = f.DiskFree, f.DiskSize
		}
		if !f.interval {
			c.interval = false
			continue
		}
		add(&c.LoginsPerSec, f.LoginsPerSec)
		add(&c.InPerSec, f.InPerSec)
		add(&c.OutPerSec, f.OutPerSec)
		add(&c.SlowPerSec, f.SlowPerSec)
		add(&c.syncs, f.syncs)
		add(&c.accepted, f.accepted)
		if f.accept != nil {
			if c.accept == nil {
				c.accept = append([]bucket(nil), f.accept...)
			} else if c.accept = addBuckets(c.accept, f.accept); c.accept == nil {
				c.accept = []bucket{} // bounds differ: no cluster p99
			}
		}
	}
	if !c.interval {
		c.LoginsPerSec, c.InPerSec, c.OutPerSec, c.SlowPerSec, c.syncs, c.accepted = nan, nan, nan, nan, nan, nan
	}
	return c
}

// Frame is one screen: every server's figures and, for more than one
// server, the cluster's.
type Frame struct {
	At      time.Time
	Every   time.Duration
	Servers []Figures
	Cluster *Figures // nil for one server
}

// NewFrame computes the frame of the latest scrapes cur given the round
// before, prev (nil on the first scrape: no rates yet). prev and cur list
// the servers in the same order.
func NewFrame(prev, cur []Sample, every time.Duration) Frame {
	fr := Frame{Every: every}
	for i, s := range cur {
		var p Sample
		if i < len(prev) && prev[i].Addr == s.Addr {
			p = prev[i]
		}
		fr.Servers = append(fr.Servers, figures(p, s))
		fr.At = s.At
	}
	if len(cur) > 1 {
		c := clusterOf(fr.Servers)
		fr.Cluster = &c
	}
	return fr
}
