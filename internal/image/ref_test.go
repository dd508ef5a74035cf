package image

import (
	"errors"
	"strings"
	"testing"

	"github.com/bai-agent/bai-agent/internal/wire"
)

// The cases follow ImageRef.from_image_config / parse_image_str of
// common/docker.py.
func TestParseRef(t *testing.T) {
	tests := []struct {
		name                      string
		canonical, project, reg   string
		isLocal                   bool
		want                      wire.ImageRef
		wantDocker, wantCanonical string
	}{
		{"registry image", "cr.backend.ai/stable/python:3.9-ubuntu20.04", "stable", "cr.backend.ai", false,
			wire.ImageRef{Name: "python", Project: "stable", Tag: "3.9-ubuntu20.04", Registry: "cr.backend.ai", Architecture: "x86_64"},
			"cr.backend.ai/stable/python:3.9-ubuntu20.04", "cr.backend.ai/stable/python:3.9-ubuntu20.04"},
		{"local image by the manager's name", "local/myproj/python:3.11", "myproj", "local", true,
			wire.ImageRef{Name: "python", Project: "myproj", Tag: "3.11", Registry: "local", Architecture: "x86_64", IsLocal: true},
			"myproj/python:3.11", "local/myproj/python:3.11"},
		{"nested name under the project", "local/myproj/ml/torch:2", "myproj", "local", true,
			wire.ImageRef{Name: "ml/torch", Project: "myproj", Tag: "2", Registry: "local", Architecture: "x86_64", IsLocal: true},
			"myproj/ml/torch:2", "local/myproj/ml/torch:2"},
		{"IP registry with port", "127.0.0.1:5000/bai/kernel:1", "bai", "127.0.0.1:5000", false,
			wire.ImageRef{Name: "kernel", Project: "bai", Tag: "1", Registry: "127.0.0.1:5000", Architecture: "x86_64"},
			"127.0.0.1:5000/bai/kernel:1", "127.0.0.1:5000/bai/kernel:1"},
		{"no registry part given", "bai-test/kernel:abc", "", "", true,
			wire.ImageRef{Name: "bai-test/kernel", Tag: "abc", Registry: "index.docker.io", Architecture: "x86_64", IsLocal: true},
			"bai-test/kernel:abc", "index.docker.io/bai-test/kernel:abc"},
		{"default tag", "cr.backend.ai/stable/python", "stable", "cr.backend.ai", false,
			wire.ImageRef{Name: "python", Project: "stable", Tag: "latest", Registry: "cr.backend.ai", Architecture: "x86_64"},
			"cr.backend.ai/stable/python:latest", "cr.backend.ai/stable/python:latest"},
		{"docker hub default repository", "docker.io/python:3", "", "docker.io", false,
			wire.ImageRef{Name: "lablup/python", Tag: "3", Registry: "docker.io", Architecture: "x86_64"},
			"docker.io/lablup/python:3", "docker.io/lablup/python:3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRef(tt.canonical, tt.project, tt.reg, "amd64", tt.isLocal)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("ref %+v, want %+v", got, tt.want)
			}
			if d := DockerName(got); d != tt.wantDocker {
				t.Errorf("docker name %q, want %q", d, tt.wantDocker)
			}
			if c := got.Canonical(); c != tt.wantCanonical {
				t.Errorf("canonical %q, want %q", c, tt.wantCanonical)
			}
		})
	}
	for _, bad := range []struct{ canonical, project, reg, want string }{
		{"", "", "", "canonical name is empty"},
		{"http://cr.backend.ai/x:1", "", "", "not a URL"},
		{"cr.backend.ai/stable/python:bad tag", "stable", "cr.backend.ai", "invalid tag"},
		{"cr.backend.ai/other/python:1", "stable", "cr.backend.ai", "does not match"},
		{"cr.backend.ai/:1", "", "cr.backend.ai", "empty image"},
	} {
		if _, err := ParseRef(bad.canonical, bad.project, bad.reg, "", false); !errors.Is(err, ErrInvalidRef) || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("ParseRef(%q): %v, want %q", bad.canonical, err, bad.want)
		}
	}
}
