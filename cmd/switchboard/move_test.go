package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"switchboard/client"
	"switchboard/home"
	"switchboard/internal/testutil"
	"switchboard/node"
	"switchboard/noise"
	"switchboard/protocol"
	"switchboard/storage"
	"switchboard/storage/storagetest"
	"switchboard/token"
)

// storageOf is the store's config of the data folder data, as serve has it.
func storageOf(data string) storage.Config {
	cfg := node.Default()
	cfg.Data = data
	return cfg.WithDefaults().Storage
}

// openStoreOf opens the store of the data folder data, as serve does.
func openStoreOf(t *testing.T, data string) storage.Store {
	t.Helper()
	s, err := storage.Open(storageOf(data))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// storeUsers stores three messages ("u #1" to "u #3") for each of users 1
// to n in the folder (dirs, by node) of its home under nodes.
func storeUsers(t *testing.T, dirs map[uint32]string, nodes []uint32, n uint64) {
	t.Helper()
	for _, id := range nodes {
		s := openStoreOf(t, dirs[id])
		for u := uint64(1); u <= n; u++ {
			if home.Of(u, nodes) != id {
				continue
			}
			for i := uint64(1); i <= 3; i++ {
				if err := storage.AppendWait(s, storage.Entry{Recipient: u, Seq: i, Kind: storage.KindMessage, Sender: 99, MsgID: i, Value: fmt.Appendf(nil, "%d #%d", u, i)}); err != nil {
					t.Fatal(err)
				}
			}
		}
		s.Close()
	}
}

// TestMoveShrink runs `switchboard move` from three nodes to two: node 3's
// users go to nodes 1 and 2, reported in node order, one back on node 1
// with its seqs raised above the mark node 1 kept; node 3, emptied and out
// of the new list, is named as one whose folder may be retired; and a move
// that finished leaves no count to recount.
func TestMoveShrink(t *testing.T) {
	root := t.TempDir()
	dirs := map[uint32]string{}
	for n := uint32(1); n <= 3; n++ {
		dirs[n] = filepath.Join(root, fmt.Sprint("n", n))
	}
	storeUsers(t, dirs, []uint32{1, 2, 3}, 40)
	// A user of node 3 going to node 1 was on node 1 once and read all it
	// had there: node 1 keeps its mark, and the moved seqs go above it.
	back := uint64(1)
	for home.Of(back, []uint32{1, 2, 3}) != 3 || home.Of(back, []uint32{1, 2}) != 1 {
		back++
	}
	s := openStoreOf(t, dirs[1])
	if err := storage.AppendWait(s, storage.Entry{Recipient: back, Seq: 1, Kind: storage.KindMessage, Sender: 99, MsgID: 500, Value: []byte("read")}); err != nil {
		t.Fatal(err)
	}
	if _, err := storage.AckWait(s, back, 1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	var out bytes.Buffer
	args := []string{"--old-nodes", "1,2,3", "--new-nodes", "1,2", "--data", fmt.Sprintf("1=%s,2=%s,3=%s", dirs[1], dirs[2], dirs[3])}
	if err := moveMailboxes(args, &out); err != nil {
		t.Fatalf("move: %v\n%s", err, out.String())
	}
	moves := regexp.MustCompile(`(?m)^node \d+ -> node \d+`).FindAllString(out.String(), -1)
	if strings.Join(moves, "; ") != "node 3 -> node 1; node 3 -> node 2" {
		t.Errorf("moves reported %q, want node 3 -> node 1, then node 3 -> node 2:\n%s", moves, out.String())
	}
	if !strings.Contains(out.String(), "node 3 is not in the new list and holds nothing now: its folder may be retired\n") {
		t.Errorf("node 3 is not named as retired:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "; 1 of them had a mark in node 1 already, and their seqs were raised above it\n") {
		t.Errorf("the user back on node 1 is not reported renumbered:\n%s", out.String())
	}
	if strings.Contains(out.String(), "recounted") {
		t.Errorf("a move that finished says counts were recounted:\n%s", out.String())
	}
}

// TestMoveCommand runs `switchboard move` on the folders of two nodes
// moving to three: the dry run counts what would move per (from, to) and
// writes nothing; a folder a store holds open is refused; the move puts
// each moved user's entries in its new home; a rerun moves nothing.
func TestMoveCommand(t *testing.T) {
	root := t.TempDir()
	dirs := map[uint32]string{}
	for n := uint32(1); n <= 3; n++ {
		dirs[n] = filepath.Join(root, fmt.Sprint("n", n))
	}
	oldNodes, newNodes := []uint32{1, 2}, []uint32{1, 2, 3}
	storeUsers(t, dirs, oldNodes, 40)
	want := map[string]int{} // "from -> to": users
	for u := uint64(1); u <= 40; u++ {
		if from, to := home.Of(u, oldNodes), home.Of(u, newNodes); to != from {
			want[fmt.Sprintf("node %d -> node %d", from, to)]++
		}
	}
	data := fmt.Sprintf("1=%s,2=%s,3=%s", dirs[1], dirs[2], dirs[3])
	args := []string{"--old-nodes", "1=127.0.0.1:7071/127.0.0.1:6271/127.0.0.1:4271,2=127.0.0.1:7072/127.0.0.1:6272/127.0.0.1:4272", "--new-nodes", "1,2,3", "--data", data}

	var out bytes.Buffer
	if err := moveMailboxes(append(args, "--dry-run"), &out); err != nil {
		t.Fatalf("dry run: %v\n%s", err, out.String())
	}
	for pair, n := range want {
		if !strings.Contains(out.String(), fmt.Sprintf("%s: %d ids would move\n", pair, n)) {
			t.Errorf("the dry run does not say %s: %d ids:\n%s", pair, n, out.String())
		}
	}
	if _, err := os.Stat(dirs[3]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the dry run created node 3's folder: %v", err)
	}

	s := openStoreOf(t, dirs[2])
	err := moveMailboxes(args, &bytes.Buffer{})
	s.Close()
	if !errors.Is(err, storage.ErrInUse) {
		t.Fatalf("move with node 2's store open: %v, want ErrInUse", err)
	}
	if err := moveMailboxes(append(args, "--data", "1="+dirs[1]), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "no folder for node 2, 3") {
		t.Errorf("move without folders for nodes 2 and 3: %v", err)
	}

	out.Reset()
	if err := moveMailboxes(args, &out); err != nil {
		t.Fatalf("move: %v\n%s", err, out.String())
	}
	total := 0
	for pair, n := range want {
		total += n
		if !strings.Contains(out.String(), fmt.Sprintf("%s: moved %d ids (%d entries,", pair, n, 3*n)) {
			t.Errorf("the move does not say %s: %d ids:\n%s", pair, n, out.String())
		}
	}
	if !strings.Contains(out.String(), fmt.Sprintf("moved %d ids\n", total)) {
		t.Errorf("the move does not total %d:\n%s", total, out.String())
	}
	for _, lacks := range []string{
		"node 3 has no keys file at " + filepath.Join(dirs[3], token.FileName),
		"node 3 has no Noise keys at " + filepath.Join(dirs[3], noise.KeysFileName),
	} {
		if !strings.Contains(out.String(), lacks) {
			t.Errorf("the move does not say %q:\n%s", lacks, out.String())
		}
	}
	for n := uint32(1); n <= 3; n++ {
		b, err := os.ReadFile(filepath.Join(dirs[n], node.HomesFileName))
		if want := fmt.Sprintf("node %d of 1,2,3\n", n); err != nil || !strings.HasSuffix(string(b), want) {
			t.Errorf("node %d's folder records %q (%v), want %q", n, b, err, want)
		}
	}
	s3 := openStoreOf(t, dirs[3])
	for u := uint64(1); u <= 40; u++ {
		if home.Of(u, newNodes) != 3 {
			continue
		}
		es, _, err := s3.Read(u, 0, 10, 0, nil)
		if err != nil || len(es) != 3 || string(es[2].Value) != fmt.Sprintf("%d #3", u) {
			t.Errorf("user %d on node 3: %d entries, %v", u, len(es), err)
		}
	}
	s3.Close()

	out.Reset()
	if err := moveMailboxes(args, &out); err != nil || !strings.Contains(out.String(), "moved 0 ids\n") || strings.Contains(out.String(), "->") {
		t.Fatalf("rerun: %v\n%s", err, out.String())
	}
}

// TestMoveCluster is the whole procedure on `serve` processes: two nodes
// store messages for offline users (one of whom read a few first), stop,
// `switchboard move` takes their folders to a three-node list, three
// nodes start with it, and each user, logging in through node 1 (which
// redirects it home) with the resume point it had, gets every message it
// had not read once, in order, and then a message sent after the move. A
// group whose home moves keeps its members: a message to it after the
// move reaches both, after the ones sent before.
func TestMoveCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	a := testutil.FreeAddrs(t, 9)
	var entries []string
	for i := range 3 {
		entries = append(entries, fmt.Sprintf("%d=%s/%s/%s", i+1, a[3*i], a[3*i+1], a[3*i+2]))
	}
	list2, list3 := strings.Join(entries[:2], ","), strings.Join(entries, ",")
	oldNodes, newNodes := []uint32{1, 2}, []uint32{1, 2, 3}
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	if _, _, err := loadKeys(dirs[0], true); err != nil {
		t.Fatal(err)
	}
	keys, err := os.ReadFile(filepath.Join(dirs[0], token.FileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs[1:] {
		if err := os.WriteFile(filepath.Join(d, token.FileName), keys, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	start := func(list string, ids ...uint32) []*child {
		procs := make([]*child, len(ids))
		var wg sync.WaitGroup
		for i, id := range ids {
			wg.Go(func() { // a node waits for its peers' heartbeats
				procs[i] = startChild(t, dirs[id-1], 0, "--listen", a[3*(id-1)], "--loops", "1",
					"--cluster-name", "mv", "--cluster-node", strconv.Itoa(int(id)), "--cluster-nodes", list)
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		return procs
	}
	stop := func(procs []*child) {
		for _, c := range procs {
			c.cmd.Process.Signal(syscall.SIGTERM)
		}
		for _, c := range procs {
			select {
			case <-c.done:
			case <-time.After(30 * time.Second):
				t.Fatalf("a node did not stop in 30 s\n%s", c.log())
			}
		}
	}
	ctx := ctxTimeout(t, 90*time.Second)

	// Users: from each old node one that moves to node 3 and one that
	// stays; the sender stays on node 1.
	user := func(from, to uint32, after uint64) uint64 {
		for u := after + 1; ; u++ {
			if home.Of(u, oldNodes) == from && home.Of(u, newNodes) == to {
				return u
			}
		}
	}
	sender := user(1, 1, 1000)
	rcpts := []uint64{user(1, 3, 2000), user(2, 3, 2000), user(1, 1, 2000), user(2, 2, 2000)}
	const perRcpt = 20
	const readFirst = 5 // what rcpts[1] reads before the move

	procs := start(list2, 1, 2)
	sc, err := procs[0].dial(sender, protocol.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id := uint64(0)
	for i := 1; i <= perRcpt; i++ {
		for _, r := range rcpts {
			id++
			if err := sc.SendID(id, r, fmt.Appendf(nil, "%d to %d", i, r), false); err != nil {
				t.Fatal(err)
			}
			if _, err := sc.WaitAccept(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A group that moves, with a member that moves and one that stays.
	members := []uint64{user(2, 3, 3000), user(1, 1, 3000)}
	var group uint64
	for group == 0 {
		id++
		if _, err := sc.Group(protocol.Group{MsgID: id, Op: protocol.GroupCreate, Members: members}); err != nil {
			t.Fatal(err)
		}
		acc, err := sc.WaitAccept(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if home.Of(acc.Ref, oldNodes) != home.Of(acc.Ref, newNodes) {
			group = acc.Ref
			break
		}
		id++ // another group: leave it
		if _, err := sc.Group(protocol.Group{MsgID: id, Op: protocol.GroupLeave, Group: acc.Ref}); err != nil {
			t.Fatal(err)
		}
		if _, err := sc.WaitAccept(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	const perGroup = 5
	for i := 1; i <= perGroup; i++ {
		id++
		if err := sc.SendID(id, group, fmt.Appendf(nil, "%d to the group", i), true); err != nil {
			t.Fatal(err)
		}
		if _, err := sc.WaitAccept(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	rc, err := procs[1].dial(rcpts[1], protocol.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var resume uint64
	for i := 0; i < readFirst; i++ {
		d, err := rc.RecvDeliver(ctx)
		if err != nil {
			t.Fatal(err)
		}
		resume = d.Seq
	}
	if err := rc.Ack(resume); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	sc.Close()

	data := fmt.Sprintf("1=%s,2=%s,3=%s", dirs[0], dirs[1], dirs[2])
	args := []string{"--old-nodes", list2, "--new-nodes", list3, "--data", data}
	if err := moveMailboxes(args, &bytes.Buffer{}); !errors.Is(err, storage.ErrInUse) {
		t.Fatalf("move while the nodes run: %v, want ErrInUse", err)
	}
	stop(procs)
	var out bytes.Buffer
	if err := moveMailboxes(args, &out); err != nil {
		t.Fatalf("move: %v\n%s", err, out.String())
	}
	if m := regexp.MustCompile(`moved (\d+) ids\n`).FindStringSubmatch(out.String()); m == nil || m[1] == "0" {
		t.Fatalf("the move moved nothing:\n%s", out.String())
	}

	procs = start(list3, 1, 2, 3)
	sc, err = procs[0].dial(sender, protocol.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rcpts { // one more each, sent after the move: the last they read
		id++
		if err := sc.SendID(id, r, []byte("after the move"), false); err != nil {
			t.Fatal(err)
		}
		if _, err := sc.WaitAccept(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	id++ // and one to the group, which its new home fans out
	if err := sc.SendID(id, group, []byte("after the move"), true); err != nil {
		t.Fatal(err)
	}
	if _, err := sc.WaitAccept(ctx, id); err != nil {
		t.Fatalf("a group message after the move: %v", err)
	}
	ks, kid, err := loadKeys(dirs[0], false)
	if err != nil {
		t.Fatal(err)
	}
	// read logs user in through node 1 with the resume point ack, and
	// returns the bodies of the messages it is delivered, up to the one
	// sent after the move.
	read := func(user, ack uint64) []string {
		conn, err := client.Dial(ctx, a[0], client.Options{
			Token: func(context.Context) ([]byte, error) {
				return token.Mint(ks[kid], token.Claims{KeyID: kid, User: user, Device: 1, Expiry: time.Now().Add(time.Hour)}), nil
			},
			Session: client.Config{Ack: ack},
		})
		if err != nil {
			t.Fatalf("user %d (home node %d) through node 1: %v", user, home.Of(user, newNodes), err)
		}
		defer conn.Close()
		var got []string
		for {
			ev, err := conn.Recv(ctx)
			if err != nil {
				t.Fatalf("user %d got %q, then %v", user, got, err)
			}
			if d, ok := ev.(*protocol.Deliver); ok {
				got = append(got, string(d.Body))
				if string(d.Body) == "after the move" {
					return got
				}
			}
		}
	}
	for i, r := range rcpts {
		var ack uint64
		first := 1
		if i == 1 {
			ack, first = resume, readFirst+1
		}
		var want []string
		for n := first; n <= perRcpt; n++ {
			want = append(want, fmt.Sprintf("%d to %d", n, r))
		}
		want = append(want, "after the move")
		if got := read(r, ack); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("user %d (node %d -> node %d) got\n%q\nwant\n%q", r, home.Of(r, oldNodes), home.Of(r, newNodes), got, want)
		}
	}
	for _, m := range members {
		var want []string
		for n := 1; n <= perGroup; n++ {
			want = append(want, fmt.Sprintf("%d to the group", n))
		}
		want = append(want, "after the move")
		if got := read(m, 0); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("member %d (node %d -> node %d) of group %d (node %d -> node %d) got\n%q\nwant\n%q", m,
				home.Of(m, oldNodes), home.Of(m, newNodes), group, home.Of(group, oldNodes), home.Of(group, newNodes), got, want)
		}
	}
}

// TestMoveRefusesBadArgs: node lists and --data that do not describe a
// cluster, and stray arguments, are refused as a command line move cannot
// run with (exit status 2) before any folder is opened or made.
func TestMoveRefusesBadArgs(t *testing.T) {
	root := t.TempDir()
	data := func(ids ...int) string {
		var parts []string
		for _, id := range ids {
			parts = append(parts, fmt.Sprintf("%d=%s", id, filepath.Join(root, fmt.Sprint("n", id))))
		}
		return strings.Join(parts, ",")
	}
	seq := func(n int) string {
		var ids []string
		for i := 1; i <= n; i++ {
			ids = append(ids, strconv.Itoa(i))
		}
		return strings.Join(ids, ",")
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"node 0", []string{"--old-nodes", "0,1", "--new-nodes", "1", "--data", data(0, 1)}, "node id 0"},
		{"a node twice", []string{"--old-nodes", "1,1", "--new-nodes", "1", "--data", data(1)}, "names a node twice"},
		{"65 nodes", []string{"--old-nodes", "1", "--new-nodes", seq(65), "--data", data(1)}, "at most 64"},
		{"64 nodes", []string{"--old-nodes", "1", "--new-nodes", seq(64), "--data", data(1)}, "no folder for node 2, 3"},
		{"a list and a config", []string{"--old-nodes", "1", "--old-config", filepath.Join(root, "x.toml"), "--new-nodes", "1", "--data", data(1)}, "give one"},
		{"a folder twice", []string{"--old-nodes", "1", "--new-nodes", "1", "--data", data(1, 1)}, "names node 1 twice"},
		{"a folder of another node", []string{"--old-nodes", "1", "--new-nodes", "1", "--data", data(1, 9)}, "node 9 is in neither node list"},
		{"an argument", []string{"--old-nodes", "1", "--new-nodes", "1", "--data", data(1), "extra"}, `unexpected argument "extra"`},
		{"a node list of names", []string{"--old-nodes", "one", "--new-nodes", "1", "--data", data(1)}, `--old-nodes: "one": want id=client/route/nats or an id`},
		{"no folders", []string{"--old-nodes", "1", "--new-nodes", "1"}, "--data is required"},
		{"a folder without a path", []string{"--old-nodes", "1", "--new-nodes", "1", "--data", "1="}, `--data: "1=": want id=DIR`},
		{"a folder without a node", []string{"--old-nodes", "1", "--new-nodes", "1", "--data", filepath.Join(root, "n1")}, "want id=DIR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := moveMailboxes(tc.args, &bytes.Buffer{})
			var ue usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("move %q: %v, want a command-line error saying %q", tc.args, err, tc.want)
			}
			if ents, err := os.ReadDir(root); err != nil || len(ents) != 0 {
				t.Errorf("a refused move made %d folders (%v)", len(ents), err)
			}
		})
	}
}

// TestMoveRefusals: an old node's folder that does not exist is an error
// (a mistyped path must not be taken for an empty node, whose ids would
// then never move), and is not made; an id that two folders hold is left
// where it was, said, and the command fails.
func TestMoveRefusals(t *testing.T) {
	root := t.TempDir()
	dirs := map[uint32]string{}
	for n := uint32(1); n <= 3; n++ {
		dirs[n] = filepath.Join(root, fmt.Sprint("n", n))
	}
	oldNodes, newNodes := []uint32{1, 2}, []uint32{1, 2, 3}
	user := uint64(1)
	for home.Of(user, oldNodes) != 1 || home.Of(user, newNodes) != 3 {
		user++
	}
	for _, n := range []uint32{1, 3} { // node 2's folder is missing
		s := openStoreOf(t, dirs[n])
		if err := storage.AppendWait(s, storage.Entry{Recipient: user, Seq: 1, Kind: storage.KindMessage, Sender: 99, MsgID: uint64(n), Value: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	args := []string{"--old-nodes", "1,2", "--new-nodes", "1,2,3", "--data", fmt.Sprintf("1=%s,2=%s,3=%s", dirs[1], dirs[2], dirs[3])}
	if err := moveMailboxes(args, &bytes.Buffer{}); !errors.Is(err, storage.ErrNoStore) {
		t.Errorf("move with an old node's folder missing: %v, want ErrNoStore", err)
	}
	if _, err := os.Stat(dirs[2]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the move made the missing folder of old node 2 (%v)", err)
	}

	openStoreOf(t, dirs[2]).Close()
	var out bytes.Buffer
	err := moveMailboxes(args, &out)
	if err == nil || !strings.Contains(err.Error(), "1 ids refused") || !strings.Contains(out.String(), fmt.Sprintf("refused %d (node 1 -> node 3)", user)) {
		t.Fatalf("move of an id both node 1 and node 3 hold: %v\n%s", err, out.String())
	}
	s := openStoreOf(t, dirs[1])
	defer s.Close()
	if es, _, err := s.Read(user, 0, 10, 0, nil); err != nil || len(es) != 1 {
		t.Errorf("user %d on node 1 after the refusal: %d entries, %v; want its entry there", user, len(es), err)
	}
	// An id is not home yet: no folder is recorded as the new list's, so
	// serve refuses them all until the move is finished.
	for n := uint32(1); n <= 3; n++ {
		if _, err := os.Stat(filepath.Join(dirs[n], node.HomesFileName)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("node %d's folder recorded its homes after a move that refused an id (%v)", n, err)
		}
	}
}

// TestMoveNodeListsFromConfigs: --old-config and --new-config read the
// node lists from nodes' TOML files, as --old-nodes and --new-nodes give
// them; --ids prints every id that would move, and then every id moved,
// with its (from, to), one a line, in id order. A file with no
// cluster-nodes, or none at all, is a command line move cannot run with.
func TestMoveNodeListsFromConfigs(t *testing.T) {
	root := t.TempDir()
	dirs := map[uint32]string{}
	for n := uint32(1); n <= 3; n++ {
		dirs[n] = filepath.Join(root, fmt.Sprint("n", n))
	}
	oldNodes, newNodes := []uint32{1, 2}, []uint32{1, 2, 3}
	var want []string // "id: node from -> node to"
	for n := uint32(1); n <= 2; n++ {
		s := openStoreOf(t, dirs[n])
		for u := uint64(1); u <= 12; u++ {
			if home.Of(u, oldNodes) != n {
				continue
			}
			if err := storage.AppendWait(s, storage.Entry{Recipient: u, Seq: 1, Kind: storage.KindMessage, Sender: 99, MsgID: 1, Value: []byte("x")}); err != nil {
				t.Fatal(err)
			}
			if to := home.Of(u, newNodes); to != n {
				want = append(want, fmt.Sprintf("%d: node %d -> node %d", u, n, to))
			}
		}
		s.Close()
	}
	config := func(name string, nodes int) string {
		var list []string
		for i := 1; i <= nodes; i++ {
			list = append(list, fmt.Sprintf("%d=127.0.0.1:%d/127.0.0.1:%d/127.0.0.1:%d", i, 7070+i, 6270+i, 4270+i))
		}
		path := filepath.Join(root, name)
		toml := fmt.Sprintf("[cluster]\ncluster-name = \"mv\"\ncluster-node = 1\ncluster-nodes = %q\n", strings.Join(list, ","))
		if nodes == 0 {
			toml = "[cluster]\ncluster-heartbeat = \"250ms\"\n"
		}
		if err := os.WriteFile(path, []byte(toml), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	oldConfig, newConfig := config("old.toml", 2), config("new.toml", 3)
	data := fmt.Sprintf("1=%s,2=%s,3=%s", dirs[1], dirs[2], dirs[3])
	args := []string{"--old-config", oldConfig, "--new-config", newConfig, "--data", data, "--ids"}
	idLine := regexp.MustCompile(`^\d+: node \d+ -> node \d+$`)
	idLines := func(out string) []string {
		var ids []string
		for line := range strings.Lines(out) {
			if idLine.MatchString(strings.TrimSpace(line)) {
				ids = append(ids, strings.TrimSpace(line))
			}
		}
		return ids
	}
	for _, dry := range []bool{true, false} {
		var out bytes.Buffer
		a := args
		if dry {
			a = append(a, "--dry-run")
		}
		if err := moveMailboxes(a, &out); err != nil {
			t.Fatalf("move %q: %v\n%s", a, err, out.String())
		}
		if got := idLines(out.String()); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("move %q printed the ids\n%q\nwant\n%q", a, got, want)
		}
	}
	var out bytes.Buffer
	if err := moveMailboxes(args[:len(args)-1], &out); err != nil || len(idLines(out.String())) != 0 || !strings.Contains(out.String(), "moved 0 ids\n") {
		t.Errorf("a rerun without --ids: %v\n%s", err, out.String())
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no cluster-nodes", []string{"--old-config", config("alone.toml", 0), "--new-config", newConfig, "--data", data}, "--old-config " + filepath.Join(root, "alone.toml") + ": no cluster-nodes in it"},
		{"no such file", []string{"--old-config", oldConfig, "--new-config", filepath.Join(root, "absent.toml"), "--data", data}, "--new-config: reading " + filepath.Join(root, "absent.toml")},
		{"no new list", []string{"--old-config", oldConfig, "--data", data}, "--new-nodes (or --new-config) is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := moveMailboxes(tc.args, &bytes.Buffer{})
			var ue usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("move %q: %v, want a command-line error saying %q", tc.args, err, tc.want)
			}
		})
	}
}

// TestMoveFinishesWhatACrashLeft: a rerun of the command after a crash
// that deleted a user from its old home but left the marker in its new
// one finishes that move (the marker goes, the user stays whole), says
// so, and moves a user a node held though it was not its home under the
// old list either. A marker of a move from a node not given in --data
// stops the command, naming it.
func TestMoveFinishesWhatACrashLeft(t *testing.T) {
	root := t.TempDir()
	dirs := map[uint32]string{}
	for n := uint32(1); n <= 3; n++ {
		dirs[n] = filepath.Join(root, fmt.Sprint("n", n))
	}
	oldNodes, newNodes := []uint32{1, 2}, []uint32{1, 2, 3}
	user := func(after uint64) uint64 {
		for u := after + 1; ; u++ {
			if home.Of(u, oldNodes) == 1 && home.Of(u, newNodes) == 3 {
				return u
			}
		}
	}
	moved := user(0)     // in node 3 already, its marker there, nothing in node 1
	stray := user(moved) // held by node 2, neither its old home nor its new
	store := func(n uint32, u uint64, values ...string) {
		s := openStoreOf(t, dirs[n])
		defer s.Close()
		for i, v := range values {
			if err := storage.AppendWait(s, storage.Entry{Recipient: u, Seq: uint64(i + 1), Kind: storage.KindMessage, Sender: 99, MsgID: uint64(i + 1), Value: []byte(v)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	openStoreOf(t, dirs[1]).Close()
	store(2, stray, "s1")
	store(3, moved, "m1", "m2")
	storagetest.LeaveUnfinishedMove(t, storageOf(dirs[3]).Dir, moved, "1")
	args := []string{"--old-nodes", "1,2", "--new-nodes", "1,2,3", "--data", fmt.Sprintf("1=%s,2=%s,3=%s", dirs[1], dirs[2], dirs[3])}

	var out bytes.Buffer
	if err := moveMailboxes(args, &out); err != nil {
		t.Fatalf("move: %v\n%s", err, out.String())
	}
	for _, says := range []string{
		fmt.Sprintf("node 3 (%s): holds 1 ids, 1 unfinished moves into it\n", storageOf(dirs[3]).Dir),
		"1 ids are held by a node that was not their home under the old list either",
		"node 1 -> node 3: moved 1 ids (0 entries, 0 keys)",
		"node 2 -> node 3: moved 1 ids (1 entries,",
	} {
		if !strings.Contains(out.String(), says) {
			t.Errorf("the move does not say %q:\n%s", says, out.String())
		}
	}
	f, err := storage.OpenFolder(storageOf(dirs[3]), false)
	if err != nil {
		t.Fatal(err)
	}
	h, err := f.Holdings()
	f.Close()
	if want := []uint64{moved, stray}; err != nil || fmt.Sprint(h.IDs) != fmt.Sprint(want) || len(h.Unfinished) > 0 {
		t.Errorf("node 3 after the move: %+v, %v; want %v and no unfinished move", h, err, want)
	}
	s := openStoreOf(t, dirs[3])
	es, _, err := s.Read(moved, 0, 10, 0, nil)
	s.Close()
	if err != nil || len(es) != 2 || string(es[0].Value) != "m1" || string(es[1].Value) != "m2" {
		t.Errorf("user %d on node 3: %d entries, %v; want m1, m2", moved, len(es), err)
	}
	if b, err := os.ReadFile(filepath.Join(dirs[3], node.HomesFileName)); err != nil || !strings.HasSuffix(string(b), "node 3 of 1,2,3\n") {
		t.Errorf("node 3's folder records %q (%v)", b, err)
	}

	storagetest.LeaveUnfinishedMove(t, storageOf(dirs[3]).Dir, moved, "9")
	err = moveMailboxes(args, &bytes.Buffer{})
	if want := fmt.Sprintf("node 3's folder holds an unfinished move of %d from \"9\", which is not a node given in --data", moved); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("move with a marker from node 9: %v, want an error saying %q", err, want)
	}
}
