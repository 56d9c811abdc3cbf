package storage

import (
	"errors"
	"fmt"
)

var (
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("storage: closed")
	// ErrInvalidEntry means an entry can never be stored: seq 0.
	ErrInvalidEntry = errors.New("storage: invalid entry")
	// ErrValueTooLarge means an entry's value is over Config.MaxValueBytes.
	ErrValueTooLarge = errors.New("storage: value too large")
	// ErrSeqOrder means an append's seq is not above the recipient's
	// high-water mark. Nothing was written.
	ErrSeqOrder = errors.New("storage: seq not above high-water mark")
	// ErrDuplicate means a message entry marked as a retry (Entry.Retry)
	// has the same (sender, msg id, recipient) as one appended within the
	// dedupe window. The error is a
	// *DuplicateError that names the original.
	ErrDuplicate = errors.New("storage: duplicate message")
	// ErrMailboxFull means the recipient's mailbox is at
	// Config.MaxMailboxMessages or Config.MaxMailboxBytes, not counting
	// expired entries.
	ErrMailboxFull = errors.New("storage: mailbox full")
	// ErrStoreFull means all mailboxes together hold Config.MaxTotalBytes.
	// Retrying later helps once recipients drain their mailboxes.
	ErrStoreFull = errors.New("storage: store full")
	// ErrSenderQuota means the entry's sender already has
	// Config.MaxSenderPendingMessages entries, or would have more than
	// Config.MaxSenderPendingBytes bytes, waiting in other users'
	// mailboxes. It frees up as recipients ack (or entries expire); other
	// senders are not affected.
	ErrSenderQuota = errors.New("storage: sender quota exceeded")
	// ErrAckAhead means an ack names a seq above the recipient's high-water
	// mark: the recipient claims what was never stored. Nothing was deleted.
	ErrAckAhead = errors.New("storage: ack above high-water mark")
	// ErrCommit wraps the database error of a failed commit or sync. Every
	// op in that commit gets it, and so does every committed op still
	// waiting for a sync: each may or may not be on disk (a retried send
	// is then caught as a duplicate). The store then reopens its database
	// by itself (Stats.Recoveries); writes meanwhile get ErrRecovering.
	ErrCommit = errors.New("storage: commit failed")
	// ErrRecovering means a write was refused, not stored, while the store
	// reopens its database after a failed commit. Retrying later helps.
	ErrRecovering = errors.New("storage: recovering from a failed commit")
	// ErrDiskFull means the free space under the data folder is below
	// Config.MinFreeBytes: messages, group events and group changes are
	// refused (acks, receipts and expiry go on) until space returns.
	// Retrying later helps.
	ErrDiskFull = errors.New("storage: disk space below the floor")
	// ErrGroupExists is returned by ChangeGroup for a create of an existing group.
	ErrGroupExists = errors.New("storage: group exists")
	// ErrNoGroup means the group does not exist.
	ErrNoGroup = errors.New("storage: no such group")
	// ErrNotMember means the member is not in the group.
	ErrNotMember = errors.New("storage: not a member")
	// ErrGroupFull means the group has Config.MaxGroupMembers members.
	ErrGroupFull = errors.New("storage: group full")
	// ErrForbidden means the actor may not make the change: only admins add,
	// remove, promote and demote, and nobody removes or demotes the owner.
	ErrForbidden = errors.New("storage: change not allowed")
	// ErrInvalidConfig is wrapped by every Config.Validate error.
	ErrInvalidConfig = errors.New("storage: invalid config")
)

// DuplicateError is the error an Append of an already committed message
// gets. errors.Is(err, ErrDuplicate) holds for it.
type DuplicateError struct {
	Original Dup
}

// Error implements error.
func (e *DuplicateError) Error() string {
	return fmt.Sprintf("%v: first stored for recipient %d at seq %d",
		ErrDuplicate, e.Original.Recipient, e.Original.Seq)
}

// Unwrap makes errors.Is(err, ErrDuplicate) true.
func (e *DuplicateError) Unwrap() error { return ErrDuplicate }
