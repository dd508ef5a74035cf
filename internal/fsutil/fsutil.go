package fsutil

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// WriteFileAtomic writes via a synced temporary file in the same folder
// and a rename, so a SIGKILL or power loss leaves either the old or the
// new content, never a torn file.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	_, werr := tmp.Write(data)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if werr != nil || serr != nil || cerr != nil {
		os.Remove(name)
		return fmt.Errorf("write %s: %v %v %v", path, werr, serr, cerr)
	}
	if err := os.Chmod(name, mode); err != nil {
		os.Remove(name)
		return err
	}
	if err := os.Rename(name, path); err != nil {
		os.Remove(name)
		return err
	}
	return nil
}

// MountPoints lists the mount points of this process's mount namespace
// (/proc/self/mounts), in table order.
func MountPoints() ([]string, error) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) >= 2 {
			out = append(out, UnescapeMount(fields[1]))
		}
	}
	return out, sc.Err()
}

var mountEscapes = strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)

// UnescapeMount undoes the kernel's octal escapes in a mount table path.
func UnescapeMount(s string) string { return mountEscapes.Replace(s) }
