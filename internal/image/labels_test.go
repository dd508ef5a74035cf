package image

import (
	"strings"
	"testing"

	"github.com/bai-agent/bai-agent/internal/resource"
)

func TestParseServicePorts(t *testing.T) {
	got, err := ParseServicePorts("jupyter:http:8080,vscode:http:[8180,8181],term:pty:8200,model:tcp:9000", "model")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Name != "jupyter" || got[1].ContainerPorts[1] != 8181 || !got[2].IsInference || got[0].IsInference {
		t.Fatalf("got %+v", got)
	}
	for _, tc := range []struct{ in, want string }{
		{"jupyter:http", "is not name:protocol:port"},
		{"jupyter:ftp:8080", "unknown protocol"},
		{"jupyter:http:80", "must be > 1024"},
		{"jupyter:http:2000", "reserved"},
		{"jupyter:http:7681", "reserved"},
		{"jupyter:http:x", "is not a port number"},
		{"a:http:8080,a:http:8081", "declared twice"},
		{"a:http:8080,b:tcp:8080", "used by both"},
		{"a:http:[8080,8081", "unbalanced"},
		{"a:http:65535", "must be > 1024"},
	} {
		if _, err := ParseServicePorts(tc.in, ""); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want error containing %q", tc.in, err, tc.want)
		}
	}
}

func TestParseLabels(t *testing.T) {
	types := map[resource.SlotName]resource.SlotType{"cpu": resource.SlotCount, "mem": resource.SlotBytes}
	info, err := Parse(map[string]string{
		"ai.backend.kernelspec":       "1",
		"ai.backend.resource.min.cpu": "1",
		"ai.backend.resource.min.mem": "256m",
		"ai.backend.envs.corecount":   "OMP_NUM_THREADS,MKL_NUM_THREADS",
		"ai.backend.runtime-type":     "python",
	}, types)
	if err != nil {
		t.Fatal(err)
	}
	if !info.HasFeature("uid-match") || info.ResourceMin["mem"].IntPart() != 256<<20 || len(info.CorecountEnvs) != 2 || info.RuntimeType != "python" {
		t.Fatalf("got %+v", info)
	}
	for _, tc := range []struct {
		labels map[string]string
		want   string
	}{
		{map[string]string{}, "ai.backend.kernelspec is missing"},
		{map[string]string{"ai.backend.kernelspec": "x"}, "not a positive integer"},
		{map[string]string{"ai.backend.kernelspec": "1", "ai.backend.resource.min.mem": "lots"}, "ai.backend.resource.min.mem"},
		{map[string]string{"ai.backend.kernelspec": "1", "ai.backend.envs.corecount": "A-B"}, "not an environment variable"},
		{map[string]string{"ai.backend.kernelspec": "1", "ai.backend.service-ports": "x:y"}, "service-ports"},
	} {
		if _, err := Parse(tc.labels, types); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.labels, err, tc.want)
		}
	}
}
