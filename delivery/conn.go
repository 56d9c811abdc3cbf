package delivery

import "switchboard/protocol"

// Session names one client session: the node whose gateway holds its
// connection, and the connection's id there. It is a value: it crosses the
// boundary between gateway and delivery, and could cross a process, where
// a pointer cannot. The zero Session is no session.
type Session struct {
	Node uint32 // 0: this process
	ID   uint64 // the gateway's id for the connection; never 0 for a session
}

// Valid reports whether s names a session.
func (s Session) Valid() bool { return s.ID != 0 }

// Sessions is how delivery reaches the sessions it serves. The gateway
// implements it for its connections; a cluster peer can implement it for
// sessions on another node.
//
// What the boundary promises: Push and Close never block, and each may be
// called from any goroutine. Push reports whether the item was taken for
// the session right now. True is no promise of delivery: the session can
// still end before writing it, and delivery learns of every end through
// Router.Logout, which is the only way it does. False means the session is
// gone, or over its outbound cap (it then closes itself as a slow
// consumer); delivery stops pushing to it and leaves its entries in
// storage. An implementation that cannot know at once (a remote session)
// answers true and reports the loss through Logout. Close closes the
// session with code after what is already queued; closing a session that
// is gone does nothing.
type Sessions interface {
	Push(s Session, out Outbound) bool
	Close(s Session, code protocol.Code)
}

// noSessions stands in when a router is started without sessions (tools
// that only replay storage): nobody is online.
type noSessions struct{}

func (noSessions) Push(Session, Outbound) bool  { return false }
func (noSessions) Close(Session, protocol.Code) {}

// Addressee names the owner of a mailbox: a user today. It is a struct so
// that it can widen to (user, device) without touching every signature.
type Addressee struct {
	User uint64
}

// To returns the addressee of user's mailbox.
func To(user uint64) Addressee { return Addressee{User: user} }

// Message is a SEND as delivery takes it.
type Message struct {
	From   Addressee
	To     uint64 // a user, or a group when Group is set
	Group  bool
	MsgID  uint64
	Retry  bool   // the sender may have sent it before (flag B): storage looks for a duplicate
	Record []byte // the DELIVER record (with Group set for a group), stored as is
}

// ReadReceipt is a READ as delivery takes it: Reader read messages
// MsgID..MsgID+More of Sender.
type ReadReceipt struct {
	Reader, Sender Addressee
	MsgID, More    uint64
}

// OutKind says what an Outbound carries.
type OutKind uint8

// Outbound kinds.
const (
	OutEntry   OutKind = iota + 1 // a mailbox entry: Seq and Record
	OutAccept                     // ACCEPT of MsgID (Ref: group id)
	OutRefuse                     // REFUSE of MsgID with Code and RetryAfter
	OutWelcome                    // the login was registered: Seq is the newest entry waiting (storage.Store.Newest)
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
