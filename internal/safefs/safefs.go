package safefs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Errors a caller maps to the manager's error types.
var (
	// ErrEscape: the path leaves its root ("..", absolute).
	ErrEscape = errors.New("path leaves its folder")
	// ErrSymlink: a component of the path is a symbolic link.
	ErrSymlink = errors.New("path goes through a symbolic link")
	// ErrNotRegular: the target is a FIFO, socket, device node or link.
	ErrNotRegular = errors.New("not a regular file or folder")
	// ErrTooLarge: more bytes than the caller's limit.
	ErrTooLarge = errors.New("larger than the limit")
	// ErrIsDir: a file operation named a folder.
	ErrIsDir = errors.New("is a folder")
	// ErrNotDir: a folder operation named something else.
	ErrNotDir = errors.New("not a folder")
)

// forceWalk makes every resolution take the O_NOFOLLOW walk (tests).
var forceWalk atomic.Bool

// noOpenat2 is set once openat2 answered ENOSYS.
var noOpenat2 atomic.Bool

// Root is an open folder that paths are resolved beneath.
type Root struct {
	fd   int // O_PATH|O_DIRECTORY
	name string
}

// OpenRoot opens dir. The folder itself is the caller's (a scratch or
// vfolder path the agent chose), so it is opened as named; everything
// beneath it is resolved without following links.
func OpenRoot(dir string) (*Root, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	return &Root{fd: fd, name: dir}, nil
}

// Close releases the root's descriptor.
func (r *Root) Close() error {
	if r == nil || r.fd < 0 {
		return nil
	}
	err := unix.Close(r.fd)
	r.fd = -1
	return err
}

// Split checks a path meant to stay beneath a root and returns its
// components ("" or "." is the root itself: no components). Absolute
// paths and any ".." are refused rather than cleaned, so that what is
// touched is exactly what was named.
func Split(rel string) ([]string, error) {
	if rel == "" || rel == "." {
		return nil, nil
	}
	if strings.IndexByte(rel, 0) >= 0 {
		return nil, fmt.Errorf("%w: %q has a NUL byte", ErrEscape, rel)
	}
	if path.IsAbs(rel) {
		return nil, fmt.Errorf("%w: %q is absolute", ErrEscape, rel)
	}
	var out []string
	for _, c := range strings.Split(rel, "/") {
		switch c {
		case "", ".":
			continue
		case "..":
			return nil, fmt.Errorf("%w: %q has ..", ErrEscape, rel)
		}
		out = append(out, c)
	}
	return out, nil
}

func pathErr(op, rel string, err error) error {
	return &fs.PathError{Op: op, Path: rel, Err: err}
}

// resolve opens comps beneath dirfd as an O_PATH descriptor of the last
// component itself (a link there is returned as the link, for the
// caller's fstat to refuse). extra is added to the open flags
// (O_DIRECTORY).
func resolve(dirfd int, comps []string, extra int) (int, error) {
	if len(comps) == 0 {
		return unix.Openat(dirfd, ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	}
	flags := unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC | extra
	if !forceWalk.Load() && !noOpenat2.Load() {
		fd, err := unix.Openat2(dirfd, strings.Join(comps, "/"), &unix.OpenHow{
			Flags:   uint64(flags),
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		})
		switch {
		case err == nil:
			return fd, nil
		case errors.Is(err, unix.ENOSYS):
			noOpenat2.Store(true)
		case errors.Is(err, unix.ELOOP):
			return -1, ErrSymlink
		case errors.Is(err, unix.EXDEV):
			return -1, ErrEscape
		default:
			return -1, err
		}
	}
	return walk(dirfd, comps, flags)
}

// walk is resolve without openat2: each folder component is opened with
// O_NOFOLLOW|O_DIRECTORY from the one before it.
func walk(dirfd int, comps []string, flags int) (int, error) {
	cur := dirfd
	closeCur := func() {
		if cur != dirfd {
			unix.Close(cur)
		}
	}
	for i, c := range comps {
		if i == len(comps)-1 {
			fd, err := unix.Openat(cur, c, flags, 0)
			closeCur()
			return fd, err
		}
		fd, err := unix.Openat(cur, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, unix.ENOTDIR) {
				var st unix.Stat_t
				if unix.Fstatat(cur, c, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
					err = ErrSymlink
				}
			}
			closeCur()
			return -1, err
		}
		closeCur()
		cur = fd
	}
	return cur, nil // not reached: comps is not empty
}

// reopen opens the inode an O_PATH descriptor names with real access
// flags. Going through /proc/self/fd reopens that inode, not a path, so a
// name swapped after the fstat cannot substitute something else.
func reopen(pathfd, flags int) (int, error) {
	return unix.Open("/proc/self/fd/"+strconv.Itoa(pathfd), flags|unix.O_CLOEXEC, 0)
}

// Info describes one entry, from fstat or fstatat without following links.
type Info struct {
	name string
	st   unix.Stat_t
}

var _ fs.FileInfo = (*Info)(nil)

// Name is the entry's base name.
func (i *Info) Name() string { return i.name }

// Size is st_size.
func (i *Info) Size() int64 { return i.st.Size }

// Mode is the fs.FileMode of st_mode.
func (i *Info) Mode() fs.FileMode { return modeOf(i.st.Mode) }

// ModTime is st_mtim.
func (i *Info) ModTime() time.Time { return time.Unix(i.st.Mtim.Unix()) }

// IsDir reports a folder.
func (i *Info) IsDir() bool { return i.st.Mode&unix.S_IFMT == unix.S_IFDIR }

// Sys is the raw *unix.Stat_t.
func (i *Info) Sys() any { return &i.st }

// Stat is the raw stat record.
func (i *Info) Stat() *unix.Stat_t { return &i.st }

func modeOf(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= fs.ModeDir
	case unix.S_IFLNK:
		mode |= fs.ModeSymlink
	case unix.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= fs.ModeSocket
	case unix.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		mode |= fs.ModeDevice
	}
	if m&unix.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

func kindOf(m uint32) string {
	switch m & unix.S_IFMT {
	case unix.S_IFLNK:
		return "a symbolic link"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFDIR:
		return "a folder"
	}
	return "a regular file"
}

// Lstat describes rel without following a link at any component.
func (r *Root) Lstat(rel string) (*Info, error) {
	comps, err := Split(rel)
	if err != nil {
		return nil, pathErr("lstat", rel, err)
	}
	fd, err := resolve(r.fd, comps, 0)
	if err != nil {
		return nil, pathErr("lstat", rel, err)
	}
	defer unix.Close(fd)
	return fstatInfo(fd, rel)
}

func fstatInfo(fd int, rel string) (*Info, error) {
	i := &Info{name: path.Base("/" + rel)}
	if rel == "" || rel == "." {
		i.name = "."
	}
	if err := unix.Fstat(fd, &i.st); err != nil {
		return nil, pathErr("fstat", rel, err)
	}
	return i, nil
}

// openChecked resolves rel, refuses what is neither a regular file nor a
// folder, and reopens it for reading.
func (r *Root) openChecked(rel string, wantDir bool) (*os.File, *Info, error) {
	comps, err := Split(rel)
	if err != nil {
		return nil, nil, pathErr("open", rel, err)
	}
	pfd, err := resolve(r.fd, comps, 0)
	if err != nil {
		return nil, nil, pathErr("open", rel, err)
	}
	defer unix.Close(pfd)
	info, err := fstatInfo(pfd, rel)
	if err != nil {
		return nil, nil, err
	}
	flags := unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOCTTY
	switch info.st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if wantDir {
			return nil, nil, pathErr("open", rel, ErrNotDir)
		}
	case unix.S_IFDIR:
		if !wantDir {
			return nil, nil, pathErr("open", rel, ErrIsDir)
		}
		flags |= unix.O_DIRECTORY
	default:
		return nil, nil, pathErr("open", rel, fmt.Errorf("%w: it is %s", ErrNotRegular, kindOf(info.st.Mode)))
	}
	fd, err := reopen(pfd, flags)
	if err != nil {
		return nil, nil, pathErr("open", rel, err)
	}
	return os.NewFile(uintptr(fd), path.Join(r.name, rel)), info, nil
}

// Open opens a regular file for reading.
func (r *Root) Open(rel string) (*os.File, *Info, error) { return r.openChecked(rel, false) }

// ReadFile reads a regular file of at most limit bytes. The size check
// and the read are on one descriptor, and at most limit+1 bytes are read
// whatever the file grows to.
func (r *Root) ReadFile(rel string, limit int64) ([]byte, error) {
	f, info, err := r.openChecked(rel, false)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if info.Size() > limit {
		return nil, pathErr("read", rel, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, info.Size(), limit))
	}
	buf := make([]byte, 0, info.Size()+1)
	for int64(len(buf)) <= limit {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		room := cap(buf) - len(buf)
		if int64(room) > limit+1-int64(len(buf)) {
			room = int(limit + 1 - int64(len(buf)))
		}
		n, err := f.Read(buf[len(buf) : len(buf)+room])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, pathErr("read", rel, err)
		}
	}
	if int64(len(buf)) > limit {
		return nil, pathErr("read", rel, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit))
	}
	return buf, nil
}

// OpenDir opens a folder beneath the root as a root of its own.
func (r *Root) OpenDir(rel string) (*Root, error) {
	comps, err := Split(rel)
	if err != nil {
		return nil, pathErr("open", rel, err)
	}
	fd, err := resolve(r.fd, comps, unix.O_DIRECTORY)
	if err != nil {
		if errors.Is(err, unix.ENOTDIR) {
			err = ErrNotDir
		}
		return nil, pathErr("open", rel, err)
	}
	return &Root{fd: fd, name: path.Join(r.name, rel)}, nil
}

// ReadDir lists a folder: each entry described by fstatat without
// following links (nothing listed is opened), sorted by name. At most max
// entries are returned (max <= 0: all); more is ErrTooLarge. It stops at
// ctx's end.
func (r *Root) ReadDir(ctx context.Context, rel string, max int) ([]*Info, error) {
	f, _, err := r.openChecked(rel, true)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []*Info
	for {
		if cerr := ctx.Err(); cerr != nil {
			return nil, pathErr("readdir", rel, cerr)
		}
		names, err := f.Readdirnames(256)
		for _, n := range names {
			if max > 0 && len(out) >= max {
				return nil, pathErr("readdir", rel, fmt.Errorf("%w: more than %d entries", ErrTooLarge, max))
			}
			i := &Info{name: n}
			if err := unix.Fstatat(int(f.Fd()), n, &i.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				continue // gone meanwhile
			}
			out = append(out, i)
		}
		if err == io.EOF || (err == nil && len(names) == 0) {
			break
		}
		if err != nil {
			return nil, pathErr("readdir", rel, err)
		}
	}
	sortInfos(out)
	return out, nil
}

func sortInfos(s []*Info) {
	slices.SortFunc(s, func(a, b *Info) int { return strings.Compare(a.name, b.name) })
}

// Readlink reads a symbolic link beneath the root (the link itself).
func (r *Root) Readlink(rel string) (string, error) {
	comps, err := Split(rel)
	if err != nil || len(comps) == 0 {
		return "", pathErr("readlink", rel, errors.Join(err, ErrEscape))
	}
	dir, err := r.OpenDir(path.Join(comps[:len(comps)-1]...))
	if err != nil {
		return "", err
	}
	defer dir.Close()
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(dir.fd, comps[len(comps)-1], buf)
	if err != nil {
		return "", pathErr("readlink", rel, err)
	}
	return string(buf[:n]), nil
}

// Owner is who new files and folders belong to; UID < 0 leaves the
// agent's own.
type Owner struct{ UID, GID int }

// NoOwner keeps what the agent creates owned by the agent.
var NoOwner = Owner{UID: -1, GID: -1}

func (o Owner) chown(fd int) error {
	if o.UID < 0 {
		return nil
	}
	return unix.Fchownat(fd, "", o.UID, o.GID, unix.AT_EMPTY_PATH)
}

// MkdirAll creates the folders of rel that are missing (mode perm, owned
// by o) and fails on a component that is a link or not a folder.
func (r *Root) MkdirAll(rel string, perm fs.FileMode, o Owner) error {
	comps, err := Split(rel)
	if err != nil {
		return pathErr("mkdir", rel, err)
	}
	dir, err := r.mkdirs(comps, perm, o)
	if err != nil {
		return pathErr("mkdir", rel, err)
	}
	unix.Close(dir)
	return nil
}

// mkdirs walks comps from the root, creating what is missing, and
// returns an O_PATH descriptor of the last folder.
func (r *Root) mkdirs(comps []string, perm fs.FileMode, o Owner) (int, error) {
	cur, err := unix.Openat(r.fd, ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	for _, c := range comps {
		created := false
		if err := unix.Mkdirat(cur, c, uint32(perm.Perm())); err == nil {
			created = true
		} else if !errors.Is(err, unix.EEXIST) {
			unix.Close(cur)
			return -1, err
		}
		fd, err := unix.Openat(cur, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, unix.ENOTDIR) {
				var st unix.Stat_t
				if unix.Fstatat(cur, c, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
					err = ErrSymlink
				} else {
					err = ErrNotDir
				}
			}
			unix.Close(cur)
			return -1, err
		}
		unix.Close(cur)
		cur = fd
		if created {
			// mkdir's mode is filtered by the umask; say what was meant
			// (fchmod refuses an O_PATH descriptor; its /proc entry names
			// the same inode).
			if err := unix.Chmod("/proc/self/fd/"+strconv.Itoa(cur), uint32(perm.Perm())); err != nil {
				unix.Close(cur)
				return -1, err
			}
			if err := o.chown(cur); err != nil {
				unix.Close(cur)
				return -1, err
			}
		}
	}
	return cur, nil
}

// WriteOptions say how WriteFile creates its file.
type WriteOptions struct {
	Perm fs.FileMode
	// Owner of the file and of folders MkdirAll creates.
	Owner Owner
	// Mkdir creates missing parent folders (mode DirPerm).
	Mkdir   bool
	DirPerm fs.FileMode
	// Sync fsyncs the file before the rename (crash-safe replacement).
	Sync bool
}

// WriteFile replaces rel with data: a new file is written in rel's
// folder under a temporary name and renamed over rel. Whatever rel was
// (a device node, a FIFO, a link, a hard link to another file) it is
// never opened; a folder there is refused.
func (r *Root) WriteFile(rel string, data []byte, o WriteOptions) error {
	comps, err := Split(rel)
	if err != nil {
		return pathErr("write", rel, err)
	}
	if len(comps) == 0 {
		return pathErr("write", rel, ErrIsDir)
	}
	base := comps[len(comps)-1]
	var dfd int
	if o.Mkdir {
		dp := o.DirPerm
		if dp == 0 {
			dp = 0o755
		}
		dfd, err = r.mkdirs(comps[:len(comps)-1], dp, o.Owner)
	} else {
		dfd, err = resolve(r.fd, comps[:len(comps)-1], unix.O_DIRECTORY)
		if errors.Is(err, unix.ENOTDIR) {
			err = ErrNotDir
		}
	}
	if err != nil {
		return pathErr("write", rel, err)
	}
	defer unix.Close(dfd)
	tmp, err := writeTemp(dfd, data, o)
	if err != nil {
		return pathErr("write", rel, err)
	}
	if err := unix.Renameat(dfd, tmp, dfd, base); err != nil {
		unix.Unlinkat(dfd, tmp, 0)
		if errors.Is(err, unix.EISDIR) || errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
			err = ErrIsDir
		}
		return pathErr("write", rel, err)
	}
	return nil
}

func writeTemp(dfd int, data []byte, o WriteOptions) (string, error) {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := ".bai-tmp-" + hex.EncodeToString(rnd[:])
	fd, err := unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return "", err
	}
	f := os.NewFile(uintptr(fd), tmp)
	_, werr := f.Write(data)
	if werr == nil {
		werr = unix.Fchmod(fd, uint32(o.Perm.Perm()))
	}
	if werr == nil {
		werr = o.Owner.chown(fd)
	}
	if werr == nil && o.Sync {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		unix.Unlinkat(dfd, tmp, 0)
		return "", werr
	}
	return tmp, nil
}

// Walk calls fn for rel and, when it is a folder, for everything beneath
// it, parents before children, names in order. Links, FIFOs and devices
// are reported (never opened or followed); folders deeper than maxDepth
// below rel or holding more than maxEntries entries end the walk with
// ErrTooLarge. fn returning an error ends the walk with that error.
// The walk stops at ctx's end.
func (r *Root) Walk(ctx context.Context, rel string, maxDepth, maxEntries int, fn func(rel string, info *Info) error) error {
	info, err := r.Lstat(rel)
	if err != nil {
		return err
	}
	if err := fn(rel, info); err != nil {
		return err
	}
	if !info.IsDir() {
		return nil
	}
	return r.walkDir(ctx, rel, 1, maxDepth, maxEntries, fn)
}

func (r *Root) walkDir(ctx context.Context, rel string, depth, maxDepth, maxEntries int, fn func(string, *Info) error) error {
	if depth > maxDepth {
		return pathErr("walk", rel, fmt.Errorf("%w: deeper than %d folders", ErrTooLarge, maxDepth))
	}
	ents, err := r.ReadDir(ctx, rel, maxEntries)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return pathErr("walk", rel, err)
		}
		p := path.Join(rel, e.name)
		if err := fn(p, e); err != nil {
			return err
		}
		if e.IsDir() {
			if err := r.walkDir(ctx, p, depth+1, maxDepth, maxEntries, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// OpenRootStrict opens an absolute folder path resolving every component
// from / without following a symbolic link anywhere: for paths the agent
// resolved once (a vfolder's real path) through folders a kernel's user
// may change later (a vfolder sub-folder swapped for a link to a host
// folder). A path that now goes through a link is ErrSymlink.
func OpenRootStrict(dir string) (*Root, error) {
	if !path.IsAbs(dir) {
		return nil, pathErr("open", dir, fmt.Errorf("%w: %q is not absolute", ErrEscape, dir))
	}
	comps, err := Split(strings.TrimPrefix(path.Clean(dir), "/"))
	if err != nil {
		return nil, pathErr("open", dir, err)
	}
	slash, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, pathErr("open", "/", err)
	}
	defer unix.Close(slash)
	fd, err := resolve(slash, comps, unix.O_DIRECTORY)
	if err != nil {
		if errors.Is(err, unix.ENOTDIR) {
			// A link as the last component comes back as ENOTDIR with
			// O_DIRECTORY|O_NOFOLLOW: say what it is.
			var st unix.Stat_t
			if unix.Fstatat(unix.AT_FDCWD, dir, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				err = ErrSymlink
			} else {
				err = ErrNotDir
			}
		}
		return nil, pathErr("open", dir, err)
	}
	return &Root{fd: fd, name: dir}, nil
}

// CheckNoLinks reports an error when an absolute path (a folder or a
// file) now goes through a symbolic link or is one.
func CheckNoLinks(p string) error {
	if !path.IsAbs(p) {
		return pathErr("check", p, fmt.Errorf("%w: %q is not absolute", ErrEscape, p))
	}
	comps, err := Split(strings.TrimPrefix(path.Clean(p), "/"))
	if err != nil {
		return pathErr("check", p, err)
	}
	slash, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return pathErr("open", "/", err)
	}
	defer unix.Close(slash)
	fd, err := resolve(slash, comps, 0)
	if err != nil {
		return pathErr("check", p, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return pathErr("check", p, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return pathErr("check", p, ErrSymlink)
	}
	return nil
}

// parentOf resolves the folder holding rel's last component and returns
// it (O_PATH|O_DIRECTORY) with that component's name.
func (r *Root) parentOf(op, rel string) (int, string, error) {
	comps, err := Split(rel)
	if err != nil {
		return -1, "", pathErr(op, rel, err)
	}
	if len(comps) == 0 {
		return -1, "", pathErr(op, rel, ErrIsDir)
	}
	dfd, err := resolve(r.fd, comps[:len(comps)-1], unix.O_DIRECTORY)
	if err != nil {
		if errors.Is(err, unix.ENOTDIR) {
			// O_DIRECTORY|O_NOFOLLOW says ENOTDIR for a link too: say
			// which it is.
			err = ErrNotDir
			if fd, lerr := resolve(r.fd, comps[:len(comps)-1], 0); lerr == nil {
				var st unix.Stat_t
				if unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
					err = ErrSymlink
				}
				unix.Close(fd)
			}
		}
		return -1, "", pathErr(op, rel, err)
	}
	return dfd, comps[len(comps)-1], nil
}

// Remove unlinks rel, which must not be a folder. Whatever rel is (a
// link, a FIFO, a device node) only its name is removed: nothing is
// opened or followed.
func (r *Root) Remove(rel string) error {
	dfd, base, err := r.parentOf("remove", rel)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	if err := unix.Unlinkat(dfd, base, 0); err != nil {
		if errors.Is(err, unix.EISDIR) {
			err = ErrIsDir
		}
		return pathErr("remove", rel, err)
	}
	return nil
}

// OpenOrCreate opens the regular file rel for reading, first creating it
// empty with perm when it does not exist (O_CREAT|O_EXCL|O_NOFOLLOW, so
// an existing name is never opened by the create). Like Open, anything
// but a regular file is refused without being opened. It is meant for
// lock files shared with other programs (flock on the descriptor).
func (r *Root) OpenOrCreate(rel string, perm fs.FileMode) (*os.File, error) {
	for range 3 {
		f, _, err := r.openChecked(rel, false)
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			return f, err
		}
		dfd, base, err := r.parentOf("create", rel)
		if err != nil {
			return nil, err
		}
		fd, err := unix.Openat(dfd, base, unix.O_RDONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, uint32(perm.Perm()))
		unix.Close(dfd)
		switch {
		case err == nil:
			return os.NewFile(uintptr(fd), path.Join(r.name, rel)), nil
		case errors.Is(err, unix.EEXIST):
			continue // made meanwhile by someone else: open theirs
		default:
			return nil, pathErr("create", rel, err)
		}
	}
	return nil, pathErr("create", rel, unix.EEXIST)
}
