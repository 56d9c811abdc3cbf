// Package cluster is the transport between the nodes of a Switchboard
// cluster, over NATS. It is the only package that imports NATS (server and
// client); it carries opaque payloads and knows nothing of frames, users or
// mailboxes beyond Home. Delivery reaches it through its own interface
// (delivery.Peers), which *Cluster implements. docs/CLUSTER.md says how to
// run a cluster.
//
// # Shape
//
// Every node is listed in the same Config (name and node list; Config.Hash
// says whether two nodes agree). Each node embeds a NATS server with an
// explicit route to every other node's Route address, or, with
// Config.External, joins an existing NATS cluster as a client. Each node
// connects to NATS over TCP (an in-process pipe is cut as a slow consumer
// under a burst) and uses two subjects:
//
//	sb.<name>.node.<id>   payloads for node id: 4 bytes of sender ID (big-endian), then the payload
//	sb.<name>.control     heartbeats, every Config.Heartbeat (heartbeat.go has the layout)
//
// Nothing per user lives in NATS: no subject, no subscription, no key-value
// write per login. Home(id) is a fixed function of the id and the node IDs
// (rendezvous hashing), so every node names the same home without asking.
//
// StartNATS runs a standalone NATS server with the embedded one's tuning,
// for tests and tools that need an external NATS cluster (Config.External).
//
// # Liveness
//
// A peer is up while its last sign of life is younger than
// Config.DownAfter (2 s): a node that dies is down within about 2 s, and
// Send to it answers false at once, which delivery turns into a retryable
// refusal. Two signals count:
//
//   - a heartbeat carrying this node's Config.Hash: it makes the peer up,
//     whatever it was, and records its instance (Instance);
//   - a payload from the peer on this node's subject, but only while the
//     peer is up: it keeps up a node whose heartbeats come late under load
//     while its data still arrives. A payload names neither the sender's
//     instance nor its hash, so it never makes up a node that is down,
//     was never heard, or sent another hash, and it never changes the
//     instance: a restarted node is up again only by its heartbeat. (A
//     process that restarts within DownAfter, before its first heartbeat
//     is heard, may keep the peer up with its payloads while Instance
//     still names the previous process: delivery then tags forwards with
//     the old instance and the new process refuses them, retryably, as in
//     any quick restart.)
//
// Since Send refuses a down peer, a node that went down gets no data
// from this node until a heartbeat brings it back, but its own payloads to
// this node still arrive; they do not bring it back. The payload path
// moves the peer's seen time at most once per 5 ms, with an atomic and no
// lock.
//
// The embedded server's own route pings (every 500 ms, 3 unanswered)
// close a dead route on the same time scale; NATS's defaults (a ping
// every 2 minutes) would not. A heartbeat with another
// hash fails Join when heard during it, and later takes that peer down
// with an error logged once. A heartbeat with this node's ID from another
// process (another instance) is a mismatch too: two processes must never
// serve one node's mailboxes. So payloads that arrive while Join waits,
// which peers send as soon as they hear this node, are held until it
// succeeds; New makes the Cluster before, so the handler's answers can go
// through it the moment they are handed on.
//
// # Bounds
//
// Send never buffers while the connection is down (the client's reconnect
// buffer is off) and blocks only while nats.go writes its 32 KiB buffer to
// the local server (at most 1 s). The server holds at most 128 MiB for one
// connection (a route or the client) before cutting it as a slow consumer;
// the client holds at most 1,048,576 payloads or 128 MiB for the handler
// before dropping (Stats.Dropped). Watch's channel holds 64 events and
// drops (Stats.Events) rather than wait.
//
// # Goroutines
//
// The handler is called on the NATS client's goroutine for this node's
// subscription, one at a time, in order per sender; heartbeats are taken on
// the control subscription's goroutine; one goroutine of the cluster's
// publishes heartbeats and turns silence into down events.
package cluster
