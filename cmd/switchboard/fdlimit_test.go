package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"switchboard/internal/testutil"
	"switchboard/protocol"
)

// fdHogEnv, when set to a number in a child server, makes it open that many
// more files on SIGUSR1 and close them on the next SIGUSR1, as a store
// growing and shrinking would (SIGUSR2 is serve's upgrade); it reports each on stderr ("fdhog: holding N files",
// "fdhog: released").
const fdHogEnv = "SWITCHBOARD_TEST_FD_HOG"

func init() {
	n, err := strconv.Atoi(os.Getenv(fdHogEnv))
	if err != nil || n <= 0 || os.Getenv(childEnv) == "" {
		return
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	go func() {
		var held []*os.File
		for range sig {
			if held != nil {
				for _, f := range held {
					f.Close()
				}
				held = nil
				fmt.Fprintln(os.Stderr, "fdhog: released")
				continue
			}
			for len(held) < n {
				f, err := os.Open(os.DevNull)
				if err != nil {
					fmt.Fprintln(os.Stderr, "fdhog:", err)
					break
				}
				held = append(held, f)
			}
			fmt.Fprintf(os.Stderr, "fdhog: holding %d files\n", len(held))
		}
	}()
}

// TestReserveFollowsStoreFiles: the server runs under `ulimit -n 400` and
// keeps a reserve of the files open besides connections plus 64 plus a
// quarter of them. Filled to its cap, it refuses the next login with
// SERVER_FULL. With 60 sessions closed, its store "grows" by 100 files (the
// test makes the process open them): at the next count the cap falls by the
// 100 and a quarter more, so a login is refused although 60 places were
// freed (a cap that stayed put would take them and run into EMFILE, which
// stops gnet's engine and drops every connection). The open sessions are
// kept and carry a message. Once the files close, the cap comes back and
// the freed places are taken again.
func TestReserveFollowsStoreFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process")
	}
	const limit, grown, freed = 400, 100, 60
	t.Setenv(fdHogEnv, strconv.Itoa(grown))
	maddr := freeAddr(t)
	srv := startChild(t, t.TempDir(), limit, "--metrics", maddr, "--loops", "2")
	m := newScraper(t, maddr)
	capNow := func() int { return int(m.get("switchboard_connection_cap")) }
	// settled waits for a count of the files as they are now, with conns
	// connections open (the metrics endpoint's connection is one of the
	// other files), and returns the cap: the limit less the other files,
	// 64, and a quarter of the other files.
	settled := func(what string, conns int) int {
		t.Helper()
		var want int
		m.waitFor(what, func() bool {
			other := childFiles(t, srv) - conns
			want = limit - (other + 64 + other/4)
			return capNow() == want
		})
		return want
	}
	var held []*protocol.Client
	user := uint64(1)
	login := func() error {
		c, err := srv.dial(user, protocol.ClientOptions{})
		user++
		if err == nil {
			held = append(held, c)
		}
		return err
	}
	full := func(what string) {
		t.Helper()
		err := login()
		var e *protocol.Error
		if !errors.As(err, &e) || e.Code != protocol.CodeServerFull {
			t.Fatalf("%s (%d open, cap %d): %v, want ERROR SERVER_FULL\n%s", what, len(held), capNow(), err, srv.log())
		}
	}
	waitConns := func(n int) {
		t.Helper()
		m.waitFor(fmt.Sprintf("%d connections", n), func() bool { return int(m.get("switchboard_connections")) == n })
	}

	// Filled to the cap.
	first := settled("the first count", 0)
	for range first {
		if err := login(); err != nil {
			t.Fatalf("login %d of %d: %v\n%s", len(held)+1, first, err, srv.log())
		}
	}
	full("the login over the cap")
	waitConns(first)
	t.Logf("cap %d under a limit of %d with %d other files", first, limit, childFiles(t, srv)-first)

	// Free some places, then grow the store.
	for _, c := range held[:freed] {
		c.Close()
	}
	held = held[freed:]
	waitConns(len(held))
	srv.signal(t, syscall.SIGUSR1, fmt.Sprintf("fdhog: holding %d files", grown))
	if c := settled("a count with the files opened", len(held)); c > first-grown-grown/4 {
		t.Fatalf("cap %d with %d more files open, want at most %d", c, grown, first-grown-grown/4)
	}
	full("a login after the store grew")
	// The sessions over the new cap are kept and still carry a message.
	from, to := held[0], held[len(held)-1]
	id, err := from.Send(uint64(first), []byte("still here")) // to's user
	if err != nil {
		t.Fatal(err)
	}
	if d, err := to.RecvDeliver(ctxTimeout(t, 10*time.Second)); err != nil || d.MsgID != id {
		t.Fatalf("held session: %v %v", d, err)
	}
	if !srv.alive() || strings.Contains(srv.log(), "too many open files") {
		t.Fatalf("server exited or met EMFILE\n%s", srv.log())
	}

	// The store shrinks: the cap comes back (less a file or two the
	// process may have opened meanwhile), and the places up to it are
	// taken again.
	srv.signal(t, syscall.SIGUSR1, "fdhog: released")
	last := settled("a count with the files closed", len(held))
	if last < first-2 {
		t.Fatalf("cap %d after the files closed, want at least %d", last, first-2)
	}
	for len(held) < last {
		if err := login(); err != nil {
			t.Fatalf("login %d of %d after the files closed: %v", len(held)+1, last, err)
		}
	}
	full("the login over the cap again")
	waitConns(last)
	if got := int(m.get("switchboard_connections_refused_total")); got != 3 {
		t.Fatalf("%d connections refused, want 3", got)
	}
}

// TestMaxConnsUnderLowFileLimit: a --max-conns the open-file limit holds is
// the cap: 50 logins, and the 51st gets ERROR SERVER_FULL.
func TestMaxConnsUnderLowFileLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process")
	}
	const maxConns = 50
	srv := startChild(t, t.TempDir(), 400, "--max-conns", strconv.Itoa(maxConns))
	for i := range maxConns {
		if _, err := srv.dial(uint64(i+1), protocol.ClientOptions{}); err != nil {
			t.Fatalf("login %d: %v\n%s", i+1, err, srv.log())
		}
	}
	_, err := srv.dial(maxConns+1, protocol.ClientOptions{})
	var e *protocol.Error
	if !errors.As(err, &e) || e.Code != protocol.CodeServerFull {
		t.Fatalf("login %d: %v, want ERROR SERVER_FULL", maxConns+1, err)
	}
}

// TestMaxConnsOverFileLimit: `serve --max-conns 1000` under `ulimit -n 400`
// exits with status 1 before serving, and says why with the numbers.
func TestMaxConnsOverFileLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process")
	}
	code, stderr := runServe(t, 400, "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--metrics=", "--max-conns", "1000")
	if code != 1 {
		t.Fatalf("exit status %d, want 1\n%s", code, stderr)
	}
	for _, s := range []string{"--max-conns 1000", "open-file limit 400", "reserve of", "allows at most"} {
		if !strings.Contains(stderr, s) {
			t.Errorf("message does not say %q:\n%s", s, stderr)
		}
	}
	if strings.Contains(stderr, "switchboard serving") {
		t.Errorf("the server started serving:\n%s", stderr)
	}
}

// runServe runs `switchboard <args>` under `ulimit -n ulimit` to its end and
// returns its exit status and stderr.
func runServe(t *testing.T, ulimit int, args ...string) (int, string) {
	t.Helper()
	js, _ := json.Marshal(append([]string{"serve"}, args...))
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxTimeout(t, 30*time.Second)
	cmd := exec.CommandContext(ctx, "bash", "-c", fmt.Sprintf(`ulimit -n %d && exec "$0"`, ulimit), self)
	cmd.Env = append(os.Environ(), childEnv+"="+string(js))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stderr.String()
	case errors.As(err, &ee) && ctx.Err() == nil:
		return ee.ExitCode(), stderr.String()
	}
	t.Fatalf("serve: %v\n%s", err, stderr.String())
	return 0, ""
}

// signal sends sig to the server and waits until its stderr shows ack.
func (c *child) signal(t *testing.T, sig syscall.Signal, ack string) {
	t.Helper()
	before := strings.Count(c.log(), ack)
	if err := c.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(c.log(), ack) == before {
		if time.Now().After(deadline) || !c.alive() {
			t.Fatalf("no %q after %v\n%s", ack, sig, c.log())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// childFiles returns how many descriptors the server process has open.
func childFiles(t *testing.T, c *child) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", c.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("%v\n%s", err, c.log())
	}
	return len(fds)
}

// freeAddr returns a 127.0.0.1 address with a port free a moment ago,
// outside the ephemeral range (testutil.FreeAddrs).
func freeAddr(t *testing.T) string {
	t.Helper()
	return testutil.FreeAddrs(t, 1)[0]
}

// scraper reads a child server's Prometheus metrics over one kept-alive
// connection.
type scraper struct {
	t      *testing.T
	url    string
	client *http.Client
}

func newScraper(t *testing.T, addr string) *scraper {
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	t.Cleanup(tr.CloseIdleConnections)
	return &scraper{t: t, url: "http://" + addr + "/metrics", client: &http.Client{Transport: tr, Timeout: 5 * time.Second}}
}

// get returns the value of the unlabelled metric name, or -1 when the
// endpoint does not answer or lacks it.
func (s *scraper) get(name string) float64 {
	resp, err := s.client.Get(s.url)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				s.t.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	return -1
}

// waitFor polls cond until it holds, failing the test after 10 s.
func (s *scraper) waitFor(what string, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			s.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
