package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
)

// Upgrading in place. SIGUSR2 makes a serving process start its successor:
// the binary at the path it was started from, as it is now (the upgrade), with
// the same arguments and environment plus SWITCHBOARD_TAKEOVER=true. The
// successor takes the connections over (node's handover), and this process
// exits once it has; if the successor fails, this one keeps serving. Under
// systemd (ExecReload=kill -USR2 $MAINPID, NotifyAccess=main) the old
// process tells the service manager the successor's pid before it exits,
// so the service lives on in it (docs/OPERATIONS.md, "Upgrading").

// upgrader starts successors, one at a time.
type upgrader struct {
	exe string // the binary to start: this one's path
	log *slog.Logger

	mu    sync.Mutex
	child *exec.Cmd // the successor starting; nil: none
	pid   int       // the last successor's pid, for the service manager
}

// newUpgrader resolves the path of the binary this process runs from. The
// path is what counts: an upgrade puts a new binary there (and Linux
// reports a replaced one's path all the same).
func newUpgrader(log *slog.Logger) *upgrader {
	exe, err := os.Executable()
	if err != nil {
		exe = ""
		log.Warn("upgrade: cannot tell which binary this process runs from; SIGUSR2 will not start a successor", "err", err)
	}
	return &upgrader{exe: exe, log: log}
}

// start starts a successor unless one is starting.
func (u *upgrader) start() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.exe == "" {
		u.log.Error("upgrade: SIGUSR2 ignored: the binary this process runs from is unknown")
		return
	}
	if u.child != nil {
		u.log.Warn("upgrade: SIGUSR2 ignored: a successor is already starting", "pid", u.child.Process.Pid)
		return
	}
	cmd := exec.Command(u.exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), "SWITCHBOARD_TAKEOVER=true")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	// Its own process group: a terminal's Ctrl-C meant for the old
	// process must not reach the new one.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		u.log.Error("upgrade: starting the successor", "binary", u.exe, "err", err)
		return
	}
	u.child, u.pid = cmd, cmd.Process.Pid
	u.log.Info("upgrade: successor started; it takes the connections over", "pid", u.pid, "binary", u.exe)
	go func() {
		err := cmd.Wait()
		u.mu.Lock()
		if u.child == cmd {
			u.child = nil
		}
		u.mu.Unlock()
		// Only a successor that failed exits while this process serves.
		u.log.Error("upgrade: the successor exited; this process serves on", "pid", cmd.Process.Pid, "err", err)
	}()
}

// handedTo is the pid of the successor that took over, if this process
// started it; 0 otherwise.
func (u *upgrader) handedTo() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.child == nil {
		return 0
	}
	return u.pid
}

// notifyMainPID tells the service manager (systemd's NOTIFY_SOCKET) that
// pid is the service's main process now. Without a manager it does
// nothing.
func notifyMainPID(pid int) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // an abstract socket
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notifying the service manager: %w", err)
	}
	defer c.Close()
	_, err = fmt.Fprintf(c, "MAINPID=%d\n", pid)
	return err
}
