package agent

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bai-agent/bai-agent/internal/resource"
)

// File errors (mapped to PermissionError, FileNotFoundError, ValueError).
var (
	ErrPermission   = errors.New("permission denied")
	ErrFileNotFound = errors.New("file not found")
	ErrTooLarge     = errors.New("exceeds the 1 MiB download limit")
)

// MaxDownloadSize caps download_file and download_single (1 MiB).
const MaxDownloadSize = 1 << 20

const workDir = "/home/work"

// kernelPath resolves a path given by the manager (relative to /home/work,
// or absolute inside it) to a host directory that holds it (the scratch
// work dir, or a vfolder mounted under /home/work) and the path relative
// to that directory. All access then goes through os.Root, so symlinks
// inside cannot lead out.
func (a *Agent) kernelPath(k *Kernel, p string) (root string, rel string, readOnly bool, err error) {
	full := p
	if !path.IsAbs(full) {
		full = path.Join(workDir, full)
	}
	full = path.Clean(full)
	if full != workDir && !strings.HasPrefix(full, workDir+"/") {
		return "", "", false, fmt.Errorf("%w: you cannot access files outside /home/work (%s)", ErrPermission, p)
	}
	root, rel = k.Scratch.Work, strings.TrimPrefix(strings.TrimPrefix(full, workDir), "/")
	best := ""
	if k.Spec != nil {
		for _, m := range k.Spec.Mounts {
			if (full == m.Target || strings.HasPrefix(full, m.Target+"/")) && len(m.Target) > len(best) && !m.IsVolume() {
				best = m.Target
				root = m.Source
				rel = strings.TrimPrefix(strings.TrimPrefix(full, m.Target), "/")
				readOnly = m.Perm == resource.PermRO
			}
		}
	}
	if rel == "" {
		rel = "."
	}
	return root, rel, readOnly, nil
}

// openKernelPath resolves p for a kernel and opens the directory holding
// it as an os.Root; the caller closes the root.
func (a *Agent) openKernelPath(kernelID, p string) (root *os.Root, rel string, readOnly bool, err error) {
	k, err := a.runningKernel(kernelID)
	if err != nil {
		return nil, "", false, err
	}
	dir, rel, readOnly, err := a.kernelPath(k, p)
	if err != nil {
		return nil, "", false, err
	}
	root, err = os.OpenRoot(dir)
	if err != nil {
		return nil, "", false, fileErr(p, err)
	}
	return root, rel, readOnly, nil
}

func (a *Agent) runningKernel(id string) (*Kernel, error) {
	k, ok := a.Kernel(id)
	if !ok {
		return nil, kernelErr(id, ErrKernelNotFound)
	}
	return k, nil
}

// errPathEscapes is the error os.Root gives for a path that leaves the
// root (unexported in package os): taken once from a real escape, so that
// errors are compared by identity, never by text.
var errPathEscapes = func() error {
	r, err := os.OpenRoot(os.TempDir())
	if err != nil {
		return errors.New("os.Root unavailable")
	}
	defer r.Close()
	_, err = r.Stat("../bai-agent-probe")
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
		err = u
	}
	if err == nil {
		return errors.New("os.Root did not refuse an escaping path")
	}
	return err
}()

func fileErr(p string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrFileNotFound, p)
	}
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, errPathEscapes) {
		return fmt.Errorf("%w: %s: %v", ErrPermission, p, err)
	}
	return fmt.Errorf("%s: %w", p, err)
}

// UploadFile writes data to filename inside the kernel's /home/work.
func (a *Agent) UploadFile(_ context.Context, kernelID, filename string, data []byte) error {
	root, rel, ro, err := a.openKernelPath(kernelID, filename)
	if err != nil {
		return err
	}
	defer root.Close()
	if rel == "." {
		return fmt.Errorf("%w: %q names a directory, not a file", ErrPermission, filename)
	}
	if ro {
		return fmt.Errorf("%w: %s is on a read-only vfolder", ErrPermission, filename)
	}
	if dir := filepath.Dir(rel); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return fileErr(filename, err)
		}
	}
	if err := root.WriteFile(rel, data, 0o644); err != nil {
		return fileErr(filename, err)
	}
	k, _ := a.Kernel(kernelID)
	if uid, gid, ok := kernelOwner(k); ok && os.Geteuid() == 0 {
		_ = root.Lchown(rel, uid, gid)
	}
	return nil
}

// kernelOwner is the uid/gid the kernel's user runs as.
func kernelOwner(k *Kernel) (int, int, bool) {
	if k == nil {
		return 0, 0, false
	}
	u, err1 := strconv.Atoi(k.Environ["LOCAL_USER_ID"])
	g, err2 := strconv.Atoi(k.Environ["LOCAL_GROUP_ID"])
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return u, g, true
}

// limitedBuffer fails once more than max bytes are written.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		return 0, ErrTooLarge
	}
	return b.Buffer.Write(p)
}

// DownloadFile returns a tar archive of a file or directory under
// /home/work, at most 1 MiB.
func (a *Agent) DownloadFile(_ context.Context, kernelID, p string) ([]byte, error) {
	root, rel, _, err := a.openKernelPath(kernelID, p)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	if _, err := root.Lstat(rel); err != nil {
		return nil, fileErr(p, err)
	}
	buf := &limitedBuffer{max: MaxDownloadSize}
	tw := tar.NewWriter(buf)
	base := path.Base(path.Clean("/" + strings.TrimPrefix(p, "/")))
	if rel == "." {
		base = "work"
	}
	fsys := root.FS()
	err = fs.WalkDir(fsys, rel, func(name string, d fs.DirEntry, werr error) error {
		if werr != nil {
			return werr
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = root.Readlink(name); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = path.Join(base, strings.TrimPrefix(strings.TrimPrefix(name, rel), "/"))
		if info.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := fsys.Open(name)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		if errors.Is(err, ErrTooLarge) {
			return nil, fmt.Errorf("archive of %s %w", p, ErrTooLarge)
		}
		return nil, fileErr(p, err)
	}
	return buf.Bytes(), nil
}

// DownloadSingle returns the content of one regular file (at most 1 MiB).
func (a *Agent) DownloadSingle(_ context.Context, kernelID, p string) ([]byte, error) {
	root, rel, _, err := a.openKernelPath(kernelID, p)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	st, err := root.Stat(rel)
	if err != nil {
		return nil, fileErr(p, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: expected a single file at %s", ErrInvalidArgument, p)
	}
	if st.Size() > MaxDownloadSize {
		return nil, fmt.Errorf("file %s (%d bytes) %w", p, st.Size(), ErrTooLarge)
	}
	data, err := root.ReadFile(rel)
	if err != nil {
		return nil, fileErr(p, err)
	}
	return data, nil
}

// FileEntry is one list_files record.
type FileEntry struct {
	Mode     string  `json:"mode"`
	Size     int64   `json:"size"`
	Ctime    float64 `json:"ctime"`
	Mtime    float64 `json:"mtime"`
	Atime    float64 `json:"atime"`
	Filename string  `json:"filename"`
}

// Listing is list_files' answer: the entries, or the error text the
// Python agent reports in "errors" (the call itself succeeds).
type Listing struct {
	Files   []FileEntry
	Error   string
	Abspath string
}

// ListFiles lists a directory under /home/work. It reads the host side of
// the kernel's mounts, so it works on any image (the Python agent runs
// Python inside the container). An unknown kernel or a path outside
// /home/work is an error; anything else goes into Listing.Error.
func (a *Agent) ListFiles(_ context.Context, kernelID, p string) (*Listing, error) {
	l := &Listing{Abspath: p}
	root, rel, _, err := a.openKernelPath(kernelID, p)
	if err != nil {
		if errors.Is(err, ErrKernelNotFound) || errors.Is(err, ErrPermission) {
			return nil, err
		}
		l.Error = err.Error()
		return l, nil
	}
	defer root.Close()
	f, err := root.Open(rel)
	if err != nil {
		l.Error = fileErr(p, err).Error()
		return l, nil
	}
	ents, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		l.Error = fileErr(p, err).Error()
		return l, nil
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			continue
		}
		fe := FileEntry{Mode: FileMode(info.Mode()), Size: info.Size(), Filename: e.Name()}
		fe.Mtime = float64(info.ModTime().UnixNano()) / 1e9
		fe.Ctime, fe.Atime = fe.Mtime, fe.Mtime
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			fe.Ctime = float64(time.Unix(st.Ctim.Unix()).UnixNano()) / 1e9
			fe.Atime = float64(time.Unix(st.Atim.Unix()).UnixNano()) / 1e9
		}
		l.Files = append(l.Files, fe)
	}
	return l, nil
}

// FileMode renders a mode like Python's stat.filemode ("drwxr-xr-x").
func FileMode(m fs.FileMode) string {
	b := []byte("----------")
	switch {
	case m&fs.ModeDir != 0:
		b[0] = 'd'
	case m&fs.ModeSymlink != 0:
		b[0] = 'l'
	case m&fs.ModeNamedPipe != 0:
		b[0] = 'p'
	case m&fs.ModeSocket != 0:
		b[0] = 's'
	case m&fs.ModeCharDevice != 0:
		b[0] = 'c'
	case m&fs.ModeDevice != 0:
		b[0] = 'b'
	}
	const rwx = "rwxrwxrwx"
	for i := 0; i < 9; i++ {
		if m&(1<<uint(8-i)) != 0 {
			b[i+1] = rwx[i]
		}
	}
	special := func(idx int, set bool, lower, upper byte) {
		if !set {
			return
		}
		if b[idx] == 'x' {
			b[idx] = lower
		} else {
			b[idx] = upper
		}
	}
	special(3, m&fs.ModeSetuid != 0, 's', 'S')
	special(6, m&fs.ModeSetgid != 0, 's', 'S')
	special(9, m&fs.ModeSticky != 0, 't', 'T')
	return string(b)
}

// Logs returns the kernel container's whole stdout and stderr.
func (a *Agent) Logs(ctx context.Context, kernelID string) (string, error) {
	k, err := a.runningKernel(kernelID)
	if err != nil {
		return "", err
	}
	b, err := a.be.Logs(ctx, k.ContainerID(), kernelTTY, 0)
	if err != nil {
		return "", kernelErr(kernelID, err)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD"), nil
}
