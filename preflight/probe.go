package preflight

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Probe reads what bounds the connections of this host: kernel settings
// under Root/proc, the process's open-file limit, memory, the data folder's
// disk and the core count. The zero value probes this host and the data
// folder "data"; tests set Root to a fake tree and inject the rest.
type Probe struct {
	// Root is the folder /proc is read under; "" means "/".
	Root string
	// Data is the server's data folder; "" means "data". Its free space is
	// read from the file system holding it (or its nearest existing parent,
	// before serve has created it), and the store's files in
	// Data/mailboxes are counted into the descriptors kept besides
	// connections.
	Data string
	// Rlimit returns the soft and hard RLIMIT_NOFILE; nil means this
	// process's, from getrlimit(2).
	Rlimit func() (soft, hard uint64, err error)
	// Statfs returns the bytes free to an unprivileged writer and the size
	// of the file system holding path; nil means statfs(2).
	Statfs func(path string) (free, total uint64, err error)
	// Cores is the core count; 0 means runtime.NumCPU().
	Cores int
	// PageSize is the kernel's page size in bytes, the unit of tcp_mem;
	// 0 means os.Getpagesize().
	PageSize int
	// Syncs is how many durable writes to time on the data folder's disk
	// (Facts.Sync); 0 times none.
	Syncs int
}

// Facts is what a Probe read. Counts are as the kernel reports them;
// memory and disk are in bytes, tcp_mem in pages. Its JSON field names are
// stable; the package comment lists them.
type Facts struct {
	NofileSoft uint64 `json:"nofile_soft"` // RLIMIT_NOFILE soft (ulimit -n); 18446744073709551615 is unlimited
	NofileHard uint64 `json:"nofile_hard"` // RLIMIT_NOFILE hard (ulimit -Hn)
	// CanRaiseHard reports CAP_SYS_RESOURCE in /proc/self/status's CapEff:
	// without it the hard limit cannot be raised from inside the process's
	// session, not even by root.
	CanRaiseHard bool  `json:"can_raise_hard"`
	FileMax      int64 `json:"file_max"`    // fs.file-max: open files, whole system
	NrOpen       int64 `json:"nr_open"`     // fs.nr_open: the highest RLIMIT_NOFILE
	FilesOpen    int64 `json:"files_open"`  // fs.file-nr, first field: files open on the system now
	Somaxconn    int64 `json:"somaxconn"`   // net.core.somaxconn: accept queue bound
	SynBacklog   int64 `json:"syn_backlog"` // net.ipv4.tcp_max_syn_backlog
	// MigrateReq is net.ipv4.tcp_migrate_req (Linux 5.14 on): 1 moves the
	// connections waiting in a closing listener's queue to another listener
	// of the port. -1: the kernel has no such setting.
	MigrateReq     int64    `json:"tcp_migrate_req"`
	PortLow        int64    `json:"port_low"`        // net.ipv4.ip_local_port_range, first
	PortHigh       int64    `json:"port_high"`       // net.ipv4.ip_local_port_range, last
	TCPMemPages    [3]int64 `json:"tcp_mem_pages"`   // net.ipv4.tcp_mem: low, pressure, high, in pages
	TCPRmem        [3]int64 `json:"tcp_rmem"`        // net.ipv4.tcp_rmem: min, default, max bytes per socket
	TCPWmem        [3]int64 `json:"tcp_wmem"`        // net.ipv4.tcp_wmem: min, default, max bytes per socket
	Conntrack      bool     `json:"conntrack"`       // nf_conntrack is loaded
	ConntrackMax   int64    `json:"conntrack_max"`   // net.netfilter.nf_conntrack_max (0 without conntrack)
	ConntrackCount int64    `json:"conntrack_count"` // net.netfilter.nf_conntrack_count
	MemTotal       int64    `json:"mem_total"`       // /proc/meminfo MemTotal, bytes
	MemAvailable   int64    `json:"mem_available"`   // /proc/meminfo MemAvailable, bytes
	DiskFree       int64    `json:"disk_free"`       // free bytes where the data folder is
	DiskTotal      int64    `json:"disk_total"`      // size of that file system, bytes
	DiskPath       string   `json:"disk_path"`       // the folder statfs read: Data, or its nearest existing parent
	StoreFiles     int64    `json:"store_files"`     // descriptors the store will hold (see storeFiles)
	Cores          int      `json:"cores"`
	PageSize       int      `json:"page_size"` // bytes
	// Sync is what a durable write cost on the data folder's disk; nil when
	// not measured (Probe.Syncs 0).
	Sync *Sync `json:"sync,omitempty"`
}

// Read reads the facts. A missing or unreadable kernel setting is an error
// naming the file, except conntrack's, which is absent when the module is
// not loaded.
func (p Probe) Read() (Facts, error) {
	root := p.Root
	if root == "" {
		root = "/"
	}
	data := p.Data
	if data == "" {
		data = "data"
	}
	fsys := os.DirFS(root)
	f := Facts{Cores: p.Cores, PageSize: p.PageSize}
	if f.Cores == 0 {
		f.Cores = runtime.NumCPU()
	}
	if f.PageSize == 0 {
		f.PageSize = os.Getpagesize()
	}

	var errs []error
	one := func(dst *int64, name string) {
		var v [1]int64
		if err := readInts(fsys, name, v[:]); err != nil {
			errs = append(errs, err)
		}
		*dst = v[0]
	}
	one(&f.FileMax, "proc/sys/fs/file-max")
	one(&f.NrOpen, "proc/sys/fs/nr_open")
	one(&f.FilesOpen, "proc/sys/fs/file-nr")
	one(&f.Somaxconn, "proc/sys/net/core/somaxconn")
	one(&f.SynBacklog, "proc/sys/net/ipv4/tcp_max_syn_backlog")
	f.MigrateReq = -1 // older kernels: not an error
	var migrate [1]int64
	if err := readInts(fsys, "proc/sys/net/ipv4/tcp_migrate_req", migrate[:]); err == nil {
		f.MigrateReq = migrate[0]
	}
	var ports [2]int64
	if err := readInts(fsys, "proc/sys/net/ipv4/ip_local_port_range", ports[:]); err != nil {
		errs = append(errs, err)
	}
	f.PortLow, f.PortHigh = ports[0], ports[1]
	for _, t := range []struct {
		dst  *[3]int64
		name string
	}{
		{&f.TCPMemPages, "proc/sys/net/ipv4/tcp_mem"},
		{&f.TCPRmem, "proc/sys/net/ipv4/tcp_rmem"},
		{&f.TCPWmem, "proc/sys/net/ipv4/tcp_wmem"},
	} {
		if err := readInts(fsys, t.name, t.dst[:]); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := fs.Stat(fsys, "proc/sys/net/netfilter/nf_conntrack_max"); err == nil {
		f.Conntrack = true
		one(&f.ConntrackMax, "proc/sys/net/netfilter/nf_conntrack_max")
		one(&f.ConntrackCount, "proc/sys/net/netfilter/nf_conntrack_count")
	}

	mi, err := readMeminfo(fsys, "proc/meminfo")
	switch {
	case err != nil:
		errs = append(errs, err)
	case mi["MemTotal"] == 0 || mi["MemAvailable"] == 0:
		errs = append(errs, errors.New("preflight: /proc/meminfo has no MemTotal or MemAvailable"))
	default:
		f.MemTotal, f.MemAvailable = mi["MemTotal"], mi["MemAvailable"]
	}

	caps, err := readStatusCaps(fsys, "proc/self/status")
	if err != nil {
		errs = append(errs, err)
	}
	f.CanRaiseHard = caps&(1<<unix.CAP_SYS_RESOURCE) != 0

	rlimit := p.Rlimit
	if rlimit == nil {
		rlimit = getrlimit
	}
	if f.NofileSoft, f.NofileHard, err = rlimit(); err != nil {
		errs = append(errs, fmt.Errorf("preflight: reading RLIMIT_NOFILE: %w", err))
	}

	statfs := p.Statfs
	if statfs == nil {
		statfs = statfsBytes
	}
	f.DiskPath = existingParent(data)
	free, total, err := statfs(f.DiskPath)
	if err != nil {
		errs = append(errs, fmt.Errorf("preflight: free disk of %s: %w", f.DiskPath, err))
	}
	f.DiskFree, f.DiskTotal = int64(free), int64(total)

	if f.StoreFiles, err = storeFiles(filepath.Join(data, "mailboxes")); err != nil {
		errs = append(errs, err)
	}
	if p.Syncs > 0 {
		if f.Sync, err = probeSync(f.DiskPath, p.Syncs); err != nil {
			errs = append(errs, err)
		}
	}
	return f, errors.Join(errs...)
}

// newStoreFiles is what a new store holds open (measured on a fresh
// server, 2026-12-04): its folder, MANIFEST, KEYREGISTRY, DISCARD, the
// first value log, the first memtable file, and the in-flight log's
// segments.
const newStoreFiles = 6 + inflightFiles

// inflightFiles are the in-flight log's segments a running store holds
// open: the one written and the next, zeroed ahead (storage/tierlog.go). A
// cleanly stopped store has deleted its log.
const inflightFiles = 2

// storeFiles returns the descriptors the store in dir holds while the
// server runs: its folder and every file in it (Badger keeps its tables,
// value logs and memtable files open), plus the memtable file a stopped
// store does not have on disk, and the in-flight log's segments. A store
// that does not exist yet holds newStoreFiles.
func storeFiles(dir string) (int64, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return newStoreFiles, nil
	}
	if err != nil {
		return 0, fmt.Errorf("preflight: counting the store's files: %w", err)
	}
	n, mem := int64(1), false
	for _, e := range ents {
		if e.Type().IsRegular() {
			n++
			mem = mem || strings.HasSuffix(e.Name(), ".mem")
		}
	}
	if !mem {
		n++
	}
	return n + inflightFiles, nil
}

// readInts reads len(dst) whitespace-separated integers from name.
func readInts(fsys fs.FS, name string, dst []int64) error {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return fmt.Errorf("preflight: %w", err)
	}
	fields := strings.Fields(string(b))
	if len(fields) < len(dst) {
		return fmt.Errorf("preflight: /%s: %d values, want %d", name, len(fields), len(dst))
	}
	for i := range dst {
		if dst[i], err = strconv.ParseInt(fields[i], 10, 64); err != nil {
			return fmt.Errorf("preflight: /%s: %w", name, err)
		}
	}
	return nil
}

// readMeminfo returns /proc/meminfo's lines in bytes ("MemTotal: 24683756
// kB" becomes MemTotal: 24683756×1024).
func readMeminfo(fsys fs.FS, name string) (map[string]int64, error) {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("preflight: %w", err)
	}
	m := make(map[string]int64)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			continue
		}
		if len(fields) > 1 && fields[1] == "kB" {
			v *= 1024
		}
		m[key] = v
	}
	return m, nil
}

// readStatusCaps returns the CapEff mask of a /proc/<pid>/status file.
func readStatusCaps(fsys fs.FS, name string) (uint64, error) {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return 0, fmt.Errorf("preflight: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "CapEff:"); ok {
			v, err := strconv.ParseUint(strings.TrimSpace(rest), 16, 64)
			if err != nil {
				return 0, fmt.Errorf("preflight: /%s CapEff: %w", name, err)
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("preflight: /%s has no CapEff line", name)
}

func getrlimit() (soft, hard uint64, err error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, err
	}
	return lim.Cur, lim.Max, nil
}

func statfsBytes(path string) (free, total uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, 0, err
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
}

// existingParent returns dir, or its nearest parent that exists.
func existingParent(dir string) string {
	d, err := filepath.Abs(dir)
	if err != nil {
		d = filepath.Clean(dir)
	}
	for {
		if _, err := os.Stat(d); err == nil {
			return d
		}
		parent := filepath.Dir(d)
		if parent == d {
			return d
		}
		d = parent
	}
}
