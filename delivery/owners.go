package delivery

// Who owns a mailbox is answered in one place, owners. Today every
// mailbox's owner is one of this process's shards, by hash of the user;
// in a cluster, a mailbox homed on another node would be owned by a
// forwarder to that node, with the same two methods. Everything that hands
// a request to a mailbox's owner (the router's entry points, group
// fan-out, group signals, held receipts) goes through owners; shards keep
// their inside as it is.

// mailboxOwner serves the requests about the mailboxes it owns.
type mailboxOwner interface {
	// offer queues q if there is room, and never blocks.
	offer(q request) bool
	// offerWait queues q, waiting for room until stop is closed; it
	// reports whether q was queued.
	offerWait(q request, stop <-chan struct{}) bool
}

// owners answers who owns a mailbox.
type owners interface {
	// owner returns the owner of user's mailbox and its index among
	// count(), for callers that group requests by owner.
	owner(user uint64) (int, mailboxOwner)
	// count is how many owners there are.
	count() int
	// at returns the owner of index i.
	at(i int) mailboxOwner
}

// localShards: every mailbox is owned by one of this process's shards.
type localShards []*shard

func (ls localShards) owner(user uint64) (int, mailboxOwner) {
	// Fibonacci hashing spreads sequential ids over the shards.
	i := int((user * 0x9E3779B97F4A7C15) >> 32 % uint64(len(ls)))
	return i, ls[i]
}

func (ls localShards) count() int            { return len(ls) }
func (ls localShards) at(i int) mailboxOwner { return ls[i] }

func (s *shard) offer(q request) bool {
	select {
	case s.in <- q:
		return true
	default:
		return false
	}
}

func (s *shard) offerWait(q request, stop <-chan struct{}) bool {
	select {
	case s.in <- q:
		return true
	case <-stop:
		return false
	}
}
