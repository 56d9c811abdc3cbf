// Package delivery routes messages: it owns sequence assignment, the path
// from a send to durable storage and on to the recipient, receipts, and the
// registry of online connections.
//
// # The path of a message
//
//	gateway loop ──Send──▶ shard(recipient)          one goroutine per shard
//	                        │ seq = last+1
//	                        ▼
//	                       storage.Append ──▶ group commit (fsync)
//	                        │ done, on the committer goroutine
//	                        ▼
//	                       shard(recipient).done     (channel, bounded by in-flight appends)
//	                        ├──▶ ACCEPT to the sender's connection
//	                        └──▶ the entry to the recipient's connection, if
//	                             online, caught up and inside its window
//
// A recipient's ACK goes to its shard, which deletes through storage.Ack.
// The ack's transaction also records one pending receipt per run of message
// ids (storage.PendingReceipt); the shard hands each to its sender's shard,
// where the receipt becomes an entry of the sender's mailbox that settles
// the pending receipt in the same transaction. So a delivered receipt is
// never lost between the two: Start offers every pending receipt again
// (after a stop or a crash), and so does a rescan when a full queue put
// some off. A receipt may then be stored twice; clients take receipts as
// idempotent (PROTOCOL.md 8.3).
//
// # Expired receipts
//
// A message its recipient does not fetch within storage's MessageTTL is
// deleted by storage alone (its TTL sweep, an append into the full
// mailbox, or an ack past it), which records an expired pending receipt
// in the same transaction (storage.PendingReceipt.Expired). No request of
// ours is waiting for it, so the first shard watches the store's
// Stats.ExpiredReceipts on its one-second tick and, when it grew, offers
// the expired pending receipts as a rescan does. Each becomes a RECEIPT
// entry of the sender's mailbox with kind expired, naming the recipient
// (By), that settles its pending receipt like a delivered one. So a
// sender learns of an expiry within a second of the commit that deleted
// the message.
//
// Only sends and group changes wait for a sync of the store before their
// ACCEPT; acks and receipts ride on those syncs (see package storage).
//
// # Rules
//
// One shard goroutine owns each user (by hash of the user id): only it
// assigns that user's seqs, reads its mailbox and pushes its entries, so
// entries reach a connection in seq order. Methods called by the gateway's
// event loops (Login, Send, Ack, …) never block: they hand a request to the
// shard's bounded queue and report false when it is full; the caller refuses
// the request with Router.BusyRetryAfter's delay, which grows while such
// refusals go on (backoff.go), so refused clients do not all resend into
// the same overload. A shard blocks only on storage (reads, and Append
// while the commit queue is full), never on a session: Sessions.Push
// queues and returns.
//
// The boundary with the gateway is made of values. A session is named by a
// Session (node, id), not a pointer; delivery reaches sessions through the
// Sessions interface, which the gateway implements and a cluster peer could;
// a mailbox's owner is named by an Addressee; requests and what comes back
// (Outbound) are values. Who owns a mailbox is answered in one place,
// owners.go: one of the local shards, or, in a cluster, the mailbox's home
// node. Inside the process a group fan-out shares a counter (fanout)
// between the shards that store its copies; its part on another node is
// named by an id in the payload, and that node keeps its own counter.
//
// In a cluster (Join, peers.go) every mailbox has one home node, which
// alone stores and serves it; sessions live on their user's home. A 1:1
// SEND to a user homed elsewhere is one payload to the home node, which
// stores it (deduplicated there, as always) and answers ACCEPT or REFUSE to
// the sender's session, one payload back: the ACCEPT comes only once the
// home node made the message durable. A home node that is down gets its
// SENDs refused at once, retryable; one that took a SEND and did not answer
// within the timeout gets it refused, retryable, on the next tick, and the
// resend (flag B) is deduplicated there. A delivered receipt for a sender
// homed elsewhere goes to the sender's home node, which stores it and then
// tells the acker's node to settle its pending receipt: until then a
// rescan or a restart offers it again, so receipts may repeat but are not
// lost. Signals cross too, one payload per node. A group lives on its own
// home node (that of its id), whose group worker alone checks and changes
// its membership; a group request from a session elsewhere is one payload
// there and one answer back, as a 1:1 SEND is. The home fans a message or
// event out with one payload per node homing members, and that node
// answers once every copy it was given is durable; the requester's ACCEPT
// waits for every node's answer. A member's home that is down or silent
// fails the message retryably, and the resend stores only the copies still
// missing (peergroups.go).
//
// Every user's entries flow to its connection through a window: at most
// Config.Window entries pushed and not yet acknowledged, and at most
// Config.WindowBytes bytes pushed since the connection last acknowledged
// everything it was sent (partial acks do not reopen the byte window; a
// client acks promptly when idle). Entries beyond the window wait in storage and are read in
// pages as acknowledgements arrive, so neither a backlog nor a slow reader
// grows memory. A connection whose window stays full for Config.SlowAfter is
// closed as a slow consumer.
package delivery
