package delivery

import "switchboard/storage"

// Signals are ephemeral and cost a shard no storage: a shard pushes a signal
// to the users it holds online (users or idle) and drops it for everyone
// else, without loading an offline user's state. A group signal costs one
// request per shard, not one per member: the group worker sorts the members
// by shard and hands each shard its part of one shared list. A signal that
// finds a queue full is dropped and counted (SignalsDropped).

// signalGroup passes q, a signal from a member of the group, to the online
// members but the sender: one request per shard that owns any of them.
// Loop-only (the group worker's run goroutine).
func (w *groupWorker) signalGroup(q groupReq, members map[uint64]storage.Role) {
	if _, ok := members[q.from]; !ok {
		return // only members may signal a group; a signal has no answer
	}
	r := w.r
	n := r.own.count()
	// Counting sort by shard into one slice the shards share: each gets a
	// disjoint part, which nobody writes after the hand-off.
	start := make([]int, n+1)
	for m := range members {
		if m != q.from {
			i, _ := r.own.owner(m)
			start[i+1]++
		}
	}
	for i := 1; i <= n; i++ {
		start[i] += start[i-1]
	}
	ids := make([]uint64, start[n])
	next := make([]int, n)
	copy(next, start[:n])
	for m := range members {
		if m != q.from {
			i, _ := r.own.owner(m)
			ids[next[i]] = m
			next[i]++
		}
	}
	for i := range n {
		part := ids[start[i]:start[i+1]:start[i+1]]
		if len(part) == 0 {
			continue
		}
		r.stats.SignalRequests.Add(1)
		if !r.own.at(i).offer(request{kind: reqSignal, from: q.from, msgID: q.msgID, more: q.group, list: part}) {
			r.stats.SignalsDropped.Add(uint64(len(part)))
		}
	}
}

// signal pushes signal q to its users that are online on this shard: q.list
// for a group signal, else q.user. It never reads storage. Loop-only.
func (s *shard) signal(q request) {
	if q.list == nil {
		s.signalOne(q.user, q)
		return
	}
	for _, id := range q.list {
		s.signalOne(id, q)
	}
}

func (s *shard) signalOne(id uint64, q request) {
	var c Session
	if u, ok := s.users[id]; ok {
		c = u.sess
	} else if iu, ok := s.idle[id]; ok {
		c = iu.sess
	}
	if !c.Valid() || !s.r.push(c, Outbound{Kind: OutSignal, Peer: q.from, MsgID: q.msgID, Ref: q.more}) {
		s.r.stats.SignalsDropped.Add(1)
	}
}
