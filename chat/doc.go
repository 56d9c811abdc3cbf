// Package chat is `switchboard chat`: an interactive terminal client, a
// demonstration of package client in an application that keeps state
// across restarts the way a phone does. It is a demo: a body is the
// message's UTF-8 text, not end-to-end encrypted as a real client's would be.
//
// # Parts
//
//   - Model (model.go, entries.go, view.go) is a bubbletea model: it is fed
//     key presses, the connection's events (EventsMsg) and status
//     (StatusMsg), and renders one screen. What it asks of the connection
//     goes through Link, which *client.Conn satisfies and tests fake.
//   - Store and State (state.go) are one user's file, user-<id>.json in the
//     state folder (DefaultStateDir, ./chat-state, by default).
//   - Open, Pump and Run (run.go) join the model to a client.Conn and a
//     terminal.
//
// # What is saved, and when
//
// The state file holds the msg_id counter, the resume point (the highest
// seq stored), the outbox of messages and group requests not yet ACCEPTed
// (ids and texts) and each conversation's last DefaultHistory lines (at
// most HistoryBytes of text; MaxConversations conversations) with
// their ticks, the members of each group as far as its events tell, and
// which conversation is open. It is written atomically (a temporary file,
// synced, renamed, the folder synced):
//
//   - before a message or group request is handed to the connection, with
//     the counter past its id, so that no id is used twice and a restart
//     resends it (client.Options.Outbox, with flag B);
//   - after each batch of received entries and before their ACK may go
//     (client.Options.ManualAck, Conn.Processed): the server deletes what
//     is acknowledged (PROTOCOL.md 8.3), so history lives only here;
//   - after ACCEPTs and REFUSEs, which change the outbox.
//
// A new state's counter starts from the clock (client.ClockMsgID), not 1:
// when a file is deleted, the server and the peers still know the ids it
// used, and a peer drops a message whose (from, msg_id) it has seen. A
// file whose counter is not above an id it shows as used starts from the
// clock again. One chat at a time runs on a state: the file's lock
// (user-<id>.lock, beside it) refuses a second.
//
// On restart the resume point is LOGIN.ack, so nothing is received twice;
// an entry redelivered because its ACK was lost is dropped by seq, and a
// message stored twice (a resend without flag B) by (from, msg_id). A file
// that is not JSON, or is another user's, is refused with its path; one
// edited or damaged within JSON is mended to the bounds above when loaded
// (a conversation without contents or under a key naming no peer is
// dropped, the quietest past MaxConversations go, the open one is made if
// missing; a conversation's lines past the history bounds go at its next
// line), and an outbox out of msg_id order is refused by client.Dial.
//
// # The screen
//
// The title line names the user, the open conversation and the
// connection's state: offline (with the next attempt), logging in,
// resuming (the backlog at login not all stored yet), caught up; and how
// many sent messages the server has not confirmed. A message this user
// sent shows … until the server ACCEPTs it, ✓ once stored, ✓✓ once
// delivered, "✓✓ read" (in blue) once read, ✗ and the reason if refused or
// expired; in a group, how many members it reached and read it. Received
// messages of the open conversation are told read (READ) as they show.
// PgUp and PgDn page through its history (the lines the state keeps), End
// returns to the newest; what arrives while the screen is scrolled back
// stays below it, counted on a line of its own, and is told read only once
// the screen is back at the newest (PgDn, End, or a message sent).
// Typing sends a typing SIGNAL at most every TypingEvery; a peer's shows
// for TypingShown. The help line lists the commands: /to USER, /group
// GROUP, /create USER…, /add USER…, /remove USER…, /members, /leave,
// /quit; /help adds /promote USER… and /demote USER…. A notice (an
// error, a command's answer) shows for NoticeShown, or until Esc, which
// also clears the input line. A message refused before it was queued (no
// conversation open, MaxOutbox waiting) stays on the input line.
package chat
