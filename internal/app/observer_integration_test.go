package app_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bai-agent/bai-agent/internal/testutil"
)

// A real agent (Docker engine, busybox test image) with the manager's side
// played by a Python peer (test/pypeer/manager_schedule.py) that writes
// the stale-kernel sweep's keys exactly as the manager does: the kernel
// the latest sweep skipped for more than 600 s is destroyed with reason
// not-found-in-manager and no event; the one exactly 600 s behind and the
// one never swept keep running. Then an abuse report dropped in
// abuse-report-path, with force-terminate-abusing-containers set, gets its
// kernel destroyed with kernel_terminated reason anomaly-detected and the
// report removed.
func TestOrphanAndAbuseReports_Integration(t *testing.T) {
	py := managerPeerPython(t)
	img := testutil.TestImage(t)
	be := testutil.RequireDocker(t)
	abuse := filepath.Join(t.TempDir(), "abuse")
	s := newStackWith(t, `abuse-report-path = "`+abuse+`"
force-terminate-abusing-containers = true`, stackOpts{
		portRange: [2]int{28500, 28539},
		env:       []string{"BACKEND_CPU_OVERCOMMIT_FACTOR=4"}, // four kernels of one core on a 2-core box
		debug:     "orphan-kernel-cleanup-interval = 0.3\nabuse-report-scan-interval = 0.3",
	})
	s.start()
	live := redis.NewClient(&redis.Options{Addr: s.redis.Addr, DB: 2})
	t.Cleanup(func() { live.Close() })
	ctx := context.Background()

	orphan, boundary, never, reported := s.createKernel(img), s.createKernel(img), s.createKernel(img), s.createKernel(img)
	running := func(kid string) bool {
		l, err := be.List(ctx, map[string]string{"ai.backend.kernel-id": kid})
		return err == nil && len(l) == 1 && l[0].Running
	}
	gone := func(kid string) bool {
		l, err := be.List(ctx, map[string]string{"ai.backend.kernel-id": kid})
		return err == nil && len(l) == 0
	}
	// The agent's presence fields first: without them the manager's
	// stamps alone decide nothing.
	testutil.Eventually(t, testutil.Slow(30*time.Second), "presence keys of the running kernels", func() bool {
		for _, k := range []string{orphan, boundary, never} {
			if live.HGet(ctx, "kernel:presence:"+k, "presence").Val() != "1" {
				return false
			}
		}
		return true
	})

	script := filepath.Join(testutil.ModuleRoot(t), "test", "pypeer", "manager_schedule.py")
	peer := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(py, append([]string{script}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("manager peer %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	// One reading of the Redis clock: the orphan was last swept 700 s
	// before the agent, the boundary kernel exactly 600 s before.
	peer("sweep", s.redis.Addr, "2", s.id, orphan+"@-700", boundary+"@-600")
	testutil.Eventually(t, testutil.Slow(60*time.Second), "the orphan kernel's container removed", func() bool { return gone(orphan) })
	// The pass that destroyed the orphan decided about the others too.
	for _, k := range []string{boundary, never, reported} {
		if !running(k) {
			t.Errorf("kernel %s no longer running", k)
		}
	}

	if err := os.WriteFile(filepath.Join(abuse, "report."+reported+".json"), []byte(`{"ID":"`+reported+`","CID":"x","reason":"crypto mining"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	evs := s.readEvents(testutil.Slow(60*time.Second), func(evs []event) bool {
		for _, e := range evs {
			if e.Name == "kernel_terminated" && e.Payload["kernel_id"] == reported {
				return true
			}
		}
		return false
	})
	for _, e := range evs {
		if e.Payload["kernel_id"] == orphan && (e.Name == "kernel_terminated" || e.Name == "kernel_terminating") {
			t.Errorf("an event for the orphan, whose events are suppressed: %s %v", e.Name, e.Payload)
		}
		if e.Name == "kernel_terminated" && e.Payload["kernel_id"] == reported && e.Payload["reason"] != "anomaly-detected" {
			t.Errorf("reported kernel terminated with %v, want reason anomaly-detected", e.Payload)
		}
	}
	testutil.Eventually(t, testutil.Slow(30*time.Second), "the reported kernel's container removed and its report gone", func() bool {
		_, err := os.Lstat(filepath.Join(abuse, "report."+reported+".json"))
		return gone(reported) && os.IsNotExist(err)
	})
	for _, k := range []string{boundary, never} {
		if !running(k) {
			t.Errorf("kernel %s no longer running", k)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(s.root, "agent.log")); !strings.Contains(string(b), "orphan kernel detected") {
		t.Errorf("agent log does not mention the orphan")
	}
}
