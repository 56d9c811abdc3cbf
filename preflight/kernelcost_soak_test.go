//go:build soak

package preflight

import (
	"bufio"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// kernelCostPairs is how many idle loopback connections each round opens:
// 8,000 descriptors, well under this machine's 20,000 open-file limit, and
// enough that a few MiB of slab moved by other processes is under 10%.
const kernelCostPairs = 4000

// socketCaches are the slab caches an idle TCP connection allocates from:
// the socket itself (TCP), its inode, its file, its dentry, and the server's
// epoll registration (eventpoll_epi, eventpoll_pwq).
var socketCaches = []string{"TCP", "sock_inode_cache", "filp", "dentry", "eventpoll_epi", "eventpoll_pwq"}

// TestKernelCostPerConnection measures the kernel memory of an idle TCP
// connection on this host: it opens kernelCostPairs loopback connections
// (both ends in this process, the accepted end registered with an epoll as
// gnet does), and reads /proc/meminfo's Slab, /proc/slabinfo and
// /proc/net/sockstat before and after, in three rounds. The figure per
// socket (a pair is two sockets) is kernelSocketBytes; docs/BENCHMARKS.md
// records the run:
//
//	go test -tags soak -count=1 -run KernelCost -v ./preflight/
func TestKernelCostPerConnection(t *testing.T) {
	if _, err := os.Stat("/proc/slabinfo"); err != nil {
		t.Skip("no /proc/slabinfo:", err)
	}
	var slabPer, serverPer []float64
	for round := range 3 {
		s, c, tcpMem := kernelCostRound(t)
		slabPer = append(slabPer, s)
		serverPer = append(serverPer, c)
		t.Logf("round %d: Slab %+.0f B per socket; socket caches %.0f B per server socket; sockstat TCP mem %+d pages", round+1, s, c, tcpMem)
	}
	slices.Sort(slabPer)
	slices.Sort(serverPer)
	t.Logf("median over 3 rounds of %d pairs: Slab %+.0f B per socket, socket caches %.0f B per server socket (kernelSocketBytes = %d)",
		kernelCostPairs, slabPer[1], serverPer[1], kernelSocketBytes)
	if serverPer[1] < 1000 || serverPer[1] > 20000 {
		t.Errorf("socket caches %.0f B per server socket: outside any plausible range", serverPer[1])
	}
}

// kernelCostRound opens the connections, reads the counters, closes them,
// and returns the change of Slab per socket, the socket caches' bytes per
// server socket (one end, and its epoll registration), and the change of
// sockstat's TCP mem in pages.
func kernelCostRound(t *testing.T) (slab, server float64, tcpMem int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ep)

	runtime.GC()
	slab0, caches0, epoll0, mem0 := kernelCounters(t)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range kernelCostPairs {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c, s)
		raw, err := s.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var cerr error
		raw.Control(func(fd uintptr) {
			cerr = unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, int(fd), &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)})
		})
		if cerr != nil {
			t.Fatal(cerr)
		}
	}
	runtime.GC()
	slab1, caches1, epoll1, mem1 := kernelCounters(t)
	sockets := float64(2 * kernelCostPairs)
	// Both ends are sockets of the same kind; only the accepted one is in
	// the epoll, as on the server.
	server = float64(caches1-caches0)/sockets + float64(epoll1-epoll0)/kernelCostPairs
	return float64(slab1-slab0) / sockets, server, mem1 - mem0
}

// kernelCounters returns /proc/meminfo's Slab in bytes, the slab bytes of
// the objects in use in the socket caches (without and with the epoll
// ones) and sockstat's TCP mem in pages.
func kernelCounters(t *testing.T) (slab, caches, epoll int64, tcpMem int) {
	t.Helper()
	mi, err := readMeminfo(os.DirFS("/"), "proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	slab = int64(mi["Slab"])

	f, err := os.Open("/proc/slabinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	page := int64(os.Getpagesize())
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		// name active num objsize perslab pagesperslab : tunables l b s : slabdata active num shared
		if len(fs) < 16 || !slices.Contains(socketCaches, fs[0]) {
			continue
		}
		// Objects in use × the slab bytes each takes (its share of a
		// slab): free slots left in slabs by an earlier round do not
		// hide what this one allocates, as slab counts would.
		active, _ := strconv.ParseInt(fs[1], 10, 64)
		perSlab, _ := strconv.ParseInt(fs[4], 10, 64)
		pages, _ := strconv.ParseInt(fs[5], 10, 64)
		if perSlab == 0 {
			continue
		}
		b := active * pages * page / perSlab
		if strings.HasPrefix(fs[0], "eventpoll") {
			epoll += b
		} else {
			caches += b
		}
	}

	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "TCP: "); ok {
			fs := strings.Fields(rest)
			for i := 0; i+1 < len(fs); i += 2 {
				if fs[i] == "mem" {
					tcpMem, _ = strconv.Atoi(fs[i+1])
				}
			}
		}
	}
	if tcpMem == 0 && !strings.Contains(string(b), "TCP:") {
		t.Fatal("no TCP line in /proc/net/sockstat")
	}
	return slab, caches, epoll, tcpMem
}
