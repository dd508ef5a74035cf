// Command testkernel is the workload inside the integration tests' kernel
// image. TEST_MODE picks what it does:
//
//	sleep   wait for SIGINT/SIGTERM, exit 0 (default)
//	memhog  allocate and touch MEMHOG_MB MiB, then sleep (gets OOM-killed)
//	shmhog  map SHMHOG_MB MiB of /dev/shm and write it (dies of SIGBUS
//	        when /dev/shm is smaller)
//	exit    exit with EXIT_CODE
//
// It is built statically by the test helpers and imported into a
// busybox-static image, so no registry is needed.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
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
	default:
		fmt.Println("testkernel ready")
		waitSignal()
	}
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
