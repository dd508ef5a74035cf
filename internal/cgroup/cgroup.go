package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Mode is the host's cgroup layout.
type Mode int

// Layouts.
const (
	Legacy  Mode = 1 // v1 controllers
	Hybrid  Mode = 2 // v1 controllers plus an (empty) unified mount
	Unified Mode = 3 // v2 only
)

// FS reads cgroup and proc files under Root ("" means "/"). With H set,
// the files are kept open in H between reads (one container's files; see
// Handles).
type FS struct {
	Root string
	H    *Handles
}

func (f FS) path(p string) string {
	if f.Root == "" {
		return p // the paths read are clean and absolute
	}
	return filepath.Join(f.Root, p)
}

// procFile is /proc/<pid>/<name>, built without fmt (a collection cycle
// makes several per process).
func procFile(pid int, name string) string { return "/proc/" + strconv.Itoa(pid) + "/" + name }

// read returns a file's contents; through Handles they are only good
// until the next read (parse them at once).
func (f FS) read(p string) ([]byte, error) { return f.H.read(f.path(p)) }

// Detect returns the host's layout.
func (f FS) Detect() Mode {
	if _, err := os.Stat(f.path("/sys/fs/cgroup/cgroup.controllers")); err == nil {
		return Unified
	}
	if _, err := os.Stat(f.path("/sys/fs/cgroup/unified")); err == nil {
		return Hybrid
	}
	return Legacy
}

// Paths locate one process's cgroups.
type Paths struct {
	CPUAcct string // v1
	Memory  string // v1
	Blkio   string // v1
	Pids    string // v1 (for cgroup.procs)
	V2      string // v2 group (unified hosts)
	// files are the paths read each cycle, joined once by PathsFor.
	files *files
}

// files holds a container's file paths (v1 or v2 names).
type files struct {
	cpu, memUsage, memStat, memLimit, oom, io, procs string
}

// fileNames joins the paths of the files Read and Procs use.
func (p Paths) fileNames() *files {
	if p.files != nil {
		return p.files
	}
	procsDir := p.Pids
	if procsDir == "" {
		procsDir = p.CPUAcct
	}
	if p.V2 != "" && p.CPUAcct == "" {
		d := p.V2
		return &files{cpu: d + "/cpu.stat", memUsage: d + "/memory.current", memStat: d + "/memory.stat",
			memLimit: d + "/memory.max", oom: d + "/memory.events", io: d + "/io.stat", procs: d + "/cgroup.procs"}
	}
	return &files{cpu: p.CPUAcct + "/cpuacct.usage", memUsage: p.Memory + "/memory.usage_in_bytes",
		memStat: p.Memory + "/memory.stat", memLimit: p.Memory + "/memory.limit_in_bytes",
		oom: p.Memory + "/memory.oom_control", io: p.Blkio + "/blkio.throttle.io_service_bytes",
		procs: procsDir + "/cgroup.procs"}
}

type mount struct {
	root, point string
	opts        []string
	fstype      string
}

func (f FS) mounts() ([]mount, error) {
	b, err := f.read("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []mount
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, x := range fields {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || len(fields) < sep+3 || len(fields) < 5 {
			continue
		}
		fstype := fields[sep+1]
		if fstype != "cgroup" && fstype != "cgroup2" {
			continue
		}
		out = append(out, mount{root: fields[3], point: fields[4], fstype: fstype, opts: strings.Split(fields[sep+3], ",")})
	}
	return out, nil
}

// PathsFor resolves the cgroups of pid.
func (f FS) PathsFor(pid int) (Paths, error) {
	b, err := f.read(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return Paths{}, fmt.Errorf("cgroups of pid %d: %w", pid, err)
	}
	cgroups := string(b) // b is only good until the next read (Handles)
	ms, err := f.mounts()
	if err != nil {
		return Paths{}, err
	}
	var p Paths
	resolve := func(ctrl, rel string, v2 bool) string {
		for _, m := range ms {
			if v2 != (m.fstype == "cgroup2") {
				continue
			}
			if !v2 {
				has := false
				for _, o := range m.opts {
					if o == ctrl {
						has = true
					}
				}
				if !has {
					continue
				}
			}
			r := rel
			if m.root != "/" && strings.HasPrefix(r, m.root) {
				r = strings.TrimPrefix(r, m.root)
			}
			return filepath.Join(m.point, r)
		}
		return ""
	}
	for _, line := range strings.Split(strings.TrimSpace(cgroups), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		ctrls, rel := parts[1], parts[2]
		if parts[0] == "0" && ctrls == "" {
			p.V2 = resolve("", rel, true)
			continue
		}
		for _, c := range strings.Split(ctrls, ",") {
			switch c {
			case "cpuacct":
				p.CPUAcct = resolve("cpuacct", rel, false)
			case "memory":
				p.Memory = resolve("memory", rel, false)
			case "blkio":
				p.Blkio = resolve("blkio", rel, false)
			case "pids":
				p.Pids = resolve("pids", rel, false)
			}
		}
	}
	if p.CPUAcct == "" && p.V2 == "" {
		return p, fmt.Errorf("no cgroup found for pid %d", pid)
	}
	p.files = p.fileNames()
	return p, nil
}

// Sample is one reading of a container's counters.
type Sample struct {
	CPUUsec     uint64 // total CPU time, microseconds
	MemUsage    uint64 // bytes, minus inactive file cache
	MemLimit    uint64 // 0 = unlimited
	IORead      uint64 // bytes
	IOWrite     uint64 // bytes
	OOMKills    uint64 // v2 memory.events oom_kill; v1 memory.oom_control
	HasOOMCount bool
}

// ErrGone means the cgroup disappeared (the container exited).
var ErrGone = errors.New("cgroup is gone")

func parseUint(b []byte) (uint64, error) {
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

// kvGet finds "key value" in a flat-keyed file (memory.stat,
// cpu.stat): a scan without building a map of every line, which cost as
// much as the read.
func kvGet(b []byte, key string) (uint64, bool) { return lineValue(b, key, ' ') }

// lineValue finds the line "<key><sep> <number>" and parses the number.
func lineValue(b []byte, key string, sep byte) (uint64, bool) {
	for len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
		if len(line) > len(key) && line[len(key)] == sep && string(line[:len(key)]) == key {
			v, err := strconv.ParseUint(string(bytes.TrimSpace(line[len(key)+1:])), 10, 64)
			return v, err == nil
		}
	}
	return 0, false
}

// noLimitV1 is what v1 reports for "unlimited" (page-aligned max int64).
const noLimitV1 = uint64(0x7FFFFFFFFFFFF000)

// Read reads the counters.
func (f FS) Read(p Paths) (Sample, error) {
	var s Sample
	fn := p.fileNames()
	if p.V2 != "" && p.CPUAcct == "" {
		return f.readV2(fn)
	}
	b, err := f.H.read(fn.cpu)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return s, ErrGone
		}
		return s, err
	}
	ns, err := parseUint(b)
	if err != nil {
		return s, fmt.Errorf("cpuacct.usage: %w", err)
	}
	s.CPUUsec = ns / 1000
	if b, err = f.H.read(fn.memUsage); err == nil {
		usage, _ := parseUint(b)
		st, _ := f.H.read(fn.memStat)
		inactive, _ := kvGet(st, "total_inactive_file")
		if inactive < usage {
			usage -= inactive
		}
		s.MemUsage = usage
	}
	if b, err = f.H.read(fn.memLimit); err == nil {
		if l, _ := parseUint(b); l < noLimitV1 {
			s.MemLimit = l
		}
	}
	if b, err = f.H.read(fn.oom); err == nil {
		if v, ok := kvGet(b, "oom_kill"); ok {
			s.OOMKills, s.HasOOMCount = v, true
		}
	}
	if b, err = f.H.read(fn.io); err == nil {
		s.IORead, s.IOWrite = blkioBytes(b)
	}
	return s, nil
}

func (f FS) readV2(fn *files) (Sample, error) {
	var s Sample
	b, err := f.H.read(fn.cpu)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return s, ErrGone
		}
		return s, err
	}
	s.CPUUsec, _ = kvGet(b, "usage_usec")
	if b, err = f.H.read(fn.memUsage); err == nil {
		usage, _ := parseUint(b)
		st, _ := f.H.read(fn.memStat)
		if inactive, _ := kvGet(st, "inactive_file"); inactive < usage {
			usage -= inactive
		}
		s.MemUsage = usage
	}
	if b, err = f.H.read(fn.memLimit); err == nil {
		s.MemLimit, _ = parseUint(b)
	}
	if b, err = f.H.read(fn.oom); err == nil {
		if v, ok := kvGet(b, "oom_kill"); ok {
			s.OOMKills, s.HasOOMCount = v, true
		}
	}
	if b, err = f.H.read(fn.io); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			for _, f := range strings.Fields(line)[min(1, len(strings.Fields(line))):] {
				k, v, ok := strings.Cut(f, "=")
				if !ok {
					continue
				}
				n, _ := strconv.ParseUint(v, 10, 64)
				switch k {
				case "rbytes":
					s.IORead += n
				case "wbytes":
					s.IOWrite += n
				}
			}
		}
	}
	return s, nil
}

// Procs lists the PIDs in the container's cgroup.
func (f FS) Procs(p Paths) ([]int, error) {
	b, err := f.H.read(p.fileNames().procs)
	if err != nil {
		return nil, err
	}
	out := make([]int, 0, bytes.Count(b, []byte{'\n'}))
	for len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
		if n, ok := atoiBytes(line); ok {
			out = append(out, n)
		}
	}
	return out, nil
}

// nextLine splits b at its first newline (the scanners' loop step).
func nextLine(b []byte) (line, rest []byte) {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i], b[i+1:]
	}
	return b, nil
}

// atoiBytes parses a non-negative decimal number without allocating.
func atoiBytes(b []byte) (int, bool) {
	if len(b) == 0 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// blkioBytes sums the "<maj:min> Read <n>" and "<maj:min> Write <n>"
// lines of blkio.throttle.io_service_bytes (the Total lines and other
// operations are skipped).
func blkioBytes(b []byte) (read, write uint64) {
	for len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
		sp := bytes.IndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		rest := line[sp+1:]
		sp = bytes.IndexByte(rest, ' ')
		if sp < 0 {
			continue
		}
		v, ok := atoiBytes(rest[sp+1:])
		if !ok {
			continue
		}
		switch string(rest[:sp]) {
		case "Read":
			read += uint64(v)
		case "Write":
			write += uint64(v)
		}
	}
	return read, write
}

// NetDev sums rx/tx bytes of every interface but lo in pid's network
// namespace (/proc/<pid>/net/dev).
func (f FS) NetDev(pid int) (rx, tx uint64, err error) {
	path := "/proc/net/dev"
	if pid > 0 {
		path = f.H.procFiles(pid)[2]
	}
	b, err := f.read(path)
	if err != nil {
		return 0, 0, err
	}
	for len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
		c := bytes.IndexByte(line, ':')
		if c < 0 || string(bytes.TrimSpace(line[:c])) == "lo" {
			continue
		}
		// rx bytes is the 1st counter, tx bytes the 9th.
		if v, n := numFields(line[c+1:], 0, 8); n > 8 {
			rx += v[0]
			tx += v[1]
		}
	}
	return rx, tx, nil
}

// Proc is one process's counters.
type Proc struct {
	Pid int
	// State is /proc/<pid>/stat's state letter (R, S, D, Z, ...).
	State   byte
	CPUMsec uint64
	RSS     uint64
	IORead  uint64
	IOWrite uint64
}

// ReadProc reads /proc/<pid>/stat and io.
func (f FS) ReadProc(pid int) (Proc, error) {
	p := Proc{Pid: pid}
	names := f.H.procFiles(pid)
	b, err := f.read(names[0])
	if err != nil {
		return p, err
	}
	// Fields after the command (which may contain spaces) start after ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return p, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	// utime, stime (fields 14, 15) and rss (24, in pages; no need to read
	// status) are the 12th, 13th and 22nd after the command.
	if rest := bytes.TrimLeft(b[i+1:], " "); len(rest) > 0 {
		p.State = rest[0]
	}
	v, _ := numFields(b[i+1:], 11, 12, 21)
	ut, st, pages := v[0], v[1], v[2]
	p.CPUMsec = (ut + st) * 10 // USER_HZ = 100
	p.RSS = pages * uint64(os.Getpagesize())
	if b, err := f.read(names[1]); err == nil {
		p.IORead, _ = colonGet(b, "read_bytes")
		p.IOWrite, _ = colonGet(b, "write_bytes")
	}
	return p, nil
}

// colonGet finds "key: value" (/proc/<pid>/io).
func colonGet(b []byte, key string) (uint64, bool) { return lineValue(b, key, ':') }

// numFields parses the space-separated fields of b at the given indexes
// (ascending) as numbers, and says how many fields it walked (the last
// index + 1 when b has that many).
func numFields(b []byte, idx ...int) ([]uint64, int) {
	out := make([]uint64, len(idx))
	n, k := 0, 0
	for rest := b; len(rest) > 0 && k < len(idx); n++ {
		rest = bytes.TrimLeft(rest, " \t")
		if len(rest) == 0 {
			break
		}
		end := bytes.IndexAny(rest, " \t\n")
		if end < 0 {
			end = len(rest)
		}
		if n == idx[k] {
			out[k], _ = strconv.ParseUint(string(rest[:end]), 10, 64)
			k++
		}
		rest = rest[end:]
	}
	return out, n
}
