// Package handover moves a running server's live connections to its
// successor: a new `switchboard serve --takeover` on the same data folder
// takes the sockets and each session's state from the old process, and the
// clients see a pause, never a disconnect.
//
// The two processes talk over a unix socket in the data folder
// (handover.sock, owner-only, SOCK_SEQPACKET so that each message is whole
// and carries its descriptors with SCM_RIGHTS). The exchange:
//
//	new → old   HELLO(version, pid)
//	old → new   BEGIN(addr)          or REFUSE(reason): the old one serves on
//	new → old   REFUSE(reason), within a quarter second, when the new one
//	            cannot take over (its listen address is another): the old
//	            one serves on, nothing paused; else, after that wait,
//	            the old process stops reading and accepting, finishes what
//	            is in flight, writes what is queued, and detaches every
//	            connection from its event loops (keeping a copy of each socket)
//	old → new   BATCH(records, sockets) …
//	old → new   CLOSED(total)        the store is closed
//	            the new process opens the store, starts its router and
//	            listens on addr beside the old listener (SO_REUSEPORT)
//	new → old   READY
//	old → new   COMMIT               the old process closes its copies and exits
//	            the new process adopts every connection and carries on
//
// The commit point is COMMIT. Until the old process sends it, no byte of a
// handed-over connection has been read or written by the new one, so if the
// new process fails or says REFUSE, or READY does not come in time, the old
// one opens the store again and adopts its own connections back: the same
// records, the same code path. After COMMIT the new process owns them; if
// it then dies, that is a crash like any other (clients reconnect and
// resend, and nothing acknowledged is lost: it is in the store).
//
// A record (Conn) is the session as the gateway keeps it: state, user,
// resume point (the highest seq written and the highest acked), ping
// interval, token expiry, the dictionary flag, the Noise keys and counters,
// and the bytes that arrived and were not read. Nothing else needs to move:
// every message, receipt and group change is in the store, and what the
// router had queued was finished before the store closed. Version says the
// format; a process refuses another version and the old one keeps serving.
package handover
