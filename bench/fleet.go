package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// member is one generator process as the coordinator drives it: the
// coordinator's own engine, or a worker child.
type member interface {
	do(s Step) error
	progress() counters
	collect() (*Result, error)
	// stop ends the member and returns the CPU time it used.
	stop() (time.Duration, error)
	// abort makes the step under way return err (an interrupt).
	abort(err error)
}

// fleet is every generator process of a run.
type fleet struct {
	members []member
}

// do runs s on every member at once and waits for all.
func (f *fleet) do(s Step) error {
	errs := make([]error, len(f.members))
	var wg sync.WaitGroup
	for i, m := range f.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.do(s); err != nil {
				errs[i] = err
				if len(f.members) > 1 {
					errs[i] = fmt.Errorf("process %d: %w", i+1, err)
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (f *fleet) progress() counters {
	var c counters
	for _, m := range f.members {
		c.add(m.progress())
	}
	return c
}

// collect merges what every member measured since the last collect.
func (f *fleet) collect() (*Result, error) {
	r := newResult()
	for _, m := range f.members {
		mr, err := m.collect()
		if err != nil {
			return nil, err
		}
		r.Merge(mr)
	}
	return r, nil
}

// stop ends every member and returns their CPU time, summed.
func (f *fleet) stop() (time.Duration, error) {
	var cpu time.Duration
	var errs []error
	for _, m := range f.members {
		c, err := m.stop()
		cpu += c
		errs = append(errs, err)
	}
	return cpu, errors.Join(errs...)
}

// localMember runs an engine in the coordinator's process.
type localMember struct {
	e       *engine
	cpuFrom time.Duration
}

func newLocalMember(spec Spec) (*localMember, error) {
	e, err := newEngine(spec)
	if err != nil {
		return nil, err
	}
	return &localMember{e: e, cpuFrom: selfCPU()}, nil
}

func (m *localMember) do(s Step) error           { return m.e.do(s) }
func (m *localMember) progress() counters        { return m.e.progress() }
func (m *localMember) collect() (*Result, error) { return m.e.collect(), nil }
func (m *localMember) abort(err error)           { m.e.fatal(err) }

func (m *localMember) stop() (time.Duration, error) {
	m.e.close()
	return selfCPU() - m.cpuFrom, nil
}

// selfCPU returns the user and system CPU time of this process so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return rusageCPU(&ru)
}

func rusageCPU(ru *syscall.Rusage) time.Duration {
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// The coordinator talks to a worker over the worker's stdin and stdout,
// one JSON object per line.
//
//	coordinator → worker: {"spec":…} first, then {"step":…}, {"collect":true}, {"exit":true}
//	worker → coordinator: {"ready":true}, {"progress":…} every 250 ms,
//	                      {"done":"<step kind>","err":"…"}, {"result":…}
//
// A worker's stderr is the coordinator's, for panics and logs.
type controlIn struct {
	Spec    *Spec `json:"spec,omitempty"`
	Step    *Step `json:"step,omitempty"`
	Collect bool  `json:"collect,omitempty"`
	Exit    bool  `json:"exit,omitempty"`
}

type controlOut struct {
	Ready    bool            `json:"ready,omitempty"`
	Progress *counters       `json:"progress,omitempty"`
	Done     string          `json:"done,omitempty"`
	Err      string          `json:"err,omitempty"`
	Result   json.RawMessage `json:"result,omitempty"`
}

// progressEvery is how often a worker reports its counters: ten times a
// second keeps the live line smooth and storm's "all logged in" within
// 100 ms, for a JSON line per worker.
const progressEvery = 100 * time.Millisecond

// RunWorker is the body of a worker process (`switchboard bench --worker`):
// it reads a Spec and steps on in, runs them, and answers on out.
func RunWorker(in io.Reader, out io.Writer) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var mu sync.Mutex
	enc := json.NewEncoder(out)
	send := func(m controlOut) {
		mu.Lock()
		defer mu.Unlock()
		enc.Encode(m)
	}
	var first controlIn
	if !sc.Scan() {
		return errors.New("bench worker: no spec on stdin")
	}
	if err := json.Unmarshal(sc.Bytes(), &first); err != nil || first.Spec == nil {
		return fmt.Errorf("bench worker: bad spec line: %v", err)
	}
	e, err := newEngine(*first.Spec)
	if err != nil {
		send(controlOut{Done: "spec", Err: err.Error()})
		return err
	}
	defer e.close()
	// An interrupt (the coordinator's abort, or Ctrl-C reaching the whole
	// process group) ends the step under way; the worker stays to report.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		if _, ok := <-sigs; ok {
			e.fatal(errors.New("interrupted"))
		}
	}()
	send(controlOut{Ready: true})
	stopProgress := make(chan struct{})
	defer close(stopProgress)
	go func() {
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				c := e.progress()
				send(controlOut{Progress: &c})
			case <-stopProgress:
				return
			}
		}
	}()
	for sc.Scan() {
		var m controlIn
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return fmt.Errorf("bench worker: bad control line: %w", err)
		}
		switch {
		case m.Step != nil:
			out := controlOut{Done: m.Step.Kind}
			if err := e.do(*m.Step); err != nil {
				out.Err = err.Error()
			}
			c := e.progress() // fresh counters with the reply: the step's final figures
			out.Progress = &c
			send(out)
		case m.Collect:
			b, err := marshalResult(e.collect())
			if err != nil {
				send(controlOut{Done: "collect", Err: err.Error()})
				continue
			}
			send(controlOut{Done: "collect", Result: b})
		case m.Exit:
			return nil
		}
	}
	return sc.Err() // stdin closed: the coordinator is gone
}

// remoteMember is a worker child process.
type remoteMember struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	enc   *json.Encoder
	reply chan controlOut // from the reader goroutine; one reply per request
	ended chan struct{}   // closed when the reader goroutine ends (the worker's stdout closed)

	mu   sync.Mutex
	last counters // guarded by mu
}

// startWorker starts `<this binary> bench --worker` and sends it spec.
func startWorker(spec Spec, stderr io.Writer) (*remoteMember, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: finding this program to start workers: %w", err)
	}
	cmd := exec.Command(exe, "bench", "--worker")
	cmd.Stderr = stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: starting a worker: %w", err)
	}
	m := &remoteMember{cmd: cmd, in: in, enc: json.NewEncoder(in), reply: make(chan controlOut, 1), ended: make(chan struct{})}
	go m.read(outPipe)
	if err := m.enc.Encode(controlIn{Spec: &spec}); err != nil {
		m.stop()
		return nil, fmt.Errorf("bench: sending a worker its spec: %w", err)
	}
	select {
	case r := <-m.reply:
		if !r.Ready {
			m.stop()
			return nil, fmt.Errorf("bench: worker failed to start: %s", r.Err)
		}
	case <-m.ended:
		m.stop()
		return nil, errors.New("bench: worker exited before it was ready")
	}
	return m, nil
}

func (m *remoteMember) read(r io.Reader) {
	defer close(m.ended)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var o controlOut
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			continue
		}
		if o.Progress != nil {
			m.mu.Lock()
			m.last = *o.Progress
			m.mu.Unlock()
			if o.Done == "" {
				continue
			}
		}
		m.reply <- o
	}
}

func (m *remoteMember) request(in controlIn) (controlOut, error) {
	if err := m.enc.Encode(in); err != nil {
		return controlOut{}, fmt.Errorf("bench: writing to a worker: %w", err)
	}
	select {
	case r := <-m.reply:
		if r.Err != "" {
			return r, errors.New(r.Err)
		}
		return r, nil
	case <-m.ended:
		return controlOut{}, errors.New("bench: a worker exited (see its output above)")
	}
}

// abort interrupts the worker; it ends its step early, and the
// coordinator's request gets its reply or sees it exit.
func (m *remoteMember) abort(error) { m.cmd.Process.Signal(os.Interrupt) }

func (m *remoteMember) do(s Step) error {
	_, err := m.request(controlIn{Step: &s})
	return err
}

func (m *remoteMember) progress() counters {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last
}

func (m *remoteMember) collect() (*Result, error) {
	r, err := m.request(controlIn{Collect: true})
	if err != nil {
		return nil, err
	}
	return unmarshalResult(r.Result)
}

// stop asks the worker to exit, waits for it, and returns its CPU time.
func (m *remoteMember) stop() (time.Duration, error) {
	m.enc.Encode(controlIn{Exit: true})
	m.in.Close()
	done := make(chan error, 1)
	go func() { done <- m.cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		m.cmd.Process.Kill()
		err = <-done
	}
	var cpu time.Duration
	if ps := m.cmd.ProcessState; ps != nil {
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			cpu = rusageCPU(ru)
		}
	}
	return cpu, err
}
