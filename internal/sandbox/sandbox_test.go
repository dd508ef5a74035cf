package sandbox

import (
	"strings"
	"testing"
)

func TestResolveNeverWeaker(t *testing.T) {
	for _, tc := range []struct {
		node, label, want, err string
	}{
		{"docker", "", "", ""},
		{"docker", "crun", "crun", ""},
		{"docker", "gvisor", "runsc", ""},
		{"crun", "docker", "crun", ""},
		{"crun", "runc", "crun", ""},
		{"crun", "gvisor", "runsc", ""},
		{"gvisor", "crun", "runsc", ""},
		{"gvisor", "docker", "runsc", ""},
		{"gvisor", "runsc", "runsc", ""},
		{"kata", "gvisor", "kata", ""},
		{"kata", "kata", "kata", ""},
		{"kata", "other", "", "cannot be ranked"},
		{"docker", "kata", "", "not known to be stricter"},
		{"gvisor", "kata", "", "not known to be stricter"},
		{"docker", "jail", "", "not supported"},
		{"docker", "a b", "", "not a runtime name"},
	} {
		p, err := NewPolicy(tc.node)
		if err != nil {
			t.Fatal(err)
		}
		labels := map[string]string{}
		if tc.label != "" {
			labels[LabelRuntime] = tc.label
		}
		got, err := p.Resolve(labels)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), LabelRuntime) {
				t.Errorf("node %s label %q: err %v, want one containing %q and the label", tc.node, tc.label, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("node %s label %q: %q, %v; want %q", tc.node, tc.label, got, err, tc.want)
		}
	}
}

func TestValidateTypeJail(t *testing.T) {
	_, err := NewPolicy("jail")
	if err == nil {
		t.Fatal("jail accepted")
	}
	for _, w := range []string{"container.sandbox-type", `"docker"`, `"crun"`, `"gvisor"`, "registered with the engine"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%v: does not name %s", err, w)
		}
	}
	for _, ok := range []string{"docker", "crun", "gvisor", "runsc-ptrace", "io.containerd.runc.v2"} {
		if err := ValidateType(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}

func TestMergeAcceleratorRuntime(t *testing.T) {
	if r, err := Merge("", "nvidia"); r != "nvidia" || err != nil {
		t.Fatalf("default sandbox + nvidia: %q %v", r, err)
	}
	if r, err := Merge("runsc", ""); r != "runsc" || err != nil {
		t.Fatalf("runsc alone: %q %v", r, err)
	}
	if _, err := Merge("runsc", "nvidia"); err == nil || !strings.Contains(err.Error(), "nvidia") {
		t.Fatalf("runsc + nvidia: %v", err)
	}
}

func TestRuntimes(t *testing.T) {
	for node, want := range map[string]string{"docker": ",crun,runsc", "crun": "crun,runsc", "gvisor": "runsc", "kata": "kata"} {
		p, _ := NewPolicy(node)
		if got := strings.Join(p.Runtimes(), ","); got != want {
			t.Errorf("%s: %s, want %s", node, got, want)
		}
	}
}

// A resource group's etcd value raises the node's runtime, never lowers
// it, and one the agent cannot rank is an error.
func TestStricterGroup(t *testing.T) {
	for _, tc := range []struct{ node, group, want, err string }{
		{"docker", "gvisor", "gvisor", ""},
		{"docker", "crun", "crun", ""},
		{"docker", "docker", "docker", ""},
		{"docker", "runc", "docker", ""},
		{"crun", "docker", "crun", ""},
		{"gvisor", "crun", "gvisor", ""},
		{"crun", "runsc", "runsc", ""},
		{"gvisor", "runsc", "gvisor", ""},
		{"kata", "gvisor", "kata", ""},
		{"kata", "kata", "kata", ""},
		{"docker", "kata", "", "not known to be stricter"},
		{"docker", "jail", "", "not supported"},
		{"docker", "", "", "not a runtime name"},
	} {
		got, err := Stricter(tc.node, tc.group)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("node %s group %q: err %v, want %q", tc.node, tc.group, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("node %s group %q: %q %v, want %q", tc.node, tc.group, got, err, tc.want)
		}
	}
}

func TestIsGVisor(t *testing.T) {
	for rt, want := range map[string]bool{"runsc": true, "runsc-kvm": true, "runsc-ptrace": true, "": false, "runc": false, "crun": false, "kata": false, "runscx": false} {
		if got := IsGVisor(rt); got != want {
			t.Errorf("IsGVisor(%q) = %v", rt, got)
		}
	}
}
