package volumes

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/bai-agent/bai-agent/internal/fsutil"
)

// DefaultFstab is the fstab upstream edits when the event names none.
const DefaultFstab = "/etc/fstab"

// ErrBadFstabPath marks an fstab_path the agent refuses to rewrite.
var ErrBadFstabPath = errors.New("refused fstab_path")

// FstabEntry is one mount line of an fstab: device, mount point, type,
// options ("defaults" when empty), dump and pass (both 0 as upstream
// writes them).
type FstabEntry struct {
	Device, MountPoint, FSType, Options string
}

// String is the line as written: fields separated by single spaces, with
// spaces in paths escaped as \040 (fstab(5)).
func (e FstabEntry) String() string {
	opts := e.Options
	if opts == "" {
		opts = "defaults"
	}
	return fmt.Sprintf("%s %s %s %s 0 0", escape(e.Device), escape(e.MountPoint), e.FSType, opts)
}

// fstabFields splits a mount line; comments and blank lines have none.
func fstabFields(line string) []string {
	t := strings.TrimSpace(line)
	if t == "" || strings.HasPrefix(t, "#") {
		return nil
	}
	return strings.Fields(t)
}

// AddFstabEntry appends e to content unless a mount line for the same
// device exists already (upstream's rule). Every other byte is kept; a
// last line without a newline gets one first. It reports whether content
// changed.
func AddFstabEntry(content string, e FstabEntry) (string, bool) {
	for _, line := range strings.Split(content, "\n") {
		if f := fstabFields(line); len(f) >= 1 && Unescape(f[0]) == e.Device {
			return content, false
		}
	}
	if content != "" && !strings.HasSuffix(content, "\n") {
		content += "\n"
	}
	return content + e.String() + "\n", true
}

// RemoveFstabMountPoint drops every mount line whose mount point is
// mountPoint (compared unescaped and cleaned) and keeps every other byte.
// It reports whether content changed.
func RemoveFstabMountPoint(content, mountPoint string) (string, bool) {
	mountPoint = filepath.Clean(mountPoint)
	lines := strings.SplitAfter(content, "\n")
	out := lines[:0]
	changed := false
	for _, line := range lines {
		if f := fstabFields(line); len(f) >= 2 && filepath.Clean(Unescape(f[1])) == mountPoint {
			changed = true
			continue
		}
		out = append(out, line)
	}
	return strings.Join(out, ""), changed
}

// CheckFstabPath refuses paths that are not an fstab. Upstream opens
// whatever path the event names (default /etc/fstab); the agent, running
// as root, rewrites only an absolute, clean path whose file name contains
// "fstab" and that is a regular file already (the same rule as the
// watcher's /mounts API), so an event cannot make it rewrite an arbitrary
// file.
func CheckFstabPath(p string) error {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p || !strings.Contains(filepath.Base(p), "fstab") {
		return fmt.Errorf("%w: %q must be an absolute, clean path to a file named *fstab*", ErrBadFstabPath, p)
	}
	st, err := os.Lstat(p)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadFstabPath, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%w: %q is not a regular file", ErrBadFstabPath, p)
	}
	return nil
}

// fstabMu serialises this process's fstab edits; the flock on the
// folder serialises them with other processes that take it (the rename
// replaces the file's inode, so a lock on the file itself would not).
var fstabMu sync.Mutex

// EditFstab rewrites the fstab at path through edit, holding a lock, via
// a synced temporary file in the same folder and a rename (the mode is
// kept). Nothing is written when edit reports no change.
func EditFstab(path string, edit func(string) (string, bool)) error {
	if path == "" {
		path = DefaultFstab
	}
	if err := CheckFstabPath(path); err != nil {
		return err
	}
	fstabMu.Lock()
	defer fstabMu.Unlock()
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("fstab: %w", err)
	}
	defer dir.Close()
	if err := unix.Flock(int(dir.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("fstab lock: %w", err)
	}
	defer unix.Flock(int(dir.Fd()), unix.LOCK_UN) //nolint:errcheck // closing releases it too
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("fstab: %w", err)
	}
	old, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("fstab: %w", err)
	}
	body, changed := edit(string(old))
	if !changed {
		return nil
	}
	if err := fsutil.WriteFileAtomic(path, []byte(body), st.Mode().Perm()); err != nil {
		return fmt.Errorf("fstab: %w", err)
	}
	return nil
}
