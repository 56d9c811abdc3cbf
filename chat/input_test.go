package chat

import (
	"fmt"
	"strings"
	"testing"

	tea "charm.land/bubbletea/v2"

	"switchboard/protocol"
)

// TestModelCommandMistakes: a command typed wrong says how to type it and
// sends nothing, and leaves the open conversation as it was: /to with two
// ids, /create and /add without any, /leave outside a group, more ids
// than a group holds.
func TestModelCommandMistakes(t *testing.T) {
	tooMany := strings.Repeat(" 7", protocol.MaxGroupMembers+1)
	for _, tc := range []struct {
		name, open, line, want string
	}{
		{"to two users", "", "/to 2 3", "/to takes one id"},
		{"create without members", "", "/create", "/create takes the ids of the members"},
		{"add without members", "/group 9", "/add", "/add takes user ids"},
		{"leave outside a group", "/to 2", "/leave", "/leave works in a group"},
		{"more ids than a group holds", "/group 9", "/add" + tooMany, fmt.Sprintf("at most %d ids", protocol.MaxGroupMembers)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, t.TempDir())
			if tc.open != "" {
				h.typeLine(tc.open)
			}
			open := h.m.State().Open
			h.typeLine(tc.line)
			h.want(tc.want)
			if len(h.link.queued) != 0 || len(h.m.State().Outbox) != 0 {
				t.Fatalf("queued %+v, outbox %+v; want nothing sent", h.link.queued, h.m.State().Outbox)
			}
			if got := h.m.State().Open; got != open {
				t.Fatalf("open %q after %q, want %q still", got, tc.line, open)
			}
		})
	}
}

// TestModelHelpAndQuit: /help adds the commands the help line leaves out;
// /quit, Ctrl-C and Ctrl-D end the program.
func TestModelHelpAndQuit(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.typeLine("/help")
	h.want("/promote USER… and /demote USER…", "PgUp and PgDn scroll")
	quits := func(cmd tea.Cmd) bool {
		if cmd == nil {
			return false
		}
		_, ok := cmd().(tea.QuitMsg)
		return ok
	}
	if !quits(h.typeLine("/quit")) {
		t.Fatal("/quit did not end the program")
	}
	for _, code := range []rune{'c', 'd'} {
		if _, cmd := h.m.Update(tea.KeyPressMsg{Code: code, Mod: tea.ModCtrl}); !quits(cmd) {
			t.Fatalf("Ctrl-%c did not end the program", code)
		}
	}
}

// TestModelBackspace: Backspace takes the last character typed, and on an
// empty line does nothing; a paste of blank lines types nothing and tells
// the peer nothing.
func TestModelBackspace(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.typeLine("/to 2")
	h.m.Update(tea.PasteMsg{Content: "\n \n"})
	if len(h.link.signals) != 0 {
		t.Fatalf("signals %+v after a blank paste, want none", h.link.signals)
	}
	h.typeKeys("hé")
	h.key(tea.KeyBackspace)
	h.want("> h█")
	for range 2 {
		h.key(tea.KeyBackspace)
	}
	h.want("> █")
	h.typeLine("x")
	if n := len(h.link.queued); n != 1 || string(h.link.queued[0].Body) != "x" {
		t.Fatalf("queued %+v, want x alone", h.link.queued)
	}
}

// TestModelPasteAtTheLimit: a paste of exactly a body's limit is typed
// whole, with no notice that some was cut, and sent as it is.
func TestModelPasteAtTheLimit(t *testing.T) {
	h := newHarness(t, t.TempDir())
	h.typeLine("/to 2")
	h.m.Update(tea.PasteMsg{Content: strings.Repeat("x", protocol.MaxBody)})
	h.wantNot("a message is at most")
	h.typeLine("")
	if n := len(h.link.queued); n != 1 || len(h.link.queued[0].Body) != protocol.MaxBody {
		t.Fatalf("queued %d messages, want one of %d bytes", n, protocol.MaxBody)
	}
}
