package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"switchboard/delivery"
	"switchboard/protocol"
	"switchboard/storage"
)

// Group changes are held to the message's standard: a kill -9 at any
// moment, or a stop under load, loses no ACCEPTed change and no event of
// one, and stores no event twice.

func TestGroupsKill9(t *testing.T)        { runGroupLives(t, 4, false) }
func TestGroupsGracefulStop(t *testing.T) { runGroupLives(t, 3, true) }

// groupChange is a GROUP request an actor made, and whether it was ACCEPTed.
type groupChange struct {
	actor, msgID, group uint64
	op                  protocol.GroupOp
	members             []uint64 // named in the request
	audience            []uint64 // who must hear of it: its members, and for an add the members before
}

// groupBook records what the actors were told.
type groupBook struct {
	mu       sync.Mutex
	accepted []groupChange
}

func (b *groupBook) accept(c groupChange) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.accepted = append(b.accepted, c)
}

// runGroupLives runs actors that create groups and add members to them,
// and ends each life of the server with SIGKILL (or SIGTERM when stop) in
// the middle of their traffic. Then it finishes what the last life left
// (as the next start would) and checks every member's mailbox.
func runGroupLives(t *testing.T, lives int, stop bool) {
	data := t.TempDir()
	const actors = 6
	book := &groupBook{}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	state := make([]actorState, actors)
	for a := range state {
		state[a] = actorState{id: uint64(7001 + a), next: uint64(100_000 + a<<20)}
	}
	for life := range lives {
		srv := startChild(t, data, 0)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for a := range state {
			c, err := srv.dial(state[a].id, protocol.ClientOptions{AutoAck: true, FirstMsgID: uint64(life+1) << 32})
			if err != nil {
				t.Fatalf("login of %d: %v\n%s", state[a].id, err, logTail(srv))
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				state[a].run(ctx, c, book)
			}()
		}
		waitFor(t, srv, 20*time.Second, "group changes to be accepted", func() bool {
			book.mu.Lock()
			defer book.mu.Unlock()
			return len(book.accepted) >= (life+1)*actors*4
		})
		at := time.Now().Add(time.Duration(rng.IntN(20)) * time.Millisecond)
		if stop {
			spinUntil(at)
			srv.terminate(t)
		} else {
			srv.killAt(at)
		}
		cancel()
		wg.Wait()
	}

	// The next start announces what is pending; do it here, in-process,
	// and wait until nothing is.
	st, err := storage.Open(storage.Config{Dir: filepath.Join(data, "mailboxes"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r, err := delivery.New(delivery.Config{Logger: slog.New(slog.DiscardHandler)}, st)
	if err != nil {
		t.Fatal(err)
	}
	r.Start(nil)
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := 0
		if err := st.PendingGroupEvents(func(storage.GroupEvent) bool { n++; return true }); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d group events still pending after 20 s", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.Stop()
	redone := r.Stats().GroupEventsRedone.Load()

	// Every ACCEPTed change is in the membership and was announced to
	// each of its audience; no member holds a change's event twice.
	type copyID struct{ member, actor, msgID uint64 }
	copies := map[copyID]int{}
	seen := map[uint64]bool{}
	for _, c := range book.accepted {
		for _, m := range c.audience {
			if seen[m] {
				continue
			}
			seen[m] = true
			es, _, err := st.Read(m, 1, 1<<20, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range es {
				if e.Kind == storage.KindGroupEvent {
					copies[copyID{m, e.Sender, e.MsgID}]++
				}
			}
		}
	}
	for id, n := range copies {
		if n != 1 {
			t.Errorf("member %d holds %d copies of the event of (%d, %d)", id.member, n, id.actor, id.msgID)
		}
	}
	for _, c := range book.accepted {
		ms, err := st.Members(c.group)
		if err != nil {
			t.Fatalf("group %d of an ACCEPTed %v: %v", c.group, c.op, err)
		}
		for _, m := range c.members {
			if !slices.ContainsFunc(ms, func(x storage.Member) bool { return x.ID == m }) {
				t.Errorf("member %d of an ACCEPTed %v of group %d is not in it", m, c.op, c.group)
			}
		}
		for _, m := range c.audience {
			if copies[copyID{m, c.actor, c.msgID}] != 1 {
				t.Errorf("member %d never heard of the ACCEPTed %v (%d, %d) of group %d", m, c.op, c.actor, c.msgID, c.group)
			}
		}
	}
	t.Logf("%d lives (stop: %v): %d changes ACCEPTed, %d event copies checked; %d events left pending by the last life", lives, stop, len(book.accepted), len(copies), redone)
}

// actorState is one actor's progress over the server's lives.
type actorState struct {
	id   uint64
	next uint64       // the next member id to hand out
	open *groupChange // the request whose answer the last life did not bring
}

// run creates groups of three members and adds a fourth to each, one
// request at a time, until ctx ends or the connection does. It first
// resends, with its msg id, the request the last life left unanswered, as
// a client following PROTOCOL.md does.
func (a *actorState) run(ctx context.Context, c *protocol.Client, book *groupBook) {
	for ctx.Err() == nil {
		ch := a.open
		if ch == nil {
			base := a.next
			a.next += 4
			ch = &groupChange{actor: a.id, op: protocol.GroupCreate, members: []uint64{base, base + 1, base + 2}}
			ch.audience = ch.members
		}
		a.open = ch
		accepted, alive := request(ctx, c, ch, book)
		if !alive {
			return
		}
		a.open = nil
		if accepted && ch.op == protocol.GroupCreate {
			base := ch.members[0]
			a.open = &groupChange{actor: a.id, group: ch.group, op: protocol.GroupAdd, members: []uint64{base + 3}, audience: []uint64{base, base + 1, base + 2, base + 3}}
		}
	}
}

// request sends ch and waits for its answer, and records ch in book if it
// was ACCEPTed. alive is false when the connection or the test ended.
func request(ctx context.Context, c *protocol.Client, ch *groupChange, book *groupBook) (accepted, alive bool) {
	id, err := c.Group(protocol.Group{MsgID: ch.msgID, Op: ch.op, Group: ch.group, Members: ch.members})
	ch.msgID = id
	if err != nil {
		return false, false
	}
	a, err := c.WaitAccept(ctx, id)
	var refused *protocol.RefusedError
	switch {
	case errors.As(err, &refused):
		return false, true // not made: nothing to check
	case err != nil:
		return false, false
	}
	if ch.op == protocol.GroupCreate {
		ch.group = a.Ref
	} else if a.Ref != ch.group {
		panic(fmt.Sprintf("ACCEPT of a %v names group %d, want %d", ch.op, a.Ref, ch.group))
	}
	book.accept(*ch)
	return true, true
}
