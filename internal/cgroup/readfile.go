package cgroup

import (
	"errors"
	"io/fs"
	"sync"
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
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	buf := *bp
	n := 0
	for {
		if n == len(buf) {
			// Larger than the pooled buffer (a big memory.stat): grow a
			// private one.
			nb := make([]byte, 2*len(buf))
			copy(nb, buf[:n])
			buf = nb
		}
		m, err := syscall.Read(fd, buf[n:])
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if m == 0 {
			break
		}
		n += m
	}
	out := make([]byte, n)
	copy(out, buf[:n])
	return out, nil
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
