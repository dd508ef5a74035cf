package wire

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/bai-agent/bai-agent/internal/testutil"
	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

// Values Go writes as pickled extensions are read back by Python's own
// msgpack and pickle into the intended Backend.AI objects.
func TestPythonUnpicklesGoValues(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import msgpack").Run(); err != nil {
		testutil.Missing(t, "Debian python3-msgpack: %v", err)
	}
	v := map[string]any{
		"decimal":       PyDecimal{decimal.RequireFromString("1.5")},
		"decimal_bytes": PickleDecimal(decimal.RequireFromString("1.5")),
		"enum":          Enum{Class: "ai.backend.common.types.SessionTypes", Value: "batch"},
		"binarysize":    BinarySize(64 << 20),
		"slotname":      SlotName("cuda.device"),
		"resourceslot":  ResourceSlot{"cpu": decimal.NewFromInt(2), "mem": decimal.NewFromInt(1 << 30)},
		"imageref":      ImageRef{Name: "python", Project: "stable", Tag: "3.9", Registry: "cr.backend.ai", Architecture: "x86_64"},
	}
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "go_values.bin")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, "testdata/check_go_values.py", path).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	// And Go reads its own output back.
	back, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := back.(msgpack.Map).Get("resourceslot")
	if rs, ok := got.(ResourceSlot); !ok || !rs["mem"].Equal(decimal.NewFromInt(1<<30)) {
		t.Fatalf("round trip: %#v", got)
	}
}
