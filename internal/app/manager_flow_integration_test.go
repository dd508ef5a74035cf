package app_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bai-agent/bai-agent/internal/testutil"
)

// A real manager's session lifecycle, played by a Python peer
// (test/pypeer/manager_flow.py) against the agent binary with etcd, Redis
// and a local docker-registry: check_and_pull and image_pull_finished for
// an image already on the node (named as a registry-local image) and for
// one pulled from the registry, create_kernels and kernel_started, the
// presence and service-discovery keys parsed as the manager parses them,
// failures that keep the session alive, destroy.
func TestManagerFlow_Integration(t *testing.T) {
	py := managerPeerPython(t)
	img := testutil.TestImage(t)
	be := testutil.RequireDocker(t)
	registry := testutil.StartRegistry(t)
	ctx := context.Background()
	remote := registry + "/bai-test/pulled:" + uuid.NewString()[:8]
	if out, err := exec.Command("docker", "tag", img, remote).CombinedOutput(); err != nil {
		t.Fatalf("docker tag: %v %s", err, out)
	}
	t.Cleanup(func() { _ = be.RemoveImage(context.Background(), remote, true, true) })
	if err := be.PushImage(ctx, remote, "", nil); err != nil {
		t.Fatal(err)
	}
	local, err := be.InspectImage(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	if err := be.RemoveImage(ctx, remote, false, true); err != nil {
		t.Fatal(err)
	}
	s := newStack(t, "")
	s.start()
	script := filepath.Join(testutil.ModuleRoot(t), "test", "pypeer", "manager_flow.py")
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(cctx, py, script, "tcp://"+s.rpc, s.redis.Addr, s.id, img, remote, local.ID, s.vfroot).CombinedOutput()
	t.Logf("manager flow:\n%s", out)
	if err != nil {
		t.Fatalf("manager flow failed: %v", err)
	}
	if !strings.Contains(string(out), "all checks passed") {
		t.Fatal("the manager flow did not finish")
	}
}
