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
	"strings"
	"time"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/kernel"
	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/bai-agent/bai-agent/internal/safefs"
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

// Bounds of the file RPCs: a walk deeper or a folder longer than these
// ends with a size error (the 1 MiB archive is full long before).
const (
	maxWalkDepth   = 64
	maxDirEntries  = 100_000
	fileRPCTimeout = 30 * time.Second
)

// fileOps serves the manager's file calls (upload, download, list,
// logs) on a kernel's /home/work and its vfolders, through safefs.
type fileOps struct {
	reg *registry
	be  backend.Backend
}

func newFileOps(reg *registry, be backend.Backend) *fileOps { return &fileOps{reg: reg, be: be} }

// kernelPath resolves a path given by the manager (relative to /home/work,
// or absolute inside it) to a host directory that holds it (the scratch
// work dir, or a vfolder mounted under /home/work) and the path relative
// to that directory. All access then goes through safefs, so nothing the
// kernel planted beneath it (links, FIFOs, device nodes) is followed or
// opened.
func (fo *fileOps) kernelPath(s *KernelSpec, p string) (root string, rel string, readOnly bool, mounted bool, err error) {
	if strings.IndexByte(p, 0) >= 0 {
		return "", "", false, false, fmt.Errorf("%w: the path has a NUL byte", ErrInvalidArgument)
	}
	full := p
	if !path.IsAbs(full) {
		full = path.Join(workDir, full)
	}
	full = path.Clean(full)
	if full != workDir && !strings.HasPrefix(full, workDir+"/") {
		return "", "", false, false, fmt.Errorf("%w: you cannot access files outside /home/work (%s)", ErrPermission, p)
	}
	root, rel = s.Scratch.Work, strings.TrimPrefix(strings.TrimPrefix(full, workDir), "/")
	best := ""
	if s.Resources != nil {
		for _, m := range s.Resources.Mounts {
			if (full == m.Target || strings.HasPrefix(full, m.Target+"/")) && len(m.Target) > len(best) && !m.IsVolume() {
				best = m.Target
				root = m.Source
				rel = strings.TrimPrefix(strings.TrimPrefix(full, m.Target), "/")
				readOnly = m.Perm == resource.PermRO
				mounted = true
			}
		}
	}
	if rel == "" {
		rel = "."
	}
	return root, rel, readOnly, mounted, nil
}

// openKernelPath resolves p for a kernel and opens the directory holding
// it; the caller closes the root.
func (fo *fileOps) openKernelPath(kernelID, p string) (k *Kernel, root *safefs.Root, rel string, readOnly bool, err error) {
	k, s, err := fo.reg.running(kernelID)
	if err != nil {
		return nil, nil, "", false, err
	}
	dir, rel, readOnly, mounted, err := fo.kernelPath(s, p)
	if err != nil {
		return nil, nil, "", false, err
	}
	if mounted {
		// A vfolder's source was resolved once, at validation, through
		// folders its users can change (a sub-folder mount): the kernel
		// may since have swapped a component for a link to a host folder.
		root, err = safefs.OpenRootStrict(dir)
	} else {
		root, err = safefs.OpenRoot(dir)
	}
	if err != nil {
		return nil, nil, "", false, fileCallErr(k, p, err)
	}
	return k, root, rel, readOnly, nil
}

// running is a registered kernel in the running state: the only
// state in which its files, environment and container are complete and
// stable. A kernel still being created, restarting or going away is not
// there yet (or any more) for file and commit calls: KeyError, as the
// Python agent answers for a kernel not in its registry.
// It returns the kernel with its spec as published.
func (r *registry) running(id string) (*Kernel, *KernelSpec, error) {
	k, ok := r.get(id)
	if !ok {
		return nil, nil, kernelErr(id, ErrKernelNotFound)
	}
	s := k.Spec()
	if st := k.State(); st != kernel.Running || s == nil {
		return nil, nil, kernelErr(id, fmt.Errorf("%w: it is %s, not running", ErrKernelNotFound, st))
	}
	return k, s, nil
}

// fileCtx bounds one file RPC: the caller's deadline, at most
// fileRPCTimeout.
func fileCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, fileRPCTimeout)
}

// fileCallErr is fileErr for a call that failed on kernel k: a kernel
// that stopped running meanwhile (a destroy removed its scratch, a
// restart replaced its container) answers as if it had not been running
// when the call came, not with what its vanishing folder made of the
// call.
func fileCallErr(k *Kernel, p string, err error) error {
	if st := k.State(); st != kernel.Running {
		return kernelErr(k.ID, fmt.Errorf("%w: it is %s, not running (%s: %v)", ErrKernelNotFound, st, p, err))
	}
	return fileErr(p, err)
}

// fileErr maps safefs's and the system's errors to the manager's kinds.
func fileErr(p string, err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, safefs.ErrBusy):
		return fmt.Errorf("%s: %w", p, err)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %s", ErrFileNotFound, p)
	case errors.Is(err, safefs.ErrTooLarge):
		return fmt.Errorf("%s: %w (%v)", p, ErrTooLarge, err)
	case errors.Is(err, fs.ErrPermission), errors.Is(err, safefs.ErrEscape), errors.Is(err, safefs.ErrSymlink), errors.Is(err, safefs.ErrNotRegular):
		return fmt.Errorf("%w: %s: %v", ErrPermission, p, err)
	case errors.Is(err, safefs.ErrIsDir), errors.Is(err, safefs.ErrNotDir):
		return fmt.Errorf("%w: %s: %v", ErrInvalidArgument, p, err)
	}
	return fmt.Errorf("%s: %w", p, err)
}

// UploadFile writes data to filename inside the kernel's /home/work: a
// new file renamed over the name, so whatever the kernel left there (a
// device node, a FIFO, a link) is replaced, never opened.
func (fo *fileOps) UploadFile(ctx context.Context, kernelID, filename string, data []byte) error {
	k, root, rel, ro, err := fo.openKernelPath(kernelID, filename)
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
	ctx, cancel := fileCtx(ctx)
	defer cancel()
	_, err = safefs.DoLimited(ctx, k.fileCalls(), "upload_file", func(ctx context.Context) (struct{}, error) {
		return struct{}{}, root.WriteFile(rel, data, safefs.WriteOptions{
			Perm: 0o644, Owner: fileOwner(k, root), Mkdir: true, DirPerm: 0o755,
		})
	})
	if err != nil {
		return fileCallErr(k, filename, err)
	}
	return nil
}

// fileOwner is who the agent's files in a kernel's folder belong to: the
// kernel's user when the agent knows its uid, else the owner of the
// folder itself; the agent's own when it is not root.
func fileOwner(k *Kernel, root *safefs.Root) safefs.Owner {
	if os.Geteuid() != 0 {
		return safefs.NoOwner
	}
	if uid, gid, ok := k.Spec().kernelUser(); ok {
		return safefs.Owner{UID: uid, GID: gid}
	}
	if info, err := root.Lstat("."); err == nil {
		return safefs.Owner{UID: int(info.Stat().Uid), GID: int(info.Stat().Gid)}
	}
	return safefs.NoOwner
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
// /home/work, at most 1 MiB. Links are archived as links (never
// followed); FIFOs, sockets and device nodes as headers only (never
// opened).
func (fo *fileOps) DownloadFile(ctx context.Context, kernelID, p string) ([]byte, error) {
	k, root, rel, _, err := fo.openKernelPath(kernelID, p)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	base := path.Base(path.Clean("/" + strings.TrimPrefix(p, "/")))
	if rel == "." {
		base = "work"
	}
	ctx, cancel := fileCtx(ctx)
	defer cancel()
	out, err := safefs.DoLimited(ctx, k.fileCalls(), "download_file", func(ctx context.Context) ([]byte, error) {
		buf := &limitedBuffer{max: MaxDownloadSize}
		tw := tar.NewWriter(buf)
		err := root.Walk(ctx, rel, maxWalkDepth, maxDirEntries, func(name string, info *safefs.Info) error {
			return archiveEntry(tw, root, rel, base, name, info)
		})
		if err == nil {
			err = tw.Close()
		}
		if err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	})
	if err != nil {
		if errors.Is(err, ErrTooLarge) {
			return nil, fmt.Errorf("archive of %s %w", p, ErrTooLarge)
		}
		return nil, fileCallErr(k, p, err)
	}
	if k.State() != kernel.Running {
		// Its folder went away under the walk: what was read is not what
		// the kernel had.
		return nil, fileCallErr(k, p, errors.New("the kernel stopped during the call"))
	}
	return out, nil
}

func archiveEntry(tw *tar.Writer, root *safefs.Root, rel, base, name string, info *safefs.Info) error {
	link := ""
	if info.Mode()&fs.ModeSymlink != 0 {
		l, err := root.Readlink(name)
		if err != nil {
			return err
		}
		link = l
	}
	hdr, err := tar.FileInfoHeader(info, link)
	if err != nil {
		return err
	}
	st := info.Stat()
	hdr.Uid, hdr.Gid = int(st.Uid), int(st.Gid)
	hdr.Name = path.Join(base, strings.TrimPrefix(strings.TrimPrefix(name, rel), "/"))
	if rel == "." {
		hdr.Name = path.Join(base, name)
	}
	if info.IsDir() {
		hdr.Name += "/"
	}
	if !info.Mode().IsRegular() {
		return tw.WriteHeader(hdr)
	}
	f, finfo, err := root.Open(name)
	if err != nil {
		if errors.Is(err, safefs.ErrNotRegular) || errors.Is(err, fs.ErrNotExist) {
			return nil // swapped for something else meanwhile: left out
		}
		return err
	}
	defer f.Close()
	// The header carries the size of what was opened, and exactly that
	// many bytes are copied: a file that grows or shrinks meanwhile
	// cannot make the archive lie.
	hdr.Size = finfo.Size()
	if hdr.Size > MaxDownloadSize {
		return ErrTooLarge
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.Copy(tw, io.LimitReader(f, hdr.Size))
	if err != nil {
		return err
	}
	if n < hdr.Size { // shrank: pad so the archive stays well-formed
		_, err = io.CopyN(tw, zeroReader{}, hdr.Size-n)
	}
	return err
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// DownloadSingle returns the content of one regular file (at most 1 MiB),
// read from the descriptor whose size was checked.
func (fo *fileOps) DownloadSingle(ctx context.Context, kernelID, p string) ([]byte, error) {
	k, root, rel, _, err := fo.openKernelPath(kernelID, p)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	ctx, cancel := fileCtx(ctx)
	defer cancel()
	data, err := safefs.DoLimited(ctx, k.fileCalls(), "download_single", func(ctx context.Context) ([]byte, error) {
		return root.ReadFile(rel, MaxDownloadSize)
	})
	if err != nil {
		if errors.Is(err, safefs.ErrIsDir) || errors.Is(err, safefs.ErrNotRegular) {
			return nil, fmt.Errorf("%w: expected a single file at %s (%v)", ErrInvalidArgument, p, err)
		}
		if errors.Is(err, safefs.ErrTooLarge) {
			return nil, fmt.Errorf("file %s %w (%v)", p, ErrTooLarge, err)
		}
		return nil, fileCallErr(k, p, err)
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
// Python inside the container). Entries are described by fstatat without
// following links; nothing listed is opened. An unknown kernel or a path
// outside /home/work is an error; anything else goes into Listing.Error.
func (fo *fileOps) ListFiles(ctx context.Context, kernelID, p string) (*Listing, error) {
	l := &Listing{Abspath: p}
	k, root, rel, _, err := fo.openKernelPath(kernelID, p)
	if err != nil {
		if errors.Is(err, ErrKernelNotFound) || errors.Is(err, ErrPermission) || errors.Is(err, ErrInvalidArgument) {
			return nil, err
		}
		l.Error = err.Error()
		return l, nil
	}
	defer root.Close()
	ctx, cancel := fileCtx(ctx)
	defer cancel()
	ents, err := safefs.DoLimited(ctx, k.fileCalls(), "list_files", func(ctx context.Context) ([]*safefs.Info, error) {
		return root.ReadDir(ctx, rel, maxDirEntries)
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || k.State() != kernel.Running {
			return nil, fileCallErr(k, p, err)
		}
		l.Error = fileErr(p, err).Error()
		return l, nil
	}
	for _, info := range ents {
		st := info.Stat()
		fe := FileEntry{Mode: FileMode(info.Mode()), Size: info.Size(), Filename: info.Name()}
		fe.Mtime = float64(time.Unix(st.Mtim.Unix()).UnixNano()) / 1e9
		fe.Ctime = float64(time.Unix(st.Ctim.Unix()).UnixNano()) / 1e9
		fe.Atime = float64(time.Unix(st.Atim.Unix()).UnixNano()) / 1e9
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
func (fo *fileOps) Logs(ctx context.Context, kernelID string) (string, error) {
	k, ok := fo.reg.get(kernelID) // logs of a kernel going away are still wanted
	if !ok {
		return "", kernelErr(kernelID, ErrKernelNotFound)
	}
	b, err := fo.be.Logs(ctx, k.ContainerID(), kernelTTY, 0)
	if err != nil {
		return "", kernelErr(kernelID, err)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD"), nil
}
