// Package client is the client side of Switchboard's protocol
// (docs/PROTOCOL.md), for Go applications to embed.
//
// It has two layers. Session is the client's state machine and does no I/O:
// it is fed decoded frames and the time, and says what to write and when to
// wake. Conn is a blocking connection driven by a Session, with a reader
// goroutine, reconnects and timers. The load generator (package bench)
// drives Sessions from its own epoll loop instead.
//
// # What a Session owns
//
//   - The outbox: msg_ids not yet ACCEPTed, from a per-sender counter
//     (NextMsgID, persisted by the application), written in msg_id order;
//     everything a lost connection left unconfirmed goes again after the
//     next WELCOME with flag B, and a message never written goes without.
//   - REFUSE backoff (PROTOCOL.md 8.5): a refused message goes again, with
//     flag B, no sooner than its retry_after; a RETRY_LATER also holds every
//     new SEND of the connection until then; retry_after 0 fails it.
//   - The resume point: the highest seq the application processed
//     (Processed), never one it only received. It is LOGIN.ack on the next
//     connection, and the application persists it with the entries.
//   - ACK coalescing (8.4): an ACK at window/2 entries or 64 KiB processed,
//     or AckDelay after the first, whichever comes first.
//   - Reconnect delays (8.9, 8.10): full jitter under a ceiling that doubles
//     from 1 s to 60 s; after a GOAWAY, full jitter over its window, a
//     random delay in [0, after], so that the clients of a stopping server
//     come back spread evenly over the window it sized; at once after a
//     TOKEN_EXPIRED with no delay; none after REPLACED or BAD_TOKEN.
//   - Redirects (8.10): after a GOAWAY MOVED, a delay of at most its after,
//     no backoff growth, and Redirect names the home node's address; at
//     most MaxRedirects in a row before one counts as a failure.
//
// # Driving a Session
//
// Times are readings of the driver's monotonic clock (durations since an
// origin it picks). A driver:
//
//	dst = s.AppendLogin(dst, protocol.Login{Token: tok})   // on connect
//	s.Welcome(&w, now)                                     // on WELCOME
//	for id, retry, ok := s.NextSend(now); ok; … {          // after Welcome, Queue,
//		write SEND(id, its body) with flag B if retry      // Refused, and when woken
//	}
//	if s.Entry(seq) { hand the entry to the application }  // DELIVER, RECEIPT…
//	if s.Processed(seq, size, now) { dst = s.AppendAck(dst) } // once it has it
//	s.Accepted(&a); s.Refused(&r, now); s.GoAway(&g)
//	delay, again := s.Closed(code, now)                    // when it ends
//	addr, moved := s.Redirect()                            // dial addr next if moved
//	at, ok := s.NextWake(now)                              // when to call again
//	at, ok = s.SendDue(now)                                // the same without the ACK
//
// The Session keeps msg_ids only; the driver keeps the bodies, so that a
// load generator with thousands of connections generates them instead.
//
// # What a Conn adds
//
// Conn keeps the bodies of its outbox (SENDs and GROUP requests alike),
// writes READ and SIGNAL, and reports its connection in Status: offline
// (with the cause and the next attempt), logging in, resuming (the backlog
// up to WELCOME.last not yet processed) and caught up; Changed wakes a
// watcher. An application that keeps state across restarts dials with
// Options.ManualAck, stores each entry before Processed lets its ACK go,
// persists NextMsgID, Resume and Outbox, and hands them back in Options
// (Session.NextMsgID and Ack, Outbox): a restored outbox goes again with
// flag B. Queue takes a message under an id the application chose, so that
// it can persist the message, and the next id, before it goes
// (PROTOCOL.md 8.5: an id is never used twice). Send picks the id and
// writes at once, so an application that crashed before persisting the
// counter would use the id again after its restart, and the recipient would
// drop the new message as a duplicate. An application that keeps no state
// across restarts uses Send and dials with Session.NextMsgID set to
// ClockMsgID(time.Now()): its ids then start above any the last run used
// (with the default, 1, every run would start again at 1).
//
// Conn hands each mailbox entry (by seq) to the application once, across
// reconnects. A sender's resend after a lost ACCEPT can still be stored
// twice when it went without flag B (PROTOCOL.md 8.5), and then arrives
// under two seqs: an application drops repeats by (from, msg_id).
//
// No method waits for the network: frames are queued and written by a
// goroutine of the Conn's own, so Send, Status and the others return at
// once even while the socket takes nothing. A socket that takes nothing
// for Options.WriteTimeout is dropped, and the Conn reconnects.
//
// Conn pings when it has written nothing for the ping interval WELCOME
// granted, and takes a connection for dead when no frame at all follows a
// PING within Options.DeadAfter (10 s, PROTOCOL.md 8.8): it closes it and
// reconnects. 10 s outlasts the pause of a server upgraded in place, which
// carries on on the same connection.
//
// # Noise
//
// With Options.Noise every connection is encrypted (PROTOCOL.md 3.1): the
// LOGIN frame rides in the last handshake message, and frames go in
// transport messages after it. The device keeps one static key across runs
// (NoiseOptions.Static), and its login token must be bound to the public
// half (token.MintBound; PROTOCOL.md 8.1): the Token callback mints or
// fetches that one. The first handshake is XX unless the application pinned
// the server's key (NoiseOptions.Server); every handshake pins the key it
// proves, so reconnects run IK, one round trip with LOGIN in the first
// message, and a server whose key changed is met with XXfallback and the
// new key pinned. ServerKey returns the pin to persist, and Status the
// handshake pattern of the connection. A handshake the server refuses
// with a plain ERROR or GOAWAY (too many in progress, no Noise there) is
// handled as that frame answering LOGIN would be. A frame travels in one
// transport message, so bodies are at most MaxNoiseBody bytes.
//
// A DELIVER or GROUP_EVENT the server sent live, without a time, comes
// from Recv stamped with the server's clock as estimated from WELCOME
// (PROTOCOL.md 8.1); an entry handed to the application once is not
// handed again when a reconnect brings it back before it was processed.
//
// Send refuses a body the server would close the connection for
// (BODY_TOO_LARGE, PROTOCOL.md 9): over MaxNoiseBody until a WELCOME has
// come, since a server that offers Noise takes no more even on a plain
// connection, and then over the last WELCOME's max_frame less 1 KiB (and
// 64 KiB). Should the server still close a connection with ERROR
// BODY_TOO_LARGE (an operator's lower --max-body), the Conn refuses the
// largest message of its outbox for good, a REFUSE from Recv, and logs in
// again without it.
package client
