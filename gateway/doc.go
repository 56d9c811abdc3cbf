// Package gateway is Switchboard's network side: gnet event loops that
// accept connections, parse frames in place, verify logins, keep time, and
// write what the delivery router pushes.
//
// # Event-loop rules
//
//   - A loop never blocks: no storage call, no lock held across I/O, no
//     unbounded wait. Work that may wait goes to the router's bounded queues
//     (delivery.Router); a full queue answers the client with REFUSE
//     RETRY_LATER instead of waiting.
//   - Bytes from gnet's Peek never leave the callback: a SEND's body is
//     copied once, into the record the router stores.
//   - Only the loop writes to a connection. Routing workers call Push, which
//     appends to the connection's queue under its mutex and wakes the loop
//     with gnet's Wake (once per drained queue); the loop encodes the queue,
//     coalescing runs into BATCH and ACCEPT frames, and writes it. This keeps
//     frames in order and leaves room for a transport cipher's nonces.
//   - Each connection's unsent bytes (its queue plus gnet's buffer) are
//     capped by Config.OutboundCap; over it the connection is closed as a
//     SLOW_CONSUMER, with a reason that begins with the cause, outbound_cap
//     (the queue) or write_buffer (gnet's buffer), each counted
//     (Server.SlowConsumers). Its entries are safe in storage.
//   - Timeouts (handshake, idle, partial frame) run on one timing wheel per
//     loop with one-second slots, advanced by a runnable that gnet's ticker
//     schedules on the loop; traffic only stamps the connection, so the wheel
//     costs nothing per frame (a connection moves on it only when it logs in
//     and when a frame is left half-sent, so that a nearer deadline is not
//     missed), and there is no timer or goroutine per connection. The
//     partial-frame timeout measures progress: a connection is closed when
//     its incomplete frame got no byte for PartialFrameTimeout, or fell
//     below PartialFrameMinRate averaged since its first byte (after one
//     timeout of grace), never for being slow and steady above it.
//   - gnet stops the whole engine on EMFILE at accept, so a connection is
//     accepted only while the open connections stay within the open-file
//     limit minus a reserve for every other file, and within
//     Config.MaxConns. The reserve is the descriptors open besides
//     connections (the store's files, which grow with it, listeners,
//     pollers), counted once a second on the ticker goroutine, plus
//     Config.FDHeadroom (64) and a quarter of them for what may open
//     before the next count (filelimit.go). The one over the cap gets ERROR SERVER_FULL and is
//     counted in Stats.Refused; open sessions are kept. New refuses a
//     MaxConns the limit cannot hold (ErrFileLimit).
//   - Before login a connection may send only a frame the size of a LOGIN
//     (1 KiB, refused from its length prefix), and each loop holds at most
//     its share of Config.MaxPreLogin connections waiting to log in: past
//     half of it new ones get HandshakeTimeoutBusy (3 s), past all of it the
//     oldest waiting one is closed to make room (admit.go says why the
//     oldest is evicted rather than the newest refused).
//   - Each connection's frames are rate-limited by a token bucket kept in
//     one 32-bit field (rate.go): Config.RateLimit frames a second with a
//     burst of Config.RateBurst; every frame after LOGIN counts but an ACK
//     that advances. Over the rate a SEND or GROUP gets REFUSE RETRY_LATER
//     with the milliseconds until a token, a SIGNAL is dropped, other
//     frames are served; each adds a little debt, and a connection whose
//     debt passes about another burst is closed with RATE_LIMITED.
//   - A stop is Drain (no new connections, no more frames read), then the
//     owner stops the router (its commits in flight queue their ACCEPTs),
//     then Shutdown writes what is queued and a GOAWAY to every connection
//     and stops the engine. The gateway stops nothing but itself; package
//     node does the ordering. Shutdown is bounded by
//     Config.ShutdownTimeout (10 s), of which node gives the router three
//     quarters: a loop that does not run its GOAWAYs or an engine that does
//     not stop is logged and left, and Shutdown returns
//     ErrShutdownTimeout. Clients resend what was not acknowledged.
//     Shutdown sizes the GOAWAY's reconnect window once, to the connections
//     open: connections over Config.GoAwayRate seconds, at least
//     GoAwayAfter, at most 10 minutes (timeouts.go). Each client draws its
//     delay uniformly in the window, so they come back at no more than
//     GoAwayRate logins a second.
//   - A handover (handover.go) is the other way out: Pause (no more
//     reading; new connections get GOAWAY RETRY_LATER), the owner finishes
//     the router, Flush writes every answer and waits for the kernel to
//     take it, and Detach turns each connection into a record and a copy of
//     its socket on its own loop, in one runnable, so no byte is read
//     between the record and the close. Adopt registers sockets another
//     process handed over through gnet's Engine.Register; OnOpen makes
//     each a conn where its record left it, and bytes that had arrived
//     unread (loop.carry, only while an adopted connection has some) are
//     read before gnet's. A detached conn's OnClose touches nothing but
//     this process's books.
//   - A panic while handling a connection closes that connection with
//     INTERNAL and is counted (Stats.Panics) and logged once with its
//     stack; the loop and other connections carry on. This holds in every
//     per-connection path: OnTraffic, OnOpen, OnClose, the timing wheel's
//     check and the GOAWAY sweep at shutdown.
//   - Every ERROR carries a reason naming the check that failed ("ACK 17
//     beyond last delivered 12"); every close is logged at debug level with
//     its user, code and reason (reason.go). Reasons are built only when a
//     connection fails.
//
// # Token expiry
//
// A token is checked at LOGIN by the loop's token.Verifier (package token
// defines tokens; verifying one allocates nothing) and its expiry kept (conn.expires, a loop
// second rounded up, so never enforced early). When it passes during the
// session, the wheel's check writes what is queued, then GOAWAY with code
// TOKEN_EXPIRED and no delay, and closes: the client reconnects at once
// with a fresh token, and resumes from its last ACK as after any close. The
// check runs on the wheel, so expiry costs four bytes per connection and
// nothing per frame; it fires within about a second of the expiry.
//
// # Logins away from home
//
// In a cluster a user's mailbox has one home node. When Config.HomeAddr
// names another node for the user of a verified LOGIN, the loop answers
// GOAWAY MOVED with that node's client address (after 100 ms: the client
// connects there within a random 0–100 ms) and closes, without an ERROR
// and before the router sees the login; the close counts as MOVED
// (redirectLogin, frames.go). Package gateway does not know who is home:
// its owner supplies HomeAddr.
//
// # The Noise transport
//
// A preface naming transport 1 or 2 (PROTOCOL.md 3.1) runs a Noise
// handshake before LOGIN (noise.go). Its steps, a few Diffie-Hellman
// operations each, never run on a loop: a loop hands each handshake
// message to a worker (past Config.MaxHandshakes waiting or running, a
// new handshake is refused with GOAWAY RETRY_LATER; one already started
// is finished), and the worker hands the reply back under
// the connection's mutex and wakes the loop. After it the loop decrypts
// whole transport messages as it reads and seals whole frames as it
// writes, in socket order, so the nonces need no lock. A Noise
// connection's state is in its loop's map; a plain one carries none.
//
// # Locks
//
// Server.mu (the loop registry) and conn.mu (one connection's queue) are
// never held together, and neither is held across I/O or a call into
// another package.
package gateway
