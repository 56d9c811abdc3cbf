package delivery

import "switchboard/protocol"

// Conn is what delivery needs of an online connection. The gateway's
// connection implements it; delivery never touches a socket.
type Conn interface {
	// Push queues out to be written by the connection's event loop. It never
	// blocks. It returns false when the connection is closed or closing
	// (also when out would push it over its outbound cap, in which case it
	// closes itself as a slow consumer); the entry is then left in storage.
	Push(out Outbound) bool
	// Close closes the connection with code, after what is already queued.
	Close(code protocol.Code)
}

// OutKind says what an Outbound carries.
type OutKind uint8

// Outbound kinds.
const (
	OutEntry   OutKind = iota + 1 // a mailbox entry: Seq and Record
	OutAccept                     // ACCEPT of MsgID (Ref: group id)
	OutRefuse                     // REFUSE of MsgID with Code and RetryAfter
	OutWelcome                    // the login was registered: Seq is the mailbox's last seq
	OutSignal                     // SIGNAL from Peer, Kind in MsgID, Group in Ref
)

// Outbound is one item for a connection's event loop to encode. It is a
// value, small, with no pointers but Record and Reason.
type Outbound struct {
	Kind       OutKind
	Code       protocol.Code // OutRefuse
	RetryAfter uint32        // OutRefuse, milliseconds
	// Reason names the check that refused, for OutRefuse: for people and
	// logs, as the REFUSE frame's reason. Always a constant string, so a
	// refusal allocates nothing for it.
	Reason string
	Seq    uint64 // OutEntry, OutWelcome
	MsgID  uint64 // OutAccept, OutRefuse; the signal kind for OutSignal
	Ref    uint64 // OutAccept: created group; OutSignal: group
	Peer   uint64 // OutSignal: who it comes from
	// Record is the stored entry (protocol.ParseRecord), for OutEntry. It is
	// immutable and shared; the loop copies it into a frame.
	Record []byte
}

// Size returns the bytes o is charged against a connection's outbound cap:
// about what its frame takes on the wire.
func (o *Outbound) Size() int { return len(o.Record) + 16 }
