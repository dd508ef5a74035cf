package cgroup

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// readBufs are the buffers readFile reads into; cgroup and proc files are
// small.
var readBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// readFile reads a small pseudo-file with plain open/read/close. os.ReadFile
// costs twice the system calls (fstat for the size, the runtime poller's
// registration and non-blocking mode), and a collection cycle reads a
// dozen such files per container. Errors are *fs.PathError, as os's.
func readFile(path string) ([]byte, error) {
	fd, err := openRetry(path)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	b, err := preadAll(fd)
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: path, Err: err}
	}
	return b, nil
}

func openRetry(path string) (int, error) {
	for {
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		return fd, err
	}
}

// Handles keeps one container's pseudo-files open between collection
// cycles: reading one again is a single pread at offset 0, which the
// kernel answers with fresh contents (seq_file), instead of a path walk,
// an open and a close each time. A cycle reads about a dozen files per
// container, and the open/close pair cost as much as the reads
// themselves. At most max files are kept (a container with thousands of
// processes has the rest read the plain way). A file whose read fails is
// closed and read once the plain way, so a vanished cgroup or process
// reports what a fresh open says (ENOENT).
type Handles struct {
	mu     sync.Mutex
	fds    map[string]int
	max    int
	closed bool
	// closeReq asks the reader in progress to close everything when its
	// read returns: Close must never wait for a read that may hang (a
	// stuck cgroup or FUSE-backed process).
	closeReq atomic.Bool
	// buf is what kept files are read into: the slice read returns is
	// valid until the next read through h (every caller parses it at
	// once), so a cycle allocates nothing per file.
	buf []byte
	// procNames caches /proc/<pid>/stat, io and net/dev per process
	// (built once).
	procNames map[int]*[3]string
}

// procFiles returns the stat, io and net/dev paths of pid, cached while h keeps
// the process's files.
func (h *Handles) procFiles(pid int) *[3]string {
	if h == nil {
		return &[3]string{procFile(pid, "stat"), procFile(pid, "io"), procFile(pid, "net/dev")}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if n, ok := h.procNames[pid]; ok {
		return n
	}
	n := &[3]string{procFile(pid, "stat"), procFile(pid, "io"), procFile(pid, "net/dev")}
	if h.procNames == nil {
		h.procNames = map[int]*[3]string{}
	}
	h.procNames[pid] = n
	return n
}

// NewHandles keeps up to max files open.
func NewHandles(max int) *Handles { return &Handles{fds: map[string]int{}, max: max} }

func (h *Handles) read(path string) ([]byte, error) {
	if h == nil {
		return readFile(path)
	}
	h.mu.Lock()
	defer func() {
		if h.closeReq.Load() {
			h.closeLocked()
		}
		h.mu.Unlock()
	}()
	fd, ok := h.fds[path]
	if !ok {
		if h.closed || len(h.fds) >= h.max {
			return readFile(path)
		}
		var err error
		if fd, err = openRetry(path); err != nil {
			return nil, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		h.fds[path] = fd
	}
	if h.buf == nil {
		h.buf = make([]byte, 4<<10)
	}
	b, err := preadInto(fd, h.buf)
	if err != nil {
		syscall.Close(fd)
		delete(h.fds, path)
		return readFile(path)
	}
	h.buf = b[:cap(b)]
	return b, nil
}

// shortEOF is the largest short read taken as the end of a file: a page
// (4 KiB, the smallest seq_file buffer) less a 1 KiB margin for the record
// that did not fit.
const shortEOF = 3 << 10

// preadAll reads a whole pseudo-file from offset 0 into a new slice.
func preadAll(fd int) ([]byte, error) {
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	b, err := preadInto(fd, *bp)
	if err != nil {
		return nil, err
	}
	if cap(b) > cap(*bp) {
		*bp = b[:cap(b)]
	}
	out := make([]byte, len(b))
	copy(out, b)
	return out, nil
}

// preadInto reads a whole pseudo-file from offset 0 into buf, growing it
// when the file is larger; it returns the filled part.
func preadInto(fd int, buf []byte) ([]byte, error) {
	buf = buf[:cap(buf)]
	n := 0
	for {
		if n == len(buf) {
			nb := make([]byte, 2*len(buf))
			copy(nb, buf[:n])
			buf = nb
		}
		want := len(buf) - n
		m, err := syscall.Pread(fd, buf[n:], int64(n))
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		n += m
		// A short read of less than shortEOF bytes is the end: seq_file
		// fills its page-sized buffer with every record that fits before
		// returning, so a file with more to come returns close to a page
		// per read (kallsyms: 4 071 of 4 096). The files read here
		// (cgroup files, /proc/<pid>/stat, io, net/dev, cgroup.procs)
		// have lines far shorter than the margin. This saves the second,
		// empty pread per file, a third of a cycle's system calls.
		if m == 0 || (m < want && m <= shortEOF) {
			break
		}
	}
	return buf[:n], nil
}

// KeepProcs closes the files of processes (/proc/<pid>/...) not in
// alive: they exited. (Only the kernel's own reader calls it.)
func (h *Handles) KeepProcs(root string, alive map[int]bool) {
	if h == nil {
		return
	}
	prefix := filepath.Join(root, "/proc") + "/"
	h.mu.Lock()
	defer h.mu.Unlock()
	for pid := range h.procNames {
		if !alive[pid] {
			delete(h.procNames, pid)
		}
	}
	for p, fd := range h.fds {
		rest, ok := strings.CutPrefix(p, prefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "/")
		if pid, err := strconv.Atoi(pidStr); err == nil && !alive[pid] {
			syscall.Close(fd)
			delete(h.fds, p)
		}
	}
}

// Open is how many files are kept open.
func (h *Handles) Open() int {
	if h == nil {
		return 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.fds)
}

// Close closes every kept file; later reads use the plain way. It never
// waits: with a read in progress, that reader closes them when it
// returns.
func (h *Handles) Close() {
	if h == nil {
		return
	}
	h.closeReq.Store(true)
	if !h.mu.TryLock() {
		return
	}
	defer h.mu.Unlock()
	h.closeLocked()
}

func (h *Handles) closeLocked() {
	for p, fd := range h.fds {
		syscall.Close(fd)
		delete(h.fds, p)
	}
	h.closed = true
}
