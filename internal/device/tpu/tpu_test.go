package tpu

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/shopspring/decimal"

	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/resource"
)

func devTree(t *testing.T, names ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, n := range names {
		p := filepath.Join(root, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func one(ids ...string) resource.Allocation {
	m := map[resource.DeviceID]decimal.Decimal{}
	for _, id := range ids {
		m[resource.DeviceID(id)] = decimal.NewFromInt(1)
	}
	return resource.Allocation{"tpu.device": m}
}

func TestAccelChips(t *testing.T) {
	root := devTree(t, "dev/accel0", "dev/accel1", "dev/accel2", "dev/accel3", "dev/accel9", "sys/class/accel/accel9/device/vendor")
	// accel9 is an Intel NPU, not a TPU chip.
	if err := os.WriteFile(filepath.Join(root, "sys/class/accel/accel9/device/vendor"), []byte("0x8086\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, ok, err := Discover(Options{Root: root, Getenv: func(k string) string {
		if k == "TPU_ACCELERATOR_TYPE" {
			return "v4-8"
		}
		return ""
	}})
	if err != nil || !ok || !p.Available()["tpu.device"].Equal(decimal.NewFromInt(4)) {
		t.Fatalf("discover %v %v %v", ok, err, p)
	}
	for _, tc := range []struct {
		name  string
		alloc resource.Allocation
		want  device.Reservation
	}{
		{"one chip", one("2"), device.Reservation{
			Devices: []device.DeviceMapping{{PathOnHost: root + "/dev/accel2", PathInContainer: "/dev/accel2", CgroupPermissions: "rwm"}},
			EnvList: []string{"TPU_VISIBLE_CHIPS=2", "TPU_CHIPS_PER_HOST_BOUNDS=1,1,1", "TPU_HOST_BOUNDS=1,1,1"},
		}},
		{"two chips", one("0", "1"), device.Reservation{
			Devices: []device.DeviceMapping{{PathOnHost: root + "/dev/accel0", PathInContainer: "/dev/accel0", CgroupPermissions: "rwm"}, {PathOnHost: root + "/dev/accel1", PathInContainer: "/dev/accel1", CgroupPermissions: "rwm"}},
			EnvList: []string{"TPU_VISIBLE_CHIPS=0,1", "TPU_CHIPS_PER_HOST_BOUNDS=1,2,1", "TPU_HOST_BOUNDS=1,1,1"},
		}},
	} {
		if diff := cmp.Diff(tc.want, p.Reserve(tc.alloc)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
	all := p.Reserve(one("0", "1", "2", "3"))
	if len(all.Devices) != 4 || len(all.EnvList) != 1 || all.EnvList[0] != "TPU_VISIBLE_CHIPS=0,1,2,3" {
		t.Errorf("whole host %+v", all)
	}
	if got := p.ResourceData(one("1", "3")); got["TPU_GLOBAL_DEVICE_IDS"] != "0:1,1:3" {
		t.Errorf("resource data %v", got)
	}
	if err := p.CheckRequest(resource.Slots{"tpu.device": decimal.NewFromInt(3)}); !errors.Is(err, resource.ErrInvalidArgument) {
		t.Errorf("3 chips: %v", err)
	}
	for _, n := range []int64{0, 1, 2, 4} {
		if err := p.CheckRequest(resource.Slots{"tpu.device": decimal.NewFromInt(n)}); err != nil {
			t.Errorf("%d chips: %v", n, err)
		}
	}
	if att := p.AttachedDevices(one("0")); att[0].ModelName != "Cloud TPU v4-8" || att[0].Data["proc"] != int64(1) {
		t.Errorf("attached %+v", att)
	}
}

func TestVFIOChips(t *testing.T) {
	root := devTree(t, "dev/vfio/vfio", "dev/vfio/12", "dev/vfio/13")
	if _, ok, _ := Discover(Options{Root: root}); ok {
		t.Fatal("VFIO groups taken for TPU chips on a host not known to be a TPU VM")
	}
	p, ok, _ := Discover(Options{Root: root, VFIO: true})
	if !ok || len(p.Devices()) != 2 {
		t.Fatalf("vfio chips %v", p)
	}
	r := p.Reserve(one("1"))
	want := []device.DeviceMapping{
		{PathOnHost: root + "/dev/vfio/13", PathInContainer: "/dev/vfio/13", CgroupPermissions: "rwm"},
		{PathOnHost: root + "/dev/vfio/vfio", PathInContainer: "/dev/vfio/vfio", CgroupPermissions: "rwm"},
	}
	if diff := cmp.Diff(want, r.Devices); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, ok, _ := Discover(Options{Root: t.TempDir()}); ok {
		t.Error("TPU found on a host without one")
	}
}
