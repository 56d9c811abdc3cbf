// Package bench is Switchboard's load generator and capacity benchmark,
// run as `switchboard bench <scenario>`. People size hosts with it, so it
// checks what it measures: every run verifies that each message was
// delivered exactly once (after dedupe by sender and message id) and in
// order per sender, and that its sender got the delivered receipt of each
// copy, and fails otherwise.
//
// # Shape of a run
//
//	coordinator (Run)                         worker processes (RunWorker)
//	  plan: units (pairs, groups) over          one engine each, on its own
//	  processes of ≤ 15,000 connections,        source address 127.0.0.N,
//	  each on its own source address  ──spec──▶ reading steps on stdin,
//	  steps: connect, traffic, drain… ──step──▶ answering on stdout
//	  scrapes the servers' /metrics   ◀─done──  (JSON lines; histograms as
//	  merges Results (Result.Merge)   ◀result─  HdrHistogram encodings)
//
// With one process the coordinator runs the engine itself.
//
// # Several servers
//
// One server process holds fewer connections than its open-file limit, so
// a run may target several independent servers (--addr a,b,…). Each unit
// is homed on one of them, the run's u-th unit on server u mod N, and all
// its users log in there: the servers share nothing, so a message only
// reaches users of the server it was sent to, and the checks stay those
// of one server. Every process talks to every server; the coordinator
// scrapes every server's /metrics at once and reports the sums (each
// server's share in the notes).
//
// A server that answers LOGIN with GOAWAY MOVED (a cluster node that is not
// the user's home, PROTOCOL.md 8.10) is followed as a client follows it:
// the connection dials the address named, which is one of --addr's servers
// or an IP address and port (host names outside --addr are not resolved:
// a failure), and stays with it until an attempt there fails. Redirects
// count in the results' closes as MOVED.
//
// # A cluster
//
// With --cluster-nodes N, --addr lists the client addresses of one
// cluster's N nodes, node 1 first, and the run plays the cluster's users
// where they live: each user's home node is home.Of(id, 1..N), the
// function the nodes route by (package home), and every user logs in to
// its home directly, so no login is redirected. --cross sets the share of
// units that span nodes (default 1 from the command; 0 keeps every unit
// on one node, the units spread evenly over the nodes): of pairs, those
// whose two users are homed on different nodes; of groups, those whose
// members are spread over the nodes, member j of the x-th spanning group
// on node (x+j) mod N, so that it spans min(--group-size, N) nodes. The
// coordinator walks ids up from the run's user base, takes each for its
// home node while that node still needs users, and builds exactly
// round(cross·units) spanning units, spread evenly through the run and
// over the nodes, and cross-node pairs over the ordered pairs of nodes
// too (placeUnits). A unit still lives on one loop, whichever nodes its
// users are on, so the checks are unchanged: exactly once and in order
// per sender, and a delivered receipt per copy, now across nodes (a
// message to a user homed elsewhere is forwarded to the home node, a
// group message to the group's home node, which fans it out with one
// payload per node homing members, and the receipts come back). A
// group's home is the home of its id, which the server derives from the
// creator and the create's msg id, so it falls on any node: a group on
// one node still sends its messages to another node and back when its
// home is elsewhere; the report counts such groups (figure
// groups_homed_apart, the groups whose home homes none of their members).
// --metrics lists every node's admin address; the report sums their CPU
// and notes each node's share over the measured phase, and says how many
// units spanned nodes (figures cross_node_pairs and same_node_pairs, or
// spanning_groups and same_node_groups).
//
// # The engine
//
// An engine is a few event loops (one per core but one by default), each an epoll
// set over its connections, driven by one goroutine: no goroutine per
// connection, no allocation per message (SEND frames are encoded into a
// per-loop buffer from a patched body template). A unit of users that talk
// to each other (a pair, a group) lives on one loop, so the receiver's
// checks read the sender's state without locks or messages between
// processes:
//
//   - a sender keeps, per message id, its intended send time, whether it
//     was accepted, how many recipients got it, and how many delivered
//     receipts came back for those copies;
//   - each body starts with the run id, the sender's counter and the send
//     time, so a receiver tells this run's messages from leftovers, sees
//     order per sender, and a duplicate (the same message under a new
//     mailbox seq, or a copy more than the message has recipients: a
//     resend stored twice) from a redelivery (the same seq again, after a
//     reconnect: allowed, counted, dropped), and a copy that reaches a
//     user outside the sender's pair or group (misrouted);
//   - at the end, an accepted message short of recipients is lost, a
//     message never answered (neither accepted, refused nor delivered) is
//     unanswered, and a delivered copy without its receipt once the drain
//     has waited for receipts is a missing receipt (all fail the run).
//
// A run of chat, phone or group with a hold (--hold) first holds every
// logged-in connection idle that long and reads the servers' memory, as
// connect does, and only then sends: many connections held, then talking
// (scripts/million.sh runs it that way over a cluster).
//
// Open-loop traffic sends on a fixed schedule and times each message from
// its intended send time, so a stalled server is charged for every message
// it delayed (the coordinated-omission correction). Closed-loop traffic
// keeps a window of messages in flight per sender until delivered.
//
// # The phone regime and the sweep
//
// A capacity plan counts phones: many users, each sending a little, none
// with two messages unconfirmed. The phone scenario is open loop with a
// window of one accepted message: every user of every pair sends rate ÷
// senders a second, on its own evenly spaced schedule (deterministic, not
// Poisson: the latency tail is then the server's, not the arrivals'), the
// senders staggered so that the loop's sends are as even as open loop's.
// With --arrivals poisson the loop's sends come at random moments instead
// (exponential gaps of the same mean, each slot going to the next sender
// in turn, and each message timed from its own slot), as phones' sends
// reach a server: some come together, which costs latency and shares
// syncs.
// A message due while its sender still waits for the ACCEPT of the
// previous one is owed, and goes out when that ACCEPT comes, timed from
// its slot: the wait is charged, as for any open-loop message. Slots stop
// after --duration; owed messages may still go out for as long again,
// and what is owed then is counted unsent (the server did not keep up; not
// a correctness failure). The checks are chat's.
//
// Latencies counted from the schedule include the generator's own
// lateness: its timers' slack (50 µs by default on Linux) and its waits
// for a core it shares with the server. Result.GeneratorLag records, for
// every open-loop message, how late the loop came to it after its slot
// (after the end of a wait in which no sender could take it, in chat's
// open loop), and the report prints it beside the latencies, so that a
// tail can be told the server's or the generator's. The wait for a
// previous ACCEPT is not in it: that is the server's.
//
// With --warmup (chat, phone, group, and each step of a sweep) the
// traffic step sends for the warm-up and then --duration, as one schedule with no pause between: a
// pause of a few tens of milliseconds changes how the server's Go runtime
// schedules for seconds after it (docs/BENCHMARKS.md, "The phone regime
// second by second"). Every message is counted and checked; each loop
// records latencies only for messages due after the warm-up and notes its
// counts when the warm-up ends (Result.WarmupSent and its siblings), and
// the coordinator reads the servers' metrics and the generators' CPU then,
// so the rates and the costs per message are of the measured phase alone.
//
// The sweep runs the phone regime at rising offered rates over the same
// connections, a drain after each step and the servers' metrics read
// around it, and reports per step the delivered rate, the server's CPU
// and store syncs (switchboard_store_syncs_total) per delivered message,
// the send-to-deliver percentiles and the generator's lag p99, and
// whether p99 stayed under the target (a step that delivered under nine
// tenths of its offered rate, catch-up included, does not hold it,
// whatever its p99); the answer is the highest rate that held it with every lower
// rate holding too (a rate that holds only above one that missed is noise
// near the knee). A step that fails the checks ends the sweep and fails it.
//
// # The overload run
//
// The overload run asks whether the server still delivers at its capacity
// when offered twice as much. It takes the capacity from --capacity, or
// probes it: open loop at each of --rates for two seconds, the capacity
// being the highest delivered rate of the rates kept up (no busy refusal,
// p99 under half a second, nine tenths delivered within the step), up to
// the first that was not. Then it offers twice the capacity open loop for
// --duration from clients that back off as PROTOCOL.md 8.5 says: a
// message refused RETRY_LATER goes again with flag B after its
// retry_after, never sooner, and its connection sends nothing new
// meanwhile (the schedule's messages go to the other senders, or wait,
// keeping their scheduled time; what still waits at the end is counted
// unsent). It passes when the goodput, distinct messages delivered per
// second while the load was offered, is at least 90% of the capacity, and
// the checks above hold; it reports the busy refusals, the resends and
// the retry_after distribution (overload.go).
//
// # Each connection is a client.Session
//
// Every connection is driven by a client.Session, the state machine a Go
// application embeds (package client), fed from the loop instead of a
// goroutine: the session holds the outbox of unconfirmed msg ids and says
// what goes when; the bench keeps the bodies' timing and the checks. So the
// bench's clients behave as an application's: connections the server
// closes reconnect after the session's delay and resend what was not
// confirmed, with the SEND's retry flag (B) set on every resend and on no
// first send; a refused message goes again no sooner than its retry_after,
// and a RETRY_LATER holds every new SEND of its connection until then, in
// every scenario (an open-loop message due meanwhile goes to another
// sender, or waits); receivers acknowledge cumulatively, at most every
// 5 ms or 64 entries; each connection stays under half the server's
// per-connection frame rate.
//
// # The Noise transport
//
// With --noise xx or ik every connection runs a Noise handshake on its loop
// after the TCP connect, its LOGIN in the last handshake message, with a
// device key per user derived from the run id (a token bound to it), then
// seals the frames of each write into as few transport messages as fit and
// opens what it reads in place (noise.go). The checks are unchanged; the
// Result names the transport and counts the handshakes by pattern.
package bench
