package mock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/resource"
)

const rescanFormats = `
[formats.device]
display_unit = "GPU"
display_icon = "gpu1"
human_readable_name = "GPU"
description = "CUDA-capable GPU"
number_format = { binary = false, round_length = 0 }
[formats.shares]
display_unit = "fGPU"
display_icon = "gpu1"
human_readable_name = "GPU"
description = "shares"
number_format = { binary = false, round_length = 2 }
`

func mockFile(slot string, devs ...string) string {
	var b strings.Builder
	b.WriteString("slot_name = \"" + slot + "\"\nstats = \"fixed\"\ndevices = [\n")
	for _, d := range devs {
		id, mem, _ := strings.Cut(d, "=")
		b.WriteString(`  { mother_uuid = "` + id + `", model_name = "Mock H100", numa_node = 0, subproc_count = 132, memory_size = "` + mem + `", is_mig_device = false },` + "\n")
	}
	b.WriteString("]\n" + rescanFormats)
	return b.String()
}

func devIDs(p *Plugin) string {
	var ids []string
	for _, d := range p.Devices() {
		ids = append(ids, string(d.ID))
	}
	return strings.Join(ids, ",")
}

// TestRescan: the plugin follows its file; a broken file or a new
// slot_name keeps the devices it had.
func TestRescan(t *testing.T) {
	for _, tc := range []struct {
		name        string
		etcd        map[string]any
		before      []string
		after       string // the new file
		wantChanged bool
		wantErr     bool
		wantDevs    string
		wantAvail   string // the whole slot's amount
	}{
		{name: "unchanged", before: []string{"gpu-a=80G", "gpu-b=80G"}, after: mockFile("cuda", "gpu-a=80G", "gpu-b=80G"), wantDevs: "gpu-a,gpu-b", wantAvail: "2"},
		{name: "device removed", before: []string{"gpu-a=80G", "gpu-b=80G"}, after: mockFile("cuda", "gpu-b=80G"), wantChanged: true, wantDevs: "gpu-b", wantAvail: "1"},
		{name: "device added", before: []string{"gpu-a=80G"}, after: mockFile("cuda", "gpu-a=80G", "gpu-c=80G"), wantChanged: true, wantDevs: "gpu-a,gpu-c", wantAvail: "2"},
		{name: "memory changed, discrete", before: []string{"gpu-a=80G"}, after: mockFile("cuda", "gpu-a=40G"), wantChanged: true, wantDevs: "gpu-a", wantAvail: "1"},
		{name: "memory changed, shares", etcd: map[string]any{"allocation_mode": "fractional"}, before: []string{"gpu-a=80G"}, after: mockFile("cuda", "gpu-a=20G"), wantChanged: true, wantDevs: "gpu-a", wantAvail: "10"},
		{name: "broken file", before: []string{"gpu-a=80G"}, after: "slot_name = ", wantErr: true, wantDevs: "gpu-a", wantAvail: "1"},
		{name: "slot name changed", before: []string{"gpu-a=80G"}, after: mockFile("rocm", "gpu-a=80G"), wantErr: true, wantDevs: "gpu-a", wantAvail: "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "mock-accelerator.toml")
			if err := os.WriteFile(path, []byte(mockFile("cuda", tc.before...)), 0o644); err != nil {
				t.Fatal(err)
			}
			p, _ := load(t, path, tc.etcd)
			if err := os.WriteFile(path, []byte(tc.after), 0o644); err != nil {
				t.Fatal(err)
			}
			changed, err := p.Rescan(context.Background())
			if (err != nil) != tc.wantErr || changed != tc.wantChanged {
				t.Fatalf("Rescan = %v, %v; want changed %v, error %v", changed, err, tc.wantChanged, tc.wantErr)
			}
			if tc.wantErr && !errors.Is(err, ErrConfig) {
				t.Fatalf("error %v is not ErrConfig", err)
			}
			if got := devIDs(p); got != tc.wantDevs {
				t.Fatalf("devices %s, want %s", got, tc.wantDevs)
			}
			slot := p.wholeSlot()
			if got := resource.FormatAmount(p.Available()[slot]); got != tc.wantAvail {
				t.Fatalf("available %s %s, want %s", slot, got, tc.wantAvail)
			}
			// The hwinfo and the alloc maps follow the devices.
			h, _ := p.NodeHWInfo()
			for _, id := range strings.Split(tc.wantDevs, ",") {
				if !strings.Contains(h.Metadata["devices"], id+" ") {
					t.Fatalf("hwinfo devices %q lacks %s", h.Metadata["devices"], id)
				}
			}
			maps, err := p.AllocMaps(resource.Interleaved)
			if err != nil || len(maps) != 1 || len(maps[0].Devices()) != len(strings.Split(tc.wantDevs, ",")) {
				t.Fatalf("alloc maps %v, %v", maps, err)
			}
		})
	}
}

// TestRescanInMemory: a configuration not read from a file never changes.
func TestRescanInMemory(t *testing.T) {
	p, err := New(&Config{SlotName: "cuda", Formats: map[string]Format{"device": {}}}, device.ShareConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := p.Rescan(context.Background()); changed || err != nil {
		t.Fatalf("Rescan = %v, %v", changed, err)
	}
}
