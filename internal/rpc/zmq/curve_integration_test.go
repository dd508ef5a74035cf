package zmq_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/rpc/client"
	"github.com/bai-agent/bai-agent/internal/rpc/zmq"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

// pyCerts makes certificates with pyzmq's own zmq.auth.create_certificates.
func pyCerts(t *testing.T, py, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		code := "import sys, zmq.auth; zmq.auth.create_certificates(sys.argv[1], sys.argv[2])"
		if out, err := exec.Command(py, "-c", code, dir, n).CombinedOutput(); err != nil {
			t.Fatalf("pyzmq create_certificates: %v %s", err, out)
		}
	}
}

func TestCurveWithPyzmqCertificates_Integration(t *testing.T) {
	py := requirePython(t)
	dir := t.TempDir()
	pyCerts(t, py, dir, "agent", "manager", "intruder")
	curve, err := zmq.LoadCurve(filepath.Join(dir, "agent.key_secret"), filepath.Join(dir, "manager.key"))
	if err != nil {
		t.Fatal(err)
	}
	addr, _, _ := startAgent(t, curve)
	script := filepath.Join(testutil.ModuleRoot(t), "test", "pypeer", "curve_peer.py")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, script, addr, filepath.Join(dir, "agent.key"), filepath.Join(dir, "manager.key_secret"), filepath.Join(dir, "intruder.key_secret")).CombinedOutput()
	t.Logf("python peer:\n%s", out)
	if err != nil {
		t.Fatalf("curve peer failed: %v", err)
	}
	// The Go client with the same keys works; without keys it gets no PONG.
	m, _ := zmq.LoadCertificate(filepath.Join(dir, "manager.key_secret"))
	c, err := client.Dial(addr, 5*time.Second, &client.Curve{ServerPublic: curve.AgentPublic, Public: m.Public, Secret: m.Secret})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if v, err := c.Call(ctx, "ping", []any{"go"}, nil); err != nil || v != "go" {
		t.Fatalf("ping over CURVE: %v %v", v, err)
	}
	if _, err := client.Dial(addr, time.Second, nil); !errors.Is(err, client.ErrNoHandshake) {
		t.Fatalf("NULL client got in: %v", err)
	}
}

// Our keygen writes files pyzmq reads, with the keys it claims.
func TestKeygenReadableByPyzmq(t *testing.T) {
	py := requirePython(t)
	dir := t.TempDir()
	pub, sec, err := zmq.WriteCertificates(dir, "agent")
	if err != nil {
		t.Fatal(err)
	}
	mine, err := zmq.LoadCertificate(sec)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, "-c", "import sys, zmq.auth; p, s = zmq.auth.load_certificate(sys.argv[1]); print(p.decode(), s.decode()); print(zmq.auth.load_certificate(sys.argv[2])[0].decode())", sec, pub).CombinedOutput()
	if err != nil {
		t.Fatalf("pyzmq cannot read our certificate: %v %s", err, out)
	}
	lines := strings.Fields(string(out))
	if len(lines) != 3 || lines[0] != mine.Public || lines[1] != mine.Secret || lines[2] != mine.Public {
		t.Fatalf("pyzmq read %q, we wrote %+v", out, mine)
	}
	if st, _ := os.Stat(sec); st.Mode().Perm() != 0o600 {
		t.Fatalf("secret file mode %v", st.Mode())
	}
}

func TestLoadCurveErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.key")
	_ = os.WriteFile(bad, []byte("curve\n    public-key = \"short\"\n"), 0o644)
	pub, sec, _ := zmq.WriteCertificates(dir, "ok")
	for _, tc := range []struct{ agent, manager, want string }{
		{filepath.Join(dir, "missing.key_secret"), pub, "missing.key_secret"},
		{bad, pub, "bad.key"},
		{pub, pub, "no secret-key"},
		{sec, filepath.Join(dir, "nope.key"), "nope.key"},
	} {
		_, err := zmq.LoadCurve(tc.agent, tc.manager)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadCurve(%s, %s) = %v, want mention of %q", tc.agent, tc.manager, err, tc.want)
		}
	}
}
