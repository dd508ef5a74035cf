package config

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
)

const docker = "[agent]\nbackend = \"docker\"\n"

// findingsOf loads doc without refusing and returns its findings by key.
func findingsOf(t *testing.T, doc string, env func(string) (string, bool)) map[string]Finding {
	t.Helper()
	res, err := Check("a.toml", []byte(doc), env)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Finding{}
	for _, f := range res.Findings {
		out[f.Key] = f
	}
	return out
}

func TestRefusedKeys(t *testing.T) {
	for _, tc := range []struct {
		name, doc, key, where, instead string
		env                            map[string]string
	}{
		{"alternative bridge", docker + "[container]\nalternative-bridge = \"br1\"\n", "container.alternative-bridge", "a.toml:4:1", "daemon.json", nil},
		{"coredumps", docker + "[debug.coredump]\nenabled = true\n", "debug.coredump.enabled", "a.toml:4:1", "core_pattern", nil},
		{"coredump path with coredumps", docker + "[debug.coredump]\nenabled = true\npath = \"/x\"\n", "debug.coredump.path", "a.toml:5:1", "debug.coredump.enabled", nil},
		{"docker desktop", docker + "docker-mode = \"linuxkit\"\n", "agent.docker-mode", "a.toml:3:1", "native", nil},
		{"block network plugins", docker + "block-network-plugins = [\"overlay\"]\n", "agent.block-network-plugins", "a.toml:3:1", "remove the key", nil},
		{"allow only some network plugins", docker + "allow-network-plugins = [\"host\"]\n", "agent.allow-network-plugins", "a.toml:3:1", "remove the key", nil},
		{"logstash driver", docker + "[logging]\ndrivers = [\"console\", \"logstash\"]\n[logging.logstash]\nprotocol = \"tcp\"\n", "logging.drivers", "a.toml:4:1", "[logging.loki]", nil},
		{"logstash section with its driver", docker + "[logging]\ndrivers = [\"logstash\"]\n[logging.logstash]\nprotocol = \"tcp\"\n", "logging.logstash", "a.toml:5:2", "[logging.loki]", nil},
		{"graylog driver", docker + "[logging]\ndrivers = [\"graylog\"]\n", "logging.drivers", "a.toml:4:1", "log shipper", nil},
		{"dictConfig handlers", docker + "[logging.handlers.relay]\nclass = \"x\"\n", "logging.handlers", "a.toml:3:2", "drivers", nil},
		{"manual allocations", docker + "[resource]\nallocation-mode = \"manual\"\n", "resource.allocation-mode", "a.toml:4:1", "reserved-", nil},
		{"allocations table", docker + "[resource.allocations]\ncpu = 4\n", "resource.allocations", "a.toml:3:2", "reserved-cpu", nil},
		{"otel over grpc (upstream's default endpoint)", docker + "[otel]\nenabled = true\n", "otel", "a.toml:3:2", "OTLP/HTTP", nil},
		{"otel over grpc", docker + "[otel]\nenabled = true\nendpoint = \"http://otel:4317\"\n", "otel", "a.toml:3:2", ":4318", nil},
		{"pyroscope", docker + "[pyroscope]\nenabled = true\n", "pyroscope", "a.toml:3:2", "enabled = false", nil},
		{"unknown service discovery", docker + "[service-discovery]\ntype = \"consul\"\n", "service-discovery.type", "a.toml:3:2", `"etcd"`, nil},
		{"multi-agent auto-split", docker + "rpc-listen-addr = \"127.0.0.1:6011\"\n[resource]\nallocation-mode = \"auto-split\"\n[[agents]]\n[agents.agent]\nid = \"a1\"\n[[agents]]\n[agents.agent]\nid = \"a2\"\nrpc-listen-addr = \"127.0.0.1:6012\"\n", "agents", "a.toml:6:3", "auto-split is not implemented", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			_, err := Load("a.toml", []byte(tc.doc), env)
			var ue *UnsupportedError
			if !errors.As(err, &ue) {
				t.Fatalf("Load: %v, want an *UnsupportedError", err)
			}
			msg := err.Error()
			for _, want := range []string{tc.where + ": " + tc.key + " = ", "is not supported by bai-agent", tc.instead, "docs/compatibility.md"} {
				if !strings.Contains(msg, want) {
					t.Fatalf("error lacks %q:\n%s", want, msg)
				}
			}
			if f := findingsOf(t, tc.doc, env)[tc.key]; f.Status != Refused {
				t.Fatalf("%s: status %q, want refused", tc.key, f.Status)
			}
		})
	}
}

func TestWarnedKeys(t *testing.T) {
	for _, tc := range []struct{ name, doc, key string }{
		{"uvloop", docker + "event-loop = \"uvloop\"\n", "agent.event-loop"},
		{"agent socket port", docker + "agent-sock-port = 7007\n", "agent.agent-sock-port"},
		{"ipc folder", docker + "ipc-base-path = \"/var/run/backend.ai/ipc\"\n", "agent.ipc-base-path"},
		{"instance type", docker + "instance-type = \"m5.large\"\n", "agent.instance-type"},
		{"aiomonitor", docker + "aiomonitor-termui-port = 48200\n", "agent.aiomonitor-termui-port"},
		{"aiomonitor web", docker + "aiomonitor-webui-port = 49200\n", "agent.aiomonitor-webui-port"},
		{"metadata server", docker + "metadata-server-port = 40200\n", "agent.metadata-server-port"},
		{"metadata host", docker + "metadata-server-bind-host = \"127.0.0.1\"\n", "agent.metadata-server-bind-host"},
		{"swarm", docker + "[container]\nswarm-enabled = true\n", "container.swarm-enabled"},
		{"krunner volumes", docker + "[container.krunner-volumes]\n\"ubuntu20.04\" = \"backendai-krunner.v1.ubuntu20.04\"\n", "container.krunner-volumes"},
		{"reserved disk", docker + "[resource]\nreserved-disk = \"16G\"\n", "resource.reserved-disk"},
		{"colored console", docker + "[logging.console]\ncolored = true\n", "logging.console.colored"},
		{"dictConfig version", docker + "[logging]\nversion = 2\n", "logging.version"},
		{"disable existing loggers", docker + "[logging]\ndisable-existing-loggers = true\n", "logging.disable-existing-loggers"},
		{"dictConfig loggers", docker + "[logging.loggers.aiohttp]\nlevel = \"DEBUG\"\n", "logging.loggers"},
		{"asyncio debug", docker + "[debug]\nasyncio = true\n", "debug.asyncio"},
		{"runner debug", docker + "[debug]\nkernel-runner = true\n", "debug.kernel-runner"},
		{"aiomonitor task info", docker + "[debug]\nenhanced-aiomonitor-task-info = true\n", "debug.enhanced-aiomonitor-task-info"},
		{"log stats", docker + "[debug]\nlog-stats = true\n", "debug.log-stats"},
		{"log kernel config", docker + "[debug]\nlog-kernel-config = true\n", "debug.log-kernel-config"},
		{"log alloc map", docker + "[debug]\nlog-alloc-map = true\n", "debug.log-alloc-map"},
		{"log events", docker + "[debug]\nlog-events = true\n", "debug.log-events"},
		{"log heartbeats", docker + "[debug]\nlog-heartbeats = true\n", "debug.log-heartbeats"},
		{"otel over http", docker + "[otel]\nenabled = true\nendpoint = \"http://otel:4318\"\nlog-level = \"DEBUG\"\n", "otel"},
		{"service discovery labels", docker + "[service-discovery]\ntype = \"redis\"\nextra-labels = { zone = \"a\" }\n", "service-discovery"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Load("a.toml", []byte(tc.doc), noEnv)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			var got []string
			for _, f := range res.Findings {
				if f.Status != Neutral {
					got = append(got, string(f.Status)+" "+f.Key)
				}
			}
			if want := []string{"warned " + tc.key}; !slices.Equal(got, want) {
				t.Fatalf("findings %v, want %v", got, want)
			}
			if res.Findings[0].Why == "" {
				t.Fatal("a warning must say why ignoring the key is safe")
			}
		})
	}
}

// TestAcceptedKeys: values that bai-agent implements are not listed, and
// values that make no difference (as upstream) are listed as neutral.
func TestAcceptedKeys(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		neutral   []string
	}{
		{"docker sandbox", docker + "[container]\nsandbox-type = \"docker\"\n", nil},
		{"jail args without jail", docker + "[container]\njail-args = [\"--mount=/data\"]\n", []string{"container.jail-args"}},
		{"nfs options without k8s-nfs", docker + "[container]\nscratch-nfs-address = \"nfs:/x\"\nscratch-nfs-options = \"ro\"\n", []string{"container.scratch-nfs-address", "container.scratch-nfs-options"}},
		{"logstash section without its driver", docker + "[logging]\ndrivers = [\"console\"]\n[logging.logstash]\nprotocol = \"tcp\"\n", []string{"logging.logstash"}},
		{"coredump details while disabled", docker + "[debug.coredump]\nenabled = false\npath = \"/var/crash\"\nsize-limit = \"1G\"\n", []string{"debug.coredump.enabled", "debug.coredump.path", "debug.coredump.size-limit"}},
		{"auto-split with one agent", docker + "[resource]\nallocation-mode = \"auto-split\"\n", nil},
		{"all network plugins allowed", docker + "allow-network-plugins = [\"overlay\", \"host\"]\n", nil},
		{"native docker", docker + "docker-mode = \"native\"\n", nil},
		{"redis service discovery", docker + "[service-discovery]\ntype = \"redis\"\n", []string{"service-discovery"}},
		{"etcd service discovery", docker + "[service-discovery]\ntype = \"etcd\"\n", []string{"service-discovery"}},
		{"otel disabled", docker + "[otel]\nenabled = false\nendpoint = \"http://otel:4317\"\n", []string{"otel"}},
		{"pyroscope disabled", docker + "[pyroscope]\nenabled = false\n", []string{"pyroscope"}},
		{"colored off", docker + "[logging.console]\ncolored = false\n", []string{"logging.console.colored"}},
		{"no agents", "agents = []\n" + docker, []string{"agents"}},
		{"implemented keys only", docker + "[container]\nkernel-uid = 1000\n[resource]\nreserved-cpu = 2\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Load("a.toml", []byte(tc.doc), noEnv)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			var got []string
			for _, f := range res.Findings {
				if f.Status != Neutral {
					t.Fatalf("%s: status %s, want neutral (%s)", f.Key, f.Status, f.Why)
				}
				got = append(got, f.Key)
			}
			if !slices.Equal(got, tc.neutral) {
				t.Fatalf("neutral %v, want %v", got, tc.neutral)
			}
		})
	}
}

// TestUpstreamDefaultsFile: every key of upstream's schema written out
// with its default value starts bai-agent without a refusal, a warning or
// an unknown key.
func TestUpstreamDefaultsFile(t *testing.T) {
	res, err := LoadFile("testdata/upstream-defaults.toml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 0 {
		t.Fatalf("unknown keys: %v", res.Warnings)
	}
	for _, f := range res.Findings {
		if f.Status != Neutral {
			t.Errorf("%s", f)
		}
	}
	// Most unimplemented keys are written there, so most are checked.
	if len(res.Findings) < 25 {
		t.Fatalf("only %d findings: is the file complete?", len(res.Findings))
	}
}

// TestUpstreamStockFile: a deployment's file in the shape of upstream's
// samples starts, with a warning for each harmless non-default value.
func TestUpstreamStockFile(t *testing.T) {
	res, err := LoadFile("testdata/upstream-stock.toml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 0 {
		t.Fatalf("unknown keys: %v", res.Warnings)
	}
	var warned []string
	for _, f := range res.Findings {
		if f.Status == Warned {
			warned = append(warned, f.Key)
		}
	}
	want := []string{"agent.ipc-base-path", "agent.event-loop", "resource.reserved-disk", "logging.console.colored", "service-discovery"}
	if !slices.Equal(warned, want) {
		t.Fatalf("warned %v, want %v", warned, want)
	}
}

// TestLogWarnings: start-up logs each unknown key and each warned key as
// one slog record naming the key and why it is safe.
func TestLogWarnings(t *testing.T) {
	res, err := Load("a.toml", []byte(docker+"event-loop = \"uvloop\"\nagent-sock-port = 6007\nbogus = 1\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	res.LogWarnings(slog.New(slog.NewTextHandler(&buf, nil)))
	out := buf.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 records (unknown key, warned key; the neutral one is not logged):\n%s", out)
	}
	for _, want := range []string{"level=WARN", "key=agent.bogus", "position=a.toml:5:1", "key=agent.event-loop", `value="\"uvloop\""`, "why_safe=", "source=\"file a.toml:3:1\""} {
		if !strings.Contains(out, want) {
			t.Fatalf("log lacks %q:\n%s", want, out)
		}
	}
}

// TestDocsListEveryUnimplementedKey keeps the operators' table in
// docs/compatibility.md in step with the rules.
func TestDocsListEveryUnimplementedKey(t *testing.T) {
	doc, err := os.ReadFile("../../docs/compatibility.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "## Settings bai-agent does not implement")
	if !ok {
		t.Fatal(`docs/compatibility.md lacks "## Settings bai-agent does not implement"`)
	}
	for _, k := range UnimplementedKeys() {
		if !strings.Contains(section, "`"+k+"`") {
			t.Errorf("docs/compatibility.md does not list `%s`", k)
		}
	}
}
