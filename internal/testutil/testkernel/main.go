// Command testkernel is the workload inside the integration tests' kernel
// image. TEST_MODE picks what it does:
//
//	sleep   wait for SIGINT/SIGTERM, exit 0 (default)
//	memhog  allocate and touch MEMHOG_MB MiB, then sleep (gets OOM-killed)
//	shmhog  map SHMHOG_MB MiB of /dev/shm and write it (dies of SIGBUS
//	        when /dev/shm is smaller)
//	exit    exit with EXIT_CODE
//	rawsock try raw and packet sockets, print one line per kind, exit
//	ptrace  for each pid in PIDS (space-separated; "child": a child it
//	        starts), try PTRACE_ATTACH and reading /proc/PID/environ (printed
//	        when readable) and /proc/PID/mem; one line each, exit
//
// It is built statically by the test helpers and imported into a
// busybox-static image, so no registry is needed.
package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func main() {
	switch os.Getenv("TEST_MODE") {
	case "memhog":
		mb := envInt("MEMHOG_MB", 512)
		var keep [][]byte
		for i := 0; i < mb; i++ {
			b := make([]byte, 1<<20)
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
			keep = append(keep, b)
		}
		fmt.Println("allocated", len(keep), "MiB")
		waitSignal()
	case "shmhog":
		shmhog(envInt("SHMHOG_MB", 128))
	case "exit":
		os.Exit(envInt("EXIT_CODE", 3))
	case "write":
		// Write WRITE_MB MiB to /home/work and keep the process alive so
		// its I/O counters stay readable. O_DIRECT: under cgroup v1 a
		// buffered write that the kernel's background writeback flushes
		// is charged to the root cgroup, not the container's, so the
		// container's blkio figure would depend on when writeback ran.
		// (Go's 1-MiB allocations are page-aligned, as O_DIRECT needs.)
		f, err := os.OpenFile("/home/work/written.bin", os.O_CREATE|os.O_TRUNC|os.O_WRONLY|syscall.O_DIRECT, 0o644)
		if err != nil {
			f, err = os.Create("/home/work/written.bin")
		}
		if err == nil {
			buf := make([]byte, 1<<20)
			for i := 0; i < envInt("WRITE_MB", 16); i++ {
				_, _ = f.Write(buf)
			}
			_ = f.Sync()
			f.Close()
			fmt.Println("written")
		}
		waitSignal()
	case "procs":
		// Start PROCS idle child processes (a process-heavy kernel).
		n := envInt("PROCS", 1000)
		for i := 0; i < n; i++ {
			cmd := exec.Command("/bin/sleep", "3600")
			if err := cmd.Start(); err != nil {
				fmt.Println("started", i, "then:", err)
				break
			}
		}
		fmt.Println("procs started")
		waitSignal()
	case "spin":
		// Burn one core until stopped.
		go func() {
			x := 0
			for {
				x++
			}
		}()
		waitSignal()
	case "netsend":
		netsend(envInt("NET_PORT", 0), envInt("NET_BYTES", 1<<20))
		waitSignal()
	case "rawsock":
		rawsock()
	case "ptrace":
		for _, f := range strings.Fields(os.Getenv("PIDS")) {
			if f == "child" {
				// A child of this process: open to ptrace under any
				// ptrace_scope (gVisor's default is Yama's 1).
				cmd := exec.Command("/bin/sleep", "60")
				if err := cmd.Start(); err != nil {
					fmt.Println("child=err:", err)
					continue
				}
				fmt.Printf("child=%d\n", cmd.Process.Pid)
				ptraceProbe(cmd.Process.Pid)
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				continue
			}
			if pid, err := strconv.Atoi(f); err == nil {
				ptraceProbe(pid)
			}
		}
	default:
		fmt.Println("testkernel ready")
		waitSignal()
	}
}

// netsend sends n bytes to port on the default gateway (the host side of
// the Docker bridge), found in /proc/net/route.
func netsend(port, n int) {
	b, err := os.ReadFile("/proc/net/route")
	if err != nil {
		fmt.Println(err)
		return
	}
	var gw string
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 2 && f[1] == "00000000" {
			v, _ := strconv.ParseUint(f[2], 16, 32)
			gw = fmt.Sprintf("%d.%d.%d.%d", byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
		}
	}
	conn, err := net.Dial("tcp", net.JoinHostPort(gw, strconv.Itoa(port)))
	if err != nil {
		fmt.Println(err)
		return
	}
	buf := make([]byte, 64<<10)
	for sent := 0; sent < n; {
		k := min(len(buf), n-sent)
		w, err := conn.Write(buf[:k])
		if err != nil {
			fmt.Println(err)
			return
		}
		sent += w
	}
	conn.Close()
	fmt.Println("sent", n)
}

func waitSignal() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	<-ch
}

// shmhog writes past the size of /dev/shm through a shared mapping. The
// kernel answers the write fault with SIGBUS. Go turns a fault into a
// panic, so the panic is caught and SIGBUS re-raised with its default
// action: the process dies of SIGBUS exactly like a C or Python program.
func shmhog(mb int) {
	f, err := os.OpenFile("/dev/shm/hog", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	size := mb << 20
	if err := f.Truncate(int64(size)); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	debug.SetPanicOnFault(true)
	defer func() {
		if recover() != nil {
			dieOfSIGBUS()
		}
		os.Exit(1)
	}()
	for i := 0; i < size; i += 4096 {
		mem[i] = 1
	}
	fmt.Println("wrote", mb, "MiB to /dev/shm without a fault")
	waitSignal()
}

// kernelSigaction is the kernel's struct sigaction (amd64 and arm64).
type kernelSigaction struct {
	handler  uintptr
	flags    uint64
	restorer uintptr
	mask     uint64
}

// dieOfSIGBUS restores SIGBUS's default action below the Go runtime (whose
// own handler would turn it into a crash report and exit status 2) and
// raises it.
func dieOfSIGBUS() {
	act := kernelSigaction{} // handler 0 = SIG_DFL
	_, _, _ = syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(syscall.SIGBUS), uintptr(unsafe.Pointer(&act)), 0, 8, 0, 0)
	_ = syscall.Kill(os.Getpid(), syscall.SIGBUS)
	time.Sleep(time.Second)
}

// rawsock opens the sockets CAP_NET_RAW guards (packet sockets see and
// forge every frame of the interface; raw IP sockets forge any IP
// packet) and prints "<kind>=ok" or "<kind>=err:<errno text>".
func rawsock() {
	const ethPAll = 0x0300 // htons(ETH_P_ALL)
	for _, s := range []struct {
		kind              string
		domain, typ, prot int
	}{
		{"packet", syscall.AF_PACKET, syscall.SOCK_RAW, ethPAll},
		{"packet-dgram", syscall.AF_PACKET, syscall.SOCK_DGRAM, ethPAll},
		{"inet-raw-icmp", syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_ICMP},
		{"inet-raw", syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW},
	} {
		fd, err := syscall.Socket(s.domain, s.typ, s.prot)
		if err != nil {
			fmt.Printf("%s=err:%v\n", s.kind, err)
			continue
		}
		syscall.Close(fd)
		fmt.Printf("%s=ok\n", s.kind)
	}
}

// ptraceProbe tries to attach to pid and to read its environment and
// memory, printing "<pid> <what>=ok" or "<pid> <what>=err:<text>".
func ptraceProbe(pid int) {
	// ptrace requests must come from the attaching thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := syscall.PtraceAttach(pid); err != nil {
		fmt.Printf("%d attach=err:%v\n", pid, err)
	} else {
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, syscall.WALL, nil)
		_ = syscall.PtraceDetach(pid)
		fmt.Printf("%d attach=ok\n", pid)
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid)); err != nil {
		fmt.Printf("%d environ=err:%v\n", pid, err)
	} else {
		fmt.Printf("%d environ=ok:%d bytes\n", pid, len(b))
		fmt.Printf("%d environ-data:%s\n", pid, strings.ReplaceAll(string(b), "\x00", " "))
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		fmt.Printf("%d mem=err:%v\n", pid, err)
		return
	}
	defer f.Close()
	// The start of the heap or text: any mapped address will do; take
	// the first readable mapping from maps (itself guarded the same way).
	addr := int64(-1)
	if m, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid)); err == nil {
		for _, line := range strings.Split(string(m), "\n") {
			f := strings.Fields(line)
			if len(f) > 1 && strings.HasPrefix(f[1], "r") {
				lo, _, _ := strings.Cut(f[0], "-")
				if v, err := strconv.ParseInt(lo, 16, 64); err == nil {
					addr = v
					break
				}
			}
		}
	}
	if addr < 0 {
		fmt.Printf("%d mem=err:no readable mapping listed\n", pid)
		return
	}
	buf := make([]byte, 64)
	if _, err := f.ReadAt(buf, addr); err != nil {
		fmt.Printf("%d mem=err:%v\n", pid, err)
		return
	}
	fmt.Printf("%d mem=ok\n", pid)
}
