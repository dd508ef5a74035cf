package watcher

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/bai-agent/bai-agent/internal/fsutil"

	"golang.org/x/sys/unix"
)

// MountRequest is the body of POST and DELETE /mounts, as the manager
// sends it.
type MountRequest struct {
	Name       string `json:"name"`
	FSLocation string `json:"fs_location"`
	FSType     string `json:"fs_type"`
	Options    string `json:"options"`
	EditFstab  bool   `json:"edit_fstab"`
	FstabPath  string `json:"fstab_path"`
}

// errBadRequest marks input errors (HTTP 400).
var errBadRequest = errors.New("bad request")

// mountPoint is prefix/name, refusing names that leave prefix.
func mountPoint(prefix, name string) (string, error) {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return "", fmt.Errorf("%w: name %q must be one path element", errBadRequest, name)
	}
	return filepath.Join(prefix, name), nil
}

// mountFlags are the options mount(8) turns into flags; the rest are
// passed to the filesystem as data.
var mountFlags = map[string]uintptr{
	"ro": unix.MS_RDONLY, "nosuid": unix.MS_NOSUID, "nodev": unix.MS_NODEV, "noexec": unix.MS_NOEXEC,
	"sync": unix.MS_SYNCHRONOUS, "noatime": unix.MS_NOATIME, "nodiratime": unix.MS_NODIRATIME,
	"relatime": unix.MS_RELATIME, "bind": unix.MS_BIND, "rbind": unix.MS_BIND | unix.MS_REC,
}

func splitOptions(opts string) (uintptr, string) {
	var flags uintptr
	var data []string
	for _, o := range strings.Split(opts, ",") {
		o = strings.TrimSpace(o)
		switch {
		case o == "" || o == "defaults" || o == "rw" || o == "auto" || o == "nofail" || o == "_netdev":
		case mountFlags[o] != 0:
			flags |= mountFlags[o]
		default:
			data = append(data, o)
		}
	}
	return flags, strings.Join(data, ",")
}

// Mount creates the mount point under prefix and mounts the request
// there with mount(2), then, when asked, records it in the fstab.
func Mount(prefix string, r MountRequest) (string, error) {
	mp, err := mountPoint(prefix, r.Name)
	if err != nil {
		return "", err
	}
	if r.FSLocation == "" || r.FSType == "" {
		return "", fmt.Errorf("%w: fs_location and fs_type are required", errBadRequest)
	}
	if r.EditFstab {
		if err := checkFstabPath(fstabPath(r.FstabPath)); err != nil {
			return "", err // before anything is mounted
		}
	}
	created := false
	if err := os.Mkdir(mp, 0o755); err == nil {
		created = true
	} else if !os.IsExist(err) {
		return "", fmt.Errorf("mount point %s: %w", mp, err)
	}
	flags, data := splitOptions(r.Options)
	if err := unix.Mount(r.FSLocation, mp, r.FSType, flags, data); err != nil {
		if created {
			_ = os.Remove(mp)
		}
		return "", fmt.Errorf("mount %s on %s (%s): %w", r.FSLocation, mp, r.FSType, err)
	}
	if flags&unix.MS_BIND != 0 && flags&unix.MS_RDONLY != 0 {
		// A bind mount ignores MS_RDONLY until remounted.
		_ = unix.Mount("", mp, "", flags|unix.MS_REMOUNT, "")
	}
	if r.EditFstab {
		opts := r.Options
		if opts == "" {
			opts = "defaults"
		}
		line := fmt.Sprintf("%s %s %s %s 0 0", r.FSLocation, mp, r.FSType, opts)
		if err := editFstab(fstabPath(r.FstabPath), func(lines []string) []string { return append(lines, line) }); err != nil {
			_ = unix.Unmount(mp, 0)
			if created {
				_ = os.Remove(mp)
			}
			return "", err
		}
	}
	return "", nil
}

// Unmount unmounts prefix/name, removes the folder if it is empty, and,
// when asked, removes its fstab lines.
func Unmount(prefix string, r MountRequest) (string, error) {
	mp, err := mountPoint(prefix, r.Name)
	if err != nil {
		return "", err
	}
	if r.EditFstab {
		if err := checkFstabPath(fstabPath(r.FstabPath)); err != nil {
			return "", err // before anything is unmounted
		}
	}
	if err := unix.Unmount(mp, 0); err != nil {
		return "", fmt.Errorf("umount %s: %w", mp, err)
	}
	_ = os.Remove(mp) // only when empty
	if r.EditFstab {
		return "", editFstab(fstabPath(r.FstabPath), func(lines []string) []string {
			out := lines[:0]
			for _, l := range lines {
				if f := strings.Fields(l); len(f) >= 2 && !strings.HasPrefix(f[0], "#") && f[1] == mp {
					continue
				}
				out = append(out, l)
			}
			return out
		})
	}
	return "", nil
}

func fstabPath(p string) string {
	if p == "" {
		return "/etc/fstab"
	}
	return p
}

// checkFstabPath refuses paths that are not an fstab: the API reads and
// rewrites the file it names, so it must not name just any file.
func checkFstabPath(p string) error {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p || !strings.Contains(filepath.Base(p), "fstab") {
		return fmt.Errorf("%w: fstab_path %q must be an absolute, clean path to a file named *fstab*", errBadRequest, p)
	}
	return nil
}

// maxFstab bounds an fstab the API reads (real ones are a few KiB).
const maxFstab = 1 << 20

// readFstab reads an fstab without following a link as its last
// component, without blocking on a FIFO and only if it is a regular file
// owned by root (or the watcher's own user) of at most maxFstab bytes: the watcher runs as root and
// its API names the file, so a link named fstab in a folder a kernel (or
// a host user) can write must not make it read /etc/shadow.
func readFstab(p string) ([]byte, os.FileMode, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			err = fmt.Errorf("%w: %s is a symbolic link", errBadRequest, p)
		}
		return nil, 0, fmt.Errorf("fstab: %w", err)
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, 0, fmt.Errorf("fstab: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || (st.Uid != 0 && int(st.Uid) != os.Geteuid()) {
		return nil, 0, fmt.Errorf("%w: %s is not a regular file owned by root", errBadRequest, p)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFstab+1))
	if err != nil {
		return nil, 0, fmt.Errorf("fstab: %w", err)
	}
	if len(b) > maxFstab {
		return nil, 0, fmt.Errorf("%w: %s is over %d bytes", errBadRequest, p, maxFstab)
	}
	return b, os.FileMode(st.Mode & 0o7777).Perm(), nil
}

// editFstab rewrites path through edit: the old content is copied to
// path.bak, the new one written to a temporary file in the same folder,
// synced, and renamed over path.
func editFstab(path string, edit func([]string) []string) error {
	if err := checkFstabPath(path); err != nil {
		return err
	}
	old, perm, err := readFstab(path)
	if err != nil {
		return err
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(old))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	lines = edit(lines)
	if err := fsutil.WriteFileAtomic(path+".bak", old, perm); err != nil {
		return fmt.Errorf("fstab backup: %w", err)
	}
	body := strings.Join(lines, "\n")
	if body != "" {
		body += "\n"
	}
	if err := fsutil.WriteFileAtomic(path, []byte(body), perm); err != nil {
		return fmt.Errorf("fstab: %w", err)
	}
	return nil
}

// ListMounts is the sorted mount points directly under prefix.
func ListMounts(prefix string) ([]string, error) {
	all, err := fsutil.MountPoints()
	if err != nil {
		return nil, err
	}
	return mountsUnder(all, filepath.Clean(prefix)), nil
}

// mountsUnder keeps the mount points whose parent is prefix, once each.
func mountsUnder(all []string, prefix string) []string {
	var out []string
	for _, mp := range all {
		if filepath.Dir(mp) == prefix && !slices.Contains(out, mp) {
			out = append(out, mp)
		}
	}
	sort.Strings(out)
	return out
}
