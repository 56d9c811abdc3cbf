package storage_test

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard/storage"
)

// The crash test: a child process (this test binary, re-executed with
// envCrashDir set) appends and acks under load and prints each append and
// ack after its callback reported it durable. The parent kills the child
// with SIGKILL after a random number of lines, reopens the store and checks
// that every printed append is present exactly once and in order, every
// printed ack's entries are gone, and no high-water mark went backwards.
// crashRounds and crashMaxLines are set per build tag (crash_rounds*_test.go).

const envCrashDir = "SWITCHBOARD_STORAGE_CRASH_DIR"

// envCrashSpill sets the child's Config.SpillAfter: "-1ns" spills every
// write into Badger at the end of its batch, so kills land during spills.
// envCrashOpenOnly makes the child only open the store (replaying what the
// last child left in the in-flight log) and wait: the parent kills it at a
// random moment, during the replay or after.
const (
	envCrashSpill    = "SWITCHBOARD_STORAGE_CRASH_SPILL"
	envCrashOpenOnly = "SWITCHBOARD_STORAGE_CRASH_OPEN_ONLY"
)

const (
	crashProducers     = 16 // blocking producers, 4 recipients each
	crashRecipients    = 4
	crashAsyncBase     = 1000 // the async worker's recipients start here
	crashAsyncInFlight = 64
	crashValueLen      = 200
)

func crashValue(r, seq uint64) []byte {
	v := bytes.Repeat([]byte{'.'}, crashValueLen)
	copy(v, fmt.Sprintf("r%d/s%d", r, seq))
	return v
}

// TestCrashChild is the child's body; it does nothing in a normal run.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(envCrashDir)
	if dir == "" {
		t.Skip("only runs as the child of TestCrash")
	}
	spill, _ := time.ParseDuration(os.Getenv(envCrashSpill))
	s, err := storage.Open(storage.Config{Dir: dir, HousekeepingInterval: 50 * time.Millisecond, SpillAfter: spill})
	if err != nil {
		fmt.Printf("X open: %v\n", err)
		os.Exit(2)
	}
	if os.Getenv(envCrashOpenOnly) != "" {
		fmt.Println("O")
		time.Sleep(60 * time.Second) // the parent kills us long before
		os.Exit(4)
	}
	var outMu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	say := func(format string, args ...any) {
		outMu.Lock()
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush() // a line is a promise only once the parent can read it
		outMu.Unlock()
	}
	fail := func(err error) {
		say("X %v", err)
		os.Exit(3)
	}
	// Blocking producers, as 64-256 concurrent senders would be.
	for p := 0; p < crashProducers; p++ {
		go func() {
			hw := make([]uint64, crashRecipients)
			for i := range hw {
				var err error
				if hw[i], err = s.LastSeq(uint64(p*crashRecipients + i + 1)); err != nil {
					fail(err)
				}
			}
			for n := 0; ; n++ {
				i := n % crashRecipients
				r := uint64(p*crashRecipients + i + 1)
				seq := hw[i] + 1
				e := storage.Entry{Recipient: r, Seq: seq, Kind: storage.KindMessage, Sender: 1, MsgID: r<<32 | seq, Value: crashValue(r, seq)}
				if err := storage.AppendWait(s, e); err != nil {
					fail(err)
				}
				hw[i] = seq
				say("A %d %d", r, seq)
				if seq%16 == 0 {
					if _, err := storage.AckWait(s, r, seq-8); err != nil {
						fail(err)
					}
					say("D %d %d", r, seq-8)
				}
			}
		}()
	}
	// One worker with many appends in flight, as a delivery shard would.
	go func() {
		type done struct{ r, seq uint64 }
		printed := make(chan done, crashAsyncInFlight) // never full: bounded by sem
		sem := make(chan struct{}, crashAsyncInFlight)
		go func() {
			for d := range printed {
				say("A %d %d", d.r, d.seq)
				<-sem
				if d.seq%64 == 0 { // keep the mailboxes under their limit
					if _, err := storage.AckWait(s, d.r, d.seq-32); err != nil {
						fail(err)
					}
					say("D %d %d", d.r, d.seq-32)
				}
			}
		}()
		hw := make([]uint64, crashRecipients)
		for i := range hw {
			var err error
			if hw[i], err = s.LastSeq(uint64(crashAsyncBase + i)); err != nil {
				fail(err)
			}
		}
		for n := 0; ; n++ {
			i := n % crashRecipients
			r, seq := uint64(crashAsyncBase+i), hw[i]+1
			hw[i] = seq
			sem <- struct{}{}
			e := storage.Entry{Recipient: r, Seq: seq, Kind: storage.KindMessage, Sender: 2, MsgID: r<<32 | seq, Value: crashValue(r, seq)}
			s.Append(e, func(err error) {
				if err != nil {
					fail(err)
				}
				printed <- done{r, seq}
			})
		}
	}()
	time.Sleep(60 * time.Second) // the parent kills us long before
	say("X not killed")
	os.Exit(4)
}

// crashState is what the parent knows was acknowledged, per recipient.
type crashState struct {
	acked map[uint64]bool // seqs whose append was acknowledged
	floor uint64          // the highest acknowledged ack
	hw    uint64          // the high-water mark verified after the last round
	maxA  uint64          // the highest acknowledged append
}

func TestCrash(t *testing.T) {
	if os.Getenv(envCrashDir) != "" {
		t.Skip("in the child")
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	state := map[uint64]*crashState{}
	total := 0
	for round := 0; round < crashRounds; round++ {
		killAfter := rng.IntN(crashMaxLines)
		spill := ""
		if round%2 == 1 {
			spill = "-1ns" // every write spills into Badger at once: kills land in spills
		}
		lines := runCrashChild(t, dir, killAfter, state, spill)
		total += lines
		if round%2 == 0 {
			// Kill a child while it replays what this one left, or soon after.
			killDuringOpen(t, dir, time.Duration(rng.IntN(40))*time.Millisecond)
		}
		verifyCrash(t, dir, round, state)
	}
	t.Logf("%d rounds, %d acknowledged operations checked across %d recipients", crashRounds, total, len(state))
}

// runCrashChild starts the child, kills it with SIGKILL after killAfter
// lines, records every line it printed, and returns the line count.
func runCrashChild(t *testing.T, dir string, killAfter int, state map[uint64]*crashState, spill string) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envCrashDir+"="+dir, envCrashSpill+"="+spill)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	watchdog := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
	defer watchdog.Stop()
	n := 0
	killed := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "A", "D":
			r, _ := strconv.ParseUint(f[1], 10, 64)
			seq, _ := strconv.ParseUint(f[2], 10, 64)
			st := state[r]
			if st == nil {
				st = &crashState{acked: map[uint64]bool{}}
				state[r] = st
			}
			if f[0] == "A" {
				st.acked[seq] = true
				st.maxA = max(st.maxA, seq)
			} else {
				st.floor = max(st.floor, seq)
			}
			n++
		case "X":
			t.Fatalf("child failed: %s\nstderr: %s", line, stderr.String())
		}
		if n >= killAfter && !killed {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			killed = true // keep reading: lines already written were promised
		}
	}
	err = cmd.Wait()
	if !killed || err == nil {
		t.Fatalf("child ended without being killed (%v) after %d lines; stderr: %s", err, n, stderr.String())
	}
	return n
}

// killDuringOpen starts a child that only opens the store, and kills it
// after delay, which may fall within the replay of the in-flight log or
// after it; or, when the child is quicker than that, once it says it is
// open.
func killDuringOpen(t *testing.T, dir string, delay time.Duration) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envCrashDir+"="+dir, envCrashOpenOnly+"=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	kill := time.AfterFunc(delay, func() { _ = cmd.Process.Kill() })
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if line := sc.Text(); line == "O" {
			_ = cmd.Process.Kill()
		} else if strings.HasPrefix(line, "X") {
			t.Fatalf("child failed to open: %s", line)
		}
	}
	kill.Stop()
	_ = cmd.Wait()
}

// verifyCrash opens the store the child left and checks every promise.
func verifyCrash(t *testing.T, dir string, round int, state map[uint64]*crashState) {
	t.Helper()
	s, err := storage.Open(storage.Config{Dir: dir, HousekeepingInterval: -1})
	if err != nil {
		t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
	}
	defer s.Close()
	for r, st := range state {
		hw, err := s.LastSeq(r)
		if err != nil {
			t.Fatal(err)
		}
		if hw < st.maxA || hw < st.hw || hw < st.floor {
			t.Fatalf("round %d recipient %d: high-water %d went below acknowledged append %d / previous %d / ack %d",
				round, r, hw, st.maxA, st.hw, st.floor)
		}
		st.hw = hw
		// A no-op ack reports the floor: it may be above the last printed
		// ack (committed, killed before printing), never below it.
		res, err := storage.AckWait(s, r, 0)
		if err != nil {
			t.Fatal(err)
		}
		if res.Floor < st.floor {
			t.Fatalf("round %d recipient %d: floor %d below acknowledged ack %d", round, r, res.Floor, st.floor)
		}
		st.floor = res.Floor
		var got []storage.Entry
		for from := uint64(0); ; {
			page, next, err := s.Read(r, from, 500, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			got = append(got, page...)
			from = next
		}
		present := map[uint64]bool{}
		var prev uint64
		for _, e := range got {
			if e.Seq <= prev {
				t.Fatalf("round %d recipient %d: seq %d after %d", round, r, e.Seq, prev)
			}
			prev = e.Seq
			if e.Seq <= st.floor {
				t.Fatalf("round %d recipient %d: seq %d survived an acknowledged ack through %d", round, r, e.Seq, st.floor)
			}
			if e.Seq > hw {
				t.Fatalf("round %d recipient %d: seq %d above high-water %d", round, r, e.Seq, hw)
			}
			if !bytes.Equal(e.Value, crashValue(r, e.Seq)) || e.MsgID != r<<32|e.Seq {
				t.Fatalf("round %d recipient %d seq %d: wrong content %q", round, r, e.Seq, e.Value[:16])
			}
			present[e.Seq] = true
		}
		for seq := range st.acked {
			if seq > st.floor && !present[seq] {
				t.Fatalf("round %d recipient %d: acknowledged seq %d lost (floor %d, high-water %d)", round, r, seq, st.floor, hw)
			}
		}
		// The dedupe record of an acknowledged append survives as well,
		// delivered or not, so that a retry is still caught (a sample:
		// map order is random).
		sender, checked := uint64(1), 0
		if r >= crashAsyncBase {
			sender = 2
		}
		for seq := range st.acked {
			if checked++; checked > 50 {
				break
			}
			d, ok, err := s.Lookup(sender, r<<32|seq, r)
			if err != nil || !ok || d.Seq != seq {
				t.Fatalf("round %d recipient %d: dedupe record of acknowledged seq %d: %+v %v %v", round, r, seq, d, ok, err)
			}
		}
	}
}
