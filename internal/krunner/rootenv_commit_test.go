package krunner

import (
	"strings"
	"testing"
)

// RootEnv once trusted every variable not named in environ.txt as the image's
// own. A committed session's image ENV is the old container's environment,
// the old request's environ included, so a second session that does not
// name PATH/LD_LIBRARY_PATH/BASH_ENV gets the first request's values in
// the root phase. (Integration: TestCommittedSessionEnvironCannotHijackRootPhase_Integration.)
func TestRootEnvDistrustsCommittedRequestEnv(t *testing.T) {
	// docker commit of session 1 (request PATH etc.), then session 2's
	// container env: image ENV + session 2's agent variables.
	container := []string{
		"PATH=/home/work/.bin:/usr/bin:/bin",
		"LD_LIBRARY_PATH=/home/work/.lib",
		"BASH_ENV=/home/work/.rc",
		"LOCAL_USER_ID=1234", "LOCAL_GROUP_ID=1234", "BACKENDAI_SESSION_ID=s2",
	}
	for _, kv := range RootEnv(container, SafeRootDir) {
		k, v, _ := strings.Cut(kv, "=")
		if strings.Contains(v, "/home/work") {
			t.Errorf("root phase gets %s=%s: a folder the kernel user writes chooses what runs as root", k, v)
		}
	}
}
