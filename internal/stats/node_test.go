package stats

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/cgroup"
)

// The node snapshot carries upstream's per-device node metrics: mem under
// "root", disk under each block device, net_rx/net_tx under "node"; a
// device that is unmounted leaves the snapshot.
func TestNodeDeviceMetrics(t *testing.T) {
	root := t.TempDir()
	w := func(p, c string) {
		t.Helper()
		full := filepath.Join(root, p)
		_ = os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w("proc/stat", "cpu  10 0 10 100\ncpu0 5 0 5 50\ncpu1 5 0 5 50\n")
	w("proc/meminfo", "MemTotal: 1000 kB\nMemAvailable: 250 kB\n")
	w("proc/net/dev", "h1\nh2\n  lo: 7 0 0 0 0 0 0 0 7 0 0 0 0 0 0 0\neth0: 100 0 0 0 0 0 0 0 200 0 0 0 0 0 0 0\n")
	other := t.TempDir()
	mounts := "/dev/vda1 / ext4 rw 0 0\n/dev/vdb " + other + " ext4 rw 0 0\ntmpfs /run tmpfs rw 0 0\n/dev/vdc /boot/efi vfat rw 0 0\n"
	w("proc/self/mounts", mounts)
	c := NewCollector()
	c.FS = cgroup.FS{Root: root}
	t0 := time.Unix(1000, 0)
	now := t0
	c.Now = func() time.Time { return now }
	if err := c.CollectNode(time.Second); err != nil {
		t.Fatal(err)
	}
	now = t0.Add(2 * time.Second)
	w("proc/net/dev", "h1\nh2\neth0: 300 0 0 0 0 0 0 0 600 0 0 0 0 0 0 0\n")
	if err := c.CollectNode(time.Second); err != nil {
		t.Fatal(err)
	}
	ns := c.NodeSnapshot()
	mem := ns.Devices["mem"]["root"]
	if mem == nil || mem["current"] != "768000" || mem["capacity"] != "1024000" || mem["pct"] != "75" {
		t.Fatalf("mem/root = %v", mem)
	}
	if rx, tx := ns.Devices["net_rx"]["node"], ns.Devices["net_tx"]["node"]; rx == nil || tx == nil || rx["current"] != "100" || tx["current"] != "200" {
		t.Fatalf("net_rx/net_tx node = %v %v", rx, tx)
	}
	disks := ns.Devices["disk"]
	if len(disks) != 2 || disks["/dev/vda1"] == nil || disks["/dev/vdb"] == nil {
		t.Fatalf("disk devices = %v", disks)
	}
	if disks["/dev/vda1"]["capacity"] == nil || ns.Node["disk"]["capacity"] == nil {
		t.Fatalf("disk capacities: %v %v", disks, ns.Node["disk"])
	}
	// /dev/vdb unmounted: its device goes.
	w("proc/self/mounts", "/dev/vda1 / ext4 rw 0 0\n")
	if err := c.CollectNode(time.Second); err != nil {
		t.Fatal(err)
	}
	if d := c.NodeSnapshot().Devices["disk"]; len(d) != 1 || d["/dev/vda1"] == nil {
		t.Fatalf("after unmount: %v", d)
	}
}
