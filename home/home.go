// Package home computes a mailbox's home node in a cluster: rendezvous
// hashing over the node IDs. It is pure arithmetic with no dependency, so
// that the cluster layer (which routes by it) and the load generator
// (which places its users by it, without NATS) compute the same home.
package home

// Of returns the node among nodes that homes mailbox owner id (a user or a
// group id): the node with the highest Weight(id, node), the lower ID on a
// tie (rendezvous hashing). It depends only on id and the set of node IDs,
// not their order, so every node computes the same home, and adding a node
// moves only the ids that the new node wins, about 1/N of them, all to the
// new node. Of returns 0 for an empty list. It does not keep nodes.
func Of(id uint64, nodes []uint32) uint32 {
	var best uint32
	var bestW uint64
	for _, n := range nodes {
		w := Weight(id, n)
		if best == 0 || w > bestW || (w == bestW && n < best) {
			best, bestW = n, w
		}
	}
	return best
}

// Weight is the rendezvous weight of node for id: splitmix64's finalizer
// over both, so that every bit of either changes about half of the result.
func Weight(id uint64, node uint32) uint64 {
	return mix(id ^ mix(uint64(node)+0x9e3779b97f4a7c15))
}

// mix is splitmix64's finalizer.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
