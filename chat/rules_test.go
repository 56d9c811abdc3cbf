package chat

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"switchboard/client"
	"switchboard/internal/testutil"
	"switchboard/protocol"
)

// brokenStore returns a Store whose Save fails: its folder lies under a
// regular file.
func brokenStore(t *testing.T) *Store {
	t.Helper()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return NewStore(filepath.Join(file, "sub"), 1)
}

// failQueue is a fake link whose Queue refuses every message, as
// client.Conn does one over the server's body limit.
type failQueue struct{ *fakeLink }

func (failQueue) Queue(client.Outgoing) error { return errors.New("over the server's limit") }

func (h *harness) conv(key string) *Conversation {
	h.t.Helper()
	c := h.m.State().Conversations[key]
	if c == nil {
		h.t.Fatalf("no conversation %q", key)
	}
	return c
}

func (h *harness) line(key string, msgID uint64) Line {
	h.t.Helper()
	for _, l := range h.conv(key).Lines {
		if l.MsgID == msgID && !l.Notice {
			return l
		}
	}
	h.t.Fatalf("no line of msg %d in %q", msgID, key)
	return Line{}
}

// TestRulesMendCounter: a file whose counter is not above every id it
// shows as used (an outbox entry, a sent line) starts from the clock again.
func TestRulesMendCounter(t *testing.T) {
	before := client.ClockMsgID(time.Now())
	for _, tc := range []struct {
		name string
		st   State
	}{
		{"at an outbox id", State{NextMsgID: 5, Outbox: []Pending{{MsgID: 5, To: 2, Text: "w"}}}},
		{"below an outbox id", State{NextMsgID: 3, Outbox: []Pending{{MsgID: 5, To: 2, Text: "w"}}}},
		{"at a sent line's id", State{NextMsgID: 4, Conversations: map[string]*Conversation{"u2": {Lines: []Line{{MsgID: 4, Mine: true, Text: "s"}}}}}},
	} {
		store := NewStore(t.TempDir(), 1)
		tc.st.User = 1
		if err := store.Save(&tc.st); err != nil {
			t.Fatal(err)
		}
		st, err := store.Load(1)
		if err != nil {
			t.Fatal(err)
		}
		if st.NextMsgID < before {
			t.Errorf("a counter %s came back as %d, want from the clock (at least %d)", tc.name, st.NextMsgID, before)
		}
	}
}

// TestRulesMendBounds: a file past MaxConversations loses its quietest
// conversations but not the open one, and those under a key naming no peer
// (not a user or group, or id 0).
func TestRulesMendBounds(t *testing.T) {
	store := NewStore(t.TempDir(), 1)
	st := &State{User: 1, NextMsgID: 1, Open: "u2", Tick: 200, Conversations: map[string]*Conversation{}}
	for i := range MaxConversations + 2 { // u2 … u67, u2 the quietest
		st.Conversations[fmt.Sprintf("u%d", i+2)] = &Conversation{Active: uint64(i + 2)}
	}
	st.Conversations["x5"] = &Conversation{Active: 100}
	st.Conversations["u0"] = &Conversation{Active: 100}
	if err := store.Save(st); err != nil {
		t.Fatal(err)
	}
	st, err := store.Load(1)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Conversations) != MaxConversations {
		t.Fatalf("%d conversations, want %d", len(st.Conversations), MaxConversations)
	}
	for _, k := range []string{"u3", "u4", "x5", "u0"} {
		if st.Conversations[k] != nil {
			t.Errorf("conversation %q kept", k)
		}
	}
	for _, k := range []string{"u2", "u5", "u67"} {
		if st.Conversations[k] == nil {
			t.Errorf("conversation %q dropped", k)
		}
	}
}

// TestRulesNewPeerDropsQuietest: a message from a new peer past
// MaxConversations drops the quietest conversation, never the open one.
func TestRulesNewPeerDropsQuietest(t *testing.T) {
	h := newHarness(t, t.TempDir())
	st := h.m.State()
	st.Open = "u2"
	for i := range MaxConversations { // u2 … u65, u2 (open) the quietest
		st.Conversations[fmt.Sprintf("u%d", i+2)] = &Conversation{Active: uint64(i + 1)}
	}
	st.Tick = MaxConversations
	h.events(&protocol.Deliver{Seq: 1, From: 100, MsgID: 1, Body: []byte("new")})
	if len(st.Conversations) != MaxConversations {
		t.Fatalf("%d conversations, want %d", len(st.Conversations), MaxConversations)
	}
	if st.Conversations["u100"] == nil || st.Conversations["u2"] == nil || st.Conversations["u3"] != nil || st.Conversations["u4"] == nil {
		t.Fatalf("want u100 made, u2 (open) kept, u3 (the quietest other) dropped, u4 kept")
	}
}

// TestRulesQuietestByLastMessage: the conversation dropped for a new peer
// is the one whose last message is oldest, not the one made first: a
// message brings an old conversation back to the newest.
func TestRulesQuietestByLastMessage(t *testing.T) {
	h := newHarness(t, t.TempDir())
	var evs EventsMsg
	for i := range MaxConversations { // u2 … u65, in that order
		evs = append(evs, &protocol.Deliver{Seq: uint64(i + 1), From: uint64(i + 2), MsgID: 1, Body: []byte("hi")})
	}
	h.m.Update(evs)
	h.events(&protocol.Deliver{Seq: 100, From: 2, MsgID: 2, Body: []byte("again")})
	h.events(&protocol.Deliver{Seq: 101, From: 100, MsgID: 1, Body: []byte("new")})
	st := h.m.State()
	if len(st.Conversations) != MaxConversations || st.Conversations["u2"] == nil || st.Conversations["u3"] != nil || st.Conversations["u100"] == nil {
		t.Fatalf("%d conversations, u2 kept %v, u3 kept %v; want %d, u2 (written to last) kept, u3 (quietest) dropped",
			len(st.Conversations), st.Conversations["u2"] != nil, st.Conversations["u3"] != nil, MaxConversations)
	}
}

// TestRulesNoAckWithoutSave: entries whose save failed are not
// acknowledged; the next batch saved acknowledges them with it.
func TestRulesNoAckWithoutSave(t *testing.T) {
	h := newHarness(t, t.TempDir())
	good := h.m.cfg.Store
	h.typeLine("/to 2")
	h.m.cfg.Store = brokenStore(t)
	h.events(&protocol.Deliver{Seq: 1, From: 2, MsgID: 1, Body: []byte("unsaved")})
	if len(h.link.processed) != 0 {
		t.Fatalf("processed %v with the save failed, want nothing", h.link.processed)
	}
	h.want("chat: ")
	h.m.cfg.Store = good
	h.events(&protocol.Deliver{Seq: 2, From: 2, MsgID: 2, Body: []byte("saved")})
	if !slices.Equal(h.link.processed, []uint64{2}) || !slices.Equal(h.link.savedAt, []uint64{2}) {
		t.Fatalf("processed %v at %v, want [2] saved", h.link.processed, h.link.savedAt)
	}
	if c := h.link.saved().Conversations["u2"]; c == nil || len(c.Lines) != 2 {
		t.Fatalf("saved conversation %+v, want both lines", c)
	}
}

// TestRulesSendSaveFails: a message whose save failed is neither queued
// nor kept (outbox, line): sent again once the disk is back, it goes once.
func TestRulesSendSaveFails(t *testing.T) {
	h := newHarness(t, t.TempDir())
	good := h.m.cfg.Store
	h.typeLine("/to 2")
	h.m.cfg.Store = brokenStore(t)
	h.typeLine("hello")
	h.want("> hello█")
	if len(h.link.queued) != 0 || len(h.m.State().Outbox) != 0 || len(h.conv("u2").Lines) != 0 {
		t.Fatalf("unsaved message: queued %d, outbox %+v, lines %+v; want none", len(h.link.queued), h.m.State().Outbox, h.conv("u2").Lines)
	}
	h.m.cfg.Store = good
	h.typeLine("")
	st := h.link.saved()
	if len(h.link.queued) != 1 || len(st.Outbox) != 1 || len(st.Conversations["u2"].Lines) != 1 {
		t.Fatalf("queued %d, saved outbox %+v, lines %+v; want the message once", len(h.link.queued), st.Outbox, st.Conversations["u2"].Lines)
	}
}

// TestRulesAcceptRefuseSaved: an ACCEPT or a REFUSE alone in a batch (no
// entry with it) is saved: the outbox in the file shrinks.
func TestRulesAcceptRefuseSaved(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.typeLine("/to 2")
	h.typeLine("one")
	h.typeLine("two")
	h.events(&protocol.Accept{MsgID: 1})
	st := h.link.saved()
	if len(st.Outbox) != 1 || st.Outbox[0].MsgID != 2 || !st.Conversations["u2"].Lines[0].Accepted {
		t.Fatalf("after ACCEPT 1 the file has outbox %+v, lines %+v", st.Outbox, st.Conversations["u2"].Lines)
	}
	h.events(&protocol.Refuse{MsgID: 2, Code: protocol.CodeBadRecipient})
	st = h.link.saved()
	if len(st.Outbox) != 0 || st.Conversations["u2"].Lines[1].Failed == "" {
		t.Fatalf("after REFUSE 2 the file has outbox %+v, lines %+v", st.Outbox, st.Conversations["u2"].Lines)
	}
}

// TestRulesEntryAtResumeDropped: an entry at the resume point (its ACK
// lost) is not applied again: a group event shows once.
func TestRulesEntryAtResumeDropped(t *testing.T) {
	h := newHarness(t, t.TempDir())
	ev := &protocol.GroupEvent{Seq: 1, Group: 77, Actor: 5, Op: protocol.GroupAdd, Members: []uint64{1}}
	h.events(ev)
	h.events(ev)
	if n := len(h.conv("g77").Lines); n != 1 {
		t.Fatalf("%d lines, want the event once", n)
	}
}

// TestRulesGroupDelivers: a group message goes to the group's
// conversation, its sender becomes a known member and stops typing; two
// members' messages with one msg_id both show; a peer typing elsewhere
// does not show.
func TestRulesGroupDelivers(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.typeLine("/group 99")
	h.events(&protocol.Signal{Peer: 2, Group: 99, Kind: protocol.SignalTyping})
	h.want("2 is typing…")
	h.events(&protocol.Deliver{Seq: 1, From: 2, Group: 99, MsgID: 7, Body: []byte("from two")})
	h.wantNot("typing")
	h.events(&protocol.Deliver{Seq: 2, From: 3, Group: 99, MsgID: 7, Body: []byte("from three")})
	h.want("2: from two", "3: from three")
	if h.m.State().Conversations["u2"] != nil || h.m.State().Conversations["u3"] != nil {
		t.Fatal("a group message made a 1:1 conversation")
	}
	h.typeLine("/members")
	h.want("as seen from here: 2, 3")
	h.events(&protocol.Signal{Peer: 4, Kind: protocol.SignalTyping})
	h.wantNot("typing")
}

// TestRulesServerTime: a message shows the time the server stamped.
func TestRulesServerTime(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.typeLine("/to 2")
	h.events(&protocol.Deliver{Seq: 1, From: 2, MsgID: 1, Time: protocol.Stamp(time.Date(2026, 12, 1, 7, 5, 0, 0, time.Local)), Body: []byte("hi")})
	h.want("07:05 2: hi")
}

// TestRulesReceipts: receipts apply to the messages they name and no
// others: a delivered 1:1 receipt not to a group's; a read by a non-member
// not at all; a read counts as delivered; an expired one not over a
// delivery, and a delivery clears an expiry; any receipt means accepted.
func TestRulesReceipts(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.events(&protocol.GroupEvent{Seq: 1, Group: 99, Actor: 1, Op: protocol.GroupCreate, Members: []uint64{1, 2, 3}})
	h.typeLine("/group 99")
	h.typeLine("g msg") // 1
	h.typeLine("/to 2")
	h.typeLine("to two") // 2
	h.events(&protocol.Receipt{Seq: 2, MsgID: 2})
	h.want("you: to two ✓✓\n")
	h.events(&protocol.Receipt{Seq: 3, MsgID: 1, More: 1})
	if l := h.line("g99", 1); l.Accepted || len(l.Delivery) != 0 {
		t.Fatalf("a delivered 1:1 receipt marked the group's message: %+v", l)
	}
	h.events(&protocol.Receipt{Seq: 4, MsgID: 1, By: 7, Read: true})
	if l := h.line("g99", 1); len(l.ReadBy) != 0 {
		t.Fatalf("a read by a non-member counted: %+v", l)
	}
	h.typeLine("/group 99")
	h.events(&protocol.Receipt{Seq: 5, MsgID: 1, By: 2, Read: true})
	h.want("you: g msg ✓✓ 1 member got it, 1 read it")
	h.events(&protocol.Receipt{Seq: 6, MsgID: 1, By: 2, Expired: true})
	h.wantNot("✗")
	h.events(&protocol.Receipt{Seq: 7, MsgID: 1, By: 3, Expired: true})
	h.want("✗ not fetched by 3 in time")
	h.events(&protocol.Receipt{Seq: 8, MsgID: 1, By: 3})
	h.want("you: g msg ✓✓ 2 members got it, 1 read it")
	h.wantNot("✗")
	// A group message's ACCEPT and REFUSE find its line.
	h.typeLine("second") // 3
	h.typeLine("third")  // 4
	h.events(&protocol.Accept{MsgID: 3}, &protocol.Refuse{MsgID: 4, Code: protocol.CodeForbidden, Reason: "no"})
	h.want("you: second ✓\n", "you: third ✗ FORBIDDEN: no")
}

// TestRulesReadRuns: a READ covers one sender's consecutive msg_ids, at
// most client.MaxReadIDs of them, whatever the history holds.
func TestRulesReadRuns(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.m.cfg.History = 2 * client.MaxReadIDs
	h.typeLine("/group 99")
	h.events(&protocol.Deliver{Seq: 1, From: 2, Group: 99, MsgID: 7, Body: []byte("a")},
		&protocol.Deliver{Seq: 2, From: 3, Group: 99, MsgID: 8, Body: []byte("b")})
	want := []protocol.Read{{To: 2, Group: true, MsgID: 7}, {To: 3, Group: true, MsgID: 8}}
	if !slices.Equal(h.link.reads, want) {
		t.Fatalf("READs %+v, want %+v", h.link.reads, want)
	}
	h.link.reads = nil
	h.typeLine("/to 5")
	h.events(&protocol.Deliver{Seq: 3, From: 5, MsgID: 10, Body: []byte("a")},
		&protocol.Deliver{Seq: 4, From: 5, MsgID: 12, Body: []byte("b")})
	want = []protocol.Read{{To: 5, MsgID: 10}, {To: 5, MsgID: 12}}
	if !slices.Equal(h.link.reads, want) {
		t.Fatalf("READs %+v, want %+v", h.link.reads, want)
	}
	h.link.reads = nil
	var evs EventsMsg
	for i := range client.MaxReadIDs + 1 {
		evs = append(evs, &protocol.Deliver{Seq: uint64(10 + i), From: 6, MsgID: uint64(1 + i), Body: []byte("x")})
	}
	h.m.Update(evs)
	h.typeLine("/to 6")
	want = []protocol.Read{{To: 6, MsgID: 1, More: client.MaxReadIDs - 1}, {To: 6, MsgID: client.MaxReadIDs + 1}}
	if !slices.Equal(h.link.reads, want) {
		t.Fatalf("READs %+v, want %+v", h.link.reads, want)
	}
}

// TestRulesQueueRefused: a message the connection refuses leaves the
// outbox, in memory and in the file, and shows why.
func TestRulesQueueRefused(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.typeLine("/to 2")
	h.m.cfg.Link = failQueue{h.link}
	h.typeLine("too long here")
	h.want("you: too long here ✗ over the server's limit", "> █")
	if len(h.m.State().Outbox) != 0 || len(h.link.saved().Outbox) != 0 {
		t.Fatalf("outbox %+v, saved %+v; want empty", h.m.State().Outbox, h.link.saved().Outbox)
	}
}

// TestRulesOpenSaved: opening a conversation is saved, with its messages
// told read.
func TestRulesOpenSaved(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.typeLine("/to 2")
	h.events(&protocol.Deliver{Seq: 1, From: 3, MsgID: 9, Body: []byte("hi")})
	h.typeLine("/to 3")
	st := h.link.saved()
	if st.Open != "u3" || st.Conversations["u3"].Lines[0].Unread {
		t.Fatalf("saved open %q, line %+v; want u3, read", st.Open, st.Conversations["u3"].Lines[0])
	}
}

// TestRulesCommands: typing in a group signals the group; /to 0 opens
// nothing; a create typed in a conversation opens the group there; a
// group this user creates itself gives no "added you" notice.
func TestRulesCommands(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.typeLine("/to 0")
	h.want(`"0" is not an id`, "no conversation open")
	if len(h.m.State().Conversations) != 0 {
		t.Fatalf("conversations %v after /to 0", h.m.State().Conversations)
	}
	h.typeLine("/group 99")
	h.typeKeys("x")
	if want := []protocol.Signal{{Group: 99, Kind: protocol.SignalTyping}}; !slices.Equal(h.link.signals, want) {
		t.Fatalf("signals %+v, want %+v", h.link.signals, want)
	}
	h.m.input = h.m.input[:0]
	h.typeLine("/to 2")
	h.typeLine("/create 3")
	h.events(&protocol.GroupEvent{Seq: 1, Group: 41, Actor: 1, Op: protocol.GroupCreate, Members: []uint64{1, 3}})
	h.wantNot("added you")
	h.events(&protocol.Accept{MsgID: 1, Ref: 41})
	h.want("group 41 (2 members known)")
}

// TestRulesUnreadElsewhere: messages of the open conversation not yet told
// read (offline) are not listed as new elsewhere.
func TestRulesUnreadElsewhere(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.typeLine("/to 2")
	h.link.offline = true
	h.events(&protocol.Deliver{Seq: 1, From: 2, MsgID: 1, Body: []byte("hi")})
	h.want("2: hi")
	h.wantNot("new messages")
}

// offlineOptions are user 1's chat on the state folder dir, dialling a
// port nobody listens on and waiting an hour before the next attempt.
func offlineOptions(dir string) Options {
	return Options{
		Addr: "127.0.0.1:1", User: 1, StateDir: dir,
		Token:   func(context.Context) ([]byte, error) { return []byte("x"), nil },
		Session: client.Config{MinBackoff: time.Hour, MaxBackoff: time.Hour},
	}
}

// TestRulesOpenHoldsLock: a chat holds its state's lock until Close.
func TestRulesOpenHoldsLock(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(context.Background(), offlineOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewStore(dir, 1).Lock(); err == nil || !strings.Contains(err.Error(), "another chat") {
		c.Close()
		t.Fatalf("a second lock while the chat is open: %v, want refused", err)
	}
	c.Close()
	release, err := NewStore(dir, 1).Lock()
	if err != nil {
		t.Fatalf("the lock after Close: %v", err)
	}
	release()
}

// TestRulesOpenDefaultStateDir: with no state folder given, the chat
// makes DefaultStateDir in the working folder and keeps its lock there.
func TestRulesOpenDefaultStateDir(t *testing.T) {
	t.Chdir(t.TempDir())
	c, err := Open(context.Background(), offlineOptions(""))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := os.Stat(filepath.Join(DefaultStateDir, "user-1.lock")); err != nil {
		t.Fatalf("the lock in the default state folder: %v", err)
	}
}

// TestRulesOpenRefused: Open refuses options without a server, a user or
// a token, a state file that is not JSON (naming it) and one whose outbox
// client.Dial refuses; a refused Open leaves the state's lock free, so
// the chat starts once the cause is mended.
func TestRulesOpenRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(o *Options)
		state string // the state file's contents; "" for none
		want  string
	}{
		{"no server", func(o *Options) { o.Addr = "" }, "", "Options.Addr, User and Token are required"},
		{"no user", func(o *Options) { o.User = 0 }, "", "Options.Addr, User and Token are required"},
		{"no token", func(o *Options) { o.Token = nil }, "", "Options.Addr, User and Token are required"},
		{"not JSON", nil, "not json", "user-1.json: invalid character"},
		{"outbox out of order", nil, `{"user":1,"next_msg_id":9,"outbox":[{"id":5,"to":2,"text":"a"},{"id":3,"to":2,"text":"b"}]}`, "restored msg id 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			o := offlineOptions(dir)
			if tc.edit != nil {
				tc.edit(&o)
			}
			if tc.state != "" {
				if err := os.WriteFile(NewStore(dir, 1).Path(), []byte(tc.state), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			c, err := Open(context.Background(), o)
			if err == nil {
				c.Close()
				t.Fatalf("Open: no error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open: %v, want %q", err, tc.want)
			}
			release, err := NewStore(dir, 1).Lock()
			if err != nil {
				t.Fatalf("the lock after a refused Open: %v", err)
			}
			release()
		})
	}
}

// TestRulesMessageRetryLaterFails: a message refused RETRY_LATER with no
// retry_after fails on its line; only a group create goes again.
func TestRulesMessageRetryLaterFails(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.typeLine("/to 2")
	h.typeLine("hi")
	h.events(&protocol.Refuse{MsgID: 1, Code: protocol.CodeRetryLater})
	h.want("you: hi ✗ RETRY_LATER")
	if len(h.link.queued) != 1 || len(h.m.State().Outbox) != 0 {
		t.Fatalf("queued %+v, outbox %+v; want the message once, nothing waiting", h.link.queued, h.m.State().Outbox)
	}
}

// TestRulesMendOpen: an open key naming no peer is closed, not made; one
// naming a peer whose conversation is missing gets an empty one, so the
// chat opens where it was left.
func TestRulesMendOpen(t *testing.T) {
	for _, tc := range []struct {
		file, open string
		convs      int
	}{
		{`{"user":1,"next_msg_id":3,"open":"x7"}`, "", 0},
		{`{"user":1,"next_msg_id":3,"open":"u7"}`, "u7", 1},
	} {
		store := NewStore(t.TempDir(), 1)
		if err := os.WriteFile(store.Path(), []byte(tc.file), 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := store.Load(1)
		if err != nil {
			t.Fatal(err)
		}
		if st.Open != tc.open || len(st.Conversations) != tc.convs || (tc.open != "" && st.Conversations[tc.open] == nil) {
			t.Fatalf("%s: open %q, conversations %v; want %q alone open", tc.file, st.Open, st.Conversations, tc.open)
		}
	}
}

// TestRulesNoticeCleared: Esc clears a notice, and so does the next
// command that works.
func TestRulesNoticeCleared(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.typeLine("/nosuch")
	h.want("unknown command")
	h.typeLine("/to 2")
	h.wantNot("unknown command")
	h.typeLine("/nosuch")
	h.typeKeys("typed")
	h.m.Update(tea.KeyPressMsg{Code: tea.KeyEscape})
	h.wantNot("unknown command", "typed")
}

// TestRulesReceiptMembersOneGroup: a member's delivered receipt makes it a
// member of the group of the message only.
func TestRulesReceiptMembersOneGroup(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.typeLine("/group 98")
	h.typeLine("/group 99")
	h.typeLine("hi") // 1
	h.events(&protocol.Receipt{Seq: 1, MsgID: 1, By: 5})
	if m98, m99 := h.conv("g98").Members, h.conv("g99").Members; len(m98) != 0 || !slices.Equal(m99, []uint64{5}) {
		t.Fatalf("members of 98 %v, of 99 %v; want none and [5]", m98, m99)
	}
}

// TestRulesHistoryFillsExactly: lines whose text adds up to HistoryBytes
// exactly are all kept (four bodies of 64 KiB), and the oldest goes at the
// next.
func TestRulesHistoryFillsExactly(t *testing.T) {
	c := &Conversation{}
	for i := range 5 {
		c.add(Line{MsgID: uint64(i + 1), Text: strings.Repeat("x", HistoryBytes/4)}, DefaultHistory)
		if want := min(i+1, 4); len(c.Lines) != want || c.Lines[len(c.Lines)-1].MsgID != uint64(i+1) {
			t.Fatalf("after line %d: %d lines, the last msg %d; want %d, the last %d", i+1, len(c.Lines), c.Lines[len(c.Lines)-1].MsgID, want, i+1)
		}
	}
}

// TestRulesSaveLeavesNoFileOpen: a save closes every file it opened, the
// state's and its folder's: a chat saves after every batch of entries, and
// one left open each time would reach the process's open-file limit, after
// which no save, and so no message, would go.
func TestRulesSaveLeavesNoFileOpen(t *testing.T) {
	open := func() int { return len(testutil.OpenFiles(t)) }
	store := NewStore(t.TempDir(), 1)
	st := &State{User: 1, NextMsgID: 1}
	if err := store.Save(st); err != nil {
		t.Fatal(err)
	}
	before := open()
	for range 20 {
		if err := store.Save(st); err != nil {
			t.Fatal(err)
		}
	}
	if after := open(); after > before {
		t.Fatalf("%d files open after 20 saves, %d before", after, before)
	}
}
