package config

import (
	"bytes"
	"strings"
	"testing"
)

func TestEffectiveSources(t *testing.T) {
	file := "[agent]\nbackend = \"docker\"\nid = \"node-7\"\nservice-addr = \"0.0.0.0:7003\"\n\n[container]\nscratch_root = \"/srv/scratch\"\n\n[etcd]\npassword = \"hunter2\"\n\n[container-logs]\ndriver = \"local\"\n"
	env := map[string]string{"BACKEND_SANDBOX_TYPE": "docker", "BACKEND_AGENT_HOST_OVERRIDE": "10.0.0.5", "BACKEND_AGENT_PORT": "7001"}
	res, err := Load("/etc/agent.toml", []byte(file), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	c := res.Config
	if err := c.ApplyEtcd(map[string]any{"driver": "json-file"}, map[string]any{"init_polling_attempt": "7"}, nil); err != nil {
		t.Fatal(err)
	}
	got := map[string]Entry{}
	for _, e := range c.Effective() {
		got[e.Key] = e
	}
	for _, tc := range []struct {
		key, value, source string
	}{
		{"agent.id", `"node-7"`, "file /etc/agent.toml:3:1"},
		{"agent.internal-addr", `"0.0.0.0:7003"`, "file /etc/agent.toml:4:1"}, // written as its alias
		{"agent.rpc-listen-addr", `"10.0.0.5:7001"`, "environment BACKEND_AGENT_HOST_OVERRIDE+BACKEND_AGENT_PORT"},
		{"container.scratch-root", `"/srv/scratch"`, "file /etc/agent.toml:7:1"}, // written in snake_case
		{"container.sandbox-type", `"docker"`, "environment BACKEND_SANDBOX_TYPE"},
		{"container.port-range", "[30000, 31000]", "default"},
		{"agent.region", `""`, "default"}, // under a table the file has: still a default
		{"etcd.password", `"<redacted>"`, "file /etc/agent.toml:10:1"},
		{"etcd.user", `""`, "default"},
		{"etcd.addr", `["127.0.0.1:2379"]`, "default"},
		{"container-logs.driver", `"json-file"`, "etcd config/agent/container-logs/driver"},
		{"kernel-lifecycles.init-polling-attempt", "7", "etcd config/agent/kernel-lifecycles/init-polling-attempt"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			e, ok := got[tc.key]
			if !ok {
				t.Fatalf("no entry for %s", tc.key)
			}
			if e.Value != tc.value || e.Source.String() != tc.source {
				t.Fatalf("%s = %s (%s), want %s (%s)", tc.key, e.Value, e.Source, tc.value, tc.source)
			}
		})
	}
	var out bytes.Buffer
	PrintEffective(&out, c.Effective(), true)
	s := out.String()
	if strings.Contains(s, "hunter2") {
		t.Fatalf("secret printed:\n%s", s)
	}
	if strings.Contains(s, "# default") || !strings.Contains(s, "[container-logs]\ndriver = \"json-file\"") {
		t.Fatalf("--only-set output:\n%s", s)
	}
}
