package zmq_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bai-agent/bai-agent/internal/agent"
	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/rpc"
	"github.com/bai-agent/bai-agent/internal/rpc/zmq"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

func requirePython(t testing.TB) string {
	t.Helper()
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import zmq, msgpack").Run(); err != nil {
		testutil.Missing(t, "Debian python3 with python3-zmq and python3-msgpack: %v", err)
	}
	return py
}

// startAgent runs a real agent with its RPC transport on a free port.
func startAgent(t testing.TB, curve *zmq.Curve) (addr string, cfg *config.Config, vfroot string) {
	t.Helper()
	be := testutil.RequireDocker(t)
	testutil.RequireRoot(t)
	root := t.TempDir()
	vfroot = filepath.Join(root, "vfroot")
	if err := os.MkdirAll(filepath.Join(vfroot, "data1"), 0o755); err != nil {
		t.Fatal(err)
	}
	port := testutil.FreePort(t)
	doc := fmt.Sprintf("[agent]\nbackend=\"docker\"\nid=\"i-rpc-%s\"\nrpc-listen-addr=\"127.0.0.1:%d\"\nmount-path=%q\nimage-commit-path=%q\n[container]\nport-range=[29200,29299]\nport-reuse-cooldown-sec=0\nbind-host=\"127.0.0.1\"\nscratch-root=%q\n[resource]\nreserved-cpu=0\nreserved-mem=\"64M\"\n",
		uuid.NewString()[:8], port, vfroot, filepath.Join(root, "commit"), filepath.Join(root, "scratch"))
	res, err := config.Load("", []byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	a, err := agent.New(ctx, agent.Options{Config: res.Config, Backend: be, Log: log, StopTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := rpc.NewServer(log, a.ID())
	rpc.AgentMethods(srv, a, be)
	tr, err := zmq.Listen(ctx, log, res.Config.RPCListenAddrString(), srv, curve)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tr.Close()
		_ = a.ResetAgent(context.Background())
		a.Close()
		cancel()
	})
	return "tcp://" + tr.Addr(), res.Config, vfroot
}

func TestPythonManagerPeer_Integration(t *testing.T) {
	py := requirePython(t)
	addr, _, vfroot := startAgent(t, nil)
	img := testutil.TestImage(t)
	script := filepath.Join(testutil.ModuleRoot(t), "test", "pypeer", "manager_peer.py")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, script, addr, img, filepath.Join(vfroot, "data1")).CombinedOutput()
	t.Logf("python peer:\n%s", out)
	if err != nil {
		t.Fatalf("python peer failed: %v", err)
	}
}

func TestPythonManagerPeerSurface_Integration(t *testing.T) {
	py := requirePython(t)
	registry := testutil.StartRegistry(t)
	addr, cfg, vfroot := startAgent(t, nil)
	img := testutil.TestImage(t)
	script := filepath.Join(testutil.ModuleRoot(t), "test", "pypeer", "surface_peer.py")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, script, addr, img, filepath.Join(vfroot, "data1"), cfg.Agent.ImageCommitPath, registry).CombinedOutput()
	t.Logf("python peer:\n%s", out)
	if err != nil {
		t.Fatalf("python peer failed: %v", err)
	}
}
