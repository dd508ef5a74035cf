package event

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/bai-agent/bai-agent/internal/wire"
	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
	"github.com/shopspring/decimal"
)

const (
	kid   = "6b1f0d2e-1c7a-4a53-9d7e-2f5b8c3a9e10"
	sid   = "0e7c8a51-4f2b-4c1d-8e3a-6d9b2a7f1c04"
	tid   = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
	agent = "i-node01"
)

func i64(v int64) *int64 { return &v }

func goldenCases() map[string]Event {
	ref := RefOf(wire.ImageRef{Name: "python", Project: "stable", Tag: "3.11-ubuntu22.04", Registry: "cr.backend.ai", Architecture: "x86_64"})
	local := RefOf(wire.ImageRef{Name: "python", Project: "myproj", Tag: "3.11", Registry: "local", Architecture: "x86_64", IsLocal: true})
	lc := KernelLifecycle{KernelID: kid, SessionID: sid}
	ci := CreationInfo{
		ContainerID: "c0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeeabcd", KernelHost: "10.0.0.5", ReplInPort: 30000, ReplOutPort: 30001,
		ServicePorts: []ServicePortInfo{
			{Name: "sshd", Protocol: "tcp", ContainerPorts: []int{2200}, HostPorts: []int{30002}},
			{Name: "ttyd", Protocol: "http", ContainerPorts: []int{7681}, HostPorts: []int{30003}},
		},
		UsedDevices: UsedDevices{Units: map[string]map[string]UsedDevice{
			"cpu": {"0": {Used: map[string]string{"cpu": "1"}}, "1": {Used: map[string]string{"cpu": "1"}}},
			"mem": {"root": {Used: map[string]string{"mem": "1073741824"}}},
		}},
	}
	vm := VolumeMount{NodeID: agent, NodeType: "agent", MountPath: "/mnt/vol1", QuotaScopeID: "user:1"}
	vmErr := vm
	vmErr.ErrMsg = StrPtr("umount: busy")
	return map[string]Event{
		"agent_started":           AgentStarted{Reason: "self-started"},
		"agent_terminated":        AgentTerminated{Reason: "shutdown"},
		"agent_error":             NewAgentError("ValueError: bad argument", `File "x", line 1`),
		"agent_error_minimal":     NewAgentError("RuntimeError: boom", ""),
		"do_agent_resource_check": DoAgentResourceCheck{AgentID: agent},
		"agent_installed_images_remove": AgentInstalledImagesRemove{ScannedImages: map[string]ScannedImage{
			"cr.backend.ai/stable/python:3.11-ubuntu22.04": {Canonical: "cr.backend.ai/stable/python:3.11-ubuntu22.04", Digest: "sha256:abababababababababababababababababababababababababababababababab"},
		}},
		"agent_heartbeat": AgentHeartbeat{Info: AgentInfo{
			IP: "10.0.0.5", Region: "local", Addr: "tcp://10.0.0.5:6011", PublicHost: "10.0.0.5", Version: "26.8.0", Architecture: "x86_64",
			Available: resource.Slots{"cpu": decimal.NewFromInt(4), "mem": decimal.NewFromInt(8589934592)},
			SlotTypes: map[resource.SlotName]resource.SlotType{"cpu": "count", "mem": "bytes"},
			Plugins:   map[string]PluginInfo{"cpu": {Version: "1.0", Extra: map[string]any{"agent_version": "26.8.0", "machine": "x86_64", "os_type": "linux"}}, "mem": {Version: "1.0"}},
		}},
		"kernel_preparing":           KernelPreparing{lc},
		"kernel_pulling":             KernelPulling{KernelLifecycle{KernelID: kid, SessionID: sid, Reason: "cr.backend.ai/stable/python:3.11-ubuntu22.04"}},
		"kernel_creating":            KernelCreating{lc},
		"kernel_started":             KernelStarted{KernelLifecycle: lc, CreationInfo: ci},
		"kernel_terminated":          KernelTerminated{KernelID: kid, SessionID: sid, Reason: "failed-to-create", ExitCode: -1},
		"kernel_terminated_user":     KernelTerminated{KernelID: kid, SessionID: sid, Reason: "user-requested", ExitCode: 137},
		"do_sync_kernel_logs":        DoSyncKernelLogs{KernelID: kid, ContainerID: "c0ffee"},
		"session_success":            SessionSuccess{SessionResult{SessionID: sid, Reason: "task-finished", ExitCode: 0}},
		"session_failure":            SessionFailure{SessionResult{SessionID: sid, Reason: "task-finished", ExitCode: 3}},
		"execution_started":          ExecutionStarted{Execution{SessionID: sid}},
		"execution_finished":         ExecutionFinished{Execution{SessionID: sid}},
		"execution_timeout":          ExecutionTimeout{Execution{SessionID: sid}},
		"execution_cancelled":        ExecutionCancelled{Execution{SessionID: sid}},
		"image_pull_started":         ImagePullStarted{Image: "cr.backend.ai/stable/python:3.11-ubuntu22.04", AgentID: agent, Timestamp: 1724000000.5, ImageRef: ref},
		"image_pull_finished":        ImagePullFinished{Image: "cr.backend.ai/stable/python:3.11-ubuntu22.04", AgentID: agent, Timestamp: 1724000001.25, ImageRef: ref},
		"image_pull_finished_exists": ImagePullFinished{Image: "local/myproj/python:3.11", AgentID: agent, Timestamp: 1724000001.25, Msg: StrPtr(MsgImageAlreadyExists), ImageRef: local},
		"image_pull_failed":          ImagePullFailed{Image: "cr.backend.ai/stable/python:3.11-ubuntu22.04", AgentID: agent, Msg: "timeout (s:7200)", ImageRef: ref},
		"bgtask_updated_started":     BgtaskUpdated{TaskID: tid, Message: StrPtr("Task started")},
		"bgtask_updated":             BgtaskUpdated{TaskID: tid, CurrentProgress: 512, TotalProgress: 1024, Message: StrPtr("pulling")},
		"bgtask_done":                BgtaskDone{BgtaskResult{TaskID: tid, Message: StrPtr("pulled")}},
		"bgtask_failed":              BgtaskFailed{BgtaskResult{TaskID: tid, Message: StrPtr("RuntimeError('boom')")}},
		"bgtask_cancelled":           BgtaskCancelled{BgtaskResult{TaskID: tid, Message: StrPtr("Task cancelled")}},
		"volume_mounted":             VolumeMounted{vm},
		"volume_unmounted_error":     VolumeUnmounted{vmErr},
	}
}

// TestGoldenPayloads compares every event type with the payload Python
// makes from stand-ins of the upstream models (testdata/gen_events.py):
// same name, same fields, same JSON types (null stays null).
func TestGoldenPayloads(t *testing.T) {
	raw, err := os.ReadFile("testdata/events.json")
	if err != nil {
		t.Fatal(err)
	}
	var golden map[string]struct{ Name, Payload string }
	if err := json.Unmarshal(raw, &golden); err != nil {
		t.Fatal(err)
	}
	cases := goldenCases()
	if len(golden) != len(cases) {
		t.Errorf("%d golden cases, %d Go cases: regenerate or add the missing side", len(golden), len(cases))
	}
	for name, ev := range cases {
		t.Run(name, func(t *testing.T) {
			g, ok := golden[name]
			if !ok {
				t.Fatalf("no golden payload %q", name)
			}
			if ev.EventName() != g.Name {
				t.Errorf("name %q, want %q", ev.EventName(), g.Name)
			}
			b, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			var got, want any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(g.Payload), &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("payload\n got %s\nwant %s", b, g.Payload)
			}
			// The legacy layout must encode too.
			if _, err := msgpack.Marshal(ev.LegacyArgs()); err != nil {
				t.Errorf("legacy args do not encode: %v", err)
			}
		})
	}
}

func TestDeliveryAndCache(t *testing.T) {
	tests := []struct {
		ev    Event
		want  Delivery
		cache string
	}{
		{KernelStarted{}, Anycast | Broadcast, ""},
		{KernelTerminated{}, Anycast | Broadcast, ""},
		{SessionSuccess{}, Anycast | Broadcast, ""},
		{ImagePullFinished{}, Anycast, ""},
		{AgentError{}, Anycast, ""},
		{VolumeMounted{}, Broadcast, ""},
		{BgtaskUpdated{TaskID: tid}, Broadcast, "bgtask." + tid},
		{BgtaskDone{BgtaskResult{TaskID: tid}}, Broadcast, "bgtask." + tid},
	}
	for _, tt := range tests {
		if got := tt.ev.Delivery(); got != tt.want {
			t.Errorf("%s delivery %b, want %b", tt.ev.EventName(), got, tt.want)
		}
		c, ok := tt.ev.(Cached)
		if (tt.cache != "") != ok || (ok && c.CacheKey() != tt.cache) {
			t.Errorf("%s cache key mismatch (cached=%v)", tt.ev.EventName(), ok)
		}
	}
}

// TestGoldenIsCurrent regenerates the goldens with Python and requires the
// committed file to be what the generator makes today.
func TestGoldenIsCurrent(t *testing.T) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("/usr/bin/python3 is missing")
		}
		t.Skip("no /usr/bin/python3")
	}
	dir := t.TempDir()
	if out, err := exec.Command("/usr/bin/python3", "testdata/gen_events.py", dir).CombinedOutput(); err != nil {
		t.Fatalf("gen_events.py: %v\n%s", err, out)
	}
	fresh, err := os.ReadFile(filepath.Join(dir, "events.json"))
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile("testdata/events.json")
	if err != nil {
		t.Fatal(err)
	}
	if string(fresh) != string(committed) {
		t.Fatal("testdata/events.json is stale: run /usr/bin/python3 internal/event/testdata/gen_events.py internal/event/testdata")
	}
}
