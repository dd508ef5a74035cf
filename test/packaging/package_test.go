package packaging

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bai-agent/bai-agent/internal/testutil"
)

// TestDebInstallRemove builds the packages, installs the .deb with
// dpkg -i, checks what it put on the machine (binary, units that
// systemd-analyze accepts, a config that loads, man pages), and purges
// it, leaving none of its files behind.
func TestDebInstallRemove(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tool := range []string{"dpkg", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.Missing(t, "%s", tool)
		}
	}
	// Never touch an operator's install; under CI=true that is a failure
	// (a CI machine is fresh), elsewhere a skip.
	stop := t.Skipf
	if testutil.Required() {
		stop = t.Fatalf
	}
	if exec.Command("dpkg", "-s", "bai-agent").Run() == nil {
		stop("a bai-agent package is already installed on this machine; not touching it")
	}
	if _, err := os.Stat("/etc/backend.ai/agent.toml"); err == nil {
		stop("/etc/backend.ai/agent.toml exists (an operator's config); the package test would replace it")
	}
	root, _ := filepath.Abs("../..")
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = root
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out.String())
		}
		return out.String()
	}
	run("make", "package")
	debs, _ := filepath.Glob(filepath.Join(root, "dist", "bai-agent_*_amd64.deb"))
	rpms, _ := filepath.Glob(filepath.Join(root, "dist", "bai-agent-*.x86_64.rpm"))
	if len(debs) != 1 || len(rpms) != 1 {
		t.Fatalf("dist: debs %v rpms %v", debs, rpms)
	}
	if b, err := os.ReadFile(rpms[0]); err != nil || !bytes.HasPrefix(b, []byte{0xed, 0xab, 0xee, 0xdb}) {
		t.Fatalf("%s is not an RPM (lead magic): %v", rpms[0], err)
	}
	info := run("dpkg-deb", "-I", debs[0])
	for _, want := range []string{"Package: bai-agent", "Depends: libzmq5", "conffiles"} {
		if !strings.Contains(info, want) {
			t.Fatalf("control lacks %q:\n%s", want, info)
		}
	}

	run("dpkg", "-i", debs[0])
	// Reinstalling the same version runs the upgrade path of the
	// maintainer scripts (prerm "upgrade", postinst try-restart); a
	// failing script fails dpkg.
	run("dpkg", "-i", debs[0])
	t.Cleanup(func() { _ = exec.Command("dpkg", "-P", "bai-agent").Run() })
	files := []string{
		"/usr/bin/bai-agent",
		"/usr/bin/bai-krunner",
		"/lib/systemd/system/backendai-agent.service",
		"/lib/systemd/system/backendai-agent-watcher.service",
		"/etc/backend.ai/agent.toml",
		"/usr/share/man/man1/bai-agent.1.gz",
		"/usr/share/man/man1/bai-agent-watcher.1.gz",
	}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("not installed: %v", err)
		}
	}
	if out := run("/usr/bin/bai-agent", "version"); !strings.HasPrefix(out, "bai-agent ") {
		t.Fatalf("installed binary: %q", out)
	}
	if out := run("/usr/bin/bai-agent", "config", "check", "/etc/backend.ai/agent.toml"); !strings.Contains(out, ": ok") {
		t.Fatalf("installed config: %s", out)
	}
	unit, _ := os.ReadFile("/lib/systemd/system/backendai-agent.service")
	for _, want := range []string{"KillMode=process", "Restart=on-failure", "LimitNOFILE=", "ExecStart=/usr/bin/bai-agent start-server -f /etc/backend.ai/agent.toml"} {
		if !strings.Contains(string(unit), want) {
			t.Fatalf("agent unit lacks %q", want)
		}
	}
	if _, err := exec.LookPath("systemd-analyze"); err == nil {
		run("systemd-analyze", "verify", files[2], files[3])
	} else {
		t.Log("systemd-analyze not installed: units checked by content only")
	}

	run("dpkg", "-P", "bai-agent")
	for _, f := range append(files, "/etc/backend.ai") {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s left after purge: %v", f, err)
		}
	}
}
