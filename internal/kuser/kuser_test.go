package kuser

import "testing"

func TestFromPasswd(t *testing.T) {
	for _, tc := range []struct {
		name, passwd string
		uid, gid     int
	}{
		{"empty", "", 1000, 1000},
		{"work user", "root:x:0:0::/root:/bin/sh\nwork:x:1001:1002::/home/work:/bin/sh\n", 1001, 1002},
		{"work is root", "work:x:0:0::/home/work:/bin/sh\n", 1000, 1000},
		{"garbage", "work:x:abc:1\nwork", 1000, 1000},
		{"other users only", "ubuntu:x:1000:1000::/home/ubuntu:/bin/sh\n", 1000, 1000},
	} {
		if u, g := FromPasswd([]byte(tc.passwd)); u != tc.uid || g != tc.gid {
			t.Errorf("%s: %d:%d, want %d:%d", tc.name, u, g, tc.uid, tc.gid)
		}
	}
}
