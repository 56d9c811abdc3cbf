package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"switchboard/protocol"
	"switchboard/token"
)

// childEnv, when set, makes the test binary run main with the JSON-encoded
// arguments it holds instead of the tests: the server under test runs in a
// child process that can be killed or given a lower open-file limit.
const childEnv = "SWITCHBOARD_TEST_CHILD_ARGS"

func TestMain(m *testing.M) {
	if js := os.Getenv(childEnv); js != "" {
		var args []string
		if err := json.Unmarshal([]byte(js), &args); err != nil {
			fmt.Fprintln(os.Stderr, "bad", childEnv, err)
			os.Exit(2)
		}
		os.Args = append([]string{"switchboard"}, args...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child is a `switchboard serve` running in a child process.
type child struct {
	t    testing.TB
	cmd  *exec.Cmd
	addr string
	data string
	done chan struct{} // closed when the process has exited
	err  error         // its Wait error, set before done closes
	// serving gets the address once the server listens (spawnChild).
	serving chan string

	mu     sync.Mutex
	stderr strings.Builder // guarded by mu
}

var servingRE = regexp.MustCompile(`msg="switchboard serving" addr=(\S+) transport="?(noise and plain|noise|plain)`)

// startChild runs `switchboard serve` on data, listening on 127.0.0.1:0,
// with extra flags; ulimit, if not 0, lowers its open-file limit first. It
// waits until the server listens.
func startChild(t testing.TB, data string, ulimit int, extra ...string) *child {
	t.Helper()
	c := spawnChild(t, data, ulimit, extra...)
	select {
	case c.addr = <-c.serving:
	case <-c.done:
		t.Fatalf("server exited before serving: %v\n%s", c.err, c.log())
	case <-time.After(30 * time.Second):
		t.Fatalf("server did not start in 30 s\n%s", c.log())
	}
	return c
}

// spawnChild is startChild without the wait: c.serving gets the address
// once the server listens.
func spawnChild(t testing.TB, data string, ulimit int, extra ...string) *child {
	t.Helper()
	args := append([]string{"serve", "--data", data, "--listen", "127.0.0.1:0", "--metrics=", "--log", "info"}, extra...)
	js, _ := json.Marshal(args)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var cmd *exec.Cmd
	if ulimit > 0 {
		cmd = exec.Command("bash", "-c", fmt.Sprintf(`ulimit -n %d && exec "$0"`, ulimit), self)
	} else {
		cmd = exec.Command(self)
	}
	cmd.Env = append(os.Environ(), childEnv+"="+string(js))
	// A pipe of our own rather than StderrPipe: a successor the server
	// starts (SIGUSR2) inherits its stderr, and the server's exit must not
	// wait for the successor's.
	pipe, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		pipe.Close()
		t.Fatal(err)
	}
	c := &child{t: t, cmd: cmd, data: data, done: make(chan struct{}), serving: make(chan string, 1)}
	addr := c.serving
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			c.mu.Lock()
			if c.stderr.Len() < 1<<20 {
				c.stderr.WriteString(line + "\n")
			}
			c.mu.Unlock()
			if m := servingRE.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, pipe)
		pipe.Close()
	}()
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() { c.kill() })
	return c
}

func (c *child) log() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stderr.String()
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *child) kill() {
	select {
	case <-c.done:
		return
	default:
	}
	c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

// alive reports whether the process still runs.
func (c *child) alive() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// token mints a token for user from the keys file the server created.
func (c *child) token(user uint64) []byte {
	c.t.Helper()
	keys, id, err := loadKeys(c.data, false)
	if err != nil {
		c.t.Fatal(err)
	}
	return token.Mint(keys[id], token.Claims{KeyID: id, User: user, Device: 1, Expiry: time.Now().Add(time.Hour)})
}

// dial logs user in.
func (c *child) dial(user uint64, opts protocol.ClientOptions) (*protocol.Client, error) {
	opts.Token = c.token(user)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := protocol.Dial(ctx, c.addr, opts)
	if err == nil {
		c.t.Cleanup(func() { cl.Close() })
	}
	return cl, err
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
