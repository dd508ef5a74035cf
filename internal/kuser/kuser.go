package kuser

import (
	"strconv"
	"strings"
)

// Default is the uid and gid when the image has no "work" user.
const Default = 1000

// PasswdLimit bounds the passwd file read from an image.
const PasswdLimit = 1 << 20

// FromPasswd returns the uid and primary gid of the "work" entry of an
// /etc/passwd, or Default for both when there is none (or it is root).
func FromPasswd(passwd []byte) (uid, gid int) {
	for _, l := range strings.Split(string(passwd), "\n") {
		f := strings.Split(l, ":")
		if len(f) < 4 || f[0] != "work" {
			continue
		}
		u, err1 := strconv.Atoi(f[2])
		g, err2 := strconv.Atoi(f[3])
		if err1 == nil && err2 == nil && u > 0 && g > 0 {
			return u, g
		}
	}
	return Default, Default
}
