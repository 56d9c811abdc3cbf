package chat

import (
	"os"
	"testing"

	tea "charm.land/bubbletea/v2"

	"switchboard/protocol"
)

// FuzzStateLoad: whatever the state file holds, Load returns an error or a
// State the chat runs on: the model draws it, takes a command, a message
// from a new peer (which may drop the quietest conversation) and a line
// typed, without a panic, and keeps the file's bounds.
//
//	go test -run '^$' -fuzz FuzzStateLoad -fuzztime 30s ./chat/
func FuzzStateLoad(f *testing.F) {
	f.Add([]byte(`{"user":1,"next_msg_id":3,"resume":5,"open":"u2","tick":4,"conversations":{"u2":{"lines":[{"t":1,"from":2,"id":40,"text":"hi"}],"active":4}}}`))
	f.Add([]byte(`{"user":1,"open":"g5"}`))
	f.Add([]byte(`{"user":1,"conversations":{"u2":null,"u3":{}}}`))
	f.Add([]byte(`{"user":1,"open":"x","outbox":[{"id":9,"to":2,"text":"a"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		store := NewStore(dir, 1)
		if err := os.WriteFile(store.Path(), b, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := store.Load(1)
		if err != nil {
			return
		}
		checkState(t, st)
		link := &fakeLink{t: t, store: store}
		m := NewModel(Config{User: 1, Store: store, State: st, Link: link})
		m.Update(tea.WindowSizeMsg{Width: 80, Height: 20})
		_ = m.View()
		for _, line := range []string{"/members", "/read", "hello"} {
			for _, r := range line {
				m.Update(tea.KeyPressMsg{Code: r, Text: string(r)})
			}
			m.Update(tea.KeyPressMsg{Code: tea.KeyEnter})
			_ = m.View()
		}
		m.Update(EventsMsg{&protocol.Deliver{Seq: st.Resume + 1, From: 1 << 40, MsgID: 1, Body: []byte("new")}})
		_ = m.View()
		checkState(t, m.State())
	})
}

// checkState fails t unless st keeps the state file's bounds: no missing
// conversation, at most MaxConversations, the open one there, a counter
// from 1.
func checkState(t *testing.T, st *State) {
	t.Helper()
	if len(st.Conversations) > MaxConversations {
		t.Fatalf("%d conversations, over %d", len(st.Conversations), MaxConversations)
	}
	for k, c := range st.Conversations {
		if c == nil {
			t.Fatalf("conversation %q is missing", k)
		}
	}
	if st.Open != "" && st.Conversations[st.Open] == nil {
		t.Fatalf("the open conversation %q does not exist", st.Open)
	}
	if st.NextMsgID == 0 {
		t.Fatal("msg id counter at 0")
	}
}
