package volumes

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// MountInfoPath is the mount table of the agent's own mount namespace.
const MountInfoPath = "/proc/self/mountinfo"

// MountInfo is one line of /proc/<pid>/mountinfo (proc(5)), with the
// kernel's octal escapes undone.
type MountInfo struct {
	ID, ParentID int
	Root         string
	MountPoint   string
	Options      string
	FSType       string
	Source       string
	SuperOptions string
}

// ParseMountInfo reads a mountinfo table. A line without the " - "
// separator or with too few fields is an error: the kernel never writes
// one, so the input is not a mount table.
func ParseMountInfo(r io.Reader) ([]MountInfo, error) {
	var out []MountInfo
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			return nil, fmt.Errorf("mountinfo line %d: no \" - \" separator", n)
		}
		f := strings.Fields(pre)
		g := strings.Fields(post)
		if len(f) < 6 || len(g) < 2 {
			return nil, fmt.Errorf("mountinfo line %d: too few fields", n)
		}
		var m MountInfo
		if _, err := fmt.Sscanf(f[0]+" "+f[1], "%d %d", &m.ID, &m.ParentID); err != nil {
			return nil, fmt.Errorf("mountinfo line %d: %v", n, err)
		}
		m.Root, m.MountPoint, m.Options = Unescape(f[3]), Unescape(f[4]), f[5]
		m.FSType, m.Source = Unescape(g[0]), Unescape(g[1])
		if len(g) > 2 {
			m.SuperOptions = g[2]
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// Unescape undoes the kernel's mount-table escapes: a backslash and three
// octal digits (\040 space, \011 tab, \012 newline, \134 backslash).
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// escape is the inverse of Unescape for the characters that would split
// a mount table or fstab field.
func escape(s string) string {
	return strings.NewReplacer(`\`, `\134`, " ", `\040`, "\t", `\011`, "\n", `\012`).Replace(s)
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// IsMounted tells whether path is a mount point in the table at
// mountinfo (MountInfoPath when empty). path is compared cleaned; no
// filesystem under it is touched.
func IsMounted(mountinfo, path string) (bool, error) {
	if mountinfo == "" {
		mountinfo = MountInfoPath
	}
	f, err := os.Open(mountinfo)
	if err != nil {
		return false, err
	}
	defer f.Close()
	all, err := ParseMountInfo(f)
	if err != nil {
		return false, err
	}
	path = filepath.Clean(path)
	for _, m := range all {
		if m.MountPoint == path {
			return true, nil
		}
	}
	return false, nil
}
