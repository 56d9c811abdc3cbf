package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"switchboard/home"
	"switchboard/node"
	"switchboard/noise"
	"switchboard/storage"
	"switchboard/token"
)

// moveCmd moves the mailboxes and groups whose home changes with a
// cluster's node list into their new homes' data folders, with every node
// stopped (docs/CLUSTER.md, "Changing the node list").
func moveCmd(args []string) error { return moveMailboxes(args, os.Stdout) }

// moveMailboxes is moveCmd reporting to w.
func moveMailboxes(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("move", flag.ContinueOnError)
	oldNodes := fs.String("old-nodes", "", "the node list the cluster ran with: serve's cluster-nodes (id=client/route/nats,...), or the ids alone (1,2)")
	newNodes := fs.String("new-nodes", "", "the node list it will run with, in the same form")
	oldConfig := fs.String("old-config", "", "instead of --old-nodes: a node's TOML file (serve --config) with the old cluster-nodes")
	newConfig := fs.String("new-config", "", "instead of --new-nodes: a node's TOML file with the new cluster-nodes")
	data := fs.String("data", "", "every node's data folder (serve's --data), old and new nodes: id=DIR,id=DIR,... (required)")
	dryRun := fs.Bool("dry-run", false, "list what each folder holds and count what would move, per (from, to) node; write nothing")
	listIDs := fs.Bool("ids", false, "print every id moved (or, with --dry-run, that would move), one a line")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: switchboard move --old-nodes LIST --new-nodes LIST --data ID=DIR,... [--dry-run] [--ids]

Moves every user's mailbox and every group whose home node changes from the
old node list to the new one into its new home's data folder, with every
node of the cluster stopped: it refuses a folder a running server holds.
Give the data folder of every node of both lists, the new nodes' too (an
absent folder of a new node is created). For each id a folder holds whose
home under the new list is another node, it copies the id's keys into that
node's folder, syncs them, and only then deletes them from the first; a
rerun after a crash or an interruption finishes what was left and moves
nothing twice. It prints what it moved. Nodes on several hosts: copy their
folders to one host, or see docs/CLUSTER.md.

`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	oldIDs, err := nodeIDs("old", *oldNodes, *oldConfig)
	if err != nil {
		return usageError{err}
	}
	newIDs, err := nodeIDs("new", *newNodes, *newConfig)
	if err != nil {
		return usageError{err}
	}
	dirs, err := parseDataDirs(*data, oldIDs, newIDs)
	if err != nil {
		return usageError{err}
	}
	m := &mover{w: w, old: oldIDs, new: newIDs, dirs: dirs, dryRun: *dryRun, listIDs: *listIDs, folders: map[uint32]*storage.Folder{}}
	defer m.close()
	return m.run()
}

// nodeIDs reads the ids of a node list given as a flag or in a config file.
func nodeIDs(which, list, config string) ([]uint32, error) {
	switch {
	case list != "" && config != "":
		return nil, fmt.Errorf("--%s-nodes and --%s-config: give one", which, which)
	case config != "":
		fs := pflag.NewFlagSet("config", pflag.ContinueOnError)
		node.Flags(fs)
		if err := fs.Parse([]string{"--" + node.ConfigFlag, config}); err != nil {
			return nil, fmt.Errorf("--%s-config: %w", which, err)
		}
		cfg, err := node.Load(fs, nil)
		if err != nil {
			return nil, fmt.Errorf("--%s-config: %w", which, err)
		}
		if len(cfg.Cluster.Nodes) == 0 {
			return nil, fmt.Errorf("--%s-config %s: no cluster-nodes in it", which, config)
		}
		var ids []uint32
		for _, n := range cfg.Cluster.Nodes {
			ids = append(ids, n.ID)
		}
		return checkIDs(which, ids)
	case list == "":
		return nil, fmt.Errorf("--%s-nodes (or --%s-config) is required", which, which)
	}
	var ids []uint32
	for part := range strings.SplitSeq(list, ",") {
		id, _, _ := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.ParseUint(strings.TrimSpace(id), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("--%s-nodes: %q: want id=client/route/nats or an id", which, part)
		}
		ids = append(ids, uint32(n))
	}
	return checkIDs(which, ids)
}

// checkIDs sorts a node list's ids and refuses 0, repeats and more than
// a cluster may have.
func checkIDs(which string, ids []uint32) ([]uint32, error) {
	slices.Sort(ids)
	switch {
	case ids[0] == 0:
		return nil, fmt.Errorf("the %s node list: node id 0: ids start at 1", which)
	case len(slices.Compact(slices.Clone(ids))) != len(ids):
		return nil, fmt.Errorf("the %s node list names a node twice", which)
	case len(ids) > 64:
		return nil, fmt.Errorf("the %s node list has %d nodes, a cluster at most 64", which, len(ids))
	}
	return ids, nil
}

// parseDataDirs reads --data: one folder for each node of either list,
// and none for another node.
func parseDataDirs(v string, oldIDs, newIDs []uint32) (map[uint32]string, error) {
	if v == "" {
		return nil, errors.New("--data is required")
	}
	dirs := map[uint32]string{}
	for part := range strings.SplitSeq(v, ",") {
		id, dir, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.ParseUint(strings.TrimSpace(id), 10, 32)
		if !ok || err != nil || dir == "" {
			return nil, fmt.Errorf("--data: %q: want id=DIR", part)
		}
		if _, dup := dirs[uint32(n)]; dup {
			return nil, fmt.Errorf("--data names node %d twice", n)
		}
		if !slices.Contains(oldIDs, uint32(n)) && !slices.Contains(newIDs, uint32(n)) {
			return nil, fmt.Errorf("--data: node %d is in neither node list", n)
		}
		dirs[uint32(n)] = dir
	}
	var missing []string
	for _, id := range slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(oldIDs), newIDs...)))) {
		if _, ok := dirs[id]; !ok {
			missing = append(missing, strconv.Itoa(int(id)))
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("--data has no folder for node %s: every node of both lists must be given (copy the folders of other hosts here)", strings.Join(missing, ", "))
	}
	return dirs, nil
}

// mover is one run of the move command.
type mover struct {
	w        io.Writer
	old, new []uint32
	dirs     map[uint32]string
	dryRun   bool
	listIDs  bool
	folders  map[uint32]*storage.Folder // the folders open; absent: a new node's folder that does not exist (dry run)
}

// transfer is the ids that go from one node's folder to another's.
type transfer struct{ from, to uint32 }

func (m *mover) close() {
	for _, f := range m.folders {
		if f != nil {
			f.Close()
		}
	}
}

func (m *mover) run() error {
	nodes := slices.Compact(slices.Sorted(func(yield func(uint32) bool) {
		for id := range m.dirs {
			if !yield(id) {
				return
			}
		}
	}))
	plan := map[transfer][]uint64{}
	stray := 0
	for _, n := range nodes {
		f, err := m.open(n)
		if err != nil {
			return err
		}
		if f == nil {
			fmt.Fprintf(m.w, "node %d (%s): absent, holds nothing\n", n, m.dirs[n])
			continue
		}
		h, err := f.Holdings()
		if err != nil {
			return err
		}
		fmt.Fprintf(m.w, "node %d (%s): holds %d ids", n, f.Dir(), len(h.IDs))
		if len(h.Unfinished) > 0 {
			fmt.Fprintf(m.w, ", %d unfinished moves into it", len(h.Unfinished))
		}
		fmt.Fprintln(m.w)
		for _, id := range h.IDs {
			to := home.Of(id, m.new)
			if to == n {
				continue
			}
			if home.Of(id, m.old) != n {
				stray++
			}
			plan[transfer{n, to}] = append(plan[transfer{n, to}], id)
		}
		for _, u := range h.Unfinished {
			from, err := strconv.ParseUint(u.From, 10, 32)
			if err != nil || m.dirs[uint32(from)] == "" {
				return fmt.Errorf("node %d's folder holds an unfinished move of %d from %q, which is not a node given in --data", n, u.ID, u.From)
			}
			t := transfer{uint32(from), n}
			if !slices.Contains(plan[t], u.ID) {
				plan[t] = append(plan[t], u.ID)
			}
		}
	}
	if stray > 0 {
		fmt.Fprintf(m.w, "%d ids are held by a node that was not their home under the old list either; they move to their new home all the same\n", stray)
	}
	order := slices.SortedFunc(func(yield func(transfer) bool) {
		for t := range plan {
			if !yield(t) {
				return
			}
		}
	}, func(a, b transfer) int {
		if a.from != b.from {
			return int(a.from) - int(b.from)
		}
		return int(a.to) - int(b.to)
	})
	total, refused := 0, 0
	for _, t := range order {
		ids := plan[t]
		slices.Sort(ids)
		if m.dryRun {
			fmt.Fprintf(m.w, "node %d -> node %d: %d ids would move\n", t.from, t.to, len(ids))
			m.printIDs(ids, t)
			total += len(ids)
			continue
		}
		to, err := m.open(t.to)
		if err != nil {
			return err
		}
		res, err := storage.Move(m.folders[t.from], to, ids, strconv.Itoa(int(t.from)))
		if err != nil {
			return fmt.Errorf("moving from node %d to node %d: %w", t.from, t.to, err)
		}
		fmt.Fprintf(m.w, "node %d -> node %d: moved %d ids (%d entries, %d keys)", t.from, t.to, len(res.IDs), res.Entries, res.Keys)
		if len(res.Renumbered) > 0 {
			fmt.Fprintf(m.w, "; %d of them had a mark in node %d already, and their seqs were raised above it", len(res.Renumbered), t.to)
		}
		fmt.Fprintln(m.w)
		m.printIDs(res.IDs, t)
		for _, r := range res.Refused {
			fmt.Fprintf(m.w, "refused %d (node %d -> node %d): %s\n", r.ID, t.from, t.to, r.Reason)
		}
		total += len(res.IDs)
		refused += len(res.Refused)
	}
	if m.dryRun {
		fmt.Fprintf(m.w, "dry run: %d ids would move; nothing written\n", total)
		return nil
	}
	// A rerun after a crash between a move's last deletion and its
	// recount finds nothing to move: recount every folder.
	for _, n := range nodes {
		if f := m.folders[n]; f != nil {
			if changed, err := f.Recount(); err != nil {
				return err
			} else if changed {
				fmt.Fprintf(m.w, "node %d: totals and per-sender counts recounted\n", n)
			}
		}
	}
	fmt.Fprintf(m.w, "moved %d ids\n", total)
	for _, n := range nodes {
		if slices.Contains(m.new, n) {
			if _, err := os.Stat(filepath.Join(m.dirs[n], token.FileName)); errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(m.w, "node %d has no keys file at %s: copy the cluster's keys file there before 'switchboard serve'\n", n, filepath.Join(m.dirs[n], token.FileName))
			}
			if _, err := os.Stat(filepath.Join(m.dirs[n], noise.KeysFileName)); errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(m.w, "node %d has no Noise keys at %s: copy the cluster's %s there too, or clients that pinned the others' key fall back to a full handshake there\n", n, filepath.Join(m.dirs[n], noise.KeysFileName), noise.KeysFileName)
			}
			continue
		}
		if f := m.folders[n]; f != nil {
			if h, err := f.Holdings(); err == nil && len(h.IDs) == 0 {
				fmt.Fprintf(m.w, "node %d is not in the new list and holds nothing now: its folder may be retired\n", n)
			}
		}
	}
	if refused > 0 {
		return fmt.Errorf("%d ids refused (above) and left where they were; everything else moved", refused)
	}
	// Every id is at its new home: each new node's folder may now be
	// served as that node under the new list (serve checks the record).
	for _, n := range m.new {
		if err := node.WriteHomes(m.dirs[n], node.HomesOf(n, m.new)); err != nil {
			return err
		}
	}
	fmt.Fprintf(m.w, "recorded each new node's folder as its homes under the new list (%s)\n", node.HomesFileName)
	return nil
}

func (m *mover) printIDs(ids []uint64, t transfer) {
	if !m.listIDs {
		return
	}
	for _, id := range ids {
		fmt.Fprintf(m.w, "%d: node %d -> node %d\n", id, t.from, t.to)
	}
}

// open returns node n's folder, opening it on first use: an old node's
// must exist; a new node's is created, except in a dry run, where an
// absent one is nil.
func (m *mover) open(n uint32) (*storage.Folder, error) {
	if f, ok := m.folders[n]; ok {
		return f, nil
	}
	cfg := node.Default()
	cfg.Data = m.dirs[n]
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg = cfg.WithDefaults()
	create := !slices.Contains(m.old, n)
	if create && m.dryRun {
		if _, err := os.Stat(cfg.Storage.Dir); errors.Is(err, os.ErrNotExist) {
			m.folders[n] = nil
			return nil, nil
		}
	}
	f, err := storage.OpenFolder(cfg.Storage, create)
	if err != nil {
		return nil, fmt.Errorf("node %d: %w", n, err)
	}
	m.folders[n] = f
	return f, nil
}
