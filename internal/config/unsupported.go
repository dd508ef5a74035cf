package config

import (
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
)

// Status says what bai-agent does with a key of upstream's agent.toml
// that it accepts but does not implement.
type Status string

// The statuses of an unimplemented key, by the value it is set to.
const (
	// Neutral: the value makes no difference: it is upstream's default,
	// or upstream ignores it too given the rest of the file (jail-args
	// without the jail sandbox). Listed by "config check" only.
	Neutral Status = "neutral"
	// Warned: ignored with a warning at start-up, because stock
	// Backend.AI configs carry such values and ignoring them is harmless.
	Warned Status = "warned"
	// Refused: start-up fails; the value asks for behaviour bai-agent
	// does not have, and running without it would surprise the operator.
	Refused Status = "refused"
	// implemented: the key's value is one bai-agent implements
	// (allocation-mode = "shared"); such a key is not listed.
	implemented Status = ""
)

// DocRef is where the table of unimplemented keys is written down.
const DocRef = `docs/compatibility.md, "Settings bai-agent does not implement"`

// Finding is one key of the loaded configuration that bai-agent does not
// implement, with what start-up does about it.
type Finding struct {
	Key    string // canonical key, e.g. "container.sandbox-type"
	Value  string // as it would be written in agent.toml
	Source Source // file position or environment variable
	Status Status
	// Why is what to use instead (Refused), why ignoring is safe
	// (Warned), or why the value makes no difference (Neutral).
	Why string
}

func (f Finding) String() string {
	return fmt.Sprintf("%s: %s = %s: %s: %s", f.Where(), f.Key, f.Value, f.Status, f.Why)
}

// Where is the file position ("agent.toml:12:1") or the layer and its
// detail ("environment BACKEND_SANDBOX_TYPE") that set the key.
func (f Finding) Where() string {
	if f.Source.Kind == FromFile {
		return f.Source.Detail
	}
	return f.Source.String()
}

// UnsupportedError is start-up's refusal of a config that sets keys to
// values bai-agent does not implement.
type UnsupportedError struct {
	Findings []Finding // the Refused ones
}

func (e *UnsupportedError) Error() string {
	lines := make([]string, 0, len(e.Findings))
	for _, f := range e.Findings {
		lines = append(lines, fmt.Sprintf("%s: %s = %s is not supported by bai-agent: %s", f.Where(), f.Key, f.Value, f.Why))
	}
	return strings.Join(lines, "\n") + "\n(see " + DocRef + ")"
}

// rule is one unimplemented key: its value, and a check that says, for
// the loaded configuration, whether the value is neutral and otherwise
// whether it is refused or warned about, and why.
type rule struct {
	key   string
	value func(c *Config) any
	check func(c *Config) (Status, string)
}

// Texts shared by several rules.
const (
	upstreamDefault = "upstream's default value; nothing to implement"
	debugLogs       = "upstream only adds DEBUG records with it; bai-agent has no separate switch: set logging.level = \"DEBUG\" or debug.enabled = true for its debug records"
	aiomonitor      = "bai-agent has no aiomonitor console (a Python asyncio tool); inspect it with GET /metrics on internal-addr and its logs"
	metadataServer  = "bai-agent serves no container metadata server; kernels that query upstream's metadata address get no answer, whatever this value"
	networkPlugins  = "bai-agent's bridge, overlay and host session networks are built in and cannot be limited: remove the key"
	neverColored    = "bai-agent's console output is never colored; nothing else changes"
)

// neutralIf returns Neutral with idle when neutral holds, else st with
// why. An empty idle means the value is one bai-agent implements (not
// listed at all).
func neutralIf(neutral bool, idle string, st Status, why string) (Status, string) {
	if neutral {
		if idle == "" {
			return implemented, ""
		}
		return Neutral, idle
	}
	return st, why
}

// simple is a rule whose value is neutral when it equals def (compared
// with reflect.DeepEqual; nil and empty slices and maps count as equal to
// an empty def).
func simple(key string, value func(c *Config) any, def any, st Status, why string) rule {
	return rule{key: key, value: value, check: func(c *Config) (Status, string) {
		return neutralIf(sameValue(value(c), def), upstreamDefault, st, why)
	}}
}

func sameValue(a, b any) bool {
	if isEmpty(a) && isEmpty(b) {
		return true
	}
	return reflect.DeepEqual(a, b)
}

// isEmpty: nil, false, "", 0, and empty slices and maps.
func isEmpty(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Map, reflect.String:
		return rv.Len() == 0
	case reflect.Pointer, reflect.Interface:
		return rv.IsNil()
	}
	return rv.IsZero()
}

// rawField returns key of a raw table (nil when v is not a table).
func rawField(v any, key string) any {
	m, _ := v.(map[string]any)
	return m[key]
}

// rawEnabled reports whether a raw section sets enabled = true.
func rawEnabled(v any) bool {
	b, _ := rawField(v, "enabled").(bool)
	return b
}

func hasDriver(c *Config, d string) bool { return slices.Contains(c.Logging.Drivers, d) }

// unimplemented is every key of upstream's agent.toml that Config accepts
// and nothing outside this package reads. docs/compatibility.md holds the
// same table for operators (a test keeps the two in step).
var unimplemented = []rule{
	// [agent]
	simple("agent.agent-sock-port", func(c *Config) any { return c.Agent.AgentSockPort }, 6007, Warned,
		"bai-agent serves no agent socket (upstream's host-side helper for jail and PID translation); its kernel runner does not use one"),
	simple("agent.ipc-base-path", func(c *Config) any { return c.Agent.IPCBasePath }, "/tmp/backend.ai/ipc", Warned,
		"bai-agent creates no IPC sockets there; its state lives under var-base-path"),
	simple("agent.instance-type", func(c *Config) any { return c.Agent.InstanceType }, "", Warned,
		"upstream only prints it in a start-up log line"),
	simple("agent.event-loop", func(c *Config) any { return c.Agent.EventLoop }, "asyncio", Warned,
		"it picks a Python event loop (asyncio or uvloop); bai-agent is a Go program"),
	simple("agent.aiomonitor-termui-port", func(c *Config) any { return c.Agent.AiomonitorTermuiPort }, 38200, Warned, aiomonitor),
	simple("agent.aiomonitor-webui-port", func(c *Config) any { return c.Agent.AiomonitorWebuiPort }, 39200, Warned, aiomonitor),
	simple("agent.metadata-server-bind-host", func(c *Config) any { return c.Agent.MetadataServerBindHost }, "0.0.0.0", Warned, metadataServer),
	simple("agent.metadata-server-port", func(c *Config) any { return c.Agent.MetadataServerPort }, 40128, Warned, metadataServer),
	{key: "agent.allow-network-plugins", value: func(c *Config) any { return c.Agent.AllowNetworkPlugins }, check: func(c *Config) (Status, string) {
		l := c.Agent.AllowNetworkPlugins
		all := l == nil || (slices.Contains(l, "overlay") && slices.Contains(l, "host"))
		return neutralIf(all, "", Refused, networkPlugins)
	}},
	simple("agent.block-network-plugins", func(c *Config) any { return c.Agent.BlockNetworkPlugins }, []string(nil), Refused, networkPlugins),
	{key: "agent.docker-mode", value: func(c *Config) any { return c.Agent.DockerMode }, check: func(c *Config) (Status, string) {
		m := c.Agent.DockerMode
		return neutralIf(m == "" || m == "auto" || m == "native", "", Refused,
			"bai-agent supports a native Docker Engine on Linux only, not Docker Desktop's LinuxKit VM: remove the key or set \"native\"")
	}},

	// [container]
	{key: "container.jail-args", value: func(c *Config) any { return c.Container.JailArgs }, check: func(c *Config) (Status, string) {
		// sandbox-type = "jail" itself is refused by validation, naming
		// the runtimes bai-agent offers instead (internal/sandbox).
		return Neutral, "used only with sandbox-type = \"jail\", which bai-agent refuses"
	}},
	{key: "container.scratch-nfs-address", value: func(c *Config) any { return c.Container.ScratchNFSAddress }, check: func(c *Config) (Status, string) {
		return Neutral, "used only with scratch-type = \"k8s-nfs\" (Kubernetes), which bai-agent refuses"
	}},
	{key: "container.scratch-nfs-options", value: func(c *Config) any { return c.Container.ScratchNFSOptions }, check: func(c *Config) (Status, string) {
		return Neutral, "used only with scratch-type = \"k8s-nfs\" (Kubernetes), which bai-agent refuses"
	}},
	simple("container.alternative-bridge", func(c *Config) any { return c.Container.AlternativeBridge }, "", Refused,
		"bai-agent attaches kernels to Docker's default bridge (or the session's network): remove the key, or change the default bridge in dockerd's daemon.json (\"bridge\")"),
	simple("container.swarm-enabled", func(c *Config) any { return c.Container.SwarmEnabled }, false, Warned,
		"bai-agent joins the overlay network a multi-node session names without this switch; it only skips upstream's start-up check that the engine is in a swarm"),
	simple("container.krunner-volumes", func(c *Config) any { return c.Container.KrunnerVolumes }, nil, Warned,
		"bai-agent mounts its own static bai-krunner into every kernel (container.krunner-binary), so upstream's runner volumes are not used"),

	// [resource]
	simple("resource.reserved-disk", func(c *Config) any { return c.Resource.ReservedDisk }, Size(8<<30), Warned,
		"no compute plugin reports a disk slot (upstream's intrinsic plugins do not either), so there is nothing to subtract it from"),
	{key: "resource.allocation-mode", value: func(c *Config) any { return c.Resource.AllocationMode }, check: func(c *Config) (Status, string) {
		m := c.Resource.AllocationMode
		return neutralIf(m == "shared" || m == "auto-split", "", Refused,
			"bai-agent offers the whole node less [resource] reserved-cpu/reserved-mem: use allocation-mode = \"shared\" and the reserved-* keys to hold resources back")
	}},
	{key: "resource.allocations", value: func(c *Config) any { return c.Resource.Allocations }, check: func(c *Config) (Status, string) {
		return neutralIf(isEmpty(c.Resource.Allocations), upstreamDefault, Refused,
			"per-agent allocations (manual mode) are not implemented: remove [resource.allocations] and use reserved-cpu/reserved-mem")
	}},

	// [logging]
	{key: "logging.drivers", value: func(c *Config) any { return c.Logging.Drivers }, check: func(c *Config) (Status, string) {
		return neutralIf(!hasDriver(c, "logstash") && !hasDriver(c, "graylog"), "", Refused,
			"bai-agent cannot send records to logstash or graylog: use the file driver with a log shipper, or [logging.loki]")
	}},
	simple("logging.console.colored", func(c *Config) any {
		if p := c.Logging.Console.Colored; p != nil {
			return *p
		}
		return nil
	}, false, Warned, neverColored),
	{key: "logging.logstash", value: func(c *Config) any { return c.Logging.Logstash }, check: func(c *Config) (Status, string) {
		return neutralIf(!hasDriver(c, "logstash"), "used only when drivers lists \"logstash\", as upstream", Refused,
			"bai-agent cannot send records to logstash: use the file driver with a log shipper, or [logging.loki]")
	}},
	{key: "logging.graylog", value: func(c *Config) any { return c.Logging.Graylog }, check: func(c *Config) (Status, string) {
		return neutralIf(!hasDriver(c, "graylog"), "used only when drivers lists \"graylog\", as upstream", Refused,
			"bai-agent cannot send records to graylog: use the file driver with a log shipper, or [logging.loki]")
	}},
	{key: "logging.version", value: func(c *Config) any { return c.Logging.Version }, check: func(c *Config) (Status, string) {
		v, _ := c.Logging.Version.(int64)
		return neutralIf(c.Logging.Version == nil || v == 1, upstreamDefault, Warned,
			"the schema version of Python's logging.dictConfig; bai-agent builds its outputs from drivers")
	}},
	simple("logging.disable-existing-loggers", func(c *Config) any { return c.Logging.DisableExistingLoggers }, false, Warned,
		"it silences Python loggers created before start-up; bai-agent has none"),
	simple("logging.handlers", func(c *Config) any { return c.Logging.Handlers }, nil, Refused,
		"bai-agent builds its outputs from drivers only: use drivers (console, file) or [logging.loki] and remove the handlers"),
	simple("logging.loggers", func(c *Config) any { return c.Logging.Loggers }, nil, Warned,
		"per-logger settings of Python packages; bai-agent's records follow level and pkg-ns"),

	// [debug]
	simple("debug.asyncio", func(c *Config) any { return c.Debug.Asyncio }, false, Warned,
		"Python's asyncio debug mode; there is nothing to turn on in a Go program"),
	simple("debug.kernel-runner", func(c *Config) any { return c.Debug.KernelRunner }, false, Warned,
		"bai-krunner has no debug mode; a kernel's runner output is in its container log"),
	simple("debug.enhanced-aiomonitor-task-info", func(c *Config) any { return c.Debug.EnhancedAiomonitorTaskInfo }, false, Warned, aiomonitor),
	simple("debug.log-stats", func(c *Config) any { return c.Debug.LogStats }, false, Warned, debugLogs),
	simple("debug.log-kernel-config", func(c *Config) any { return c.Debug.LogKernelConfig }, false, Warned, debugLogs),
	simple("debug.log-alloc-map", func(c *Config) any { return c.Debug.LogAllocMap }, false, Warned, debugLogs),
	simple("debug.log-events", func(c *Config) any { return c.Debug.LogEvents }, false, Warned, debugLogs),
	simple("debug.log-heartbeats", func(c *Config) any { return c.Debug.LogHeartbeats }, false, Warned, debugLogs),
	simple("debug.coredump.enabled", func(c *Config) any { return c.Debug.Coredump.Enabled }, false, Refused,
		"bai-agent does not set up core dumps in kernels: set enabled = false, and to keep core dumps point the host's kernel.core_pattern at a host folder (or use systemd-coredump)"),
	coredumpDetail("debug.coredump.path", func(c *Config) any { return c.Debug.Coredump.Path }),
	coredumpDetail("debug.coredump.backup-count", func(c *Config) any { return c.Debug.Coredump.BackupCount }),
	coredumpDetail("debug.coredump.size-limit", func(c *Config) any { return c.Debug.Coredump.SizeLimit }),

	// Top-level sections.
	{key: "pyroscope", value: func(c *Config) any { return c.Pyroscope }, check: func(c *Config) (Status, string) {
		return neutralIf(!rawEnabled(c.Pyroscope), "enabled is false (upstream's default), so nothing is profiled", Refused,
			"bai-agent has no Pyroscope profiler: set [pyroscope] enabled = false or remove the section")
	}},
	{key: "otel", value: func(c *Config) any { return c.Otel }, check: func(c *Config) (Status, string) {
		o := c.OtelSettings()
		if !o.Enabled {
			return Neutral, "enabled is false (upstream's default), so nothing is exported"
		}
		if otlpGRPCEndpoint(o.Endpoint) {
			return Refused, "bai-agent exports traces over OTLP/HTTP (protobuf), not gRPC: set endpoint to the collector's OTLP/HTTP receiver, e.g. \"http://otel-collector:4318\" (upstream's default http://localhost:4317 is the gRPC port)"
		}
		return Warned, "traces (RPC calls, kernel operation steps) are exported over OTLP/HTTP to endpoint; logs are not (no OTLP log exporter in this build), so log-level is unused: send logs with [logging.loki]"
	}},
	{key: "service-discovery.type", value: func(c *Config) any { return rawField(c.ServiceDiscovery, "type") }, check: func(c *Config) (Status, string) {
		t := c.ServiceDiscoveryType()
		return neutralIf(t == "redis" || t == "etcd", "", Refused,
			"upstream knows service discovery types \"redis\" and \"etcd\" only")
	}},
	{key: "service-discovery", value: func(c *Config) any { return serviceDiscoveryExtras(c) }, check: func(c *Config) (Status, string) {
		return neutralIf(len(serviceDiscoveryExtras(c)) == 0, "only type is set", Warned,
			"bai-agent registers itself with its own id, the group \"agent\" and its internal-addr; instance-id, service-group, display-name, extra-labels and endpoints are not used")
	}},
	{key: "agents", value: func(c *Config) any { return c.Agents }, check: func(c *Config) (Status, string) {
		if isEmpty(c.Agents) {
			return Neutral, "no agents listed: one agent, the one of [agent]"
		}
		return neutralIf(c.Resource.AllocationMode == "shared", "", Refused,
			"multi-agent mode ([[agents]]) runs with [resource] allocation-mode = \"shared\" only (one allocator for the node, which no two agents over-allocate together); auto-split is not implemented: set allocation-mode = \"shared\"")
	}},
}

func coredumpDetail(key string, value func(c *Config) any) rule {
	return rule{key: key, value: value, check: func(c *Config) (Status, string) {
		return neutralIf(!c.Debug.Coredump.Enabled, "used only with debug.coredump.enabled = true, as upstream", Refused,
			"core dumps are not implemented (see debug.coredump.enabled)")
	}}
}

// serviceDiscoveryExtras is [service-discovery] without type and without
// empty values.
func serviceDiscoveryExtras(c *Config) map[string]any {
	m, _ := c.ServiceDiscovery.(map[string]any)
	out := map[string]any{}
	for k, v := range m {
		if k != "type" && !isEmpty(v) {
			out[k] = v
		}
	}
	return out
}

// Unimplemented lists the keys that the file or the environment set to a
// value that bai-agent does not implement, in the order of the table in
// unsupported.go, each with its status for the value it has.
func (c *Config) Unimplemented() []Finding {
	var out []Finding
	for _, r := range unimplemented {
		src := c.SourceOf(r.key)
		if src.Kind == FromDefault {
			continue
		}
		st, why := r.check(c)
		if st == implemented {
			continue
		}
		val := "(unset)"
		if v := r.value(c); v != nil {
			val = formatValue(reflect.ValueOf(v))
		}
		out = append(out, Finding{Key: r.key, Value: val, Source: src, Status: st, Why: why})
	}
	return out
}

// UnimplementedKeys is every key of the table, for documentation checks.
func UnimplementedKeys() []string {
	keys := make([]string, len(unimplemented))
	for i, r := range unimplemented {
		keys[i] = r.key
	}
	return keys
}

// refused returns the Refused findings as an error, or nil.
func refused(fs []Finding) error {
	var bad []Finding
	for _, f := range fs {
		if f.Status == Refused {
			bad = append(bad, f)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return &UnsupportedError{Findings: bad}
}

// LogWarnings logs the unknown keys and the Warned findings of r, one
// record each, as start-up does before the agent's own logger exists.
func (r *Result) LogWarnings(log *slog.Logger) {
	for _, w := range r.Warnings {
		log.Warn("unknown config key ignored", "key", w.Key, "position", w.Pos.String())
	}
	for _, f := range r.Findings {
		if f.Status == Warned {
			log.Warn("config key not implemented by bai-agent; ignored", "key", f.Key, "value", f.Value, "source", f.Source.String(), "why_safe", f.Why)
		}
	}
}
