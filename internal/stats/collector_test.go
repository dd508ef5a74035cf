package stats

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/cgroup"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

// fakeHost builds a v1 tree with n containers (pids 100..) under root.
func fakeHost(t *testing.T, n int) string {
	t.Helper()
	root := t.TempDir()
	cg := filepath.Join(root, "sys/fs/cgroup")
	w := func(p, c string) {
		full := filepath.Join(root, p)
		_ = os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w("proc/self/mountinfo", "1 0 0:1 / "+cg+"/cpuacct rw - cgroup cgroup rw,cpuacct\n2 0 0:2 / "+cg+"/memory rw - cgroup cgroup rw,memory\n3 0 0:3 / "+cg+"/blkio rw - cgroup cgroup rw,blkio\n")
	for i := 0; i < n; i++ {
		pid := 100 + i
		id := fmt.Sprintf("c%d", i)
		w(fmt.Sprintf("proc/%d/cgroup", pid), fmt.Sprintf("3:blkio:/docker/%s\n2:memory:/docker/%s\n1:cpuacct:/docker/%s\n", id, id, id))
		w("sys/fs/cgroup/cpuacct/docker/"+id+"/cpuacct.usage", "1000000000\n")
		w("sys/fs/cgroup/cpuacct/docker/"+id+"/cgroup.procs", "")
		w("sys/fs/cgroup/memory/docker/"+id+"/memory.usage_in_bytes", "1048576\n")
		w("sys/fs/cgroup/memory/docker/"+id+"/memory.limit_in_bytes", "2097152\n")
		w("sys/fs/cgroup/blkio/docker/"+id+"/blkio.throttle.io_service_bytes", "Total 0\n")
		w(fmt.Sprintf("proc/%d/net/dev", pid), "x\ny\n eth0: 100 0 0 0 0 0 0 0 200 0 0 0 0 0 0 0\n")
	}
	return root
}

// A container whose cgroup read blocks forever (a FIFO with no writer
// stands in for a frozen cgroup or a hung namespace) delays only itself:
// the others are measured within the deadline, and the next cycle skips
// it instead of waiting again.
func TestStuckContainerDelaysOnlyItself(t *testing.T) {
	root := fakeHost(t, 3)
	stuck := filepath.Join(root, "sys/fs/cgroup/cpuacct/docker/c1/cpuacct.usage")
	_ = os.Remove(stuck)
	if err := syscall.Mkfifo(stuck, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Release the blocked reader so the test leaves no goroutine stuck.
		f, err := os.OpenFile(stuck, os.O_WRONLY, 0)
		if err == nil {
			_, _ = f.Write([]byte("1\n"))
			f.Close()
		}
	})
	c := NewCollector()
	c.FS = cgroup.FS{Root: root}
	c.Deadline = 300 * time.Millisecond
	targets := []Target{{KernelID: "k0", ContainerID: "c0", Pid: 100}, {KernelID: "k1", ContainerID: "c1", Pid: 101}, {KernelID: "k2", ContainerID: "c2", Pid: 102}}
	t0 := time.Now()
	res := c.CollectContainers(context.Background(), targets)
	if el := time.Since(t0); el > testutil.Slow(time.Second) {
		t.Fatalf("cycle took %s", el)
	}
	if res.Collected != 2 || res.TimedOut != 1 {
		t.Fatalf("first cycle: %+v", res)
	}
	t0 = time.Now()
	res = c.CollectContainers(context.Background(), targets)
	if el := time.Since(t0); el > testutil.Slow(200*time.Millisecond) {
		t.Fatalf("second cycle waited for the stuck container: %s", el)
	}
	if res.Collected != 2 || res.Skipped != 1 {
		t.Fatalf("second cycle: %+v", res)
	}
	snap := map[string]KernelSnapshot{}
	for _, s := range c.Snapshot() {
		snap[s.Target.KernelID] = s
	}
	if snap["k0"].Metrics["mem"]["current"] != "1048576" || snap["k0"].Metrics["mem"]["pct"] != "50" {
		t.Fatalf("k0 mem: %v", snap["k0"].Metrics["mem"])
	}
	// A kernel no longer listed is reported gone (its series get removed).
	res = c.CollectContainers(context.Background(), targets[:1])
	if len(res.Gone) != 2 {
		t.Fatalf("gone: %v", res.Gone)
	}
}

// A container whose cgroup was removed under the agent, or whose network
// namespace is gone, is reported as failed in the same cycle; the others
// are measured as usual and no cycle waits for it.
func TestBrokenContainerIsReported(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(root string) error
	}{
		{"cgroup removed", func(root string) error {
			for _, ctl := range []string{"cpuacct", "memory", "blkio"} {
				if err := os.RemoveAll(filepath.Join(root, "sys/fs/cgroup", ctl, "docker/c1")); err != nil {
					return err
				}
			}
			return nil
		}},
		{"network namespace gone", func(root string) error {
			return os.Remove(filepath.Join(root, "proc/101/net/dev"))
		}},
		{"process gone", func(root string) error {
			return os.RemoveAll(filepath.Join(root, "proc/101"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := fakeHost(t, 3)
			if err := tt.break_(root); err != nil {
				t.Fatal(err)
			}
			c := NewCollector()
			c.FS = cgroup.FS{Root: root}
			c.Deadline = 300 * time.Millisecond
			targets := []Target{{KernelID: "k0", ContainerID: "c0", Pid: 100}, {KernelID: "k1", ContainerID: "c1", Pid: 101}, {KernelID: "k2", ContainerID: "c2", Pid: 102}}
			for cycle := 0; cycle < 2; cycle++ {
				t0 := time.Now()
				res := c.CollectContainers(context.Background(), targets)
				if el := time.Since(t0); el > testutil.Slow(200*time.Millisecond) {
					t.Fatalf("cycle %d took %s", cycle, el)
				}
				if res.Collected < 2 || res.TimedOut != 0 || res.Skipped != 0 {
					t.Fatalf("cycle %d: %+v, want the two healthy containers measured", cycle, res)
				}
				if tt.name != "network namespace gone" && res.Failed != 1 {
					t.Fatalf("cycle %d: %+v, want the broken container reported failed", cycle, res)
				}
				if len(res.Problems) != 1 || res.Problems["k1"] == "" {
					t.Fatalf("cycle %d: problems %v, want k1's", cycle, res.Problems)
				}
			}
		})
	}
}
