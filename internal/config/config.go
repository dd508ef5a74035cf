package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/bai-agent/bai-agent/internal/sandbox"
)

// Config is the whole agent.toml. Field tags give the canonical kebab-case
// key; alias tags list other accepted spellings.
type Config struct {
	Etcd      EtcdConfig      `toml:"etcd"`
	Agent     AgentConfig     `toml:"agent"`
	Container ContainerConfig `toml:"container"`
	Resource  ResourceConfig  `toml:"resource"`
	Logging   LoggingConfig   `toml:"logging"`
	Debug     DebugConfig     `toml:"debug"`
	Watcher   WatcherConfig   `toml:"watcher"`
	// [container-logs], [kernel-lifecycles] and [api] are also read from
	// etcd (config/agent/...), which wins, as with the Python agent.
	ContainerLogs    ContainerLogsConfig    `toml:"container-logs"`
	KernelLifecycles KernelLifecyclesConfig `toml:"kernel-lifecycles"`
	API              APIConfig              `toml:"api"`

	// Sections upstream reads that bai-agent does not implement: accepted,
	// then checked against the table in unsupported.go (refused, warned
	// about, or neutral).
	Pyroscope        any `toml:"pyroscope,raw"`
	Otel             any `toml:"otel,raw"`
	ServiceDiscovery any `toml:"service-discovery,raw"`
	Agents           any `toml:"agents,raw"`

	// Source is the file the config came from ("" for the embedded default).
	Source string `toml:"-"`

	// sources records which layer set each key (see MarkSource).
	sources map[string]Source
	// agentEntries are the parsed [[agents]] entries (see AgentConfigs).
	agentEntries []agentEntry
}

// ContainerLogsConfig is [container-logs]: the kernels' Docker log
// driver and its size (split over 5 rotated files, as upstream), and the
// chunk size of the logs kept in Redis for the manager.
type ContainerLogsConfig struct {
	Driver    string `toml:"driver"`
	MaxLength Size   `toml:"max-length"`
	ChunkSize Size   `toml:"chunk-size"`
}

// KernelLifecyclesConfig is [kernel-lifecycles]: how long a new kernel may
// take to come up (the runner handshake polls init-polling-attempt times
// within init-polling-timeout-sec; init-timeout-sec bounds the whole
// start).
type KernelLifecyclesConfig struct {
	InitPollingAttempt    int      `toml:"init-polling-attempt"`
	InitPollingTimeoutSec Duration `toml:"init-polling-timeout-sec"`
	InitTimeoutSec        Duration `toml:"init-timeout-sec"`
}

// APIConfig is [api]: timeouts of image operations (0: none for commit
// and push).
type APIConfig struct {
	PullTimeout   Duration `toml:"pull-timeout"`
	CommitTimeout Duration `toml:"commit-timeout"`
	PushTimeout   Duration `toml:"push-timeout"`
}

// ApplyEtcd overlays etcd's config/agent/{container-logs,kernel-lifecycles,api}
// values (strings, as etcd holds them) on the three sections, naming the
// key of a value that does not parse.
func (c *Config) ApplyEtcd(containerLogs, kernelLifecycles, api map[string]any) error {
	const cl, kl, ap = "config/agent/container-logs", "config/agent/kernel-lifecycles", "config/agent/api"
	// section maps each etcd directory to the config section it overlays.
	section := map[string]string{cl: "container-logs", kl: "kernel-lifecycles", ap: "api"}
	str := func(m map[string]any, k, where string) (string, bool) {
		v, ok := m[k].(string)
		if !ok {
			v, ok = m[strings.ReplaceAll(k, "-", "_")].(string)
		}
		set := ok && strings.TrimSpace(v) != ""
		if set {
			c.MarkSource(section[where]+"."+k, Source{Kind: FromEtcd, Detail: where + "/" + k})
		}
		return strings.TrimSpace(v), set
	}
	size := func(m map[string]any, k, where string, dst *Size) error {
		if v, ok := str(m, k, where); ok {
			if err := dst.SetConfigValue(v); err != nil {
				return fmt.Errorf("etcd %s/%s: %q: %w", where, k, v, err)
			}
		}
		return nil
	}
	secs := func(m map[string]any, k, where string, dst *Duration) error {
		if v, ok := str(m, k, where); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 {
				return fmt.Errorf("etcd %s/%s: %q is not a number of seconds", where, k, v)
			}
			*dst = Duration(f)
		}
		return nil
	}
	if v, ok := str(containerLogs, "driver", cl); ok {
		c.ContainerLogs.Driver = v
	}
	for _, err := range []error{
		size(containerLogs, "max-length", cl, &c.ContainerLogs.MaxLength),
		size(containerLogs, "chunk-size", cl, &c.ContainerLogs.ChunkSize),
		secs(kernelLifecycles, "init-polling-timeout-sec", kl, &c.KernelLifecycles.InitPollingTimeoutSec),
		secs(kernelLifecycles, "init-timeout-sec", kl, &c.KernelLifecycles.InitTimeoutSec),
		secs(api, "pull-timeout", ap, &c.API.PullTimeout),
		secs(api, "commit-timeout", ap, &c.API.CommitTimeout),
		secs(api, "push-timeout", ap, &c.API.PushTimeout),
	} {
		if err != nil {
			return err
		}
	}
	if v, ok := str(kernelLifecycles, "init-polling-attempt", kl); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fmt.Errorf("etcd %s/init-polling-attempt: %q is not a positive integer", kl, v)
		}
		c.KernelLifecycles.InitPollingAttempt = n
	}
	return c.validateLifecycleSections(func(key, format string, args ...any) error {
		return fmt.Errorf("etcd config/agent/%s: %s", key, fmt.Sprintf(format, args...))
	})
}

// validateLifecycleSections checks the three sections (from the file or
// from etcd).
func (c *Config) validateLifecycleSections(errorf func(key, format string, args ...any) error) error {
	if c.ContainerLogs.Driver != "local" && c.ContainerLogs.Driver != "json-file" {
		return errorf("container-logs.driver", "%q is not local or json-file", c.ContainerLogs.Driver)
	}
	if c.ContainerLogs.MaxLength < 5*1024 {
		return errorf("container-logs.max-length", "must be at least 5K (it is split over 5 files)")
	}
	if c.ContainerLogs.ChunkSize < 1024 {
		return errorf("container-logs.chunk-size", "must be at least 1K")
	}
	if c.KernelLifecycles.InitPollingAttempt < 1 {
		return errorf("kernel-lifecycles.init-polling-attempt", "must be at least 1")
	}
	if c.KernelLifecycles.InitTimeoutSec <= 0 || c.KernelLifecycles.InitPollingTimeoutSec <= 0 {
		return errorf("kernel-lifecycles.init-timeout-sec", "timeouts must be positive")
	}
	if c.API.PullTimeout <= 0 {
		return errorf("api.pull-timeout", "must be positive")
	}
	return nil
}

// LegacyWire reports whether the manager is 26.8.1 or older
// (manager-compat = "26.8.1"): positional msgpack event args, pickled
// Decimals and ResourceSlots. It is the one place that decides; the event
// producer, the heartbeat and the RPC results follow it.
func (a *AgentConfig) LegacyWire() bool { return a.ManagerCompat == "26.8.1" }

// EtcdConfig is [etcd].
type EtcdConfig struct {
	Namespace string       `toml:"namespace"`
	Addr      HostPortList `toml:"addr"`
	User      string       `toml:"user"`
	Password  string       `toml:"password"`
	// TLS speaks HTTPS to etcd; TLSCACert verifies its certificate (the
	// system roots otherwise), TLSCert/TLSKey authenticate the agent.
	TLS           bool   `toml:"tls"`
	TLSCACert     string `toml:"tls-ca-cert"`
	TLSCert       string `toml:"tls-cert"`
	TLSKey        string `toml:"tls-key"`
	TLSSkipVerify bool   `toml:"tls-skip-verify"`
}

// SyncLifecycles is [agent.sync-container-lifecycles].
type SyncLifecycles struct {
	Enabled  bool     `toml:"enabled"`
	Interval Duration `toml:"interval"`
}

// UtilizationScope is one [agent.utilization-metric.*] table.
type UtilizationScope struct {
	Enable   bool     `toml:"enable"`
	Interval Duration `toml:"interval"`
}

// UtilizationMetric is [agent.utilization-metric].
type UtilizationMetric struct {
	Node      UtilizationScope `toml:"node"`
	Container UtilizationScope `toml:"container"`
	Process   UtilizationScope `toml:"process"`
}

// AgentConfig is [agent].
type AgentConfig struct {
	Backend                 string    `toml:"backend" alias:"mode"`
	ID                      string    `toml:"id"`
	RPCListenAddr           HostPort  `toml:"rpc-listen-addr"`
	AdvertisedRPCAddr       *HostPort `toml:"advertised-rpc-addr"`
	InternalAddr            HostPort  `toml:"internal-addr" alias:"service-addr"`
	AnnounceInternalAddr    HostPort  `toml:"announce-internal-addr" alias:"announce-addr"`
	SSLEnabled              bool      `toml:"ssl-enabled"`
	SSLCert                 string    `toml:"ssl-cert"`
	SSLKey                  string    `toml:"ssl-key"`
	RPCAuthManagerPublicKey string    `toml:"rpc-auth-manager-public-key"`
	RPCAuthAgentKeypair     string    `toml:"rpc-auth-agent-keypair"`
	AgentSockPort           int       `toml:"agent-sock-port"`
	IPCBasePath             string    `toml:"ipc-base-path"`
	VarBasePath             string    `toml:"var-base-path"`
	ImageCommitPath         string    `toml:"image-commit-path"`
	MountPath               string    `toml:"mount-path"`
	ExtraMountRoots         []string  `toml:"extra-mount-roots"`
	CohabitingStorageProxy  bool      `toml:"cohabiting-storage-proxy"`
	PublicHost              string    `toml:"public-host"`
	Region                  string    `toml:"region"`
	InstanceType            string    `toml:"instance-type"`
	PIDFile                 string    `toml:"pid-file"`
	EventLoop               string    `toml:"event-loop"`
	SkipManagerDetection    bool      `toml:"skip-manager-detection"`
	AiomonitorTermuiPort    int       `toml:"aiomonitor-termui-port" alias:"aiomonitor-port"`
	AiomonitorWebuiPort     int       `toml:"aiomonitor-webui-port"`
	MetadataServerBindHost  string    `toml:"metadata-server-bind-host"`
	MetadataServerPort      int       `toml:"metadata-server-port"`
	AllowComputePlugins     []string  `toml:"allow-compute-plugins"`
	BlockComputePlugins     []string  `toml:"block-compute-plugins"`
	// MockAcceleratorConfig is the mock accelerator's TOML file (bai-agent;
	// default: ./mock-accelerator.toml, ~/.config/backend.ai/ or
	// /etc/backend.ai/).
	MockAcceleratorConfig string   `toml:"mock-accelerator-config"`
	AllowNetworkPlugins   []string `toml:"allow-network-plugins"`
	BlockNetworkPlugins   []string `toml:"block-network-plugins"`
	AbuseReportPath       string   `toml:"abuse-report-path"`
	DockerMode            string   `toml:"docker-mode"`
	// MountPathUIDGID is upstream's owner of volume mount points
	// ("uid:gid" or "user:group", passed to chown(1) after a mount).
	MountPathUIDGID string `toml:"mount-path-uid-gid"`
	// VolumeMountTimeout and VolumeUnmountTimeout bound one mount(8) and
	// one umount(8) of do_volume_mount / do_volume_unmount, in seconds
	// (bai-agent; upstream bounds unmounts by etcd
	// config/watcher/file-io-timeout, default 10, and mounts not at all).
	// Defaults 60 and 10; 0 means the default.
	VolumeMountTimeout              Duration `toml:"volume-mount-timeout"`
	VolumeUnmountTimeout            Duration `toml:"volume-unmount-timeout"`
	InitialResourceGroupName        string   `toml:"initial-resource-group-name"`
	ScalingGroupType                string   `toml:"scaling-group-type"`
	ForceTerminateAbusingContainers bool     `toml:"force-terminate-abusing-containers"`
	KernelCreationConcurrency       int      `toml:"kernel-creation-concurrency"`
	// ManagerCompat picks the wire format for values the manager unpickles
	// and for events: "main" (26.8 main) or "26.8.1" (releases up to
	// 26.8.1: pickled Decimals/ResourceSlots, positional event args).
	ManagerCompat string `toml:"manager-compat"`
	// ControlPlane is "etcd" (read global config from etcd, report to Redis)
	// or "none" (a standalone node driven only by `bai-agent ctl`; events
	// are logged).
	ControlPlane string `toml:"control-plane"`
	// OutboxMaxSize bounds undelivered events kept on disk.
	OutboxMaxSize Size `toml:"event-outbox-max-size"`
	// RPCMaxMessageSize bounds an inbound RPC body (upload_file carries a
	// whole file); a bigger one gets a ValueError reply, undecoded.
	RPCMaxMessageSize Size `toml:"rpc-max-message-size"`
	// SoftMemoryLimit is the Go runtime's soft memory limit (0: none).
	SoftMemoryLimit Size `toml:"soft-memory-limit"`
	// InstanceMetadataURL is where start-server asks the cloud's instance
	// metadata service (AWS, Azure, GCP) for the agent id when [agent] id
	// is not set, as upstream does (bai-agent; default
	// http://169.254.169.254; "" skips the probes and the id is "i-" +
	// host name). Tests point it at a local server.
	InstanceMetadataURL     string            `toml:"instance-metadata-url"`
	SyncContainerLifecycles SyncLifecycles    `toml:"sync-container-lifecycles"`
	UtilizationMetric       UtilizationMetric `toml:"utilization-metric"`

	// ScalingGroup is the removed "scaling-group" key; set only to reject it.
	ScalingGroup *string `toml:"scaling-group"`
}

// ContainerConfig is [container].
type ContainerConfig struct {
	KernelUID            int       `toml:"kernel-uid"`
	KernelGID            int       `toml:"kernel-gid"`
	PortRange            PortRange `toml:"port-range"`
	PortReuseCooldownSec Duration  `toml:"port-reuse-cooldown-sec"`
	StatsType            string    `toml:"stats-type"`
	SandboxType          string    `toml:"sandbox-type"`
	JailArgs             []string  `toml:"jail-args"`
	ScratchType          string    `toml:"scratch-type"`
	ScratchRoot          string    `toml:"scratch-root"`
	ScratchSize          Size      `toml:"scratch-size"`
	ScratchNFSAddress    string    `toml:"scratch-nfs-address"`
	ScratchNFSOptions    string    `toml:"scratch-nfs-options"`
	AlternativeBridge    string    `toml:"alternative-bridge"`
	SwarmEnabled         bool      `toml:"swarm-enabled"`
	BindHost             string    `toml:"bind-host" alias:"kernel-host"`
	AdvertisedHost       string    `toml:"advertised-host"`
	KrunnerVolumes       any       `toml:"krunner-volumes,raw"`
	// KernelRunner makes bai-krunner every kernel's entrypoint (code
	// execution, batch jobs). Off, a kernel runs its image's own command
	// and the runner RPCs answer KernelRunnerNotInitializedError.
	KernelRunner bool `toml:"kernel-runner"`
	// KrunnerBinary is the static bai-krunner binary ("" :
	// $BAI_KRUNNER_BINARY, else bai-krunner next to the agent binary).
	KrunnerBinary string `toml:"krunner-binary"`
	PidsLimit     int64  `toml:"pids-limit"`
	// CPUQuota also caps CPU time at the cpu slot (NanoCPUs), on top of
	// the cpuset; useful with overcommit, where cores are shared.
	CPUQuota bool `toml:"cpu-quota"`
	// ScratchReadBps/WriteBps throttle each kernel's I/O on the scratch
	// device (0: no limit). resource_opts io_read_bps/io_write_bps
	// override them per kernel.
	ScratchReadBps          Size     `toml:"scratch-read-bps"`
	ScratchWriteBps         Size     `toml:"scratch-write-bps"`
	AllowedKernelMountRoots []string `toml:"allowed-kernel-mount-roots"`
	// VFolderMountPolicy is "compat" (default: the manager is the
	// authority; any host path and absolute kernel path except the deny
	// list) or "strict" (host paths under mount-path/extra-mount-roots,
	// kernel paths under allowed-kernel-mount-roots).
	VFolderMountPolicy string `toml:"vfolder-mount-policy"`
	// VFolderDenyPaths are host paths never mounted into a kernel, in
	// either policy ("/" only itself, the others with what is below).
	VFolderDenyPaths []string `toml:"vfolder-deny-paths"`
}

// ResourceConfig is [resource].
type ResourceConfig struct {
	ReservedCPU      int      `toml:"reserved-cpu"`
	ReservedMem      Size     `toml:"reserved-mem"`
	ReservedDisk     Size     `toml:"reserved-disk"`
	AllocationMode   string   `toml:"allocation-mode"`
	Allocations      any      `toml:"allocations,raw"`
	MemoryAlignSize  Size     `toml:"memory-align-size"`
	AllocationOrder  []string `toml:"allocation-order"`
	AffinityPolicy   string   `toml:"affinity-policy"`
	CPUAllocStrategy string   `toml:"cpu-alloc-strategy"`
	// SharedOvercommit (bai-agent's key) gives each agent of a multi-agent
	// process its own allocator over the whole node, as upstream's
	// "shared" mode does, so that together they may over-commit it; off
	// (the default), one allocator serves them all. Host ports are one
	// pool either way.
	SharedOvercommit bool `toml:"shared-overcommit"`
}

// LoggingConfig is [logging].
type LoggingConfig struct {
	Level   string            `toml:"level"`
	Drivers []string          `toml:"drivers"`
	PkgNS   map[string]string `toml:"pkg-ns"`
	Console struct {
		Colored *bool  `toml:"colored"`
		Format  string `toml:"format"`
	} `toml:"console"`
	File struct {
		Path         string `toml:"path"`
		Filename     string `toml:"filename"`
		BackupCount  int    `toml:"backup-count"`
		RotationSize Size   `toml:"rotation-size"`
		Format       string `toml:"format"`
	} `toml:"file"`
	Logstash any `toml:"logstash,raw"`
	Graylog  any `toml:"graylog,raw"`
	// Upstream's dictConfig-style keys (version, disable-existing-loggers,
	// handlers, loggers): accepted and checked in unsupported.go.
	Version                any `toml:"version,raw"`
	DisableExistingLoggers any `toml:"disable-existing-loggers,raw"`
	Handlers               any `toml:"handlers,raw"`
	Loggers                any `toml:"loggers,raw"`
	// Loki ships the agent's records to a Loki push endpoint as well
	// (labels agent_id, level, kernel_id); no URL, no shipping.
	Loki struct {
		URL       string   `toml:"url"`
		Tenant    string   `toml:"tenant"`
		Username  string   `toml:"username"`
		Password  string   `toml:"password"`
		BatchSize int      `toml:"batch-size"`
		BatchWait Duration `toml:"batch-wait"`
		Buffer    int      `toml:"buffer"`
	} `toml:"loki"`
}

// DebugConfig is [debug].
type DebugConfig struct {
	Enabled                    bool     `toml:"enabled"`
	Asyncio                    bool     `toml:"asyncio"`
	KernelRunner               bool     `toml:"kernel-runner"`
	EnhancedAiomonitorTaskInfo bool     `toml:"enhanced-aiomonitor-task-info"`
	SkipContainerDeletion      bool     `toml:"skip-container-deletion"`
	LogStats                   bool     `toml:"log-stats"`
	LogKernelConfig            bool     `toml:"log-kernel-config"`
	LogAllocMap                bool     `toml:"log-alloc-map"`
	LogEvents                  bool     `toml:"log-events"`
	LogHeartbeats              bool     `toml:"log-heartbeats"`
	LogDockerEvents            bool     `toml:"log-docker-events"`
	HeartbeatInterval          Duration `toml:"heartbeat-interval"`
	// The keys below are bai-agent's own: the periods of upstream's
	// OrphanKernelCleanupObserver (300 s) and CleanupReportedKernelsTask
	// (30 s), shortened by tests.
	OrphanKernelCleanupInterval Duration `toml:"orphan-kernel-cleanup-interval"`
	AbuseReportScanInterval     Duration `toml:"abuse-report-scan-interval"`
	// Pprof serves Go's profiles under /debug/pprof/ on the internal
	// address. A key of its own, not implied by enabled: the internal
	// address listens on every interface by default, and a CPU profile or
	// trace costs the node what a caller asks.
	Pprof bool `toml:"pprof"`
	// SlotRescanInterval is the period of upstream's UpdateSlotsTask
	// (30 s): compute plugins look for devices that came or went.
	SlotRescanInterval Duration `toml:"slot-rescan-interval"`
	Coredump           struct {
		Enabled     bool   `toml:"enabled"`
		Path        string `toml:"path"`
		BackupCount int    `toml:"backup-count"`
		SizeLimit   Size   `toml:"size-limit"`
	} `toml:"coredump"`
}

// WatcherConfig is [watcher].
type WatcherConfig struct {
	ServiceAddr        HostPort `toml:"service-addr"`
	SSLEnabled         bool     `toml:"ssl-enabled"`
	SSLCert            string   `toml:"ssl-cert"`
	SSLKey             string   `toml:"ssl-key"`
	TargetService      string   `toml:"target-service"`
	SoftResetAvailable bool     `toml:"soft-reset-available"`
	// The keys below are bai-agent's own.
	//
	// Mode is how the watcher controls the agent: "systemd" (systemctl
	// on target-service, as upstream), "supervisor" (the watcher runs
	// the agent as its child and restarts it when it dies), or "auto"
	// (systemd when the host runs it).
	Mode string `toml:"mode"`
	// Token is the X-BackendAI-Watcher-Token of a node without etcd; with
	// etcd, config/watcher/token wins (default "insecure", as upstream).
	Token string `toml:"token"`
	// ShutdownCommand powers the node off after POST /shutdown.
	ShutdownCommand []string `toml:"shutdown-command"`
	// DockerRestartCommand restarts the engine during POST /hard-reset.
	DockerRestartCommand []string `toml:"docker-restart-command"`
}

// Defaults returns the configuration with every default of spec section 8
// applied (RPC port 6011 instead of 6001).
func Defaults() *Config {
	c := &Config{}
	c.Etcd = EtcdConfig{Namespace: "local", Addr: HostPortList{{Host: "127.0.0.1", Port: 2379}}}
	host, _ := os.Hostname()
	c.Agent = AgentConfig{
		// Off a cloud this is the id; start-server replaces it with the
		// cloud instance id when a metadata service answers and [agent]
		// id is not set (internal/identity).
		ID:                        "i-" + host,
		InstanceMetadataURL:       "http://169.254.169.254",
		RPCListenAddr:             HostPort{Host: "0.0.0.0", Port: 6011},
		InternalAddr:              HostPort{Host: "0.0.0.0", Port: 6003},
		AnnounceInternalAddr:      HostPort{Host: "host.docker.internal", Port: 6003},
		AgentSockPort:             6007,
		IPCBasePath:               "/tmp/backend.ai/ipc",
		VarBasePath:               "./var/lib/backend.ai",
		ImageCommitPath:           "./tmp/backend.ai/commit",
		CohabitingStorageProxy:    true,
		PIDFile:                   "/dev/null",
		EventLoop:                 "asyncio",
		AiomonitorTermuiPort:      38200,
		AiomonitorWebuiPort:       39200,
		MetadataServerBindHost:    "0.0.0.0",
		MetadataServerPort:        40128,
		DockerMode:                "auto",
		ScalingGroupType:          "compute",
		KernelCreationConcurrency: 4,
		VolumeMountTimeout:        60,
		VolumeUnmountTimeout:      10,
		ManagerCompat:             "main",
		ControlPlane:              "etcd",
		OutboxMaxSize:             64 << 20,
		RPCMaxMessageSize:         10 << 20,
		SoftMemoryLimit:           256 << 20,
		SyncContainerLifecycles:   SyncLifecycles{Enabled: true, Interval: 10},
		UtilizationMetric: UtilizationMetric{
			Node:      UtilizationScope{Enable: true, Interval: 30},
			Container: UtilizationScope{Enable: true, Interval: 30},
			Process:   UtilizationScope{Enable: true, Interval: 30},
		},
	}
	c.Container = ContainerConfig{
		KernelUID:               -1,
		KernelGID:               -1,
		PortRange:               PortRange{30000, 31000},
		PortReuseCooldownSec:    60,
		StatsType:               "cgroup",
		SandboxType:             "docker",
		ScratchType:             "hostdir",
		ScratchRoot:             "./scratches",
		KernelRunner:            true,
		PidsLimit:               8192,
		AllowedKernelMountRoots: []string{"/home/work", "/data", "/mnt"},
		VFolderMountPolicy:      "compat",
		VFolderDenyPaths:        []string{"/", "/etc", "/proc", "/sys", "/dev", "/var/run/docker.sock", "/run/docker.sock", "/run/containerd", "/var/lib/docker", "/var/lib/containerd"},
	}
	c.Resource = ResourceConfig{
		ReservedCPU:     1,
		ReservedMem:     1 << 30,
		ReservedDisk:    8 << 30,
		AllocationMode:  "shared",
		MemoryAlignSize: 16 << 20,
		AllocationOrder: []string{"cuda", "rocm", "tpu", "cpu", "mem"},
		AffinityPolicy:  "INTERLEAVED",
	}
	c.Logging.Level = "INFO"
	c.Logging.Drivers = []string{"console"}
	c.Logging.Console.Format = "text"
	c.Logging.File.Format = "text"
	c.Logging.File.BackupCount = 5
	c.Logging.File.RotationSize = 10 << 20 // the Python agent's "10M"
	c.Debug.HeartbeatInterval = 20
	c.Debug.OrphanKernelCleanupInterval = 300
	c.Debug.AbuseReportScanInterval = 30
	c.Debug.SlotRescanInterval = 30
	c.Debug.Coredump.Path = "./coredumps"
	c.Debug.Coredump.BackupCount = 10
	c.Debug.Coredump.SizeLimit = 64 << 20
	c.ContainerLogs = ContainerLogsConfig{Driver: "local", MaxLength: 10 << 20, ChunkSize: 64 << 10}
	c.KernelLifecycles = KernelLifecyclesConfig{InitPollingAttempt: 10, InitPollingTimeoutSec: 60, InitTimeoutSec: 60}
	c.API = APIConfig{PullTimeout: 7200}
	c.Watcher = WatcherConfig{
		ServiceAddr:          HostPort{Host: "0.0.0.0", Port: 6009},
		TargetService:        "backendai-agent.service",
		Mode:                 "auto",
		ShutdownCommand:      []string{"shutdown", "-h", "now"},
		DockerRestartCommand: []string{"systemctl", "restart", "docker.service"},
	}
	return c
}

// Result is a loaded configuration and the warnings found while loading it.
type Result struct {
	Config *Config
	// Warnings are the keys the agent does not know.
	Warnings []Warning
	// Findings are the keys set that bai-agent knows but does not
	// implement (see Config.Unimplemented), whatever their status.
	Findings []Finding
}

// LoadFile reads path, applies defaults, environment overrides and
// validation, and refuses keys set to values bai-agent does not implement
// (an *UnsupportedError), as start-up does.
func LoadFile(path string, env func(string) (string, bool)) (*Result, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Load(path, data, env)
}

// Load parses data (named file in messages) and refuses it, with an
// *UnsupportedError, when it sets keys to values bai-agent does not
// implement.
func Load(file string, data []byte, env func(string) (string, bool)) (*Result, error) {
	res, err := Check(file, data, env)
	if err != nil {
		return nil, err
	}
	if err := refused(res.Findings); err != nil {
		return nil, err
	}
	return res, nil
}

// CheckFile is LoadFile without the refusal: the Result's Findings say
// what start-up would refuse ("bai-agent config check").
func CheckFile(path string, env func(string) (string, bool)) (*Result, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Check(path, data, env)
}

// Refuses returns start-up's refusal of a config with these findings (an
// *UnsupportedError), or nil.
func Refuses(fs []Finding) error { return refused(fs) }

// Check parses and validates data like Load, but returns the keys that
// Load would refuse as Findings instead of an error. Errors are syntax,
// type and range problems.
func Check(file string, data []byte, env func(string) (string, bool)) (*Result, error) {
	var tree map[string]any
	if err := toml.Unmarshal(data, &tree); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return nil, &ValueError{Pos: Position{File: file, Line: row, Column: col}, Key: strings.Join(de.Key(), "."), Msg: de.Error()}
		}
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	cfg := Defaults()
	cfg.Source = file
	b := &binder{file: file, pos: keyPositions(file, data), set: map[string]Position{}}
	if err := b.bindStruct("", normalizeTree(tree).(map[string]any), rootValue(cfg)); err != nil {
		return nil, err
	}
	for k, pos := range b.set {
		cfg.MarkSource(k, Source{Kind: FromFile, Detail: pos.String()})
	}
	if env != nil {
		if err := applyEnv(cfg, env); err != nil {
			return nil, err
		}
	}
	if err := cfg.validate(b); err != nil {
		return nil, err
	}
	if file != "" {
		absFile, err := filepath.Abs(file)
		if err == nil {
			cfg.resolvePaths(filepath.Dir(absFile))
		}
	}
	if err := cfg.parseAgents(b); err != nil {
		return nil, err
	}
	return &Result{Config: cfg, Warnings: b.warnings, Findings: cfg.Unimplemented()}, nil
}

// resolvePaths makes relative paths relative to the config file's folder,
// so the agent behaves the same whatever its working directory.
func (c *Config) resolvePaths(base string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) && *p != "/dev/null" {
			*p = filepath.Clean(filepath.Join(base, *p))
		}
	}
	abs(&c.Agent.VarBasePath)
	abs(&c.Agent.ImageCommitPath)
	abs(&c.Agent.MountPath)
	abs(&c.Container.ScratchRoot)
	abs(&c.Logging.File.Path)
	abs(&c.Agent.RPCAuthAgentKeypair)
	abs(&c.Agent.RPCAuthManagerPublicKey)
	for i := range c.Agent.ExtraMountRoots {
		abs(&c.Agent.ExtraMountRoots[i])
	}
}

func applyEnv(c *Config, lookup func(string) (string, bool)) error {
	// envKeys names the config key each variable overrides, so that
	// "config show --effective" can say which variable set a value.
	envKeys := map[string]string{
		"BACKEND_NAMESPACE": "etcd.namespace", "BACKEND_ETCD_ADDR": "etcd.addr",
		"BACKEND_ETCD_USER": "etcd.user", "BACKEND_ETCD_PASSWORD": "etcd.password",
		"BACKEND_AGENT_HOST_OVERRIDE": "agent.rpc-listen-addr", "BACKEND_AGENT_PORT": "agent.rpc-listen-addr",
		"BACKEND_PID_FILE": "agent.pid-file", "BACKEND_CONTAINER_PORT_RANGE": "container.port-range",
		"BACKEND_BIND_HOST_OVERRIDE": "container.bind-host", "BACKEND_SANDBOX_TYPE": "container.sandbox-type",
		"BACKEND_SCRATCH_ROOT": "container.scratch-root",
	}
	env := func(name string) (string, bool) {
		v, ok := lookup(name)
		if ok {
			key := envKeys[name]
			if prev := c.SourceOf(key); prev.Kind == FromEnv {
				c.MarkSource(key, Source{Kind: FromEnv, Detail: prev.Detail + "+" + name})
			} else {
				c.MarkSource(key, Source{Kind: FromEnv, Detail: name})
			}
		}
		return v, ok
	}
	envErr := func(name, msg string) error {
		return &ValueError{Pos: Position{File: "environment"}, Key: name, Msg: msg}
	}
	if v, ok := env("BACKEND_NAMESPACE"); ok {
		c.Etcd.Namespace = v
	}
	if v, ok := env("BACKEND_ETCD_ADDR"); ok {
		hp, err := ParseHostPort(v)
		if err != nil {
			return envErr("BACKEND_ETCD_ADDR", err.Error())
		}
		c.Etcd.Addr = HostPortList{hp}
	}
	if v, ok := env("BACKEND_ETCD_USER"); ok {
		c.Etcd.User = v
	}
	if v, ok := env("BACKEND_ETCD_PASSWORD"); ok {
		c.Etcd.Password = v
	}
	if v, ok := env("BACKEND_AGENT_HOST_OVERRIDE"); ok {
		c.Agent.RPCListenAddr.Host = v
	}
	if v, ok := env("BACKEND_AGENT_PORT"); ok {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 {
			return envErr("BACKEND_AGENT_PORT", fmt.Sprintf("%q is not a port number", v))
		}
		c.Agent.RPCListenAddr.Port = p
	}
	if v, ok := env("BACKEND_PID_FILE"); ok {
		c.Agent.PIDFile = v
	}
	if v, ok := env("BACKEND_CONTAINER_PORT_RANGE"); ok {
		pr, err := ParsePortRange(v)
		if err != nil {
			return envErr("BACKEND_CONTAINER_PORT_RANGE", err.Error())
		}
		c.Container.PortRange = pr
	}
	if v, ok := env("BACKEND_BIND_HOST_OVERRIDE"); ok {
		c.Container.BindHost = v
	}
	if v, ok := env("BACKEND_SANDBOX_TYPE"); ok {
		c.Container.SandboxType = v
	}
	if v, ok := env("BACKEND_SCRATCH_ROOT"); ok {
		c.Container.ScratchRoot = v
	}
	return nil
}

func oneOf(b *binder, key, v string, allowed ...string) error {
	if !slices.Contains(allowed, v) {
		return b.errorf(key, "%q is not one of %s", v, strings.Join(allowed, ", "))
	}
	return nil
}

func (c *Config) validate(b *binder) error {
	if err := c.validateLifecycleSections(func(key, format string, args ...any) error { return b.errorf(key, format, args...) }); err != nil {
		return err
	}
	if c.Agent.ScalingGroup != nil {
		return b.errorf("agent.scaling-group", "the scaling-group key was removed; use initial-resource-group-name")
	}
	if c.Agent.Backend == "" {
		return b.errorf("agent.backend", "is required (only \"docker\" is supported)")
	}
	if err := oneOf(b, "agent.backend", c.Agent.Backend, "docker"); err != nil {
		return err
	}
	if c.Agent.ID == "" || strings.ContainsAny(c.Agent.ID, "/ \t\n") {
		return b.errorf("agent.id", "must be non-empty without slashes or spaces")
	}
	if u := c.Agent.InstanceMetadataURL; u != "" {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" || pu.RawQuery != "" {
			return b.errorf("agent.instance-metadata-url", "%q is not an http(s) base URL (or \"\" to skip the probes)", u)
		}
	}
	if c.Agent.RPCListenAddr.Port == 0 {
		return b.errorf("agent.rpc-listen-addr", "port must not be 0")
	}
	if u, g, ok := strings.Cut(c.Agent.MountPathUIDGID, ":"); c.Agent.MountPathUIDGID != "" && (!ok || u == "" || g == "" || strings.ContainsAny(c.Agent.MountPathUIDGID, " \t\n/")) {
		return b.errorf("agent.mount-path-uid-gid", "must be \"uid:gid\" or \"user:group\", got %q", c.Agent.MountPathUIDGID)
	}
	if c.Agent.KernelCreationConcurrency < 1 || c.Agent.KernelCreationConcurrency > 64 {
		return b.errorf("agent.kernel-creation-concurrency", "must be between 1 and 64")
	}
	if (c.Agent.RPCAuthAgentKeypair == "") != (c.Agent.RPCAuthManagerPublicKey == "") {
		return b.errorf("agent.rpc-auth-agent-keypair", "rpc-auth-agent-keypair and rpc-auth-manager-public-key must be set together")
	}
	if c.Agent.SyncContainerLifecycles.Interval < 1 {
		return b.errorf("agent.sync-container-lifecycles.interval", "must be at least 1 second")
	}
	if err := oneOf(b, "agent.control-plane", c.Agent.ControlPlane, "etcd", "none"); err != nil {
		return err
	}
	if c.Agent.RPCMaxMessageSize < 64<<10 {
		return b.errorf("agent.rpc-max-message-size", "must be at least 64K")
	}
	if c.Agent.SoftMemoryLimit != 0 && c.Agent.SoftMemoryLimit < 32<<20 {
		return b.errorf("agent.soft-memory-limit", "must be 0 (none) or at least 32M")
	}
	if c.Agent.OutboxMaxSize < 1<<20 {
		return b.errorf("agent.event-outbox-max-size", "must be at least 1M")
	}
	if err := oneOf(b, "agent.manager-compat", c.Agent.ManagerCompat, "main", "26.8.1"); err != nil {
		return err
	}
	if err := oneOf(b, "agent.scaling-group-type", c.Agent.ScalingGroupType, "compute", "storage"); err != nil {
		return err
	}
	if err := c.Container.PortRange.validate(); err != nil {
		return b.errorf("container.port-range", "%v", err)
	}
	if err := oneOf(b, "container.scratch-type", c.Container.ScratchType, "hostdir", "hostfile", "memory"); err != nil {
		return err
	}
	if c.Container.ScratchType != "hostdir" && c.Container.ScratchSize <= 0 {
		return b.errorf("container.scratch-size", "must be positive for scratch-type %q", c.Container.ScratchType)
	}
	if err := oneOf(b, "container.stats-type", c.Container.StatsType, "cgroup", "docker"); err != nil {
		return err
	}
	if err := sandbox.ValidateType(c.Container.SandboxType); err != nil {
		return b.errorf("container.sandbox-type", "%v", err)
	}
	if c.Container.KernelUID < -1 || c.Container.KernelGID < -1 {
		return b.errorf("container.kernel-uid", "must be -1 (the agent's own) or a uid")
	}
	if c.Container.PidsLimit < 0 {
		return b.errorf("container.pids-limit", "must not be negative (0 means unlimited)")
	}
	for i, r := range c.Container.AllowedKernelMountRoots {
		if !filepath.IsAbs(r) || filepath.Clean(r) != r || r == "/" {
			return b.errorf(fmt.Sprintf("container.allowed-kernel-mount-roots[%d]", i), "%q must be a clean absolute path other than /", r)
		}
	}
	if (c.Etcd.TLSCert == "") != (c.Etcd.TLSKey == "") {
		return b.errorf("etcd.tls-cert", "tls-cert and tls-key must be set together")
	}
	if err := oneOf(b, "container.vfolder-mount-policy", c.Container.VFolderMountPolicy, "compat", "strict"); err != nil {
		return err
	}
	for i, r := range c.Container.VFolderDenyPaths {
		if !filepath.IsAbs(r) {
			return b.errorf(fmt.Sprintf("container.vfolder-deny-paths[%d]", i), "%q must be an absolute path", r)
		}
	}
	if c.Resource.ReservedCPU < 0 {
		return b.errorf("resource.reserved-cpu", "must not be negative")
	}
	if c.Resource.MemoryAlignSize <= 0 {
		return b.errorf("resource.memory-align-size", "must be positive")
	}
	if err := oneOf(b, "resource.allocation-mode", c.Resource.AllocationMode, "shared", "auto-split", "manual"); err != nil {
		return err
	}
	if err := oneOf(b, "resource.affinity-policy", c.Resource.AffinityPolicy, "INTERLEAVED", "PREFER_SINGLE_NODE"); err != nil {
		return err
	}
	if c.Resource.CPUAllocStrategy != "" {
		if err := oneOf(b, "resource.cpu-alloc-strategy", c.Resource.CPUAllocStrategy, "EVENLY", "FILL"); err != nil {
			return err
		}
	}
	if err := c.validateLogging(b); err != nil {
		return err
	}
	if err := oneOf(b, "watcher.mode", c.Watcher.Mode, "auto", "systemd", "supervisor"); err != nil {
		return err
	}
	if c.Watcher.SSLEnabled && (c.Watcher.SSLCert == "" || c.Watcher.SSLKey == "") {
		return b.errorf("watcher.ssl-enabled", "needs ssl-cert and ssl-key")
	}
	if c.Debug.HeartbeatInterval <= 0 {
		return b.errorf("debug.heartbeat-interval", "must be positive")
	}
	if c.Debug.OrphanKernelCleanupInterval <= 0 {
		return b.errorf("debug.orphan-kernel-cleanup-interval", "must be positive")
	}
	if c.Debug.AbuseReportScanInterval <= 0 {
		return b.errorf("debug.abuse-report-scan-interval", "must be positive")
	}
	if c.Debug.SlotRescanInterval <= 0 {
		return b.errorf("debug.slot-rescan-interval", "must be positive")
	}
	return nil
}

// RPCListenAddrString returns rpc-listen-addr as host:port.
var logLevels = []string{"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "NOTSET"}

// validateLogging checks [logging] as the Python agent's schema does:
// known drivers, the file driver's folder and name, levels and formats.
func (c *Config) validateLogging(b *binder) error {
	l := &c.Logging
	if err := oneOf(b, "logging.level", strings.ToUpper(l.Level), logLevels...); err != nil {
		return err
	}
	for i, d := range l.Drivers {
		if err := oneOf(b, fmt.Sprintf("logging.drivers[%d]", i), d, "console", "file", "logstash", "graylog"); err != nil {
			return err
		}
		if d == "file" && (l.File.Path == "" || l.File.Filename == "") {
			return b.errorf("logging.file", "the file driver needs path (a folder) and filename")
		}
	}
	for _, f := range []struct{ key, v string }{{"logging.console.format", l.Console.Format}, {"logging.file.format", l.File.Format}} {
		if err := oneOf(b, f.key, f.v, "simple", "verbose", "text", "json"); err != nil {
			return err
		}
	}
	if l.File.BackupCount < 0 {
		return b.errorf("logging.file.backup-count", "must not be negative")
	}
	for k, v := range l.PkgNS {
		if err := oneOf(b, "logging.pkg-ns."+k, strings.ToUpper(v), logLevels...); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) RPCListenAddrString() string { return c.Agent.RPCListenAddr.String() }
