package ctl_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/crypto/ssh"

	"github.com/bai-agent/bai-agent/internal/testutil"
)

type agentProc struct {
	bin, cfg, vfroot, addr string
}

func startAgentBinary(t *testing.T, extra string) *agentProc {
	t.Helper()
	testutil.RequireDocker(t)
	testutil.RequireRoot(t)
	dir := t.TempDir()
	bin := testutil.AgentBinary(t)
	port := testutil.FreePort(t)
	vfroot := filepath.Join(dir, "vfroot")
	_ = os.MkdirAll(filepath.Join(vfroot, "data"), 0o755)
	cfg := filepath.Join(dir, "agent.toml")
	id := "i-ctl-" + uuid.NewString()[:8]
	doc := fmt.Sprintf("[agent]\nbackend=\"docker\"\nid=%q\nrpc-listen-addr=\"127.0.0.1:%d\"\ncontrol-plane=\"none\"\ninternal-addr=\"127.0.0.1:0\"\nmount-path=%q\n%s\n[container]\nport-range=[29300,29399]\nport-reuse-cooldown-sec=0\nbind-host=\"127.0.0.1\"\nscratch-root=%q\n[resource]\nreserved-cpu=0\nreserved-mem=\"64M\"\n",
		id, port, vfroot, extra, filepath.Join(dir, "scratch"))
	if err := os.WriteFile(cfg, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "start-server", "-f", cfg)
	logf, _ := os.Create(filepath.Join(dir, "agent.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &agentProc{bin: bin, cfg: cfg, vfroot: vfroot, addr: fmt.Sprintf("tcp://127.0.0.1:%d", port)}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		testutil.RemoveContainers(t, map[string]string{"ai.backend.owner": id})
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
			t.Logf("agent log:\n%s", b)
		}
	})
	return p
}

func (p *agentProc) run(t *testing.T, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command(p.bin, args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

func (p *agentProc) ctl(t *testing.T, want int, args ...string) string {
	t.Helper()
	code, out := p.run(t, append([]string{"ctl", "-f", p.cfg}, args...)...)
	if code != want {
		t.Fatalf("ctl %v: exit %d, want %d:\n%s", args, code, want, out)
	}
	return out
}

func TestCtlRoundTrip_Integration(t *testing.T) {
	// create keeps each kernel's SSH key under $XDG_STATE_HOME.
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	img := testutil.TestImage(t)
	p := startAgentBinary(t, "")
	testutil.Eventually(t, 30*time.Second, "agent answers", func() bool {
		code, _ := p.run(t, "ctl", "-f", p.cfg, "ping")
		return code == 0
	})
	if out := p.ctl(t, 0, "info"); !strings.Contains(out, "SLOT") || !strings.Contains(out, "mem") {
		t.Fatalf("info:\n%s", out)
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(p.ctl(t, 0, "--json", "info")), &info); err != nil || info["agent_id"] == nil {
		t.Fatalf("info --json: %v %v", err, info)
	}
	if out := p.ctl(t, 0, "images"); !strings.Contains(out, img) {
		t.Fatalf("images lacks %s:\n%s", img, out)
	}
	if err := os.WriteFile(filepath.Join(p.vfroot, "data", "in.txt"), []byte("from vfolder"), 0o644); err != nil {
		t.Fatal(err)
	}
	var created []map[string]any
	out := p.ctl(t, 0, "--json", "create", "--image", img, "--cpu", "1", "--mem", "128m", "--shm", "16m",
		"--mount", filepath.Join(p.vfroot, "data")+":/home/work/data:ro", "--env", "HELLO=world")
	if err := json.Unmarshal([]byte(out), &created); err != nil || len(created) != 1 {
		t.Fatalf("create --json: %v\n%s", err, out)
	}
	kid := created[0]["id"].(string)
	if out := p.ctl(t, 0, "ls"); !strings.Contains(out, kid) || !strings.Contains(out, "running") {
		t.Fatalf("ls:\n%s", out)
	}
	// cp up (a directory), then down again by id prefix.
	src := t.TempDir()
	_ = os.MkdirAll(filepath.Join(src, "proj", "sub"), 0o755)
	_ = os.WriteFile(filepath.Join(src, "proj", "sub", "a.txt"), []byte("alpha"), 0o644)
	p.ctl(t, 0, "cp", filepath.Join(src, "proj"), kid[:8]+":")
	dst := t.TempDir()
	p.ctl(t, 0, "cp", kid[:8]+":proj", dst)
	if b, err := os.ReadFile(filepath.Join(dst, "proj", "sub", "a.txt")); err != nil || string(b) != "alpha" {
		t.Fatalf("round trip through cp: %q %v", b, err)
	}
	p.ctl(t, 0, "cp", kid+":data/in.txt", dst)
	if b, _ := os.ReadFile(filepath.Join(dst, "in.txt")); string(b) != "from vfolder" {
		t.Fatalf("cp from vfolder: %q", b)
	}
	if out := p.ctl(t, 1, "cp", filepath.Join(src, "proj", "sub", "a.txt"), kid+":data/"); !strings.Contains(out, "PermissionError") {
		t.Fatalf("upload into ro vfolder:\n%s", out)
	}
	if out := p.ctl(t, 0, "logs", kid); !strings.Contains(out, "Kernel runner:") {
		t.Fatalf("logs:\n%s", out)
	}
	// Code through the kernel's runner (the test image's runtime is app:
	// batch commands run, query mode is refused as upstream does).
	if out := p.ctl(t, 0, "exec", kid[:8], "--mode", "batch", "echo $HELLO; cat data/in.txt"); out != "world\nfrom vfolder\n" {
		t.Fatalf("exec batch: %q", out)
	}
	if out := p.ctl(t, 1, "exec", kid, "--mode", "batch", "echo partial; exit 3"); !strings.Contains(out, "partial") || !strings.Contains(out, "exit code 3") {
		t.Fatalf("exec with a failing command:\n%s", out)
	}
	if out := p.ctl(t, 1, "exec", kid, "print(1)"); !strings.Contains(out, "query mode is disabled") || !strings.Contains(out, "exit code 127") {
		t.Fatalf("exec query on an app runtime:\n%s", out)
	}
	// Apps: the kernel's service ports, and start one (the test image's
	// jupyter is only a label: the runner says it cannot run it).
	if out := p.ctl(t, 0, "apps", kid); !strings.Contains(out, "sshd") || !strings.Contains(out, "jupyter") {
		t.Fatalf("apps:\n%s", out)
	}
	// The SSH server runs from boot (as upstream's intrinsic sshd), and
	// the command ctl prints logs in with the key pair create passed as
	// the manager does (internal_data.ssh_keypair).
	out = p.ctl(t, 0, "app", kid, "sshd")
	m := regexp.MustCompile(`ssh -i (\S+) .*-p (\d+) work@127\.0\.0\.1`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("app sshd:\n%s", out)
	}
	if got := sshRun(t, m[1], m[2], "echo $HELLO from ssh"); got != "world from ssh\n" {
		t.Fatalf("ssh with the printed command ran: %q", got)
	}
	if out := p.ctl(t, 1, "app", kid, "jupyter"); !strings.Contains(out, "unsupported service: jupyter") {
		t.Fatalf("app jupyter:\n%s", out)
	}
	repl := exec.Command(p.bin, "ctl", "-f", p.cfg, "exec", kid, "--mode", "batch")
	repl.Stdin = strings.NewReader("echo one\necho two\n")
	if out, err := repl.CombinedOutput(); err != nil || !strings.Contains(string(out), "one\n") || !strings.Contains(string(out), "two\n") {
		t.Fatalf("exec prompt: %v\n%s", err, out)
	}
	p.ctl(t, 0, "restart", kid)
	if out := p.ctl(t, 0, "ls"); !strings.Contains(out, kid) {
		t.Fatalf("kernel gone after restart:\n%s", out)
	}
	p.ctl(t, 0, "cp", kid+":proj/sub/a.txt", t.TempDir()) // files survive restart
	p.ctl(t, 0, "destroy", kid[:10])
	if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Fatalf("the kernel's ssh key outlived it: %v", err)
	}
	if out := p.ctl(t, 0, "ls"); strings.Contains(out, kid) {
		t.Fatalf("still listed after destroy:\n%s", out)
	}
	if out := p.ctl(t, 1, "logs", kid); !strings.Contains(out, "no kernel") {
		t.Fatalf("unknown kernel:\n%s", out)
	}
	if out := p.ctl(t, 2, "create"); !strings.Contains(out, "--image is required") {
		t.Fatalf("usage error:\n%s", out)
	}
	if code, out := p.run(t, "ctl", "--addr", "tcp://127.0.0.1:1", "ping"); code != 3 || !strings.Contains(out, "cannot reach") {
		t.Fatalf("unreachable: %d %s", code, out)
	}
}

func TestCtlWithCurve_Integration(t *testing.T) {
	dir := t.TempDir()
	// The operator's workflow: keygen for both sides.
	bin := testutil.AgentBinary(t)
	for _, n := range []string{"agent", "manager", "intruder"} {
		if out, err := exec.Command(bin, "keygen", dir, n).CombinedOutput(); err != nil {
			t.Fatalf("keygen: %v %s", err, out)
		}
	}
	p := startAgentBinary(t, fmt.Sprintf("rpc-auth-agent-keypair=%q\nrpc-auth-manager-public-key=%q", filepath.Join(dir, "agent.key_secret"), filepath.Join(dir, "manager.key")))
	testutil.Eventually(t, 30*time.Second, "agent answers over CURVE", func() bool {
		code, _ := p.run(t, "ctl", "-f", p.cfg, "--manager-keypair", filepath.Join(dir, "manager.key_secret"), "ping")
		return code == 0
	})
	if code, out := p.run(t, "ctl", "-f", p.cfg, "--manager-keypair", filepath.Join(dir, "intruder.key_secret"), "ping"); code != 3 {
		t.Fatalf("intruder key: exit %d %s", code, out)
	}
	if code, out := p.run(t, "ctl", "--addr", p.addr, "ping"); code != 3 {
		t.Fatalf("no keys: exit %d %s", code, out)
	}
	if code, out := p.run(t, "ctl", "-f", p.cfg, "ping"); code != 2 || !strings.Contains(out, "--manager-keypair") {
		t.Fatalf("missing manager key hint: exit %d %s", code, out)
	}
}

// sshRun logs in with key on 127.0.0.1:port as the kernel user and runs
// cmd.
func sshRun(t *testing.T, key, port, cmd string) string {
	t.Helper()
	b, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := ssh.Dial("tcp", "127.0.0.1:"+port, &ssh.ClientConfig{
		User: "work", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("ssh login with %s: %v", key, err)
	}
	defer cl.Close()
	s, err := cl.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	if err != nil {
		t.Fatalf("ssh %q: %v\n%s", cmd, err, out)
	}
	return string(out)
}
