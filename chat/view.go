package chat

import (
	"fmt"
	"slices"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"switchboard/client"
)

var (
	styleDim    = lipgloss.NewStyle().Foreground(lipgloss.Color("8"))
	styleRead   = lipgloss.NewStyle().Foreground(lipgloss.Color("12")) // blue ticks
	styleFailed = lipgloss.NewStyle().Foreground(lipgloss.Color("9"))
	styleOK     = lipgloss.NewStyle().Foreground(lipgloss.Color("10"))
	styleWarn   = lipgloss.NewStyle().Foreground(lipgloss.Color("11"))
	styleTitle  = lipgloss.NewStyle().Bold(true)
)

// View renders the screen: a title with the connection's status, the open
// conversation's last lines (that fit, or the ones scrolled back to), who
// is typing, a notice, the input and the help line.
func (m *Model) View() tea.View {
	v := tea.NewView(m.Render())
	v.AltScreen = true
	return v
}

// Render returns the screen as text with ANSI styles.
func (m *Model) Render() string {
	top, bottom := m.chrome()
	// Messages and notices wrap: cut, a long one would hide its end
	// and its ticks.
	lines := m.conversationLines()
	lines = m.wrap(lines[:len(lines)-m.scroll])
	if m.height > 0 {
		room := m.room(top, bottom)
		lines = lines[max(len(lines)-room, 0):]
		for len(lines) < room { // the input stays at the bottom
			lines = append(lines, "")
		}
	}
	all := slices.Concat(top, lines, bottom)
	if m.width > 0 {
		for i, l := range all {
			all[i] = ansi.Truncate(l, m.width, "…")
		}
	}
	return strings.Join(all, "\n")
}

// chrome returns the lines above the conversation (the title, unread
// conversations) and below it (what is below the screen when scrolled back,
// who is typing, a notice, the input, the help line).
func (m *Model) chrome() (top, bottom []string) {
	top = append(top, styleTitle.Render("switchboard chat")+" · you are "+fmt.Sprint(m.cfg.User)+" · "+m.title()+" · "+m.statusText())
	if u := m.unreadElsewhere(); u != "" {
		top = append(top, styleWarn.Render(u))
	}
	if b := m.belowText(); b != "" {
		bottom = append(bottom, b)
	}
	if t := m.typingText(); t != "" {
		bottom = append(bottom, styleDim.Render(t))
	}
	if m.notice != "" {
		bottom = append(bottom, m.wrap([]string{styleWarn.Render(m.notice)})...)
	}
	input := "> " + string(m.input) + "█"
	if m.width > 1 && ansi.StringWidth(input) > m.width {
		// The end of what is typed, where the cursor is.
		input = "…" + ansi.TruncateLeft(input, ansi.StringWidth(input)-m.width+1, "")
	}
	return top, append(bottom, input, styleDim.Render(help))
}

// room is how many lines the conversation has between top and bottom.
func (m *Model) room(top, bottom []string) int {
	return max(m.height-len(top)-len(bottom), 0)
}

// belowText tells, when the conversation is scrolled back, how many of its
// lines are below the screen and how many of those are unread.
func (m *Model) belowText() string {
	if m.scroll == 0 {
		return ""
	}
	c := m.st.Conversations[m.st.Open]
	below := c.Lines[len(c.Lines)-m.scroll:]
	s := fmt.Sprintf("↓ %d newer", len(below))
	unread := 0
	for _, l := range below {
		if l.Unread {
			unread++
		}
	}
	if unread > 0 {
		s += fmt.Sprintf(", %d unread", unread)
	}
	return styleWarn.Render(s + " · PgDn, End")
}

// page scrolls the open conversation: dir 1 a screen back, -1 a screen
// towards the newest, 0 to the newest. Lines that come while it is
// scrolled back stay below the screen, and unread, until it is back at the
// newest; then their senders are told they are read.
func (m *Model) page(dir int) {
	c := m.st.Conversations[m.st.Open]
	if c == nil {
		return
	}
	rows := 10 // before the terminal told its size
	if m.height > 0 {
		top, bottom := m.chrome()
		rows = max(m.room(top, bottom)-1, 1) // the last screen's edge line shows again
	}
	lines := m.conversationLines()
	height := func(i int) int { return len(m.wrap(lines[i : i+1])) }
	end, was := len(lines)-m.scroll, m.scroll // end: the first line below the screen
	switch dir {
	case 1:
		shown := 0
		for i := range end {
			shown += height(i)
		}
		if shown <= rows+1 {
			return // the first line shows already
		}
		k, sum := 0, 0
		for i := end - 1; i > 0 && (k == 0 || sum+height(i) <= rows); i-- {
			sum += height(i)
			k++
		}
		m.scroll += k
		return
	case -1:
		k, sum := 0, 0
		for i := end; i < len(lines) && (k == 0 || sum+height(i) <= rows); i++ {
			sum += height(i)
			k++
		}
		m.scroll -= k
	default:
		m.scroll = 0
	}
	if was > 0 && m.scroll == 0 {
		m.markRead()
		m.save()
	}
}

// added keeps the screen where it is when line comes into conversation key
// while it is open and scrolled back.
func (m *Model) added(key string) {
	if c := m.st.Conversations[key]; key == m.st.Open && m.scroll > 0 {
		m.scroll = min(m.scroll+1, len(c.Lines)-1)
	}
}

func (m *Model) title() string {
	user, group, ok := peerOf(m.st.Open)
	switch {
	case !ok:
		return "no conversation open"
	case group:
		c := m.st.Conversations[m.st.Open]
		return fmt.Sprintf("group %d (%d members known)", peerID(m.st.Open), len(c.Members))
	}
	return fmt.Sprintf("with %d", user)
}

// statusText tells the connection's state as it is: offline with the next
// attempt, logging in, resuming the backlog, caught up; and how many sent
// messages the server has not confirmed yet.
func (m *Model) statusText() string {
	st := m.status
	var s string
	switch st.State {
	case client.StateOffline:
		s = "offline"
		if !st.Retry.IsZero() {
			if d := st.Retry.Sub(m.cfg.Now()); d > 0 {
				s += fmt.Sprintf(", retrying in %ds", int(d.Round(time.Second)/time.Second))
			} else {
				s += ", retrying"
			}
		}
		s = styleFailed.Render(s)
	case client.StateLogin:
		s = styleWarn.Render("logging in")
	case client.StateResuming:
		s = styleWarn.Render(fmt.Sprintf("resuming (%d of %d)", st.Resume, st.Last))
	case client.StateCaughtUp:
		s = styleOK.Render("caught up")
	case client.StateClosed:
		s = "closed"
		if st.Err != nil {
			s += ": " + st.Err.Error()
		}
		s = styleFailed.Render(s)
	}
	if n := len(m.st.Outbox); n > 0 {
		s += fmt.Sprintf(" · %d unconfirmed", n)
	}
	return s
}

// wrap breaks each line at the screen's width, at spaces where it can.
func (m *Model) wrap(lines []string) []string {
	if m.width <= 0 {
		return lines
	}
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		out = append(out, strings.Split(ansi.Wrap(l, m.width, ""), "\n")...)
	}
	return out
}

func (m *Model) conversationLines() []string {
	c := m.st.Conversations[m.st.Open]
	if c == nil {
		return []string{styleDim.Render("Open a conversation: /to USER for a person, /group GROUP for a group, /create USER… for a new group.")}
	}
	_, group, _ := peerOf(m.st.Open)
	out := make([]string, 0, len(c.Lines))
	for _, l := range c.Lines {
		ts := time.Unix(l.Time, 0).Format("15:04")
		switch {
		case l.Notice:
			out = append(out, styleDim.Render(ts+" — "+m.name(l.From)+" "+l.Text))
		case l.Mine:
			out = append(out, ts+" you: "+l.Text+" "+ticks(l, group))
		default:
			out = append(out, ts+" "+m.name(l.From)+": "+l.Text)
		}
	}
	return out
}

// ticks renders what became of a message this user sent: … waiting for the
// server, ✓ accepted (stored), ✓✓ delivered, ✓✓ read in blue, ✗ refused or
// expired. In a group, how many members got and read it.
func ticks(l Line, group bool) string {
	switch {
	case l.Failed != "":
		return styleFailed.Render("✗ " + l.Failed)
	case !l.Accepted:
		return styleDim.Render("…")
	case group && len(l.ReadBy) > 0:
		return styleRead.Render(fmt.Sprintf("✓✓ %s got it, %d read it", members(len(l.Delivery)), len(l.ReadBy)))
	case group && len(l.Delivery) > 0:
		return fmt.Sprintf("✓✓ %s got it", members(len(l.Delivery)))
	case len(l.ReadBy) > 0:
		return styleRead.Render("✓✓ read")
	case len(l.Delivery) > 0:
		return "✓✓"
	}
	return "✓"
}

// members counts group members in words: "1 member", "3 members" (a bare
// number reads as a user id here).
func members(n int) string {
	if n == 1 {
		return "1 member"
	}
	return fmt.Sprintf("%d members", n)
}

// unreadElsewhere names the other conversations with messages not yet
// shown, at most three of them.
func (m *Model) unreadElsewhere() string {
	var keys []string
	for k, c := range m.st.Conversations {
		if k != m.st.Open && slices.ContainsFunc(c.Lines, func(l Line) bool { return l.Unread }) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return ""
	}
	slices.Sort(keys)
	names := make([]string, 0, 3)
	for _, k := range keys[:min(len(keys), 3)] {
		if _, group, _ := peerOf(k); group {
			names = append(names, fmt.Sprintf("/group %d", peerID(k)))
		} else {
			names = append(names, fmt.Sprintf("/to %d", peerID(k)))
		}
	}
	s := "new messages: " + strings.Join(names, ", ")
	if len(keys) > 3 {
		s += fmt.Sprintf(" and %d more", len(keys)-3)
	}
	return s
}

func (m *Model) typingText() string {
	var who []uint64
	now := m.cfg.Now()
	for k, at := range m.typing {
		if k.conv == m.st.Open && now.Sub(at) <= TypingShown {
			who = append(who, k.user)
		}
	}
	switch len(who) {
	case 0:
		return ""
	case 1:
		return m.names(who) + " is typing…"
	}
	return m.names(who) + " are typing…"
}
