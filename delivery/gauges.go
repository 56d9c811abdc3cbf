package delivery

// Gauges is a snapshot of the router's queues, for metrics. Each slice is
// the caller's and indexed like the workers: ShardQueues[i] and
// HeldReceipts[i] are shard i's.
type Gauges struct {
	// ShardQueues are the requests waiting in each shard's queue. At
	// QueueLen the shard refuses new requests (REFUSE RETRY_LATER).
	ShardQueues []int
	// GroupQueues are the requests waiting in each group worker's queue,
	// also bounded by QueueLen.
	GroupQueues []int
	// HeldReceipts are the receipts each shard holds because their
	// sender's shard queue was full; past QueueLen they are put off
	// (Stats.ReceiptsDropped) and offered again from storage.
	HeldReceipts []int
	// QueueLen is the bound of every queue above (Config.QueueLen).
	QueueLen int
}

// Gauges returns the lengths of the router's queues now. It may be called
// from any goroutine; each length is read on its own, so the snapshot is
// not one instant.
func (r *Router) Gauges() Gauges {
	g := Gauges{
		ShardQueues:  make([]int, len(r.shards)),
		GroupQueues:  make([]int, len(r.groups)),
		HeldReceipts: make([]int, len(r.shards)),
		QueueLen:     r.cfg.QueueLen,
	}
	for i, s := range r.shards {
		g.ShardQueues[i] = len(s.in)
		g.HeldReceipts[i] = int(s.heldLen.Load())
	}
	for i, w := range r.groups {
		g.GroupQueues[i] = len(w.in)
	}
	return g
}

// publishHeld makes len(s.held) readable by Gauges. Shard goroutine only,
// after each change of held.
func (s *shard) publishHeld() { s.heldLen.Store(int64(len(s.held))) }
