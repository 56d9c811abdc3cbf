package chat

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"switchboard/client"
	"switchboard/protocol"
)

// fakeLink records what the model asks of the connection, and what the
// state file held at that moment.
type fakeLink struct {
	t     *testing.T
	store *Store

	queued    []client.Outgoing
	savedNext []uint64 // the file's NextMsgID at each Queue
	savedOut  []int    // the file's outbox length at each Queue
	reads     []protocol.Read
	signals   []protocol.Signal
	processed []uint64 // seqs
	savedAt   []uint64 // the file's resume point at each Processed
	offline   bool
}

func (f *fakeLink) saved() *State {
	st, err := f.store.Load(1)
	if err != nil {
		f.t.Fatal(err)
	}
	return st
}

func (f *fakeLink) Queue(o client.Outgoing) error {
	st := f.saved()
	f.queued = append(f.queued, o)
	f.savedNext = append(f.savedNext, st.NextMsgID)
	f.savedOut = append(f.savedOut, len(st.Outbox))
	return nil
}

func (f *fakeLink) Read(from uint64, group bool, msgID, more uint64) error {
	if f.offline {
		return client.ErrNotConnected
	}
	f.reads = append(f.reads, protocol.Read{To: from, Group: group, MsgID: msgID, More: more})
	return nil
}

func (f *fakeLink) Signal(to, group uint64, kind uint32) error {
	if f.offline {
		return client.ErrNotConnected
	}
	f.signals = append(f.signals, protocol.Signal{Peer: to, Group: group, Kind: kind})
	return nil
}

func (f *fakeLink) Processed(ev client.Event) {
	var seq uint64
	switch ev := ev.(type) {
	case *protocol.Deliver:
		seq = ev.Seq
	case *protocol.Receipt:
		seq = ev.Seq
	case *protocol.GroupEvent:
		seq = ev.Seq
	}
	f.processed = append(f.processed, seq)
	f.savedAt = append(f.savedAt, f.saved().Resume)
}

// fakeClock is a clock tests move by hand.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

// harness is user 1's model on a fake link, a fake clock and a state file
// in a temporary folder.
type harness struct {
	t     *testing.T
	m     *Model
	link  *fakeLink
	clock *fakeClock
	store *Store
}

func newHarness(t *testing.T, dir string) *harness {
	t.Helper()
	store := NewStore(dir, 1)
	_, statErr := os.Stat(store.Path())
	st, err := store.Load(1)
	if err != nil {
		t.Fatal(err)
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		st.NextMsgID = 1 // a new state: the tests count from 1, not from the clock
	}
	h := &harness{t: t, link: &fakeLink{t: t, store: store}, clock: &fakeClock{now: time.Date(2026, 12, 1, 9, 30, 0, 0, time.Local)}, store: store}
	h.m = NewModel(Config{User: 1, Store: store, State: st, Link: h.link, Now: h.clock.Now})
	h.m.Update(tea.WindowSizeMsg{Width: 200, Height: 30})
	return h
}

// typeLine presses the keys of s, then Enter.
func (h *harness) typeLine(s string) tea.Cmd {
	h.typeKeys(s)
	_, cmd := h.m.Update(tea.KeyPressMsg{Code: tea.KeyEnter})
	return cmd
}

func (h *harness) typeKeys(s string) {
	for _, r := range s {
		k := tea.KeyPressMsg{Code: r, Text: string(r)}
		if r == ' ' {
			k.Code = tea.KeySpace
		}
		h.m.Update(k)
	}
}

func (h *harness) events(evs ...client.Event) { h.m.Update(EventsMsg(evs)) }

// screen returns the rendered screen without styles.
func (h *harness) screen() string { return ansi.Strip(h.m.View().Content) }

func (h *harness) want(parts ...string) {
	h.t.Helper()
	s := h.screen()
	for _, p := range parts {
		if !strings.Contains(s, p) {
			h.t.Fatalf("screen lacks %q:\n%s", p, s)
		}
	}
}

func (h *harness) wantNot(parts ...string) {
	h.t.Helper()
	s := h.screen()
	for _, p := range parts {
		if strings.Contains(s, p) {
			h.t.Fatalf("screen shows %q:\n%s", p, s)
		}
	}
}

// TestModelSendTicks: a message typed to user 2 is saved (counter past its
// id, in the outbox) before it is queued, and its line gains ✓ on ACCEPT,
// ✓✓ on the delivered receipt and "✓✓ read" on the read one; each receipt
// is saved before its ACK may go.
func TestModelSendTicks(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.want("no conversation open", "/to USER", "no end-to-end encryption")
	h.typeLine("/to 2")
	h.want("with 2")
	h.typeLine("hello there")
	if len(h.link.queued) != 1 {
		t.Fatalf("queued %d, want 1", len(h.link.queued))
	}
	q := h.link.queued[0]
	if q.MsgID != 1 || q.To != 2 || q.Group || string(q.Body) != "hello there" {
		t.Fatalf("queued %+v, want msg 1 to 2", q)
	}
	if h.link.savedNext[0] != 2 || h.link.savedOut[0] != 1 {
		t.Fatalf("when queued, the file had next msg id %d and %d in the outbox; want 2 and 1", h.link.savedNext[0], h.link.savedOut[0])
	}
	h.want("you: hello there …", "1 unconfirmed")

	h.events(&protocol.Accept{MsgID: 1})
	h.want("you: hello there ✓")
	h.wantNot("✓✓", "unconfirmed")
	h.events(&protocol.Receipt{Seq: 1, MsgID: 1})
	h.want("you: hello there ✓✓")
	h.wantNot("read")
	h.events(&protocol.Receipt{Seq: 2, MsgID: 1, Read: true, By: 2})
	h.want("you: hello there ✓✓ read")
	if !slices.Equal(h.link.processed, []uint64{1, 2}) || !slices.Equal(h.link.savedAt, []uint64{1, 2}) {
		t.Fatalf("processed seqs %v with the file at %v; want each saved before", h.link.processed, h.link.savedAt)
	}
	// A read receipt from someone the message was not sent to changes nothing.
	h.typeLine("second")
	h.events(&protocol.Accept{MsgID: 2}, &protocol.Receipt{Seq: 3, MsgID: 2, Read: true, By: 3})
	h.want("you: second ✓\n")
}

// TestModelReceiveReadTyping: a message in the open conversation shows and
// is told read at once; one from another user waits until its conversation
// opens; typing shows for TypingShown; a batch is saved once and its last
// entry processed.
func TestModelReceiveReadTyping(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.typeLine("/to 2")
	h.events(&protocol.Signal{Peer: 2, Kind: protocol.SignalTyping})
	h.want("2 is typing…")
	h.clock.now = h.clock.now.Add(TypingShown + time.Second)
	h.wantNot("typing")

	h.events(
		&protocol.Deliver{Seq: 4, From: 2, MsgID: 7, Body: []byte("hi one")},
		&protocol.Deliver{Seq: 5, From: 2, MsgID: 8, Body: []byte("hi two")},
		&protocol.Deliver{Seq: 6, From: 3, MsgID: 9, Body: []byte("from three")},
	)
	h.want("2: hi one", "2: hi two")
	h.wantNot("from three")
	h.want("new messages: /to 3")
	if want := []protocol.Read{{To: 2, MsgID: 7, More: 1}}; !slices.Equal(h.link.reads, want) {
		t.Fatalf("READs %+v, want %+v", h.link.reads, want)
	}
	if !slices.Equal(h.link.processed, []uint64{6}) {
		t.Fatalf("processed %v, want the batch's last seq 6 once", h.link.processed)
	}
	h.typeLine("/to 3")
	h.want("3: from three")
	h.wantNot("new messages")
	if len(h.link.reads) != 2 || h.link.reads[1] != (protocol.Read{To: 3, MsgID: 9}) {
		t.Fatalf("READs %+v, want one for 3's msg 9 on opening", h.link.reads)
	}
	// Offline, the READ waits; Reconnected sends it.
	h.link.offline = true
	h.events(&protocol.Deliver{Seq: 7, From: 3, MsgID: 10, Body: []byte("later")})
	h.link.offline = false
	h.events(&client.Reconnected{})
	if last := h.link.reads[len(h.link.reads)-1]; last != (protocol.Read{To: 3, MsgID: 10}) {
		t.Fatalf("last READ %+v, want 3's msg 10 after the reconnect", last)
	}
}

// TestModelTypingSignalRateLimited: typing sends one SIGNAL per TypingEvery,
// none for a command.
func TestModelTypingSignalRateLimited(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.typeKeys("abc")
	if len(h.link.signals) != 0 {
		t.Fatalf("%d SIGNALs with no conversation open", len(h.link.signals))
	}
	h.m.Update(tea.KeyPressMsg{Code: tea.KeyEscape})
	h.typeLine("/to 2")
	h.typeKeys("abc")
	h.clock.now = h.clock.now.Add(TypingEvery - time.Millisecond)
	h.typeKeys("d")
	if want := []protocol.Signal{{Peer: 2, Kind: protocol.SignalTyping}}; !slices.Equal(h.link.signals, want) {
		t.Fatalf("signals %+v, want %+v", h.link.signals, want)
	}
	h.clock.now = h.clock.now.Add(time.Millisecond)
	h.typeKeys("e")
	if len(h.link.signals) != 2 {
		t.Fatalf("%d signals after %v, want 2", len(h.link.signals), TypingEvery)
	}
	h.m.Update(tea.KeyPressMsg{Code: tea.KeyEscape})
	h.clock.now = h.clock.now.Add(time.Hour)
	h.typeKeys("/members")
	if len(h.link.signals) != 2 {
		t.Fatalf("typing a command sent a SIGNAL")
	}
}

// TestModelGroups: /create queues the request, its ACCEPT opens the new
// group, events keep the members, /add /remove /leave name the open group,
// and a group message's ticks count the members it reached.
func TestModelGroups(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.typeLine("/add 4")
	h.want("/add works in a group")
	h.typeLine("/create 2 x")
	h.want(`"x" is not an id`)
	h.typeLine("/create 2 3")
	if q := h.link.queued[0]; q.Op != protocol.GroupCreate || q.To != 0 || !slices.Equal(q.Members, []uint64{2, 3}) {
		t.Fatalf("queued %+v, want a create of 2, 3", q)
	}
	// The group id msg 1 derives is another creator's: the create goes
	// again under msg 2 (PROTOCOL.md 8.6).
	h.events(&protocol.Refuse{MsgID: 1, Code: protocol.CodeRetryLater})
	if len(h.link.queued) != 2 {
		t.Fatalf("after the create's RETRY_LATER with retry_after 0, %d queued, want 2", len(h.link.queued))
	}
	if q := h.link.queued[1]; q.MsgID != 2 || q.Op != protocol.GroupCreate || q.To != 0 || !slices.Equal(q.Members, []uint64{2, 3}) {
		t.Fatalf("queued again %+v, want the create of 2, 3 as msg 2", q)
	}
	if st := h.link.saved(); len(st.Outbox) != 1 || st.Outbox[0].MsgID != 2 || st.NextMsgID != 3 {
		t.Fatalf("saved outbox %+v, next %d; want only msg 2, next 3", st.Outbox, st.NextMsgID)
	}
	h.want("group create 1 asked again as 2")
	h.events(&protocol.GroupEvent{Seq: 1, Group: 99, Actor: 1, Op: protocol.GroupCreate, Members: []uint64{1, 2, 3}},
		&protocol.Accept{MsgID: 2, Ref: 99})
	h.want("group 99 (3 members known)", "group 99 created", "— you created the group with you, 2, 3")
	h.typeLine("/add 4")
	h.typeLine("/remove 2")
	h.typeLine("yo all")
	want := []client.Outgoing{
		{MsgID: 3, To: 99, Op: protocol.GroupAdd, Members: []uint64{4}},
		{MsgID: 4, To: 99, Op: protocol.GroupRemove, Members: []uint64{2}},
		{MsgID: 5, To: 99, Group: true, Body: []byte("yo all")},
	}
	for i, w := range want {
		q := h.link.queued[i+2]
		if q.MsgID != w.MsgID || q.To != w.To || q.Op != w.Op || q.Group != w.Group || !slices.Equal(q.Members, w.Members) || string(q.Body) != string(w.Body) {
			t.Fatalf("queued %+v, want %+v", q, w)
		}
	}
	h.events(&protocol.Accept{MsgID: 3, Ref: 99},
		&protocol.GroupEvent{Seq: 2, Group: 99, Actor: 1, Op: protocol.GroupAdd, Members: []uint64{4}},
		&protocol.Refuse{MsgID: 4, Code: protocol.CodeForbidden, Reason: "not today"},
		&protocol.Accept{MsgID: 5},
		&protocol.Receipt{Seq: 3, MsgID: 5, By: 3},
		&protocol.Receipt{Seq: 4, MsgID: 5, By: 4},
		&protocol.Receipt{Seq: 5, MsgID: 5, By: 3, Read: true},
		&protocol.Signal{Peer: 3, Group: 99, Kind: protocol.SignalTyping})
	h.want("— you added 4", "group request refused: FORBIDDEN: not today", "you: yo all ✓✓ 2 members got it, 1 read it", "3 is typing…")
	h.typeLine("/members")
	h.want("members of group 99, as seen from here: you, 2, 3, 4")
	h.events(&protocol.GroupEvent{Seq: 6, Group: 99, Actor: 3, Op: protocol.GroupLeave, Members: []uint64{3}})
	h.typeLine("/members")
	h.want("— 3 left", "as seen from here: you, 2, 4")
	h.typeLine("/promote 4")
	if q := h.link.queued[len(h.link.queued)-1]; q.Op != protocol.GroupPromote || q.To != 99 || !slices.Equal(q.Members, []uint64{4}) {
		t.Fatalf("queued %+v, want a promote of 4 in 99", q)
	}
	h.typeLine("/leave")
	if q := h.link.queued[len(h.link.queued)-1]; q.Op != protocol.GroupLeave || q.To != 99 || len(q.Members) != 0 {
		t.Fatalf("queued %+v, want a leave of 99", q)
	}
	// Added to another group by someone else: the screen says how to open it.
	h.events(&protocol.GroupEvent{Seq: 7, Group: 77, Actor: 5, Op: protocol.GroupAdd, Members: []uint64{1}})
	h.want("5 added you to group 77: /group 77 opens it")
	h.typeLine("/group 77")
	h.typeLine("/members")
	h.want("— 5 added you", "as seen from here: you, 5")
}

// TestModelRemovedMemberStaysGone: a delivered receipt for a message sent
// before a member's removal comes after the removal's event; it does not
// make that member one again, while a receipt from a member this user saw
// no event for adds it, and an add brings a removed one back.
func TestModelRemovedMemberStaysGone(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.events(&protocol.GroupEvent{Seq: 1, Group: 99, Actor: 1, Op: protocol.GroupCreate, Members: []uint64{2, 3}})
	h.typeLine("/group 99")
	h.typeLine("before the removal")
	h.events(&protocol.Accept{MsgID: 1},
		&protocol.GroupEvent{Seq: 2, Group: 99, Actor: 1, Op: protocol.GroupRemove, Members: []uint64{3}},
		&protocol.Receipt{Seq: 3, MsgID: 1, By: 3},
		&protocol.Receipt{Seq: 4, MsgID: 1, By: 5})
	h.typeLine("/members")
	h.want("members of group 99, as seen from here: you, 2, 5")
	h.events(&protocol.GroupEvent{Seq: 5, Group: 99, Actor: 1, Op: protocol.GroupAdd, Members: []uint64{3}})
	h.typeLine("/members")
	h.want("members of group 99, as seen from here: you, 2, 3, 5")
}

// TestStateCounterNeverGoesBack: a new state's counter starts from the
// clock, not 1 (the file may have been deleted while the peers remember
// the ids it used); a file whose counter is not above an id it shows as
// used (edited, or copied back) starts again from the clock too.
func TestStateCounterNeverGoesBack(t *testing.T) {
	dir := t.TempDir()
	store := NewStore(dir, 1)
	before := client.ClockMsgID(time.Now())
	st, err := store.Load(1)
	if err != nil {
		t.Fatal(err)
	}
	if st.NextMsgID < before {
		t.Fatalf("a new state's counter %d, want from the clock (at least %d)", st.NextMsgID, before)
	}
	st.NextMsgID = 1
	st.Outbox = []Pending{{MsgID: 5, To: 2, Text: "waiting"}}
	st.Conversations["u2"] = &Conversation{Lines: []Line{{MsgID: 4, Mine: true, Text: "sent"}, {MsgID: 900, From: 2, Text: "theirs"}}}
	if err := store.Save(st); err != nil {
		t.Fatal(err)
	}
	st, err = store.Load(1)
	if err != nil {
		t.Fatal(err)
	}
	if st.NextMsgID < before {
		t.Fatalf("a counter of 1 below used ids 4 and 5 came back as %d, want from the clock", st.NextMsgID)
	}
	// A counter above what the file shows is kept as it is.
	st.NextMsgID = 6
	if err := store.Save(st); err != nil {
		t.Fatal(err)
	}
	if st, err = store.Load(1); err != nil || st.NextMsgID != 6 {
		t.Fatalf("a sound counter of 6 came back as %d (%v)", st.NextMsgID, err)
	}
}

// TestModelInputLine: pasted text joins the input line (its line breaks
// as spaces); "//" starts a message with a slash; an unknown command is
// named before its arguments are looked at; the line stops at a body's
// limit in bytes, with a notice, never in the middle of a character.
func TestModelInputLine(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.typeLine("/to 2")
	h.m.Update(tea.PasteMsg{Content: "pasted\nover two lines"})
	h.typeLine("")
	h.typeLine("//slash at the start")
	if n := len(h.link.queued); n != 2 || string(h.link.queued[0].Body) != "pasted over two lines" || string(h.link.queued[1].Body) != "/slash at the start" {
		t.Fatalf("queued %d: %+v", n, h.link.queued)
	}
	h.typeLine("/foo bar")
	h.want("unknown command /foo")
	h.m.Update(tea.PasteMsg{Content: "é" + strings.Repeat("😀", protocol.MaxBody/4)})
	h.want("a message is at most 65536 bytes")
	h.typeLine("")
	body := h.link.queued[len(h.link.queued)-1].Body
	if len(body) > protocol.MaxBody || len(body) < protocol.MaxBody-3 || !utf8.Valid(body) {
		t.Fatalf("an overlong paste sent %d bytes (valid UTF-8: %v), want at most %d, cut at a character", len(body), utf8.Valid(body), protocol.MaxBody)
	}
}

// TestModelWrapsLongLines: on a narrow screen a long message wraps, so
// its end and its ticks show, no line is wider than the screen, and the
// input line shows the end of what is typed.
func TestModelWrapsLongLines(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.m.Update(tea.WindowSizeMsg{Width: 40, Height: 30})
	h.typeLine("/to 2")
	h.typeLine("the start of a message long enough to wrap twice on a screen forty columns wide: its end")
	h.events(&protocol.Accept{MsgID: 1})
	h.want("the start of", "its end ✓")
	h.typeKeys(strings.Repeat("x", 60) + "typed last")
	h.want("typed last█")
	for _, l := range strings.Split(h.screen(), "\n") {
		if w := ansi.StringWidth(l); w > 40 {
			t.Fatalf("a line of %d columns on a 40-column screen: %q", w, l)
		}
	}
}

// TestModelCreateOpensOnlyWhereTyped: a group create accepted after the
// user opened another conversation leaves that one open and says how to
// open the group; one accepted where it was typed opens the group.
func TestModelCreateOpensOnlyWhereTyped(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.typeLine("/create 2 3")
	h.typeLine("/to 2")
	h.events(&protocol.Accept{MsgID: 1, Ref: 40})
	h.want("with 2", "group 40 created: /group 40 opens it")
	h.typeLine("still to 2")
	if q := h.link.queued[len(h.link.queued)-1]; q.To != 2 || q.Group {
		t.Fatalf("the next message went to %+v, want user 2", q)
	}
	h.typeLine("/create 3")
	h.events(&protocol.Accept{MsgID: 3, Ref: 41})
	h.want("group 41")
}

// TestStateLock: a second chat of a user on the same state is refused
// while the first runs, and starts once it has ended.
func TestStateLock(t *testing.T) {
	dir := t.TempDir()
	release, err := NewStore(dir, 1).Lock()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewStore(dir, 1).Lock(); err == nil || !strings.Contains(err.Error(), "another chat of this user runs on") {
		t.Fatalf("a second lock of user 1's state: %v, want refused", err)
	}
	other, err := NewStore(dir, 2).Lock()
	if err != nil {
		t.Fatalf("user 2's lock beside user 1's: %v", err)
	}
	other()
	release()
	again, err := NewStore(dir, 1).Lock()
	if err != nil {
		t.Fatalf("the lock after the first chat ended: %v", err)
	}
	again()
}

// TestStateLockClearsCutSaves: the temporary files a Save killed before
// its rename leaves are removed by the next chat of that user once it
// holds the lock, and no other user's are touched.
func TestStateLockClearsCutSaves(t *testing.T) {
	dir := t.TempDir()
	store := NewStore(dir, 1)
	cut := store.Path() + ".tmp123456"
	other := filepath.Join(dir, "user-2.json.tmp654321")
	for _, p := range []string{cut, other} {
		if err := os.WriteFile(p, []byte(`{"user":`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	release, err := store.Lock()
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if _, err := os.Stat(cut); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the cut save %s is still there (%v)", cut, err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("user 2's file went with user 1's lock: %v", err)
	}
}

// TestModelRefusedTextStays: a message refused before it was queued
// (no conversation open, the outbox full) stays on the input line with
// the reason, so that it can be sent once the cause is gone.
func TestModelRefusedTextStays(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.typeLine("hello there")
	h.want("no conversation open: /to USER or /group GROUP first (Esc clears the line)", "> hello there█")
	h.m.Update(tea.KeyPressMsg{Code: tea.KeyEscape})
	h.typeLine("/to 2")
	h.m.st.Outbox = make([]Pending, MaxOutbox)
	for i := range h.m.st.Outbox {
		h.m.st.Outbox[i] = Pending{To: 2, MsgID: uint64(100 + i), Text: "waiting"}
	}
	h.typeLine("one more")
	h.want("256 messages wait for the server already: not sent", "> one more█")
	if n := len(h.link.queued); n != 0 {
		t.Fatalf("%d queued, want none", n)
	}
	h.m.st.Outbox = nil // the server accepted them
	h.typeLine("")
	if n := len(h.link.queued); n != 1 || string(h.link.queued[0].Body) != "one more" {
		t.Fatalf("queued after the outbox emptied: %+v, want the kept text", h.link.queued)
	}
	h.want("> █")
}

// TestModelNoticeFades: a notice shows for NoticeShown, then goes on the
// next tick of the clock.
func TestModelNoticeFades(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.typeLine("/nosuch")
	h.clock.now = h.clock.now.Add(NoticeShown - time.Second)
	h.m.Update(tickMsg(h.clock.now))
	h.want("unknown command /nosuch")
	h.clock.now = h.clock.now.Add(time.Second)
	h.m.Update(tickMsg(h.clock.now))
	h.wantNot("unknown command")
}

// TestModelStatusLine: the title says what the connection does.
func TestModelStatusLine(t *testing.T) {
	h := newHarness(t, t.TempDir())
	for _, tc := range []struct {
		st   client.Status
		want string
	}{
		{client.Status{State: client.StateOffline, Retry: h.clock.now.Add(3 * time.Second), Err: errors.New("dial refused")}, "offline, retrying in 3s"},
		{client.Status{State: client.StateLogin}, "logging in"},
		{client.Status{State: client.StateResuming, Last: 5, Resume: 2}, "resuming (2 of 5)"},
		{client.Status{State: client.StateCaughtUp}, "caught up"},
		{client.Status{State: client.StateClosed, Err: errors.New("REPLACED")}, "closed: REPLACED"},
	} {
		h.m.Update(StatusMsg(tc.st))
		h.want(tc.want)
	}
}

// TestModelRefusalsAndDuplicates: a message refused for good shows why and
// leaves the outbox; one refused for now stays; a DELIVER repeated under a
// new seq (a resend without flag B) shows once; an entry at or below the
// resume point is dropped.
func TestModelRefusalsAndDuplicates(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.typeLine("/to 2")
	h.typeLine("one")
	h.typeLine("two")
	h.events(&protocol.Refuse{MsgID: 1, Code: protocol.CodeBadRecipient, Reason: "no such user"},
		&protocol.Refuse{MsgID: 2, Code: protocol.CodeRetryLater, RetryAfter: 200})
	h.want("you: one ✗ BAD_RECIPIENT: no such user", "you: two …", "1 unconfirmed", "goes again in 200 ms")
	if out := h.m.State().Outbox; len(out) != 1 || out[0].MsgID != 2 {
		t.Fatalf("outbox %+v, want msg 2 alone", out)
	}
	d := &protocol.Deliver{Seq: 3, From: 2, MsgID: 5, Body: []byte("once")}
	h.events(d, &protocol.Deliver{Seq: 4, From: 2, MsgID: 5, Body: []byte("once")}, &protocol.Deliver{Seq: 2, From: 2, MsgID: 6, Body: []byte("old")})
	if n := strings.Count(h.screen(), "2: once"); n != 1 {
		t.Fatalf("the message shows %d times, want 1:\n%s", n, h.screen())
	}
	h.wantNot("old")
	if h.m.State().Resume != 4 || !slices.Equal(h.link.processed, []uint64{4}) {
		t.Fatalf("resume point %d, processed %v; want 4 and [4]", h.m.State().Resume, h.link.processed)
	}
	// A batch of entries saved already is acknowledged all the same.
	h.events(&protocol.Deliver{Seq: 3, From: 2, MsgID: 5, Body: []byte("once")}, &protocol.Deliver{Seq: 4, From: 2, MsgID: 5, Body: []byte("once")})
	if !slices.Equal(h.link.processed, []uint64{4, 4}) {
		t.Fatalf("processed %v after a redelivery, want [4 4]", h.link.processed)
	}
}

// TestModelHistoryBounded: a conversation keeps its last History lines, and
// the screen its last lines that fit.
func TestModelHistoryBounded(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.m.cfg.History = 3
	h.typeLine("/to 2")
	for i := range 5 {
		h.events(&protocol.Deliver{Seq: uint64(i + 1), From: 2, MsgID: uint64(i + 1), Body: []byte{'a' + byte(i)}})
	}
	c := h.m.State().Conversations["u2"]
	if len(c.Lines) != 3 || c.Lines[0].Text != "c" || c.Lines[2].Text != "e" {
		t.Fatalf("lines %+v, want c, d, e", c.Lines)
	}
	h.m.Update(tea.WindowSizeMsg{Width: 80, Height: 4}) // title, input, help: one line of room
	h.want("2: e")
	h.wantNot("2: d")

	// Long bodies: the text kept stays within HistoryBytes.
	big := strings.Repeat("x", HistoryBytes/3+1)
	h.m.cfg.History = DefaultHistory
	for i := range 4 {
		h.events(&protocol.Deliver{Seq: uint64(10 + i), From: 2, MsgID: uint64(10 + i), Body: []byte(big)})
	}
	size := 0
	for _, l := range c.Lines {
		size += len(l.Text)
	}
	if len(c.Lines) != 2 || size > HistoryBytes {
		t.Fatalf("%d lines, %d bytes of text kept; want the last 2, within %d", len(c.Lines), size, HistoryBytes)
	}
}

// TestStateRestart: what a run saved brings the next one back where it
// was: the counter past every id used, the resume point, the unconfirmed
// message in the outbox with its text (resent with flag B by client.Conn),
// the history; a redelivered entry is not shown twice and a new message
// takes a new id.
func TestStateRestart(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, dir)
	h.typeLine("/to 2")
	h.typeLine("confirmed")
	h.typeLine("unconfirmed")
	h.events(&protocol.Accept{MsgID: 1}, &protocol.Deliver{Seq: 5, From: 2, MsgID: 40, Body: []byte("stored")})

	h2 := newHarness(t, dir) // the process restarts
	st := h2.m.State()
	if st.NextMsgID != 3 || st.Resume != 5 || st.Open != "u2" {
		t.Fatalf("restored next %d, resume %d, open %q; want 3, 5, u2", st.NextMsgID, st.Resume, st.Open)
	}
	opts := connOptions(st, Options{})
	if opts.Session.NextMsgID != 3 || opts.Session.Ack != 5 || !opts.ManualAck || !opts.KeepTrying {
		t.Fatalf("client options %+v, want counter 3, ack 5, manual ACKs, keep trying", opts)
	}
	if len(opts.Outbox) != 1 || opts.Outbox[0].MsgID != 2 || opts.Outbox[0].To != 2 || string(opts.Outbox[0].Body) != "unconfirmed" {
		t.Fatalf("restored outbox %+v, want msg 2 to 2", opts.Outbox)
	}
	h2.want("you: confirmed ✓", "you: unconfirmed …", "2: stored")
	h2.events(&protocol.Deliver{Seq: 5, From: 2, MsgID: 40, Body: []byte("stored")}) // the ACK was lost
	if n := strings.Count(h2.screen(), "2: stored"); n != 1 {
		t.Fatalf("a redelivery shows %d times, want once", n)
	}
	h2.typeLine("after restart")
	if q := h2.link.queued[0]; q.MsgID != 3 {
		t.Fatalf("the first message after the restart took id %d, want 3", q.MsgID)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != filepath.Base(h2.store.Path()) {
		t.Fatalf("state folder holds %v, want the one file (no temporaries left)", entries)
	}
	if _, err := NewStore(dir, 1).Load(2); err == nil {
		t.Fatal("loading user 1's file as user 2: no error")
	}
}

// key presses a named key (PgUp, PgDn, End).
func (h *harness) key(code rune) { h.m.Update(tea.KeyPressMsg{Code: code}) }

// shownMessages returns the texts of user 2's messages on the screen, in
// screen order.
func (h *harness) shownMessages() []string {
	var out []string
	for _, l := range strings.Split(h.screen(), "\n") {
		if _, text, ok := strings.Cut(l, " 2: "); ok {
			out = append(out, strings.Fields(text)[0])
		}
	}
	return out
}

// TestScrollBack: PgUp and PgDn page through a conversation's history
// without skipping a line, even lines that wrap; what comes while it is
// scrolled back stays below the screen, counted, and unread (no READ)
// until End, PgDn to the newest or a message sent brings the screen
// back; opening another conversation starts at its newest.
func TestScrollBack(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.m.Update(tea.WindowSizeMsg{Width: 40, Height: 8})
	h.typeLine("/to 2")
	var want []string
	for i := range 30 {
		body := fmt.Sprintf("m%d", i+1)
		if i%4 == 1 {
			body += strings.Repeat(" long", 15) // three or more screen lines
		}
		want = append(want, fmt.Sprintf("m%d", i+1))
		h.events(&protocol.Deliver{Seq: uint64(i + 1), From: 2, MsgID: uint64(i + 1), Body: []byte(body)})
	}
	reads := len(h.link.reads)
	if got := h.shownMessages(); len(got) == 0 || got[len(got)-1] != "m30" {
		t.Fatalf("at the newest the screen shows %v, want m30 last", got)
	}

	// Back to the first line, one screen at a time: every message shows on
	// some screen, in order.
	seen := map[string]bool{}
	for range 40 {
		for _, s := range h.shownMessages() {
			seen[s] = true
		}
		h.key(tea.KeyPgUp)
	}
	if got := h.shownMessages(); got[0] != "m1" {
		t.Fatalf("after paging back the screen starts with %v, want m1", got)
	}
	h.want("↓ ")
	for _, w := range want {
		if !seen[w] {
			t.Fatalf("paging back skipped %s", w)
		}
	}

	// A message while scrolled back: the screen stays, the message is
	// counted below it and not told read.
	before := h.shownMessages()
	h.events(&protocol.Deliver{Seq: 31, From: 2, MsgID: 31, Body: []byte("m31")})
	if got := h.shownMessages(); !slices.Equal(got, before) {
		t.Fatalf("a new message moved the scrolled-back screen: %v, was %v", got, before)
	}
	h.want("1 unread")
	if len(h.link.reads) != reads {
		t.Fatalf("READs %v for a message below the screen", h.link.reads[reads:])
	}
	if c := h.link.saved().Conversations["u2"]; !c.Lines[len(c.Lines)-1].Unread {
		t.Fatal("the message below the screen was saved as read")
	}

	// Forward a screen at a time to the newest, skipping nothing; there
	// the message is read.
	seen = map[string]bool{}
	for range 40 {
		for _, s := range h.shownMessages() {
			seen[s] = true
		}
		h.key(tea.KeyPgDown)
	}
	for _, w := range append(want, "m31") {
		if !seen[w] {
			t.Fatalf("paging forward skipped %s", w)
		}
	}
	h.wantNot("↓ ", "unread")
	if got := h.link.reads[reads:]; len(got) != 1 || got[0].MsgID != 31 || got[0].More != 0 {
		t.Fatalf("READs at the newest: %+v, want one for 31", got)
	}
	if c := h.link.saved().Conversations["u2"]; c.Lines[len(c.Lines)-1].Unread {
		t.Fatal("the message read at the newest was saved unread")
	}

	// End from anywhere; a message sent while scrolled back brings the
	// screen to the newest.
	h.key(tea.KeyPgUp)
	h.key(tea.KeyEnd)
	h.wantNot("↓ ")
	h.key(tea.KeyPgUp)
	h.events(&protocol.Deliver{Seq: 32, From: 2, MsgID: 32, Body: []byte("m32")})
	h.typeLine("mine")
	h.want("you: mine", "2: m32")
	h.wantNot("↓ ")
	if got := h.link.reads[len(h.link.reads)-1]; got.MsgID != 32 {
		t.Fatalf("last READ %+v, want 32's", got)
	}

	// Another conversation opens at its newest.
	h.key(tea.KeyPgUp)
	h.typeLine("/to 3")
	h.typeLine("/to 2")
	h.wantNot("↓ ")
	h.want("you: mine")
}

// TestScrollBackKeepsWithinHistory: a conversation scrolled back as far
// as it goes, at its history limit, stays on screen as lines come and
// old ones go.
func TestScrollBackKeepsWithinHistory(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.m.cfg.History = 5
	h.m.Update(tea.WindowSizeMsg{Width: 40, Height: 6})
	h.typeLine("/to 2")
	for i := range 5 {
		h.events(&protocol.Deliver{Seq: uint64(i + 1), From: 2, MsgID: uint64(i + 1), Body: []byte(fmt.Sprintf("m%d", i+1))})
	}
	for range 5 {
		h.key(tea.KeyPgUp)
	}
	for i := 5; i < 12; i++ {
		h.events(&protocol.Deliver{Seq: uint64(i + 1), From: 2, MsgID: uint64(i + 1), Body: []byte(fmt.Sprintf("m%d", i+1))})
		if got := h.shownMessages(); len(got) == 0 {
			t.Fatalf("after m%d the scrolled-back screen shows no message:\n%s", i+1, h.screen())
		}
	}
	h.want("↓ 4 newer")
	h.key(tea.KeyEnd)
	if got := h.shownMessages(); got[len(got)-1] != "m12" {
		t.Fatalf("at the newest: %v", got)
	}
}
