//go:build soak

package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"switchboard/bench"
	"switchboard/token"
)

// TestSoakTakeoverLoop: six takeovers in a row, one every few seconds,
// through `serve` processes under a phone-regime run of 2,000 connections.
// After each, the new process holds as many descriptors as the first did,
// the store's files aside, and at most twice its memory and a memtable's
// arena (nothing piles up from one handover to the next),
// and at the end the bench saw no close and nothing lost, duplicated or
// reordered, with every receipt. Run with `make soak`.
func TestSoakTakeoverLoop(t *testing.T) {
	const takeovers = 6
	data := t.TempDir()
	cur := startChild(t, data, 0)
	cfg := bench.Config{
		Scenario: "phone", Addr: cur.addr, Keys: filepath.Join(data, token.FileName),
		Pairs: 1000, Rate: 300, Duration: 40 * time.Second, ConnectRate: 2000, Drain: 30 * time.Second,
	}
	ctx := ctxTimeout(t, 3*time.Minute)
	done := runBench(ctx, cfg)
	waitAdopt := func(c *child) {
		t.Helper()
		waitLog(t, c, "handover: adopted the connections")
	}
	var firstFDs, firstRSS int
	for i := range takeovers + 1 {
		if i > 0 {
			next := startChild(t, data, 0, "--takeover")
			handedOver(t, cur)
			waitAdopt(next)
			cur = next
		}
		// Let the bench log in (the first) and traffic flow a little.
		time.Sleep(4 * time.Second)
		fds, mem := procFiles(t, cur), procMem(t, cur)
		rss := mem["VmRSS:"]
		t.Logf("process %d: %d descriptors, RSS %d MiB (anonymous %d, files %d)", i, fds, rss>>20, mem["RssAnon:"]>>20, mem["RssFile:"]>>20)
		if i == 0 {
			firstFDs, firstRSS = fds, rss
			continue
		}
		if fds > firstFDs+2 {
			t.Errorf("after takeover %d: %d descriptors besides the store's, the first process %d", i, fds, firstFDs)
		}
		if rss > 2*firstRSS+memtableArena {
			t.Errorf("after takeover %d: RSS %d MiB, the first process %d MiB", i, rss>>20, firstRSS>>20)
		}
	}
	checkUnnoticed(t, (<-done).ok(t), 5000)
	cur.terminate(t)
}

// memtableArena is what Badger allocates at once for a memtable (skl.newArena,
// about 32 MiB for the default 24 MiB memtable). Whether its pages are resident
// depends on where the runtime found them: fresh from the operating system
// they stay untouched until written, but memory the process used before is
// zeroed, every page. So one process counts the arena whole in its RSS and
// the next not at all (measured: 46-48 MiB of anonymous memory against
// 15-19, most of it the arena, in one process of seven).
const memtableArena = 32 << 20

// procFiles counts c's open descriptors but the files of its data folder
// (the store's grow with what it holds: each close flushes a memtable into
// one more table).
func procFiles(t *testing.T, c *child) int {
	t.Helper()
	dir := "/proc/" + strconv.Itoa(c.cmd.Process.Pid) + "/fd"
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range es {
		if target, _ := os.Readlink(dir + "/" + e.Name()); !strings.HasPrefix(target, c.data) {
			n++
		}
	}
	return n
}

// procMem returns the memory lines of c's /proc status, in bytes, by name
// ("VmRSS:", "RssAnon:", "RssFile:"...).
func procMem(t *testing.T, c *child) map[string]int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(c.cmd.Process.Pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int{}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[2] == "kB" {
			kb, _ := strconv.Atoi(f[1])
			m[f[0]] = kb << 10
		}
	}
	if _, ok := m["VmRSS:"]; !ok {
		t.Fatal("no VmRSS")
	}
	return m
}
