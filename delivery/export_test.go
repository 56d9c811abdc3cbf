package delivery

import "time"

// ShardOf returns the index of the shard that owns user, for tests that
// need two users on one shard or on different ones.
func (r *Router) ShardOf(user uint64) int {
	s := r.shardFor(user)
	for i, x := range r.shards {
		if x == s {
			return i
		}
	}
	return -1
}

// SetPanicHook makes every shard and group worker call h as it takes a
// request (worker is "shard" or "group"); h may panic. Call before Start.
func (r *Router) SetPanicHook(h func(worker string, user uint64)) { r.panicHook = h }

// SetCrashDrain sets how long a crashed shard waits for its storage
// operations to complete. Call before Start.
func (r *Router) SetCrashDrain(d time.Duration) { r.crashDrain = d }

// Tick runs every shard's once-a-second work now and returns when each has
// done it.
func (r *Router) Tick() {
	for _, s := range r.shards {
		ack := make(chan struct{})
		s.tickNow <- ack
		<-ack
	}
}

// Forwarding returns how many forwarded SENDs wait for an answer, and over
// how many (session, home) routes.
func (r *Router) Forwarding() (pending, routes int) {
	r.peer.mu.Lock()
	defer r.peer.mu.Unlock()
	return len(r.peer.pending), len(r.peer.routes)
}

// GroupID is the id a create of creator with msgID gives its group.
func GroupID(creator, msgID uint64) uint64 { return groupID(creator, msgID) }

// Fanning returns how many fan-out parts handed to other nodes wait for
// their answer.
func (r *Router) Fanning() int {
	r.peer.mu.Lock()
	defer r.peer.mu.Unlock()
	return len(r.peer.fans)
}
