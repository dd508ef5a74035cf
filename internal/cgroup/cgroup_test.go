package cgroup

import (
	"os"
	"path/filepath"
	"testing"
)

func write(t *testing.T, root, p, content string) {
	t.Helper()
	full := filepath.Join(root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestV1Tree(t *testing.T) {
	root := t.TempDir()
	cg := filepath.Join(root, "sys/fs/cgroup")
	write(t, root, "proc/self/mountinfo", "32 31 0:29 / "+cg+"/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n35 31 0:32 / "+cg+"/memory rw - cgroup cgroup rw,memory\n38 31 0:35 / "+cg+"/blkio rw - cgroup cgroup rw,blkio\n")
	write(t, root, "proc/42/cgroup", "4:memory:/docker/abc\n3:blkio:/docker/abc\n2:cpu,cpuacct:/docker/abc\n")
	write(t, root, "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpuacct.usage", "2500000000\n")
	write(t, root, "sys/fs/cgroup/memory/docker/abc/memory.usage_in_bytes", "104857600\n")
	write(t, root, "sys/fs/cgroup/memory/docker/abc/memory.stat", "cache 1\ntotal_inactive_file 4194304\n")
	write(t, root, "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes", "268435456\n")
	write(t, root, "sys/fs/cgroup/memory/docker/abc/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
	write(t, root, "sys/fs/cgroup/blkio/docker/abc/blkio.throttle.io_service_bytes", "254:0 Read 4096\n254:0 Write 8192\n254:0 Total 12288\nTotal 12288\n")
	f := FS{Root: root}
	p, err := f.PathsFor(42)
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.Read(p)
	if err != nil {
		t.Fatal(err)
	}
	want := Sample{CPUUsec: 2500000, MemUsage: 96 << 20, MemLimit: 256 << 20, IORead: 4096, IOWrite: 8192, OOMKills: 2, HasOOMCount: true}
	if s != want {
		t.Fatalf("got %+v\nwant %+v", s, want)
	}
}

func TestV2Tree(t *testing.T) {
	root := t.TempDir()
	cg := filepath.Join(root, "sys/fs/cgroup")
	write(t, root, "sys/fs/cgroup/cgroup.controllers", "cpu memory io\n")
	write(t, root, "proc/self/mountinfo", "30 25 0:26 / "+cg+" rw - cgroup2 cgroup2 rw\n")
	write(t, root, "proc/7/cgroup", "0::/system.slice/docker-abc.scope\n")
	d := "sys/fs/cgroup/system.slice/docker-abc.scope/"
	write(t, root, d+"cpu.stat", "usage_usec 1500000\nuser_usec 1000000\n")
	write(t, root, d+"memory.current", "52428800\n")
	write(t, root, d+"memory.stat", "anon 1\ninactive_file 2097152\n")
	write(t, root, d+"memory.max", "max\n")
	write(t, root, d+"memory.events", "low 0\noom 1\noom_kill 1\n")
	write(t, root, d+"io.stat", "254:0 rbytes=100 wbytes=200 rios=1 wios=2\n8:0 rbytes=1 wbytes=2\n")
	write(t, root, d+"cgroup.procs", "7\n8\n")
	f := FS{Root: root}
	if f.Detect() != Unified {
		t.Fatal("not detected as v2")
	}
	p, err := f.PathsFor(7)
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.Read(p)
	if err != nil {
		t.Fatal(err)
	}
	want := Sample{CPUUsec: 1500000, MemUsage: 48 << 20, IORead: 101, IOWrite: 202, OOMKills: 1, HasOOMCount: true}
	if s != want {
		t.Fatalf("got %+v\nwant %+v", s, want)
	}
	if pids, _ := f.Procs(p); len(pids) != 2 {
		t.Fatalf("procs %v", pids)
	}
}

func TestNetDevAndProc(t *testing.T) {
	root := t.TempDir()
	write(t, root, "proc/9/net/dev", "Inter-|   Receive\n face |bytes\n    lo: 999 1 0 0 0 0 0 0 999 1 0 0 0 0 0 0\n  eth0: 1000 5 0 0 0 0 0 0 2000 3 0 0 0 0 0 0\n")
	write(t, root, "proc/9/stat", "9 (my prog) S 1 9 9 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 1 0 100 1000 512\n") // rss: 512 pages
	write(t, root, "proc/9/status", "Name:\tx\nVmRSS:\t  2048 kB\n")
	write(t, root, "proc/9/io", "rchar: 1\nread_bytes: 4096\nwrite_bytes: 8192\n")
	f := FS{Root: root}
	rx, tx, err := f.NetDev(9)
	if err != nil || rx != 1000 || tx != 2000 {
		t.Fatalf("netdev %d %d %v", rx, tx, err)
	}
	p, err := f.ReadProc(9)
	if err != nil || p.CPUMsec != 2000 || p.RSS != uint64(512*os.Getpagesize()) || p.IORead != 4096 || p.IOWrite != 8192 {
		t.Fatalf("proc %+v %v", p, err)
	}
}

func TestScanners(t *testing.T) {
	for _, c := range []struct {
		in          string
		read, write uint64
	}{
		{"", 0, 0},
		{"254:0 Read 4096\n254:0 Write 8192\n254:0 Sync 1\n254:0 Async 2\n254:0 Total 12288\nTotal 12288\n", 4096, 8192},
		{"8:0 Read 1\n8:16 Read 2\n8:0 Write 3\n8:16 Write 4", 3, 7},
		{"8:0 Read x\n8:0 Write -1\ngarbage\n", 0, 0},
	} {
		if r, w := blkioBytes([]byte(c.in)); r != c.read || w != c.write {
			t.Errorf("blkioBytes(%q) = %d, %d; want %d, %d", c.in, r, w, c.read, c.write)
		}
	}
	for _, c := range []struct {
		in string
		n  int
		ok bool
	}{{"0", 0, true}, {"12345", 12345, true}, {"", 0, false}, {"12a", 0, false}, {"-1", 0, false}, {" 1", 0, false}} {
		if n, ok := atoiBytes([]byte(c.in)); n != c.n || ok != c.ok {
			t.Errorf("atoiBytes(%q) = %d, %v", c.in, n, ok)
		}
	}
}
