package app_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/testutil"
)

// A device that leaves the node while the agent runs stops being
// advertised in the heartbeat the manager reads, and comes back when it
// returns (the periodic slot re-scan, upstream's UpdateSlotsTask).
func TestSlotRescanHeartbeat_Integration(t *testing.T) {
	mockCfg := filepath.Join(t.TempDir(), "mock-accelerator.toml")
	if err := os.WriteFile(mockCfg, []byte(testutil.MockTwoGPUs), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newStackWith(t, fmt.Sprintf("allow-compute-plugins = [\"ai.backend.accelerator.mock\"]\nmock-accelerator-config = %q\n", mockCfg),
		stackOpts{debug: "slot-rescan-interval = 0.5"})
	s.etcd.Put(t, "/sorna/"+s.ns+"/config/plugins/accelerator/mock/allocation_mode", "discrete")
	s.start()
	gpus := func(evs []event) string {
		for i := len(evs) - 1; i >= 0; i-- {
			if evs[i].Name != "agent_heartbeat" {
				continue
			}
			info, _ := evs[i].Payload["agent_info"].(map[string]any)
			slots, _ := info["available_resource_slots"].([]any)
			for _, e := range slots {
				m, _ := e.(map[string]any)
				if m["resource_type"] == "cuda.device" {
					return fmt.Sprint(m["quantity"])
				}
			}
			return "none"
		}
		return ""
	}
	s.readEvents(30*time.Second, func(evs []event) bool { return gpus(evs) == "2" })
	// One GPU goes away.
	one := strings.Replace(testutil.MockTwoGPUs, "  { mother_uuid = \"gpu-b\", model_name = \"Mock H100\", numa_node = 0, subproc_count = 132, memory_size = \"80G\", is_mig_device = false },\n", "", 1)
	if one == testutil.MockTwoGPUs {
		t.Fatal("the test's edit of the mock file did not apply")
	}
	if err := os.WriteFile(mockCfg, []byte(one), 0o644); err != nil {
		t.Fatal(err)
	}
	s.readEvents(30*time.Second, func(evs []event) bool { return gpus(evs) == "1" })
	// And comes back.
	if err := os.WriteFile(mockCfg, []byte(testutil.MockTwoGPUs), 0o644); err != nil {
		t.Fatal(err)
	}
	s.readEvents(30*time.Second, func(evs []event) bool { return gpus(evs) == "2" })
}
