package events

import (
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

// Both wire formats of do_volume_mount / do_volume_unmount, fstab fields
// included (26.8 main: JSON payload; <= 26.8.1: base64 msgpack args).
func TestParseVolumeEvent(t *testing.T) {
	legacy := func(name string, args ...any) string {
		b, err := msgpack.Marshal(args)
		if err != nil {
			t.Fatal(err)
		}
		m, _ := json.Marshal(map[string]any{"name": name, "source": "i-mgr", "args": base64.StdEncoding.EncodeToString(b)})
		return string(m)
	}
	modern := func(name string, body map[string]any) string {
		p, _ := json.Marshal(body)
		m, _ := json.Marshal(map[string]any{"name": name, "source": "i-mgr", "payload": string(p), "metadata": `{"request_id":null}`})
		return string(m)
	}
	for _, tc := range []struct {
		name string
		raw  string
		want VolumeRequest
		ok   bool
	}{
		{"mount main", modern("do_volume_mount", map[string]any{
			"dir_name": "v", "volume_backend_name": "nfs", "quota_scope_id": "user:1", "fs_location": "srv:/x", "fs_type": "nfs",
			"cmd_options": nil, "scaling_group": "sg", "edit_fstab": true, "fstab_path": "/etc/fstab",
		}), VolumeRequest{Mount: true, DirName: "v", VolumeBackend: "nfs", QuotaScopeID: "user:1", FSLocation: "srv:/x", FSType: "nfs", ScalingGroup: "sg", EditFstab: true, FstabPath: "/etc/fstab"}, true},
		{"unmount main, fstab_path null", modern("do_volume_unmount", map[string]any{
			"dir_name": "v", "volume_backend_name": "nfs", "quota_scope_id": "user:1", "scaling_group": nil, "edit_fstab": true, "fstab_path": nil,
		}), VolumeRequest{DirName: "v", VolumeBackend: "nfs", QuotaScopeID: "user:1", EditFstab: true}, true},
		{"mount 26.8.1", legacy("do_volume_mount", "v", "nfs", "user:1", "srv:/x", "nfs", "vers=4", "sg", true, "/etc/fstab"),
			VolumeRequest{Mount: true, DirName: "v", VolumeBackend: "nfs", QuotaScopeID: "user:1", FSLocation: "srv:/x", FSType: "nfs", CmdOptions: "vers=4", ScalingGroup: "sg", EditFstab: true, FstabPath: "/etc/fstab"}, true},
		{"unmount 26.8.1", legacy("do_volume_unmount", "v", "nfs", "user:1", nil, true, "/etc/fstab"),
			VolumeRequest{DirName: "v", VolumeBackend: "nfs", QuotaScopeID: "user:1", EditFstab: true, FstabPath: "/etc/fstab"}, true},
		{"other event", modern("kernel_started", map[string]any{"dir_name": "v"}), VolumeRequest{}, false},
		{"no dir_name", modern("do_volume_mount", map[string]any{"fs_location": "x"}), VolumeRequest{}, false},
		{"not JSON", "\x93\x01", VolumeRequest{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseVolumeEvent(tc.raw)
			if ok != tc.ok {
				t.Fatalf("ok = %v", ok)
			}
			if diff := cmp.Diff(tc.want, got); ok && diff != "" {
				t.Fatalf("-want +got:\n%s", diff)
			}
		})
	}
}
