package krunner

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/bai-agent/bai-agent/internal/testutil"
)

// ParseIdentity takes any non-negative int as a uid/gid, but uid_t and
// gid_t are 32 bits: LOCAL_USER_ID=4294967296 passes the entrypoint's
// "id.UID != 0" test, SetupUser writes work:x:4294967296, and setuid(2)
// takes it as 0. 4294967295 is (uid_t)-1: setgroups/setgid/setuid fail
// with EINVAL, which the entrypoint logs and goes on, as root or gid 0.
// The ids come from the manager's uid/main_gid/supplementary_gids (no
// range check in the agent) or the image's work user (kuser.FromPasswd).
func TestParseIdentityRefusesIDsBeyondUIDT(t *testing.T) {
	for _, tc := range []map[string]string{
		{"LOCAL_USER_ID": "4294967296", "LOCAL_GROUP_ID": "1000"},
		{"LOCAL_USER_ID": "1000", "LOCAL_GROUP_ID": "4294967296"},
		{"LOCAL_USER_ID": "4294967295", "LOCAL_GROUP_ID": "1000"},
		{"LOCAL_USER_ID": "1000", "LOCAL_GROUP_ID": "1000", "ADDITIONAL_GIDS": "4294967296"},
	} {
		id, err := ParseIdentity(func(k string) string { return tc[k] })
		if err == nil {
			t.Errorf("ParseIdentity(%v) = %+v, no error: not a valid uid_t/gid_t (the kernel takes %d:%d)", tc, id, uint32(id.UID), uint32(id.GID))
		}
	}
}

// What the entrypoint does with such an id, in a child process (setuid
// changes every thread): it checks id.UID != 0, calls setuid(id.UID),
// and the kernel user's code runs as uid 0.
func TestSetuidOfParsedIDNeverRoot(t *testing.T) {
	if os.Getenv("BAI_TEST_SETUID_HELPER") == "1" {
		env := map[string]string{"LOCAL_USER_ID": "4294967296", "LOCAL_GROUP_ID": "4294967296"}
		id, err := ParseIdentity(func(k string) string { return env[k] })
		if err != nil || id.UID == 0 {
			fmt.Println("refused")
			return
		}
		_ = syscall.Setgroups([]int{id.GID})
		_ = syscall.Setgid(id.GID)
		if err := syscall.Setuid(id.UID); err != nil {
			fmt.Println("setuid error:", err)
		}
		fmt.Printf("uid=%d gid=%d\n", os.Getuid(), os.Getgid())
		return
	}
	testutil.RequireRoot(t) // the entrypoint's root phase
	cmd := exec.Command(os.Args[0], "-test.run=^TestSetuidOfParsedIDNeverRoot$", "-test.count=1")
	cmd.Env = append(os.Environ(), "BAI_TEST_SETUID_HELPER=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "uid=0 ") || strings.Contains(string(out), "gid=0\n") {
		t.Fatalf("LOCAL_USER_ID=LOCAL_GROUP_ID=4294967296: the entrypoint's id.UID != 0 check passed and setuid/setgid left the kernel user as root:\n%s", out)
	}
}
