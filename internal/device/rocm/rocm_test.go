package rocm

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/shopspring/decimal"

	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/resource"
)

func write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fixture builds the sysfs and /dev of a host with an MI210 (one KFD
// node) and an MI300X in two partitions (two KFD nodes, one serial), plus
// the CPU node KFD always lists.
func fixture(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	kfd := filepath.Join(root, "sys/class/kfd/kfd/topology/nodes")
	write(t, filepath.Join(kfd, "0/properties"), "cpu_cores_count 64\nsimd_count 0\n")
	type gpuNode struct {
		node, minor, loc int
		bdf, serial      string
		uid              string
		vram             string
		product          string
		numa             string
	}
	for _, g := range []gpuNode{
		{1, 128, 0xc1 << 8, "0000:c1:00.0", "692220000123", "12345678901234", "68702699520", "AMD Instinct MI210", "0"},
		{2, 129, 0xc2 << 8, "0000:c2:00.0", "0x8a3f2c11", "222", "103079215104", "AMD Instinct MI300X", "1"},
		{3, 130, 0xc2<<8 | 1, "0000:c2:00.1", "0x8a3f2c11", "333", "103079215104", "AMD Instinct MI300X", "1"},
	} {
		n := filepath.Join(kfd, itoa(g.node))
		write(t, filepath.Join(n, "properties"), "simd_count 416\nsimd_per_cu 4\nvendor_id 4098\ndrm_render_minor "+itoa(g.minor)+"\nlocation_id "+itoa(g.loc)+"\ndomain 0\nunique_id "+g.uid+"\ngfx_target_version 90010\n")
		write(t, filepath.Join(n, "mem_banks/0/properties"), "heap_type 1\nsize_in_bytes "+g.vram+"\n")
		pci := filepath.Join(root, "sys/bus/pci/devices", g.bdf)
		write(t, filepath.Join(pci, "serial_number"), g.serial+"\n")
		write(t, filepath.Join(pci, "product_name"), g.product+"\n")
		write(t, filepath.Join(pci, "numa_node"), g.numa+"\n")
		write(t, filepath.Join(pci, "mem_info_vram_total"), g.vram+"\n")
		write(t, filepath.Join(pci, "mem_info_vram_used"), "1073741824\n")
		write(t, filepath.Join(pci, "gpu_busy_percent"), "30\n")
		write(t, filepath.Join(root, "dev/dri/renderD"+itoa(g.minor)), "")
		card := filepath.Join(root, "sys/class/drm/card"+itoa(g.node-1))
		if err := os.MkdirAll(card, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(pci, filepath.Join(card, "device")); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(root, "dev/dri/card"+itoa(g.node-1)), "")
	}
	write(t, filepath.Join(root, "dev/kfd"), "")
	write(t, filepath.Join(root, "sys/module/amdgpu/version"), "6.10.5\n")
	// The render nodes belong to group 109 (render), /dev/kfd to 44
	// (video), as on Ubuntu.
	if os.Getuid() == 0 {
		_ = os.Chown(filepath.Join(root, "dev/kfd"), 0, 44)
		for _, m := range []int{128, 129, 130} {
			_ = os.Chown(filepath.Join(root, "dev/dri/renderD"+itoa(m)), 0, 109)
		}
	}
	return root
}

func itoa(i int) string { return decimal.NewFromInt(int64(i)).String() }

func TestDiscoverAndWire(t *testing.T) {
	root := fixture(t)
	p, ok, err := Discover(Options{Root: root})
	if err != nil || !ok {
		t.Fatalf("discover: %v %v", ok, err)
	}
	devs := p.Devices()
	if len(devs) != 2 {
		t.Fatalf("devices %+v", devs)
	}
	if diff := cmp.Diff(device.DeviceInfo{ID: "0x8a3f2c11", Slot: "rocm.device", Model: "AMD Instinct MI300X", UUID: "0x8a3f2c11", HWLocation: "0000:c2:00.0", MemorySize: 2 * 103079215104, Processing: 208, NUMANode: 1}, devs[1]); diff != "" {
		t.Fatalf("MI300X partitions (-want +got):\n%s", diff)
	}
	if !p.Available()["rocm.device"].Equal(decimal.NewFromInt(2)) {
		t.Fatalf("available %v", p.Available())
	}
	alloc := resource.Allocation{"rocm.device": {"0x8a3f2c11": decimal.NewFromInt(1)}}
	want := device.Reservation{
		Devices: []device.DeviceMapping{
			{PathOnHost: root + "/dev/kfd", PathInContainer: "/dev/kfd", CgroupPermissions: "rwm"},
			{PathOnHost: root + "/dev/dri/renderD129", PathInContainer: "/dev/dri/renderD129", CgroupPermissions: "rwm"},
			{PathOnHost: root + "/dev/dri/card1", PathInContainer: "/dev/dri/card1", CgroupPermissions: "rwm"},
			{PathOnHost: root + "/dev/dri/renderD130", PathInContainer: "/dev/dri/renderD130", CgroupPermissions: "rwm"},
			{PathOnHost: root + "/dev/dri/card2", PathInContainer: "/dev/dri/card2", CgroupPermissions: "rwm"},
		},
		SecurityOpt: []string{"seccomp=unconfined"},
		EnvList:     []string{"ROCR_VISIBLE_DEVICES=GPU-00000000000000de,GPU-000000000000014d", "HIP_VISIBLE_DEVICES=0,1"},
	}
	if os.Getuid() == 0 {
		want.GroupAdd = []string{"44", "109"}
	}
	if diff := cmp.Diff(want, p.Reserve(alloc)); diff != "" {
		t.Errorf("container arguments (-want +got):\n%s", diff)
	}
	if got := p.ResourceData(alloc); got["ROCm_GLOBAL_DEVICE_IDS"] != "0:0x8a3f2c11" {
		t.Errorf("resource data %v", got)
	}
	if att := p.AttachedDevices(alloc); len(att) != 1 || att[0].Data["mem"] != int64(2*103079215104) || att[0].Data["smp"] != int64(208) {
		t.Errorf("attached %+v", att)
	}
	ms, _ := p.NodeMeasures(context.Background())
	if v := ms[0].PerDevice["0x8a3f2c11"]; !v.Value.Equal(decimal.NewFromInt(2 << 30)) {
		t.Errorf("rocm_mem of the partitioned GPU %v (two partitions, 1 GiB each)", v.Value)
	}
	if c := ms[1].Node.Capacity; !c.Equal(decimal.NewFromInt(200)) {
		t.Errorf("rocm_util capacity %v", c)
	}
	if p.ExtraInfo()["driver_version"] != "6.10.5" {
		t.Errorf("extra %v", p.ExtraInfo())
	}
	// Masked by serial.
	q, _, _ := Discover(Options{Root: root, Config: map[string]any{"device_mask": "692220000123"}})
	if len(q.Devices()) != 1 {
		t.Errorf("mask left %v", q.Devices())
	}
}

func TestNoAMD(t *testing.T) {
	root := t.TempDir()
	if _, ok, err := Discover(Options{Root: root}); ok || err != nil {
		t.Fatalf("no KFD: ok=%v err=%v", ok, err)
	}
	write(t, filepath.Join(root, "sys/class/kfd/kfd/topology/nodes/0/properties"), "simd_count 0\n")
	if _, ok, err := Discover(Options{Root: root}); ok || err != nil {
		t.Fatalf("CPU-only KFD: ok=%v err=%v", ok, err)
	}
}
