package agent

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/bai-agent/bai-agent/internal/testutil"
)

// kconfig.dat and cluster.json exactly as the Python agent writes them
// (pickled by Python, testdata/gen_kconfig.py) become our restart data.
// Enum members both as early Python 3.11 releases pickle them (by name)
// and as later ones do (by value).
func TestReadPythonKconfig(t *testing.T) {
	for _, form := range []string{"by-value", "by-name"} {
		t.Run(form, func(t *testing.T) { testReadPythonKconfig(t, form == "by-name") })
	}
	if _, err := readPythonKconfig(t.TempDir()); err == nil {
		t.Error("a missing kconfig.dat gave no error")
	}
}

func testReadPythonKconfig(t *testing.T, byName bool) {
	dir := t.TempDir()
	gen := filepath.Join(testutil.ModuleRoot(t), "internal", "agent", "testdata", "gen_kconfig.py")
	cmd := exec.Command("python3", gen, dir, "k-1", "s-1")
	cmd.Env = append(os.Environ(), "GEN_ENUM_BY_NAME=0")
	if byName {
		cmd.Env = append(os.Environ(), "GEN_ENUM_BY_NAME=1")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		testutil.Missing(t, "python3 to generate kconfig.dat: %v %s", err, out)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "kconfig.dat"))
	if got := bytes.Contains(raw, []byte("getattr")); got != byName {
		t.Fatalf("generator wrote getattr: %v, want %v", got, byName)
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
}
