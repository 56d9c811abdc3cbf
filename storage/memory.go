package storage

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
)

// NewMemory returns a Store that keeps everything in memory, for tests. It
// follows every rule of the Badger store (same committer, limits, TTL,
// dedupe, callbacks on the committer goroutine) except durability: its
// "commit" cannot fail, and only ReopenMemory sees what it held after
// Close. cfg.Dir and cfg.MemTableSize are ignored.
func NewMemory(cfg Config) (Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	cfg.SyncDelay = -1 // its syncs are free: nothing to share
	be := &memBackend{
		st: memState{
			metas:   make(map[uint64]meta),
			boxes:   make(map[uint64][]Entry),
			dedupes: make(map[dedupeID]Dup),
			groups:  make(map[uint64]*memGroup),
			byUser:  make(map[uint64]map[uint64]Role),
			pends:   make(map[pendingID]PendingReceipt),
			events:  make(map[[2]uint64]GroupEvent),
			uses:    make(map[uint64]senderUse),
		},
	}
	return newEngine(cfg, be)
}

// ReopenMemory closes s, a store made by NewMemory (or ReopenMemory), and
// returns a new store over the same data, configured by cfg, as opening a
// data folder again would: whatever the old store committed is there,
// and nothing of its caches. It lets the persistence conformance tests run
// on memory.
func ReopenMemory(s Store, cfg Config) (Store, error) {
	e, ok := s.(*engine)
	if !ok {
		return nil, fmt.Errorf("storage: ReopenMemory of a %T", s)
	}
	be, ok := e.be.(*memBackend)
	if !ok {
		return nil, fmt.Errorf("storage: ReopenMemory of a store on %T", e.be)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := s.Close(); err != nil {
		return nil, err
	}
	return newEngine(cfg.withDefaults(), be)
}

// memBackend is the backend of NewMemory. A batch holds mu for writing from
// begin to commit, so views see whole batches only.
type memBackend struct {
	mu sync.RWMutex
	st memState // Guarded by mu.
}

type memGroup struct {
	info    groupInfo
	members map[uint64]Role
}

// memState is the data; it implements reader and writer.
type memState struct {
	metas   map[uint64]meta
	boxes   map[uint64][]Entry // each sorted by seq; values owned here
	dedupes map[dedupeID]Dup
	groups  map[uint64]*memGroup
	byUser  map[uint64]map[uint64]Role // member -> group -> role
	pends   map[pendingID]PendingReceipt
	events  map[[2]uint64]GroupEvent // (actor, msgID) -> pending group event
	tot     totals
	uses    map[uint64]senderUse // absent: zero
	unlock  func()               // set while a batch is open
}

func (b *memBackend) begin() writer {
	b.mu.Lock()
	b.st.unlock = b.mu.Unlock
	return &b.st
}

func (b *memBackend) view(fn func(reader) error) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return fn(&b.st)
}

// reclaim drops dedupe records older than the window.
func (b *memBackend) reclaim(_ int64, _ bool, _ *counters, e *engine) error {
	cutoff := e.cfg.Now().UnixMilli() - e.dedupeMs
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, d := range b.st.dedupes {
		if d.Time < cutoff {
			delete(b.st.dedupes, k)
		}
	}
	return nil
}

// snapshot: a memory commit takes no time, so there is nothing to overlap.
func (b *memBackend) snapshot() (reader, func(), bool) { return nil, nil, false }

func (b *memBackend) close() error { return nil }

// sync: memory has nothing to sync.
func (b *memBackend) sync() error { return nil }

func (b *memBackend) tidy() error { return nil }

func (b *memBackend) fill(*Stats) {}

// reopen: memory keeps its state; its commits cannot fail, so a batch is
// never left half applied.
func (b *memBackend) reopen() error { return nil }

// pendingID is a pending receipt's key in memory.
type pendingID struct {
	sender uint64
	key    ReceiptKey
}

func (m *memState) pending(fn func(PendingReceipt) bool) error {
	ps := make([]PendingReceipt, 0, len(m.pends))
	for _, p := range m.pends {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b PendingReceipt) int {
		if a.Sender != b.Sender {
			return cmp.Compare(a.Sender, b.Sender)
		}
		if a.Acker != b.Acker {
			return cmp.Compare(a.Acker, b.Acker)
		}
		return cmp.Compare(a.Seq, b.Seq)
	})
	for _, p := range ps {
		if !fn(p) {
			break
		}
	}
	return nil
}

func (m *memState) putPending(p *PendingReceipt) error {
	m.pends[pendingID{p.Sender, p.Key()}] = *p
	return nil
}

func (m *memState) delPending(sender uint64, key ReceiptKey) error {
	delete(m.pends, pendingID{sender, key})
	return nil
}

func (m *memState) commit() error {
	u := m.unlock
	m.unlock = nil
	u()
	return nil
}

func (m *memState) discard() { _ = m.commit() }

func (m *memState) meta(r uint64) (meta, error) { return m.metas[r], nil }

func (m *memState) scan(r, from uint64, fn func(e *Entry) bool) error {
	box := m.boxes[r]
	i := sort.Search(len(box), func(i int) bool { return box[i].Seq >= from })
	for ; i < len(box); i++ {
		e := box[i]
		if !fn(&e) {
			break
		}
	}
	return nil
}

func (m *memState) dedupe(sender, msgID, r uint64) (Dup, bool, error) {
	d, ok := m.dedupes[dedupeID{sender, msgID, r}]
	return d, ok, nil
}

func (m *memState) group(g uint64) (groupInfo, bool, error) {
	if mg, ok := m.groups[g]; ok {
		return mg.info, true, nil
	}
	return groupInfo{}, false, nil
}

func (m *memState) members(g uint64, fn func(Member) bool) error {
	mg, ok := m.groups[g]
	if !ok {
		return nil
	}
	ids := make([]uint64, 0, len(mg.members))
	for id := range mg.members {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if !fn(Member{ID: id, Role: mg.members[id]}) {
			break
		}
	}
	return nil
}

func (m *memState) role(g, member uint64) (Role, bool, error) {
	role, ok := m.byUser[member][g]
	return role, ok, nil
}

func (m *memState) groupsOf(member uint64, fn func(uint64) bool) error {
	gs := make([]uint64, 0, len(m.byUser[member]))
	for g := range m.byUser[member] {
		gs = append(gs, g)
	}
	slices.Sort(gs)
	for _, g := range gs {
		if !fn(g) {
			break
		}
	}
	return nil
}

func (m *memState) totals() (totals, error) { return m.tot, nil }

func (m *memState) heads(fn func(r uint64, mt meta, headTime int64) bool) error {
	for r, box := range m.boxes {
		if len(box) > 0 && !fn(r, m.metas[r], box[0].Time) {
			break
		}
	}
	return nil
}

func (m *memState) putMeta(r uint64, mt meta) error {
	m.metas[r] = mt
	return nil
}

func (m *memState) putEntry(e *Entry) error {
	c := *e
	c.Value = slices.Clone(e.Value)
	box := m.boxes[e.Recipient]
	i := sort.Search(len(box), func(i int) bool { return box[i].Seq >= e.Seq })
	if i < len(box) && box[i].Seq == e.Seq {
		box[i] = c
		return nil
	}
	m.boxes[e.Recipient] = slices.Insert(box, i, c)
	return nil
}

func (m *memState) delEntry(r, seq uint64) error {
	box := m.boxes[r]
	i := sort.Search(len(box), func(i int) bool { return box[i].Seq >= seq })
	switch {
	case i == len(box) || box[i].Seq != seq:
		return nil
	case len(box) == 1:
		delete(m.boxes, r)
	case i == 0:
		box[0] = Entry{} // let the value be collected
		m.boxes[r] = box[1:]
	default:
		m.boxes[r] = slices.Delete(box, i, i+1)
	}
	return nil
}

func (m *memState) putDedupe(sender, msgID uint64, d Dup, _ int64) error {
	m.dedupes[dedupeID{sender, msgID, d.Recipient}] = d
	return nil
}

func (m *memState) senderUse(sender uint64) (senderUse, error) { return m.uses[sender], nil }

func (m *memState) putSenderUse(sender uint64, u senderUse) error {
	if u == (senderUse{}) {
		delete(m.uses, sender)
	} else {
		m.uses[sender] = u
	}
	return nil
}

func (m *memState) putTotals(t totals) error {
	m.tot = t
	return nil
}

func (m *memState) putGroup(g uint64, gi groupInfo) error {
	mg, ok := m.groups[g]
	if !ok {
		mg = &memGroup{members: make(map[uint64]Role)}
		m.groups[g] = mg
	}
	mg.info = gi
	return nil
}

func (m *memState) delGroup(g uint64) error {
	delete(m.groups, g)
	return nil
}

func (m *memState) putMember(g, member uint64, role Role) error {
	m.groups[g].members[member] = role
	if m.byUser[member] == nil {
		m.byUser[member] = make(map[uint64]Role)
	}
	m.byUser[member][g] = role
	return nil
}

func (m *memState) delMember(g, member uint64) error {
	if mg, ok := m.groups[g]; ok {
		delete(mg.members, member)
	}
	delete(m.byUser[member], g)
	if len(m.byUser[member]) == 0 {
		delete(m.byUser, member)
	}
	return nil
}

func (m *memState) groupEvent(actor, msgID uint64) (GroupEvent, bool, error) {
	ev, ok := m.events[[2]uint64{actor, msgID}]
	return ev, ok, nil
}

func (m *memState) groupEvents(fn func(GroupEvent) bool) error {
	keys := slices.SortedFunc(maps.Keys(m.events), func(a, b [2]uint64) int {
		return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1]))
	})
	for _, k := range keys {
		if !fn(m.events[k]) {
			break
		}
	}
	return nil
}

func (m *memState) putGroupEvent(ev *GroupEvent) error {
	m.events[[2]uint64{ev.Actor, ev.MsgID}] = *ev
	return nil
}

func (m *memState) delGroupEvent(actor, msgID uint64) error {
	delete(m.events, [2]uint64{actor, msgID})
	return nil
}
