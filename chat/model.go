package chat

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	tea "charm.land/bubbletea/v2"

	"switchboard/client"
	"switchboard/protocol"
)

// Link is what the model asks of the connection: *client.Conn, or a fake in
// tests. The model calls it from Update, on the program's goroutine.
type Link interface {
	// Queue hands over a message or group request the model saved first.
	Queue(o client.Outgoing) error
	// Read tells a sender that its messages were read.
	Read(from uint64, group bool, msgID, more uint64) error
	// Signal sends a typing notice.
	Signal(to, group uint64, kind uint32) error
	// Processed lets the ACK of every entry up to ev's go: they are saved.
	Processed(ev client.Event)
}

// Messages the model takes besides key presses and window sizes.
type (
	// EventsMsg carries events in the order client.Conn.Recv returned them.
	EventsMsg []client.Event
	// StatusMsg is the connection's new status.
	StatusMsg client.Status
	// tickMsg redraws what depends on the clock: typing, retry countdown.
	tickMsg time.Time
)

// Timings of the screen. A typing SIGNAL goes at most every TypingEvery
// while the user types (PROTOCOL.md 8.7: every few seconds at most); a peer
// shows as typing for TypingShown after its last one, a little longer, so
// that a steady typist shows without a gap. A notice (an error, a command's
// answer) shows for NoticeShown, or until Esc or the next command.
const (
	TypingEvery = 3 * time.Second
	TypingShown = 5 * time.Second
	NoticeShown = 15 * time.Second
)

// Config is what a Model starts with.
type Config struct {
	// User is the logged-in user. Required.
	User uint64
	// Store saves State; State is what it loaded. Both required.
	Store *Store
	State *State
	// Link is the connection. Required.
	Link Link
	// Now reads the clock; nil means time.Now. Tests pass a fake one.
	Now func() time.Time
	// History is how many lines each conversation keeps; 0 means
	// DefaultHistory.
	History int
}

// Model is the chat's screen and state: a bubbletea model, fed key presses,
// the connection's events and status, and rendering one screen. Every
// change is saved to the Store before what depends on it happens: an
// entry's ACK (Link.Processed), a message leaving (Link.Queue).
//
// Its methods run on one goroutine (bubbletea's); it is not safe for
// concurrent use.
type Model struct {
	cfg    Config
	st     *State
	status client.Status

	input    []rune
	notice   string    // one transient line: an error, /members, /help
	noticeAt time.Time // when it was said; it goes NoticeShown later
	typing   map[typist]time.Time
	typedAt  time.Time // when the last typing SIGNAL went
	width    int
	height   int
	// scroll is how many of the open conversation's lines are below the
	// screen (PgUp, PgDn, End); 0 follows the newest.
	scroll int
}

// typist is a peer typing in a conversation.
type typist struct {
	conv string
	user uint64
}

// NewModel returns the model of cfg.
func NewModel(cfg Config) *Model {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.History <= 0 {
		cfg.History = DefaultHistory
	}
	return &Model{cfg: cfg, st: cfg.State, typing: map[typist]time.Time{}, status: client.Status{State: client.StateLogin}}
}

// State returns the model's state; the caller must not change it.
func (m *Model) State() *State { return m.st }

// Init starts the clock that redraws the typing line and the countdown.
func (m *Model) Init() tea.Cmd { return tick() }

func tick() tea.Cmd {
	return tea.Tick(time.Second, func(t time.Time) tea.Msg { return tickMsg(t) })
}

// Update applies msg and returns the model and what bubbletea runs next.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.KeyPressMsg:
		return m, m.key(msg)
	case tea.PasteMsg:
		// Pasted lines join into one message: Enter sends it.
		m.insert(strings.Join(strings.Fields(msg.Content), " "))
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
	case EventsMsg:
		m.events(msg)
	case StatusMsg:
		m.status = client.Status(msg)
	case tickMsg:
		if m.notice != "" && m.cfg.Now().Sub(m.noticeAt) >= NoticeShown {
			m.notice = ""
		}
		return m, tick()
	}
	return m, nil
}

func (m *Model) key(k tea.KeyPressMsg) tea.Cmd {
	switch k.String() {
	case "ctrl+c", "ctrl+d":
		return tea.Quit
	case "enter":
		line := strings.TrimSpace(string(m.input))
		switch {
		case strings.HasPrefix(line, "//"):
			line = line[1:] // a message that starts with a slash
		case strings.HasPrefix(line, "/"):
			m.input = m.input[:0]
			return m.command(line)
		}
		// A message refused before it was queued (no conversation, a full
		// outbox, a failed save) stays on the input line, to send again.
		if line == "" || m.send(line) {
			m.input = m.input[:0]
		}
		return nil
	case "backspace":
		if len(m.input) > 0 {
			m.input = m.input[:len(m.input)-1]
		}
		return nil
	case "esc":
		m.input, m.notice = m.input[:0], ""
		return nil
	case "pgup":
		m.page(1)
		return nil
	case "pgdown":
		m.page(-1)
		return nil
	case "end":
		m.page(0)
		return nil
	}
	if k.Text == "" || k.Mod&(tea.ModCtrl|tea.ModAlt) != 0 {
		return nil
	}
	m.insert(k.Text)
	return nil
}

// insert adds text to the input line, up to a body's limit in bytes.
func (m *Model) insert(text string) {
	if text == "" {
		return
	}
	n := 0
	for _, r := range m.input {
		n += utf8.RuneLen(r)
	}
	if n+len(text) > protocol.MaxBody {
		m.say(fmt.Sprintf("a message is at most %d bytes (a server may take less): the rest was not typed", protocol.MaxBody))
		text = text[:protocol.MaxBody-n]
		for !utf8.ValidString(text) { // not half a character
			text = text[:len(text)-1]
		}
	}
	m.input = append(m.input, []rune(text)...)
	m.typed()
}

// typed sends a typing SIGNAL for the open conversation, at most every
// TypingEvery, and not while a command is typed.
func (m *Model) typed() {
	to, group, ok := peerOf(m.st.Open)
	if !ok || (len(m.input) > 0 && m.input[0] == '/') {
		return
	}
	now := m.cfg.Now()
	if !m.typedAt.IsZero() && now.Sub(m.typedAt) < TypingEvery {
		return
	}
	// An error (offline) loses the signal: signals are never kept.
	if group {
		m.cfg.Link.Signal(0, peerID(m.st.Open), protocol.SignalTyping)
	} else {
		m.cfg.Link.Signal(to, 0, protocol.SignalTyping)
	}
	m.typedAt = now
}

// help is the help line, and /help's text.
const help = "/to USER · /group GROUP · /create USER… · /add USER… · /remove USER… · /members · /leave · /quit · /help · Enter sends · a demo: no end-to-end encryption"

func (m *Model) command(line string) tea.Cmd {
	f := strings.Fields(line)
	if !slices.Contains(commands, f[0]) {
		m.say("unknown command " + f[0] + " (// starts a message with a slash); " + help)
		return nil
	}
	ids, err := parseIDs(f[1:])
	if err != nil {
		m.say(err.Error())
		return nil
	}
	m.notice = ""
	_, inGroup, open := peerOf(m.st.Open)
	group := peerID(m.st.Open)
	switch f[0] {
	case "/to", "/group":
		if len(ids) != 1 {
			m.say(f[0] + " takes one id")
			return nil
		}
		prefix := "u"
		if f[0] == "/group" {
			prefix = "g"
		}
		m.openConv(prefix + strconv.FormatUint(ids[0], 10))
	case "/create":
		if len(ids) == 0 {
			m.say("/create takes the ids of the members, e.g. /create 2 3")
			return nil
		}
		m.queue(Pending{Op: protocol.GroupCreate, Members: ids, Over: m.st.Open}, "")
	case "/add", "/remove", "/promote", "/demote":
		switch {
		case !open || !inGroup:
			m.say(f[0] + " works in a group: /group GROUP first")
		case len(ids) == 0:
			m.say(f[0] + " takes user ids")
		default:
			op := map[string]protocol.GroupOp{"/add": protocol.GroupAdd, "/remove": protocol.GroupRemove,
				"/promote": protocol.GroupPromote, "/demote": protocol.GroupDemote}[f[0]]
			m.queue(Pending{Op: op, To: group, Members: ids}, "")
		}
	case "/leave":
		if !open || !inGroup {
			m.say("/leave works in a group: /group GROUP first")
			return nil
		}
		m.queue(Pending{Op: protocol.GroupLeave, To: group}, "")
	case "/members":
		if !open || !inGroup {
			m.say("/members works in a group: /group GROUP first")
			return nil
		}
		m.say(fmt.Sprintf("members of group %d, as seen from here: %s", group, m.names(m.st.Conversations[m.st.Open].Members)))
	case "/help":
		m.say(help + " · /promote USER… and /demote USER… make admins and plain members · PgUp and PgDn scroll, End goes to the newest")
	case "/quit":
		return tea.Quit
	}
	return nil
}

// commands are the slash commands the chat knows.
var commands = []string{"/to", "/group", "/create", "/add", "/remove", "/promote", "/demote", "/leave", "/members", "/help", "/quit"}

func parseIDs(args []string) ([]uint64, error) {
	if len(args) > protocol.MaxGroupMembers {
		return nil, fmt.Errorf("at most %d ids", protocol.MaxGroupMembers)
	}
	ids := make([]uint64, 0, len(args))
	for _, a := range args {
		id, err := strconv.ParseUint(a, 10, 64)
		if err != nil || id == 0 {
			return nil, fmt.Errorf("%q is not an id (a number from 1)", a)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// openConv puts conversation key on screen and tells its senders that what
// they sent is read.
func (m *Model) openConv(key string) {
	m.st.Open, m.scroll = key, 0
	m.st.conversation(key)
	m.markRead()
	m.save()
}

// send queues text for the open conversation, and reports whether it
// did (a failure from the connection then shows on the message's line).
func (m *Model) send(text string) bool {
	to, group, ok := peerOf(m.st.Open)
	if !ok {
		m.say("no conversation open: /to USER or /group GROUP first (Esc clears the line)")
		return false
	}
	if group {
		to = peerID(m.st.Open)
	}
	if m.scroll > 0 {
		m.page(0) // what is sent shows at the bottom
	}
	return m.queue(Pending{To: to, Group: group, Text: text}, m.st.Open)
}

// queue gives p the next msg_id, saves it in the outbox (and as a line of
// conv, for a message) and only then hands it to the connection. It
// reports false, with a notice, when p was refused before it was saved.
func (m *Model) queue(p Pending, conv string) bool {
	switch {
	case len(m.st.Outbox) >= MaxOutbox:
		m.say(fmt.Sprintf("%d messages wait for the server already: not sent", MaxOutbox))
		return false
	case len(p.Text) > protocol.MaxBody:
		m.say(fmt.Sprintf("a message is at most %d bytes: not sent", protocol.MaxBody))
		return false
	}
	p.MsgID = m.st.NextMsgID
	m.st.NextMsgID++
	m.st.Outbox = append(m.st.Outbox, p)
	var c *Conversation
	if conv != "" {
		c = m.st.conversation(conv)
		c.add(Line{Time: m.cfg.Now().Unix(), From: m.cfg.User, MsgID: p.MsgID, Text: p.Text, Mine: true}, m.cfg.History)
	}
	if !m.save() {
		m.st.Outbox = m.st.Outbox[:len(m.st.Outbox)-1]
		if c != nil {
			c.Lines = c.Lines[:len(c.Lines)-1]
		}
		return false
	}
	if err := m.cfg.Link.Queue(p.outgoing()); err != nil {
		m.dropOutbox(p.MsgID)
		m.failed(p, err.Error())
		m.save()
	}
	return true
}

// say shows notice on the notice line, for NoticeShown or until Esc or
// the next command.
func (m *Model) say(notice string) {
	m.notice, m.noticeAt = notice, m.cfg.Now()
}

// save writes the state; on failure it says so on screen and reports false.
func (m *Model) save() bool {
	if err := m.cfg.Store.Save(m.st); err != nil {
		m.say(err.Error())
		return false
	}
	return true
}

// peerOf splits a conversation key: the user (for "u…"), or group set (for
// "g…"); ok is false for no conversation.
func peerOf(key string) (user uint64, group, ok bool) {
	if len(key) < 2 {
		return 0, false, false
	}
	id, err := strconv.ParseUint(key[1:], 10, 64)
	if err != nil || id == 0 {
		return 0, false, false
	}
	if key[0] == 'g' {
		return 0, true, true
	}
	return id, false, key[0] == 'u'
}

// peerID returns the id in a conversation key, user or group.
func peerID(key string) uint64 {
	id, _ := strconv.ParseUint(key[min(len(key), 1):], 10, 64)
	return id
}

func userKey(u uint64) string  { return "u" + strconv.FormatUint(u, 10) }
func groupKey(g uint64) string { return "g" + strconv.FormatUint(g, 10) }

// names lists ids, this user as "you".
func (m *Model) names(ids []uint64) string {
	if len(ids) == 0 {
		return "nobody known yet"
	}
	s := slices.Clone(ids)
	slices.Sort(s)
	parts := make([]string, len(s))
	for i, id := range s {
		parts[i] = m.name(id)
	}
	return strings.Join(parts, ", ")
}

func (m *Model) name(id uint64) string {
	if id == m.cfg.User {
		return "you"
	}
	return strconv.FormatUint(id, 10)
}
