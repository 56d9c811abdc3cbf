package chat

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"switchboard/client"
	"switchboard/protocol"
)

// Bounds of the state file. Each keeps the file, and the time to write it
// after every entry, small.
const (
	// DefaultHistory is how many lines a conversation keeps: a screen's
	// worth many times over.
	DefaultHistory = 1000
	// HistoryBytes bounds the text a conversation keeps, whatever its line
	// count: 1,000 lines of typed chat fit (about 100 KB), while a peer
	// sending 64 KiB bodies fills it with 4 and the oldest go. The file is
	// rewritten after each batch of entries, so it must stay small.
	HistoryBytes = 256 << 10
	// MaxConversations is how many conversations the file keeps; past it
	// the one quiet for longest is dropped. Anyone may write to a user, so
	// without a cap a flood of strangers would grow the file without end.
	// With HistoryBytes, the file stays under 16 MiB.
	MaxConversations = 64
	// MaxOutbox is how many messages and group requests may wait for their
	// ACCEPT; past it the chat refuses new ones until the server confirms
	// some. A person does not type 256 messages while the server is away.
	MaxOutbox = 256
)

// State is what the chat keeps for one user between runs, in one file
// (Store): the session's counter, resume point and outbox, so that a restart
// neither loses nor repeats a message, and the history received, which the
// server deletes once it is acknowledged.
type State struct {
	User uint64 `json:"user"`
	// NextMsgID is the msg_id the next message takes. It is saved before a
	// message with the one below goes out, so no id is used twice.
	NextMsgID uint64 `json:"next_msg_id"`
	// Resume is the highest seq stored here: LOGIN.ack on the next login.
	Resume uint64 `json:"resume"`
	// Outbox holds what was queued and not yet ACCEPTed nor refused for
	// good, in msg_id order; restored, it goes again with flag B.
	Outbox []Pending `json:"outbox,omitempty"`
	// Conversations by key: "u<user>" or "g<group>".
	Conversations map[string]*Conversation `json:"conversations,omitempty"`
	// Open is the key of the conversation on screen; "" for none.
	Open string `json:"open,omitempty"`
	// Tick counts the changes to conversations, to find the quietest.
	Tick uint64 `json:"tick"`
}

// Pending is an outbox entry: a message (Op 0) or a group request.
type Pending struct {
	MsgID   uint64           `json:"id"`
	To      uint64           `json:"to"`
	Group   bool             `json:"group,omitempty"`
	Text    string           `json:"text,omitempty"`
	Op      protocol.GroupOp `json:"op,omitempty"`
	Members []uint64         `json:"members,omitempty"`
	// Over is the conversation open when a group create was typed: the
	// new group opens only over that one, not over one opened since.
	Over string `json:"over,omitempty"`
}

func (p Pending) outgoing() client.Outgoing {
	return client.Outgoing{MsgID: p.MsgID, To: p.To, Group: p.Group, Body: []byte(p.Text), Op: p.Op, Members: p.Members}
}

// Conversation is the history with one user or in one group.
type Conversation struct {
	Lines []Line `json:"lines,omitempty"`
	// Members of a group, as far as the group events this user received
	// tell (the server has no member list to ask for).
	Members []uint64 `json:"members,omitempty"`
	// Gone are those this user saw removed from the group or leave it
	// since: a late receipt from one does not make it a member again.
	Gone   []uint64 `json:"gone,omitempty"`
	Active uint64   `json:"active"` // State.Tick of the last change
}

// Line is one line of a conversation: a message (received or sent) or a
// notice (a group event, a failure).
type Line struct {
	Time  int64  `json:"t"` // Unix seconds
	From  uint64 `json:"from,omitempty"`
	MsgID uint64 `json:"id,omitempty"`
	Text  string `json:"text"`
	// Notice marks a line that is not a message: a group event.
	Notice bool `json:"notice,omitempty"`
	// Of a message this user sent:
	Mine     bool     `json:"mine,omitempty"`
	Accepted bool     `json:"accepted,omitempty"`
	Failed   string   `json:"failed,omitempty"` // why it was refused for good
	Delivery []uint64 `json:"delivered,omitempty"`
	ReadBy   []uint64 `json:"read,omitempty"`
	// Of a message received: not yet told to its sender as read.
	Unread bool `json:"unread,omitempty"`
}

// Store keeps one user's State in the file user-<id>.json of a folder.
type Store struct {
	path string // immutable
}

// NewStore returns the Store of user's state in dir; nothing is read or
// written yet.
func NewStore(dir string, user uint64) *Store {
	return &Store{path: filepath.Join(dir, "user-"+strconv.FormatUint(user, 10)+".json")}
}

// Path returns the state file's path.
func (s *Store) Path() string { return s.path }

// Lock takes the state's lock, a file beside it (user-<id>.lock), until
// release is called or the process ends. Two chats of one user on one
// state would each save over the other's counter, and a peer drops a
// message whose msg_id it has seen; the second is refused instead. Once
// it holds the lock it removes what a Save cut short left.
func (s *Store) Lock() (release func(), err error) {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return nil, fmt.Errorf("chat: state folder: %w", err)
	}
	path := strings.TrimSuffix(s.path, ".json") + ".lock"
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("chat: lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("chat: another chat of this user runs on %s (it holds %s)", s.path, path)
		}
		return nil, fmt.Errorf("chat: lock %s: %w", path, err)
	}
	// Temporary files of a Save cut short (the process killed between
	// writing one and renaming it) are this state's, and nobody else's
	// while the lock is held.
	stale, _ := filepath.Glob(s.path + ".tmp*")
	for _, t := range stale {
		os.Remove(t)
	}
	return func() { f.Close() }, nil
}

// Load reads the state, or returns a new one when the file does not exist
// yet. A new state's counter starts from the clock (client.ClockMsgID):
// the file may be gone while the server, and the peers, still know ids an
// earlier counter used, and a peer drops a message whose (sender, msg_id)
// it has seen.
func (s *Store) Load(user uint64) (*State, error) {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return &State{User: user, NextMsgID: client.ClockMsgID(time.Now()), Conversations: map[string]*Conversation{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("chat: read state: %w", err)
	}
	st := new(State)
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("chat: state file %s: %w", s.path, err)
	}
	if st.User != user {
		return nil, fmt.Errorf("chat: state file %s is user %d's, not %d's", s.path, st.User, user)
	}
	st.mend()
	return st, nil
}

// mend brings a state read from a file edited or damaged by hand back
// within what the chat keeps: a conversation missing its contents or under
// a key naming no peer is dropped, past MaxConversations the quietest go,
// the open one exists (or none is open), and a counter not above every id
// the file shows was used starts again from the clock. The outbox is left
// to client.Dial, which refuses one out of order.
func (st *State) mend() {
	if st.Conversations == nil {
		st.Conversations = map[string]*Conversation{}
	}
	for k, c := range st.Conversations {
		if _, _, ok := peerOf(k); c == nil || !ok {
			delete(st.Conversations, k)
		}
	}
	if _, _, ok := peerOf(st.Open); !ok {
		st.Open = ""
	}
	if st.Open != "" && st.Conversations[st.Open] == nil {
		st.Conversations[st.Open] = &Conversation{Active: st.Tick}
	}
	for len(st.Conversations) > MaxConversations {
		st.dropQuietest("")
	}
	var used uint64
	for _, p := range st.Outbox {
		used = max(used, p.MsgID)
	}
	for _, c := range st.Conversations {
		for _, l := range c.Lines {
			if l.Mine {
				used = max(used, l.MsgID)
			}
		}
	}
	if st.NextMsgID <= used || st.NextMsgID == 0 {
		// Edited, or an older file over a newer one: ids above what it
		// shows may have been used too, but none above the clock's.
		st.NextMsgID = max(used+1, client.ClockMsgID(time.Now()))
	}
}

// Save writes st durably and atomically: a temporary file, synced, renamed
// over the old one, and the folder synced, so that a crash leaves the old
// state or the new one, never a mix. The chat saves before an entry's ACK
// may go out and before a message leaves.
func (s *Store) Save(st *State) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("chat: encode state: %w", err)
	}
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("chat: state folder: %w", err)
	}
	f, err := os.CreateTemp(dir, filepath.Base(s.path)+".tmp*")
	if err != nil {
		return fmt.Errorf("chat: save state: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("chat: save state: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("chat: save state: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("chat: save state: sync folder: %w", err)
	}
	return nil
}

// conversation returns the conversation of key, made if new; making one
// past MaxConversations drops the quietest other one.
func (st *State) conversation(key string) *Conversation {
	st.Tick++
	c := st.Conversations[key]
	if c == nil {
		if len(st.Conversations) >= MaxConversations {
			st.dropQuietest(key)
		}
		c = &Conversation{}
		st.Conversations[key] = c
	}
	c.Active = st.Tick
	return c
}

func (st *State) dropQuietest(keep string) {
	var quiet string
	for k, c := range st.Conversations {
		if k == keep || k == st.Open {
			continue
		}
		if quiet == "" || c.Active < st.Conversations[quiet].Active {
			quiet = k
		}
	}
	delete(st.Conversations, quiet)
}

// add appends l to c, dropping the oldest lines past limit lines or
// HistoryBytes of text (l stays, however long).
func (c *Conversation) add(l Line, limit int) {
	c.Lines = append(c.Lines, l)
	size := 0
	n := len(c.Lines) - 1 // the first line kept
	for ; n > 0 && len(c.Lines)-n < limit; n-- {
		if size += len(c.Lines[n].Text); size+len(c.Lines[n-1].Text) > HistoryBytes {
			break
		}
	}
	if n > 0 {
		c.Lines = append(c.Lines[:0], c.Lines[n:]...)
	}
}
