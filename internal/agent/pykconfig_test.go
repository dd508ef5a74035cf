package agent

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/bai-agent/bai-agent/internal/testutil"
)

// kconfig.dat and cluster.json exactly as the Python agent writes them
// (pickled by Python, testdata/gen_kconfig.py) become our restart data.
func TestReadPythonKconfig(t *testing.T) {
	dir := t.TempDir()
	gen := filepath.Join(testutil.ModuleRoot(t), "internal", "agent", "testdata", "gen_kconfig.py")
	if out, err := exec.Command("python3", gen, dir, "k-1", "s-1").CombinedOutput(); err != nil {
		testutil.Missing(t, "python3 to generate kconfig.dat: %v %s", err, out)
	}
	kc, err := readPythonKconfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := kc.Config
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"kernel_id", c.KernelID, "k-1"},
		{"image", c.Image.Canonical, "cr.backend.ai/stable/python:3.11-ubuntu22.04"},
		{"session type (an enum)", c.SessionType, "interactive"},
		{"auto_pull (an enum)", c.AutoPull, "digest"},
		{"uid", *c.UID, 1100},
		{"supplementary gids", len(c.SupplementaryGIDs), 1},
		{"cpu (a Decimal)", c.ResourceSlots["cpu"], "1"},
		{"mem", c.ResourceSlots["mem"], "268435456"},
		{"shm (a BinarySize)", c.ShmSize, int64(67108864)},
		{"environ", c.Environ["HELLO"], "world"},
		{"preopen", len(c.PreopenPorts), 1},
		{"block_service_ports", c.BlockServicePorts, true},
		{"bootstrap", c.BootstrapScript, "echo boot"},
		{"cluster mode", kc.Cluster.Mode, "single-node"},
		{"network mode", kc.Cluster.NetworkMode, "bridge"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if _, err := readPythonKconfig(t.TempDir()); err == nil {
		t.Error("a missing kconfig.dat gave no error")
	}
}
