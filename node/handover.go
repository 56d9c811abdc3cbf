package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"switchboard/delivery"
	"switchboard/handover"
	"switchboard/storage"
)

// Takeover: a new process on the same data folder takes the live
// connections of the one serving (package handover has the exchange and
// its commit point). The old side is handOver, the new side takeOver.
// Every phase has a deadline and a log line that begins "handover:".

// HandoverSocket is where a node listens for its successor, in the data
// folder.
const HandoverSocket = "handover.sock"

// handoverPath is the node's handover socket; "" for a node in memory.
func (c Config) handoverPath() string {
	if c.Memory || c.Data == "" {
		return ""
	}
	return filepath.Join(c.Data, HandoverSocket)
}

// listenHandover starts waiting for a successor. Only one handover runs at
// a time; another successor is refused while it does.
func (n *Node) listenHandover(replace bool) error {
	path := n.cfg.handoverPath()
	if path == "" {
		return nil
	}
	var ln *net.UnixListener
	var err error
	if replace {
		ln, err = handover.Replace(path)
	} else {
		ln, err = handover.Listen(path)
	}
	if err != nil {
		return err
	}
	n.life.Lock()
	n.handing = ln
	n.life.Unlock()
	go func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return // closed: stopping, or handed over
			}
			n.handOver(handover.NewChannel(c))
		}
	}()
	return nil
}

// refuseWait is how long the old side waits after BEGIN for the
// successor's refusal before it pauses. A successor refuses within a
// millisecond or so; one slower than this is refused after the pause, and
// the connections are taken back.
const refuseWait = 250 * time.Millisecond

// leaveGrace is how long a node handing over goes on receiving from the
// cluster after its leaving notice: the others hear the notice within a
// route's latency and send nothing more, and what they sent before it
// arrives meanwhile, to be answered. A payload later than this is lost to
// this node, and its sender's node refuses it after its timeout, as when a
// node dies.
const leaveGrace = 200 * time.Millisecond

// handOver is the old side: it hands every connection to the successor on
// ch, or, if the successor fails before it commits, takes them back and
// serves on.
func (n *Node) handOver(ch *handover.Channel) {
	defer ch.Close()
	log := n.log
	_ = ch.SetDeadline(time.Now().Add(5 * time.Second))
	hello, err := ch.Recv()
	if err != nil || hello.Kind != handover.KindHello {
		log.Warn("handover: a successor connected but did not say HELLO", "err", err, "got", hello.Kind)
		return
	}
	log = log.With("successor", hello.PID)
	refuse := func(why string) {
		log.Warn("handover: refused; serving on", "reason", why)
		_ = ch.Send(&handover.Message{Kind: handover.KindRefuse, Reason: why})
	}
	if hello.Version != handover.Version {
		refuse(fmt.Sprintf("handover format %d, this process speaks %d: restart the service instead (its clients reconnect once)", hello.Version, handover.Version))
		return
	}
	n.life.Lock()
	defer n.life.Unlock()
	if n.health.stopping.Load() {
		refuse("this process is stopping")
		return
	}
	start := time.Now()
	budget := n.cfg.Gateway.ShutdownTimeout
	if err := ch.Send(&handover.Message{Kind: handover.KindBegin, Addr: n.addr.String(), PID: os.Getpid()}); err != nil {
		log.Warn("handover: the successor went away before it began; serving on", "err", err)
		return
	}
	// A successor that cannot take over (its --listen is another address)
	// refuses as soon as it reads BEGIN. Give it a moment to, before
	// anything pauses: a mistyped command then stalls no client.
	_ = ch.SetDeadline(time.Now().Add(refuseWait))
	switch m, err := ch.Recv(); {
	case err == nil && m.Kind == handover.KindRefuse:
		log.Warn("handover: refused by the successor; serving on", "reason", m.Reason)
		return
	case err == nil:
		log.Warn("handover: the successor sent " + m.Kind.String() + " before the pause; serving on")
		return
	case !errors.Is(err, os.ErrDeadlineExceeded):
		log.Warn("handover: the successor went away before the pause; serving on", "err", err)
		return
	}

	log.Info("handover: 1/5 pausing: no more reading or accepting, finishing what is in flight")
	n.srv.Pause()
	n.closeAdmin()
	p := n.parts.Load()
	if p.cluster != nil {
		// What went to other nodes is answered through the cluster: wait
		// for those answers (a second or so), then refuse what is left,
		// retryable, before leaving it; no answer could come after.
		deadline := time.Now().Add(budget / 4)
		for p.router.Awaiting() > 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if left := p.router.Awaiting(); left > 0 {
			log.Warn("handover: refusing requests other nodes did not answer in time; their clients resend them", "requests", left)
		}
		p.router.RefuseAwaiting()
		// The others stop sending here once they hear this node leave;
		// what they sent before arrives within the grace, is answered by
		// Finish below, and only then does the connection close.
		p.cluster.Leave()
		time.Sleep(leaveGrace)
		if err := p.cluster.StopReceiving(); err != nil {
			log.Warn("handover: leaving the cluster", "err", err)
		}
	}
	p.router.Finish()
	if p.cluster != nil {
		// Finish may have forwarded requests of this node's sessions
		// that were queued: no answer can reach this node now, so they
		// are refused, retryable, and their clients resend them to the
		// successor (the homes deduplicate).
		p.router.RefuseAwaiting()
		if err := p.cluster.Close(); err != nil {
			log.Warn("handover: leaving the cluster", "err", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	// Flush waits for slow readers at most half the budget: Detach needs
	// the rest, or it would detach nothing and every client would
	// reconnect because one did not read.
	flushCtx, cancelFlush := context.WithTimeout(ctx, budget/2)
	unsent := n.srv.Flush(flushCtx)
	cancelFlush()
	log.Info("handover: 2/5 detaching connections", "finished_in", time.Since(start).Round(time.Millisecond), "unsent", unsent)
	recs, fds, letGo, err := n.srv.Detach(ctx)
	if err != nil {
		log.Error("handover: detaching connections", "err", err)
	}
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	sent := time.Now()
	_ = ch.SetDeadline(time.Now().Add(budget))
	err = sendConns(ch, recs, fds)
	storeClosed := time.Now()
	if cerr := p.store.Close(); cerr != nil {
		log.Error("handover: closing the store", "err", cerr)
	}
	if err == nil {
		err = ch.Send(&handover.Message{Kind: handover.KindClosed, Total: len(recs)})
	}
	log.Info("handover: 3/5 store closed; waiting for the successor", "conns", len(recs), "let_go", letGo, "sent_in", storeClosed.Sub(sent).Round(time.Millisecond))
	if err == nil {
		_ = ch.SetDeadline(time.Now().Add(n.cfg.HandoverTimeout))
		var ready handover.Message
		ready, err = ch.Recv()
		switch {
		case err != nil:
		case ready.Kind == handover.KindRefuse:
			err = fmt.Errorf("the successor refused: %s", ready.Reason)
		case ready.Kind != handover.KindReady:
			err = fmt.Errorf("the successor sent %s, not READY", ready.Kind)
		}
	}
	if err == nil {
		// Our copies of the sockets go before the commit: once the
		// successor has it, it reads and writes them, and a copy kept here
		// could only do harm (in one process, as tests run, a descriptor
		// number closed late may already name one of the successor's). A
		// commit that then fails to send leaves the clients to reconnect.
		for _, fd := range fds {
			unix.Close(fd)
		}
		fds = nil
		if err = ch.Send(&handover.Message{Kind: handover.KindCommit}); err != nil {
			log.Error("handover: 4/5 the successor went away at the commit; its clients will reconnect", "err", err)
			n.stopFailed(fmt.Errorf("handover: the successor went away at the commit: %w", err))
			return
		}
	}
	if err != nil {
		log.Error("handover: 4/5 failed before the commit; taking the connections back", "err", err)
		_ = ch.Send(&handover.Message{Kind: handover.KindRefuse, Reason: "taking the connections back: " + err.Error()})
		if err := n.takeBack(recs, fds); err != nil {
			log.Error("handover: taking the connections back failed; stopping", "err", err)
			n.stopFailed(fmt.Errorf("handover: taking the connections back: %w", err))
			return
		}
		fds = nil // adopted
		log.Info("handover: serving again", "conns", len(recs), "paused_for", time.Since(start).Round(time.Millisecond))
		return
	}
	log.Info("handover: 4/5 committed: the successor serves", "conns", len(recs), "store_closed_for", time.Since(storeClosed).Round(time.Millisecond), "paused_for", time.Since(start).Round(time.Millisecond))
	n.handedOver()
	log.Info("handover: 5/5 done; this process exits")
}

// sendConns sends recs and their sockets in batches.
func sendConns(ch *handover.Channel, recs []handover.Conn, fds []int) error {
	for len(recs) > 0 {
		n, size := 0, 0
		for n < len(recs) && n < handover.BatchConns && size < handover.BatchBytes {
			size += len(recs[n].Inbound) + 128
			n++
		}
		if err := ch.Send(&handover.Message{Kind: handover.KindBatch, Conns: recs[:n], FDs: fds[:n]}); err != nil {
			return err
		}
		recs, fds = recs[n:], fds[n:]
	}
	return nil
}

// takeBack is the old side's way back when a handover failed before its
// commit: it opens the store again, starts a new router (and rejoins the
// cluster), adopts its own connections from their records, and reads
// again. The successor may still hold the store for a moment while it
// exits: the open is retried until the handover timeout.
func (n *Node) takeBack(recs []handover.Conn, fds []int) error {
	cfg := n.cfg
	open := storage.Open
	deadline := time.Now().Add(cfg.HandoverTimeout)
	var store storage.Store
	var err error
	for {
		if store, err = open(cfg.Storage); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // the successor is letting go of the store's lock
	}
	if err != nil {
		return fmt.Errorf("opening the store again: %w", err)
	}
	router, err := delivery.New(cfg.Delivery, store)
	if err != nil {
		store.Close()
		return err
	}
	p := &parts{store: store, router: router}
	if n.ps != nil {
		router.Join(n.ps, 0)
	}
	n.srv.Rebind(router)
	router.Start(n.srv)
	if n.ps != nil {
		cl, err := n.ps.join(router.FromPeer)
		if err != nil {
			n.log.Error("handover: rejoining the cluster; serving alone until restarted", "err", err)
		} else {
			p.cluster = cl
		}
	}
	n.parts.Store(p)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.HandoverTimeout)
	defer cancel()
	adopted, err := n.srv.Adopt(ctx, recs, fds)
	if err != nil {
		n.log.Error("handover: adopting connections back", "adopted", adopted, "of", len(recs), "err", err)
	}
	n.srv.Unpause()
	if err := n.serveAdmin(); err != nil {
		n.log.Error("handover: the admin listener", "err", err)
	}
	return nil
}

// handedOver ends this process after a committed handover: its
// connections and store are the successor's, so Stop has nothing left to
// do but the engine (whose listener the successor shares) and the admin
// side.
func (n *Node) handedOver() {
	n.handed.Store(true)
	n.health.stopping.Store(true)
	n.stopOnce.Do(func() {
		if n.handing != nil {
			n.handing.SetUnlinkOnClose(false) // the path is the successor's now
			n.handing.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Gateway.ShutdownTimeout)
		defer cancel()
		if err := n.srv.Shutdown(ctx); err != nil {
			n.stopErr = err
		}
		n.health.stop()
	})
}

// HandedOver reports whether this node ended by handing its connections
// to a successor (then Done is closed and Err is nil).
func (n *Node) HandedOver() bool { return n.handed.Load() }

// closeAdmin closes the admin and pprof listeners, so that a successor
// can listen on their addresses. Guarded by life.
func (n *Node) closeAdmin() {
	for _, hs := range n.admin {
		hs.Close()
	}
	n.admin = nil
}

// takeOver is Start for --takeover: it takes the connections of the
// process serving on cfg.Data.
func takeOver(cfg Config) (*Node, error) {
	path := cfg.handoverPath()
	if path == "" {
		return nil, errors.New("node: a takeover needs a data folder (not --memory)")
	}
	log := cfg.Logger
	ch, err := handover.Dial(path)
	if err != nil {
		return nil, err
	}
	defer ch.Close()
	_ = ch.SetDeadline(time.Now().Add(5 * time.Second))
	if err := ch.Send(&handover.Message{Kind: handover.KindHello, Version: handover.Version, PID: os.Getpid()}); err != nil {
		return nil, fmt.Errorf("node: takeover: %w", err)
	}
	begin, err := ch.Recv()
	switch {
	case err != nil:
		return nil, fmt.Errorf("node: takeover: waiting for the running server: %w", err)
	case begin.Kind == handover.KindRefuse:
		return nil, fmt.Errorf("node: takeover refused by the running server, which serves on: %s", begin.Reason)
	case begin.Kind != handover.KindBegin:
		return nil, fmt.Errorf("node: takeover: the running server sent %s, not BEGIN", begin.Kind)
	}
	if err := sameAddr(cfg.Gateway.Addr, begin.Addr); err != nil {
		_ = ch.Send(&handover.Message{Kind: handover.KindRefuse, Reason: err.Error()})
		return nil, err
	}
	// The Noise keys are loaded, or made on a first switch to Noise, only
	// now that a server has answered: a takeover with none to take over
	// from leaves the data folder as it was.
	if err := cfg.noiseKeys(); err != nil {
		_ = ch.Send(&handover.Message{Kind: handover.KindRefuse, Reason: err.Error()})
		return nil, err
	}
	cfg.Gateway.Addr = begin.Addr
	cfg.Gateway.Beside = true
	log.Info("handover: the running server pauses next", "old", begin.PID, "addr", begin.Addr)

	var recs []handover.Conn
	var fds []int
	closeFDs := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	_ = ch.SetDeadline(time.Now().Add(cfg.HandoverTimeout))
	for {
		m, err := ch.Recv()
		if err != nil {
			closeFDs()
			return nil, fmt.Errorf("node: takeover: receiving connections: %w", err)
		}
		if m.Kind == handover.KindBatch {
			for i := range m.Conns {
				m.Conns[i].Inbound = append([]byte(nil), m.Conns[i].Inbound...) // the channel reuses its buffer
			}
			recs, fds = append(recs, m.Conns...), append(fds, m.FDs...)
			continue
		}
		if m.Kind == handover.KindRefuse {
			closeFDs()
			return nil, fmt.Errorf("node: takeover: the running server gave up: %s", m.Reason)
		}
		if m.Kind != handover.KindClosed || m.Total != len(recs) {
			closeFDs()
			return nil, fmt.Errorf("node: takeover: got %s (total %d) after %d connections", m.Kind, m.Total, len(recs))
		}
		break
	}
	opened := time.Now()
	n, err := start(cfg, len(fds))
	if err != nil {
		closeFDs()
		_ = ch.Send(&handover.Message{Kind: handover.KindRefuse, Reason: err.Error()})
		return nil, fmt.Errorf("node: takeover: starting: %w", err)
	}
	log.Info("handover: store open and listening; telling the running server", "conns", len(recs), "started_in", time.Since(opened).Round(time.Millisecond))
	err = ch.Send(&handover.Message{Kind: handover.KindReady})
	var commit handover.Message
	if err == nil {
		commit, err = ch.Recv()
	}
	switch {
	case err == nil && commit.Kind == handover.KindCommit:
	case err != nil && !alive(begin.PID):
		log.Warn("handover: the old process died after READY; adopting its connections", "err", err)
	default:
		if err == nil {
			err = fmt.Errorf("the running server sent %s: %s", commit.Kind, commit.Reason)
		}
		closeFDs()
		n.Stop(context.Background())
		return nil, fmt.Errorf("node: takeover: no commit from the running server (pid %d), which takes its connections back and serves on: %w", begin.PID, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.HandoverTimeout)
	defer cancel()
	adoptStart := time.Now()
	adopted, err := n.srv.Adopt(ctx, recs, fds)
	if err != nil {
		log.Error("handover: adopting connections", "adopted", adopted, "of", len(recs), "err", err)
	}
	log.Info("handover: adopted the connections; serving", "conns", adopted, "adopted_in", time.Since(adoptStart).Round(time.Millisecond))
	if err := n.listenHandover(true); err != nil {
		log.Error("handover: listening for a successor", "err", err)
	}
	return n, nil
}

// sameAddr refuses a takeover onto another client address than the one
// the running server listens on (port 0 takes whatever it is).
func sameAddr(configured, running string) error {
	if _, port, err := net.SplitHostPort(configured); err == nil && port == "0" {
		return nil
	}
	a, err1 := net.ResolveTCPAddr("tcp", configured)
	b, err2 := net.ResolveTCPAddr("tcp", running)
	if err1 != nil || err2 != nil || a.Port != b.Port || !a.IP.Equal(b.IP) {
		return fmt.Errorf("node: takeover: --listen %s differs from the running server's %s", configured, running)
	}
	return nil
}

// alive reports whether process pid exists.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// stopFailed stops the node, in the background (the caller holds life),
// recording err for Err: a process left serving nothing by a failed
// handover exits with an error, so that systemd's Restart=on-failure
// starts it again.
func (n *Node) stopFailed(err error) {
	n.failed.Store(&err)
	go n.Stop(context.Background())
}
