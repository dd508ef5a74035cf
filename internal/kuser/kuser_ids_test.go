package kuser

import "testing"

// FromPasswd promises "never root", but takes any positive int: uid_t is
// 32 bits, so 4294967296 (2^32) is uid 0 to setuid(2), fchown(2) and
// setgroups(2), and 4294967295 is (uid_t)-1, which setuid/setgid refuse
// (the entrypoint then logs and keeps running as root / gid 0). An image
// whose work user has such an id (a committed image of a sudo session,
// an image pushed by a user) runs user code as root with LOCAL_USER_ID
// "4294967296" and every check (uid != 0) passing.
func TestFromPasswdRefusesIDsBeyondUIDT(t *testing.T) {
	for _, passwd := range []string{
		"work:x:4294967296:4294967296::/home/work:/bin/sh\n", // truncates to 0:0
		"work:x:4294967295:4294967295::/home/work:/bin/sh\n", // (uid_t)-1: setuid fails
		"work:x:1000:4294967296::/home/work:/bin/sh\n",       // gid 0
	} {
		u, g := FromPasswd([]byte(passwd))
		if u < 1 || u >= 1<<32-1 || g < 1 || g >= 1<<32-1 {
			t.Errorf("FromPasswd(%q) = %d:%d: not a valid non-root uid_t/gid_t (as the kernel takes it: %d:%d)", passwd, u, g, uint32(u), uint32(g))
		}
	}
}
