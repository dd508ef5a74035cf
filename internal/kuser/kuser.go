package kuser

import (
	"fmt"
	"strconv"
	"strings"
)

// Default is the uid and gid when the image has no "work" user.
const Default = 1000

// PasswdLimit bounds the passwd file read from an image.
const PasswdLimit = 1 << 20

// MaxID is the largest valid uid or gid: uid_t and gid_t are 32 bits, and
// 4294967295 is (uid_t)-1, which setuid(2) refuses. A larger number is not
// an id: the kernel would truncate 4294967296 to 0 (root).
const MaxID = 1<<32 - 2

// ParseID reads a uid or gid: a decimal in 0..MaxID.
func ParseID(s string) (int, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n > MaxID {
		return 0, fmt.Errorf("%q is not a uid or gid (0-%d)", s, MaxID)
	}
	return int(n), nil
}

// ValidID reports whether n is a uid or gid.
func ValidID(n int) bool { return n >= 0 && n <= MaxID }

// FromPasswd returns the uid and primary gid of the "work" entry of an
// /etc/passwd, or Default for both when there is none (or it is root).
func FromPasswd(passwd []byte) (uid, gid int) {
	for _, l := range strings.Split(string(passwd), "\n") {
		f := strings.Split(l, ":")
		if len(f) < 4 || f[0] != "work" {
			continue
		}
		u, err1 := ParseID(f[2])
		g, err2 := ParseID(f[3])
		if err1 == nil && err2 == nil && u > 0 && g > 0 {
			return u, g
		}
	}
	return Default, Default
}
