package app

import (
	"errors"
	"strings"
	"testing"

	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/etcdconfig"
)

// A resource group's config/container/sandbox-type/{group} raises the
// node's sandbox runtime, never lowers it; a value the agent cannot
// honour stops start-up with a ConfigError naming the key.
func TestOverlaySandboxByGroup(t *testing.T) {
	for _, tc := range []struct {
		name, node, group string
		groups            map[string]any
		want, fromEtcd    string
		err               string
	}{
		{name: "raised", node: "docker", group: "gpu", groups: map[string]any{"gpu": "gvisor"}, want: "gvisor", fromEtcd: "config/container/sandbox-type/gpu"},
		{name: "other group", node: "docker", group: "default", groups: map[string]any{"gpu": "gvisor"}, want: "docker"},
		{name: "unset is default", node: "docker", group: "", groups: map[string]any{"default": "crun"}, want: "crun", fromEtcd: "config/container/sandbox-type/default"},
		{name: "never lowered", node: "gvisor", group: "default", groups: map[string]any{"default": "crun"}, want: "gvisor"},
		{name: "spaces trimmed", node: "docker", group: "default", groups: map[string]any{"default": " crun\n"}, want: "crun", fromEtcd: "config/container/sandbox-type/default"},
		{name: "unranked", node: "docker", group: "default", groups: map[string]any{"default": "kata"}, err: "not known to be stricter"},
		{name: "jail", node: "docker", group: "default", groups: map[string]any{"default": "jail"}, err: "not supported"},
		{name: "a prefix, not a value", node: "docker", group: "default", groups: map[string]any{"default": map[string]any{"x": "gvisor"}}, err: "found keys below it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Defaults()
			cfg.Container.SandboxType = tc.node
			cfg.Agent.InitialResourceGroupName = tc.group
			err := overlayEtcd(cfg, &etcdconfig.Global{SandboxByGroup: tc.groups})
			if tc.err != "" {
				var ce *ConfigError
				if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "config/container/sandbox-type/") {
					t.Fatalf("err %v, want a ConfigError naming the key and saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Container.SandboxType != tc.want {
				t.Fatalf("sandbox-type %q, want %q", cfg.Container.SandboxType, tc.want)
			}
			src := cfg.SourceOf("container.sandbox-type")
			if tc.fromEtcd != "" && (src.Kind != config.FromEtcd || src.Detail != tc.fromEtcd) {
				t.Fatalf("source %+v, want etcd %s", src, tc.fromEtcd)
			}
			if tc.fromEtcd == "" && src.Kind == config.FromEtcd {
				t.Fatalf("source %+v: etcd did not set it", src)
			}
		})
	}
}
