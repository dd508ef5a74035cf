package config

import (
	"path/filepath"
	"strings"
	"testing"
)

const multiBase = `[agent]
backend = "docker"
rpc-listen-addr = "127.0.0.1:6011"
kernel-creation-concurrency = 4
[container]
scratch-root = "/var/scratch"
port-range = [30000, 30999]
`

func TestAgentConfigs_Fake(t *testing.T) {
	doc := multiBase + `[[agents]]
[agents.agent]
id = "a1"
[[agents]]
[agents.agent]
id = "a2"
rpc-listen-addr = "127.0.0.1:6012"
region = "east"
[agents.container]
scratch-root = "/other/scratch"
kernel-uid = 1001
`
	res, err := Load("/etc/a.toml", []byte(doc), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Config.MultiAgent() {
		t.Fatal("MultiAgent() = false with two [[agents]]")
	}
	cfgs, err := res.Config.AgentConfigs()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfgs) != 2 {
		t.Fatalf("%d configs, want 2", len(cfgs))
	}
	a1, a2 := cfgs[0], cfgs[1]
	if a1.Agent.ID != "a1" || a2.Agent.ID != "a2" {
		t.Fatalf("ids %q %q", a1.Agent.ID, a2.Agent.ID)
	}
	if a1.Agent.RPCListenAddr.Port != 6011 || a2.Agent.RPCListenAddr.Port != 6012 {
		t.Fatalf("rpc ports %d %d", a1.Agent.RPCListenAddr.Port, a2.Agent.RPCListenAddr.Port)
	}
	// The defaults come from [agent] and [container]; overrides stay in
	// their entry.
	if a1.Agent.KernelCreationConcurrency != 4 || a2.Agent.KernelCreationConcurrency != 4 {
		t.Fatal("kernel-creation-concurrency not inherited from [agent]")
	}
	if a1.Agent.Region == "east" || a2.Agent.Region != "east" {
		t.Fatalf("regions %q %q", a1.Agent.Region, a2.Agent.Region)
	}
	if a1.Container.KernelUID == 1001 || a2.Container.KernelUID != 1001 {
		t.Fatalf("kernel-uid %d %d", a1.Container.KernelUID, a2.Container.KernelUID)
	}
	// Without its own scratch-root an agent's scratch is a sub-tree.
	if a1.Container.ScratchRoot != filepath.Join("/var/scratch", "a1") || a2.Container.ScratchRoot != "/other/scratch" {
		t.Fatalf("scratch roots %q %q", a1.Container.ScratchRoot, a2.Container.ScratchRoot)
	}
	if res.Config.Container.ScratchRoot != "/var/scratch" || res.Config.Agent.RPCListenAddr.Port != 6011 {
		t.Fatal("an entry's override changed the defaults")
	}
	if len(res.Findings) != 0 {
		t.Fatalf("findings for shared multi-agent mode: %v", res.Findings)
	}

	// Without [[agents]] the one config is the file's.
	one, err := Load("a.toml", []byte(multiBase), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	cfgs, err = one.Config.AgentConfigs()
	if err != nil || len(cfgs) != 1 || cfgs[0] != one.Config || one.Config.MultiAgent() {
		t.Fatalf("single agent: %v %d", err, len(cfgs))
	}
}

func TestAgentConfigsRefused_Fake(t *testing.T) {
	entry := func(id, extra string) string {
		return "[[agents]]\n[agents.agent]\nid = \"" + id + "\"\n" + extra
	}
	for _, tc := range []struct{ name, doc, want string }{
		{"one entry", entry("a1", ""), "needs two or more"},
		{"same port", entry("a1", "") + entry("a2", ""), `agents[0] (id "a1") and agents[1] (id "a2") both listen on port 6011`},
		{"no id", entry("a1", "") + "[[agents]]\n[agents.agent]\nrpc-listen-addr = \"127.0.0.1:6013\"\n", "agents[1].agent.id is required"},
		{"duplicate id", entry("a1", "") + entry("a1", "rpc-listen-addr = \"127.0.0.1:6012\"\n"), `same id "a1"`},
		{"key not per agent", entry("a1", "") + entry("a2", "rpc-listen-addr = \"127.0.0.1:6012\"\nvar-base-path = \"/x\"\n"), "agents[1].agent.var-base-path cannot be set per agent"},
		{"manual allocations", entry("a1", "") + entry("a2", "rpc-listen-addr = \"127.0.0.1:6012\"\n[agents.resource]\ncpu = 2\n"), "allocation-mode = \"manual\") are not implemented"},
		{"bad override value", entry("a1", "") + entry("a2", "rpc-listen-addr = \"127.0.0.1:6012\"\n[agents.container]\nscratch-type = \"k8s\"\n"), `entry 1 (id "a2")`},
		{"overlapping ports", entry("a1", "") + entry("a2", "rpc-listen-addr = \"127.0.0.1:6012\"\n[agents.container]\nport-range = [30500, 31500]\n"), "overlapping port ranges"},
		{"same scratch", entry("a1", "[agents.container]\nscratch-root = \"/s\"\n") + entry("a2", "rpc-listen-addr = \"127.0.0.1:6012\"\n[agents.container]\nscratch-root = \"/s\"\n"), "both keep scratch in /s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load("a.toml", []byte(multiBase+tc.doc), noEnv)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
