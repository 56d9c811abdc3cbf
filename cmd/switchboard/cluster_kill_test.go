package main

import (
	"testing"
	"time"
)

// TestClusterKill9: three `serve` processes form a cluster; four senders
// homed on nodes 1 and 3 send to recipients homed on node 2 (one online,
// one offline) and on nodes 1 and 3 (one online, one offline). Node 2 is
// killed with SIGKILL mid-storm. While it is down, every send to its users
// is refused RETRY_LATER (counted; none ACCEPTed once it is seen down) and
// sends between nodes 1 and 3 go on being ACCEPTed. Node 2 restarts on the
// same folder and ports; the senders resend what was refused, with flag B,
// until it is ACCEPTed; then every ACCEPTed message is delivered to its
// recipient under one seq, in order per sender. The soak variant (build
// tag soak) kills node 2 several times.
func TestClusterKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills three server processes")
	}
	runClusterKill(t, 1, 300)
}

// runClusterKill kills node 2 rounds times, each after storm more
// messages were ACCEPTed.
func runClusterKill(t *testing.T, rounds, storm int) {
	cp := newClusterProcs(t, nil)
	r2on := cp.userOn(2, 1000)
	r2off := cp.userOn(2, r2on+1)
	r1on := cp.userOn(1, 2000)
	r3off := cp.userOn(3, 3000)
	rcpts := []uint64{r2on, r2off, r1on, r3off}
	s := newStorm(t, cp, func(_, to uint32) bool { return to == 2 }, rcpts)
	c1, done1 := s.online(r1on)
	c2, done2 := s.online(r2on)
	for _, u := range []uint64{cp.userOn(1, 5000), cp.userOn(1, 6000), cp.userOn(3, 7000), cp.userOn(3, 8000)} {
		s.addSender(u, rcpts)
	}
	for round := range rounds {
		s.waitAccepted("the storm", storm, storm/4, 30*time.Second)
		down1, down3 := cp.logCount(1, peerLine("down", 2)), cp.logCount(3, peerLine("down", 2))
		up1 := cp.logCount(1, peerLine("up", 2))
		s.fault()
		killed := time.Now()
		cp.node(2).kill()
		<-done2
		seen1 := cp.waitLog(1, peerLine("down", 2), down1, 10*time.Second).Sub(killed)
		seen3 := cp.waitLog(3, peerLine("down", 2), down3, 10*time.Second).Sub(killed)
		s.waitQuiet(20 * time.Second)
		s.waitCross(10 * time.Second)
		if s.refused() == 0 {
			t.Fatal("no send to node 2's users was refused while it was down")
		}
		// The fault's checks end here: once node 2 is back, its users'
		// messages are ACCEPTed again, from the first moment node 1 sees it.
		s.repaired()
		restart := time.Now()
		cp.start(2)
		back := cp.waitLog(1, peerLine("up", 2), up1, 10*time.Second).Sub(restart)
		c2, done2 = s.online(r2on)
		s.waitAccepted("after node 2's restart", storm/2, storm/4, 30*time.Second)
		t.Logf("round %d: node 2 seen down by node 1 after %v, by node 3 after %v; restarted and seen up by node 1 in %v; %s",
			round, seen1.Round(10*time.Millisecond), seen3.Round(10*time.Millisecond), back.Round(10*time.Millisecond), s.report())
	}
	s.finish(30 * time.Second)
	c1.Close()
	c2.Close()
	<-done1
	<-done2
	s.drain()
	all, across := s.total()
	t.Logf("%d ACCEPTed (%d to node 2's users), every one delivered once, in order", all, across)
}
