package app

import (
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// raiseOpenFiles runs in a child process (the limits are process-wide):
// started with a soft limit below the hard one it lifts the soft limit to
// the hard one; with a hard limit below minOpenFiles it says so.
func TestRaiseOpenFiles(t *testing.T) {
	if os.Getenv("BAI_RLIMIT_CHILD") == "1" {
		var buf bytes.Buffer
		raiseOpenFiles(slog.New(slog.NewTextHandler(&buf, nil)))
		var lim unix.Rlimit
		_ = unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
		os.Stdout.WriteString(buf.String())
		if lim.Cur != lim.Max {
			os.Stdout.WriteString("NOT RAISED\n")
		}
		return
	}
	for _, tc := range []struct {
		name, ulimit string
		want         []string
	}{
		{"low hard limit", "ulimit -Sn 512 && ulimit -Hn 4096", []string{"soft=4096", "hard=4096", "level=WARN", "LimitNOFILE"}},
		// The machine's own hard limit: the soft one is lifted to it,
		// at INFO or WARN by that hard limit.
		{"soft below hard", "ulimit -Sn 1024", machineHard()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command("sh", "-c", tc.ulimit+`; exec "$0" -test.run '^TestRaiseOpenFiles$'`, os.Args[0])
			cmd.Env = append(os.Environ(), "BAI_RLIMIT_CHILD=1")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(string(out), "NOT RAISED") {
				t.Errorf("soft limit not raised:\n%s", out)
			}
		})
	}
}

// machineHard is what raiseOpenFiles must log under this process's own
// hard limit (which the child inherits).
func machineHard() []string {
	var lim unix.Rlimit
	_ = unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	h := strconv.FormatUint(lim.Max, 10)
	if lim.Max < minOpenFiles {
		return []string{"level=WARN", "soft=" + h, "hard=" + h}
	}
	return []string{"level=INFO", "soft=" + h, "hard=" + h}
}
