package config

import (
	"errors"
	"strings"
	"testing"
)

func noEnv(string) (string, bool) { return "", false }

func TestShippedConfigsLoadCleanly(t *testing.T) {
	for _, f := range []string{"../../configs/agent/halfstack.toml", "../../configs/agent/local.toml"} {
		t.Run(f, func(t *testing.T) {
			res, err := LoadFile(f, noEnv)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Warnings) != 0 {
				t.Fatalf("warnings: %v", res.Warnings)
			}
		})
	}
	res, _ := LoadFile("../../configs/agent/halfstack.toml", noEnv)
	c := res.Config
	if c.Agent.Backend != "docker" || c.Agent.RPCListenAddr.String() != "127.0.0.1:6011" || c.Agent.InternalAddr.Port != 6003 {
		t.Fatalf("aliases not applied: %+v", c.Agent)
	}
	if c.Container.ScratchSize != 1<<30 || c.Etcd.Addr[0].Port != 8120 {
		t.Fatalf("values: %+v %+v", c.Container, c.Etcd)
	}
}

func TestDefaults(t *testing.T) {
	res, err := Load("x.toml", []byte("[agent]\nbackend = \"docker\"\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	c := res.Config
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"rpc port", c.Agent.RPCListenAddr.Port, 6011},
		{"internal", c.Agent.InternalAddr.String(), "0.0.0.0:6003"},
		{"namespace", c.Etcd.Namespace, "local"},
		{"port-range", c.Container.PortRange, PortRange{30000, 31000}},
		{"reserved-mem", c.Resource.ReservedMem, Size(1 << 30)},
		{"align", c.Resource.MemoryAlignSize, Size(16 << 20)},
		{"heartbeat", c.Debug.HeartbeatInterval, Duration(20)},
		{"orphan cleanup", c.Debug.OrphanKernelCleanupInterval, Duration(300)},
		{"abuse scan", c.Debug.AbuseReportScanInterval, Duration(30)},
		{"force-terminate-abusing-containers", c.Agent.ForceTerminateAbusingContainers, false},
		{"abuse-report-path", c.Agent.AbuseReportPath, ""},
		{"sync interval", c.Agent.SyncContainerLifecycles.Interval, Duration(10)},
		{"concurrency", c.Agent.KernelCreationConcurrency, 4},
		{"scratch", c.Container.ScratchType, "hostdir"},
		{"instance-metadata-url", c.Agent.InstanceMetadataURL, "http://169.254.169.254"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

func TestSnakeCaseAndUnknownKeys(t *testing.T) {
	doc := "[agent]\nbackend = \"docker\"\nrpc_listen_addr = \"127.0.0.1:7000\"\nbogus_key = 1\n\n[nosuch]\nx = 1\n"
	res, err := Load("a.toml", []byte(doc), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if res.Config.Agent.RPCListenAddr.Port != 7000 {
		t.Fatal("snake_case key not applied")
	}
	var got []string
	for _, w := range res.Warnings {
		got = append(got, w.String())
	}
	want := []string{"a.toml:4:1: agent.bogus-key: unknown key (ignored)", "a.toml:6:2: nosuch: unknown key (ignored)"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("warnings:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// sandbox-type: jail is refused naming the alternatives; the runtimes and
// any registered name pass (the engine is asked at start-up).
func TestSandboxType(t *testing.T) {
	for _, v := range []string{"docker", "crun", "gvisor", "runsc-ptrace"} {
		if _, err := Load("b.toml", []byte("[agent]\nbackend = \"docker\"\n[container]\nsandbox-type = \""+v+"\"\n"), noEnv); err != nil {
			t.Errorf("%s: %v", v, err)
		}
	}
	_, err := Load("b.toml", []byte("[agent]\nbackend = \"docker\"\n[container]\nsandbox-type = \"jail\"\n"), noEnv)
	for _, w := range []string{"container.sandbox-type", "not supported", `"docker"`, `"crun"`, `"gvisor"`, "registered with the engine"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("jail: %v does not say %s", err, w)
		}
	}
}

func TestInvalidValues(t *testing.T) {
	for _, tc := range []struct {
		name, doc, key string
	}{
		{"missing backend", "[agent]\nid = \"x\"\n", "agent.backend"},
		{"bad backend", "[agent]\nbackend = \"k8s\"\n", "agent.backend"},
		{"type", "[agent]\nbackend = \"docker\"\nagent-sock-port = \"x\"\n", "agent.agent-sock-port"},
		{"port range", "[agent]\nbackend = \"docker\"\n[container]\nport-range = [31000, 30000]\n", "container.port-range"},
		{"size", "[agent]\nbackend = \"docker\"\n[resource]\nreserved-mem = \"12 potatoes\"\n", "resource.reserved-mem"},
		{"scratch size", "[agent]\nbackend = \"docker\"\n[container]\nscratch-type = \"hostfile\"\n", "container.scratch-size"},
		{"scaling-group", "[agent]\nbackend = \"docker\"\nscaling-group = \"default\"\n", "agent.scaling-group"},
		{"metadata url scheme", "[agent]\nbackend = \"docker\"\ninstance-metadata-url = \"169.254.169.254\"\n", "agent.instance-metadata-url"},
		{"metadata url query", "[agent]\nbackend = \"docker\"\ninstance-metadata-url = \"http://127.0.0.1:8/?x=1\"\n", "agent.instance-metadata-url"},
		{"syntax", "[agent\n", ""},
		{"log driver", "[agent]\nbackend = \"docker\"\n[container-logs]\ndriver = \"syslog\"\n", "container-logs.driver"},
		{"polling attempts", "[agent]\nbackend = \"docker\"\n[kernel-lifecycles]\ninit-polling-attempt = 0\n", "kernel-lifecycles.init-polling-attempt"},
		{"vfolder policy", "[agent]\nbackend = \"docker\"\n[container]\nvfolder-mount-policy = \"lax\"\n", "container.vfolder-mount-policy"},
		{"etcd tls pair", "[agent]\nbackend = \"docker\"\n[etcd]\ntls-cert = \"/a\"\n", "etcd.tls-cert"},
		{"logging driver", "[agent]\nbackend = \"docker\"\n[logging]\ndrivers = [\"console\", \"syslog\"]\n", "logging.drivers[1]"},
		{"file driver without folder", "[agent]\nbackend = \"docker\"\n[logging]\ndrivers = [\"file\"]\n", "logging.file"},
		{"console format", "[agent]\nbackend = \"docker\"\n[logging.console]\nformat = \"pretty\"\n", "logging.console.format"},
		{"sandbox jail", "[agent]\nbackend = \"docker\"\n[container]\nsandbox-type = \"jail\"\n", "container.sandbox-type"},
		{"sandbox name", "[agent]\nbackend = \"docker\"\n[container]\nsandbox-type = \"a/b\"\n", "container.sandbox-type"},
		{"pkg-ns level", "[agent]\nbackend = \"docker\"\n[logging.pkg-ns]\n\"ai.backend\" = \"LOUD\"\n", "logging.pkg-ns.ai.backend"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load("b.toml", []byte(tc.doc), noEnv)
			var ve *ValueError
			if !errors.As(err, &ve) {
				t.Fatalf("got %v, want a ValueError", err)
			}
			if tc.key != "" && ve.Key != tc.key {
				t.Fatalf("key %q, want %q (%v)", ve.Key, tc.key, err)
			}
		})
	}
}

func TestEnvOverrides(t *testing.T) {
	env := map[string]string{
		"BACKEND_AGENT_PORT":           "7011",
		"BACKEND_CONTAINER_PORT_RANGE": "40000-40100",
		"BACKEND_SCRATCH_ROOT":         "/srv/scratch",
		"BACKEND_NAMESPACE":            "ns2",
	}
	res, err := Load("c.toml", []byte("[agent]\nbackend = \"docker\"\n"), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	c := res.Config
	if c.Agent.RPCListenAddr.Port != 7011 || c.Container.PortRange != (PortRange{40000, 40100}) || c.Container.ScratchRoot != "/srv/scratch" || c.Etcd.Namespace != "ns2" {
		t.Fatalf("overrides not applied: %+v %+v", c.Agent.RPCListenAddr, c.Container)
	}
	env["BACKEND_AGENT_PORT"] = "x"
	if _, err := Load("c.toml", []byte("[agent]\nbackend = \"docker\"\n"), func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err == nil {
		t.Fatal("bad BACKEND_AGENT_PORT accepted")
	}
}

func TestAliasesAndLifecycleSections(t *testing.T) {
	doc := `[agent]
backend = "docker"
announce-addr = "10.0.0.1:6003"
[container]
kernel-host = "10.0.0.2"
[container-logs]
driver = "json-file"
max-length = "20M"
chunk-size = "128K"
[kernel-lifecycles]
init-polling-attempt = 5
init-timeout-sec = 30
[api]
pull-timeout = 600
push-timeout = 60
`
	res, err := Load("a.toml", []byte(doc), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 0 {
		t.Fatalf("warnings: %v", res.Warnings)
	}
	c := res.Config
	tests := []struct {
		name      string
		got, want any
	}{
		{"announce-addr alias", c.Agent.AnnounceInternalAddr.String(), "10.0.0.1:6003"},
		{"kernel-host alias", c.Container.BindHost, "10.0.0.2"},
		{"log driver", c.ContainerLogs.Driver, "json-file"},
		{"log max length", int64(c.ContainerLogs.MaxLength), int64(20 << 20)},
		{"chunk size", int64(c.ContainerLogs.ChunkSize), int64(128 << 10)},
		{"polling attempts", c.KernelLifecycles.InitPollingAttempt, 5},
		{"polling timeout default", float64(c.KernelLifecycles.InitPollingTimeoutSec), 60.0},
		{"init timeout", float64(c.KernelLifecycles.InitTimeoutSec), 30.0},
		{"pull timeout", float64(c.API.PullTimeout), 600.0},
		{"push timeout", float64(c.API.PushTimeout), 60.0},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	// etcd's config/agent/... wins over the file.
	if err := c.ApplyEtcd(map[string]any{"max-length": "5M"}, map[string]any{"init_polling_attempt": "3"}, map[string]any{"pull-timeout": "30"}); err != nil {
		t.Fatal(err)
	}
	if c.ContainerLogs.MaxLength != 5<<20 || c.KernelLifecycles.InitPollingAttempt != 3 || c.API.PullTimeout != 30 || c.ContainerLogs.Driver != "json-file" {
		t.Fatalf("after etcd: %+v %+v %+v", c.ContainerLogs, c.KernelLifecycles, c.API)
	}
	for _, bad := range []struct {
		cl, kl, api map[string]any
		want        string
	}{
		{map[string]any{"max-length": "lots"}, nil, nil, "config/agent/container-logs/max-length"},
		{nil, map[string]any{"init-timeout-sec": "-1"}, nil, "config/agent/kernel-lifecycles/init-timeout-sec"},
		{nil, nil, map[string]any{"pull-timeout": "soon"}, "config/agent/api/pull-timeout"},
		{map[string]any{"driver": "syslog"}, nil, nil, "container-logs.driver"},
	} {
		if err := c.ApplyEtcd(bad.cl, bad.kl, bad.api); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("got %v, want %q", err, bad.want)
		}
	}
}
