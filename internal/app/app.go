package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/bai-agent/bai-agent/internal/agent"
	"github.com/bai-agent/bai-agent/internal/backend/docker"
	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/device/accel"
	"github.com/bai-agent/bai-agent/internal/discovery"
	"github.com/bai-agent/bai-agent/internal/etcdconfig"
	"github.com/bai-agent/bai-agent/internal/event"
	"github.com/bai-agent/bai-agent/internal/events"
	"github.com/bai-agent/bai-agent/internal/kernel"
	"github.com/bai-agent/bai-agent/internal/logging"
	"github.com/bai-agent/bai-agent/internal/lokilog"
	"github.com/bai-agent/bai-agent/internal/metrics"
	"github.com/bai-agent/bai-agent/internal/monitor"
	"github.com/bai-agent/bai-agent/internal/observer"
	"github.com/bai-agent/bai-agent/internal/redisconn"
	"github.com/bai-agent/bai-agent/internal/rpc"
	"github.com/bai-agent/bai-agent/internal/rpc/zmq"
	"github.com/bai-agent/bai-agent/internal/sandbox"
	"github.com/bai-agent/bai-agent/internal/stats"
	"github.com/bai-agent/bai-agent/internal/telemetry"
)

// ConfigError marks a problem with the configuration (exit status 2).
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// LoadConfig finds and loads the config: the given path, else
// ./agent.toml, else /etc/backend.ai/agent.toml.
func LoadConfig(path string, warn io.Writer) (*config.Config, error) {
	if path == "" {
		for _, p := range []string{"agent.toml", "/etc/backend.ai/agent.toml"} {
			if _, err := os.Stat(p); err == nil {
				path = p
				break
			}
		}
	}
	if path == "" {
		return nil, &ConfigError{Err: errors.New("no config file: pass -f FILE or create ./agent.toml or /etc/backend.ai/agent.toml")}
	}
	res, err := config.LoadFile(path, os.LookupEnv)
	if err != nil {
		return nil, &ConfigError{Err: err}
	}
	// The agent's own logger does not exist yet: the unknown and the
	// unimplemented keys go to warn as slog text records.
	res.LogWarnings(slog.New(slog.NewTextHandler(warn, nil)))
	return res.Config, nil
}

// Logging is the agent's logger, its outputs (console, rotated file) and,
// with [logging.loki] url set, its Loki shipper.
type Logging struct {
	Log     *slog.Logger
	Loki    *lokilog.Pusher // nil without Loki
	outputs *logging.Outputs
}

// Close flushes what is left for Loki and closes the log file (call it
// when the agent stops).
func (l *Logging) Close() {
	if l.Loki != nil {
		l.Loki.Close()
	}
	if l.outputs != nil {
		_ = l.outputs.Close()
	}
}

// NewLogger builds the slog logger from [logging]: the drivers (console
// to w, file), the formats, the level with its pkg-ns overrides, and,
// with [logging.loki] url set, shipping to Loki. The level filter sits
// above everything, so Loki receives what the console shows.
func NewLogger(cfg *config.Config, w io.Writer) (*Logging, error) {
	filter, err := logging.Filter(cfg.Logging, cfg.Debug.Enabled)
	if err != nil {
		return nil, &ConfigError{Err: err}
	}
	out, err := logging.Open(cfg.Logging, w)
	if err != nil {
		return nil, err
	}
	lg := &Logging{outputs: out}
	h := out.Handler
	if l := cfg.Logging.Loki; l.URL != "" {
		lg.Loki = lokilog.New(lokilog.Options{
			URL: l.URL, AgentID: cfg.Agent.ID, Tenant: l.Tenant, Username: l.Username, Password: l.Password,
			BatchSize: l.BatchSize, BatchWait: time.Duration(float64(l.BatchWait) * float64(time.Second)), Buffer: l.Buffer,
		})
		h = lg.Loki.Handler(h)
	}
	lg.Log = slog.New(filter(h))
	redisconn.SetLogger(lg.Log)
	for _, d := range out.Ignored {
		lg.Log.Warn("log driver not supported by bai-agent; its records are not sent (use [logging.loki])", "driver", d)
	}
	return lg, nil
}

// Run starts the agent and blocks until ctx ends or SIGINT/SIGTERM.
// Kernels keep running when the agent stops.
func Run(ctx context.Context, cfg *config.Config, lg *Logging) error {
	log := lg.Log
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cfg.Agent.Region = detectRegion(cfg.Agent.Region)
	raiseOpenFiles(log)
	zmq.LimitMallocArenas()
	if os.Getenv("GOGC") == "" {
		// The heap may grow to 1.5x what is live instead of Go's 2x: a
		// node agent's footprint is what operators watch, and its
		// allocation rate is low (statistics cycles, RPC), so collecting
		// twice as often costs little CPU. GOGC=100 restores Go's default.
		debug.SetGCPercent(50)
	}
	if cfg.Agent.SoftMemoryLimit > 0 {
		// The heap is given back under this limit; a burst of large RPC
		// messages must not leave the agent big (see also the transport's
		// trimmer).
		debug.SetMemoryLimit(int64(cfg.Agent.SoftMemoryLimit))
	}
	var curve *zmq.Curve
	if cfg.Agent.RPCAuthAgentKeypair != "" {
		c, err := zmq.LoadCurve(cfg.Agent.RPCAuthAgentKeypair, cfg.Agent.RPCAuthManagerPublicKey)
		if err != nil {
			return &ConfigError{Err: fmt.Errorf("agent.rpc-auth-*: %w", err)}
		}
		curve = c
	} else if ip := net.ParseIP(cfg.Agent.RPCListenAddr.Host); cfg.Agent.RPCListenAddr.Host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		// As upstream's default, but said: kernels reach every address of
		// the host through their bridge's gateway.
		log.Warn("the RPC port takes calls from anyone who reaches it, kernels on this node included; set rpc-auth-agent-keypair and rpc-auth-manager-public-key or firewall it (see `bai-agent doctor` and docs/SECURITY.md)", "rpc_listen_addr", cfg.Agent.RPCListenAddr.String())
	}
	if err := writePIDFile(cfg.Agent.PIDFile); err != nil {
		return err
	}
	defer removePIDFile(cfg.Agent.PIDFile)
	be, err := docker.New()
	if err != nil {
		return err
	}
	defer be.Close()

	var (
		subnetAgent, subnetContainer string
		ec                           *etcdconfig.Client
		redisOpt                     *redisconn.Conn
		accelEtcd                    map[string]any
		global                       *etcdconfig.Global
	)
	if cfg.Agent.ControlPlane == "etcd" {
		var err error
		ec, err = dialEtcd(ctx, cfg)
		if err != nil {
			return err
		}
		defer ec.Close()
		global, err = ec.Load(ctx)
		if err != nil {
			return &ConfigError{Err: err}
		}
		if err := overlayEtcd(cfg, global); err != nil {
			return err
		}
		subnetAgent, subnetContainer = global.SubnetAgent, global.SubnetContainer
		accelEtcd = global.Accelerators
		if !cfg.Agent.SkipManagerDetection {
			if err := ec.WaitForManager(ctx, log); err != nil {
				return err
			}
		}
		if redisOpt, err = redisconn.New(global.Redis); err != nil {
			return &ConfigError{Err: err}
		}
		log.Info("redis", "target", global.Redis.Describe())
	}
	// The agents this process runs: the one of [agent], or one per
	// [[agents]] entry, each with its own id, RPC listener, Redis identity,
	// scratch and kernels, over one engine client, one Redis configuration,
	// one allocator and one metrics endpoint.
	acfgs, err := cfg.AgentConfigs()
	if err != nil {
		return &ConfigError{Err: err}
	}
	if cfg.MultiAgent() && global != nil {
		// etcd wins over an entry's overrides too (kernel-uid/gid), and an
		// entry's resource group may raise its sandbox runtime.
		for _, ac := range acfgs {
			if err := overlayEtcd(ac, global); err != nil {
				return fmt.Errorf("[[agents]] agent %s: %w", ac.Agent.ID, err)
			}
		}
	}
	am := metrics.NewAgent()
	if lg.Loki != nil {
		// The shipper counts what it had to drop; the metric follows.
		go func() {
			t := time.NewTicker(10 * time.Second)
			defer t.Stop()
			for {
				am.LogDropped.Set(float64(lg.Loki.Dropped()), acfgs[0].Agent.ID)
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	accels, err := accel.Load(ctx, accel.Options{
		Allow: cfg.Agent.AllowComputePlugins, Block: cfg.Agent.BlockComputePlugins, Etcd: accelEtcd,
		MockConfig: cfg.Agent.MockAcceleratorConfig, Engine: be, Getenv: os.Getenv, Log: log.With("component", "accelerator"),
	})
	if err != nil {
		return &ConfigError{Err: err}
	}
	p := &process{
		cfg: cfg, log: log, be: be, curve: curve, ec: ec, redisOpt: redisOpt, am: am, accels: accels,
		subnetAgent: subnetAgent, subnetContainer: subnetContainer, multi: cfg.MultiAgent(),
	}
	if p.multi {
		p.shared = agent.NewShared()
		defer func() {
			// The accelerators are the process's: closed after every agent.
			for _, acc := range accels {
				if err := acc.Close(); err != nil {
					log.Warn("closing compute plugin", "plugin", acc.Key(), "error", err)
				}
			}
		}()
	}
	// Health checks, named as upstream's HealthProbe names them; the RPC
	// health methods and the HTTP /health endpoint share them.
	p.hchecks = []rpc.HealthCheck{{Group: "container", Component: "docker", Probe: func(ctx context.Context) error { _, err := be.Ping(ctx); return err }}}
	if redisOpt != nil {
		p.hchecks = append(p.hchecks, rpc.HealthCheck{Group: "etcd", Component: "etcd", Probe: func(ctx context.Context) error { _, _, err := ec.Get(ctx, "config/redis/addr"); return err }})
		for _, c := range []struct {
			id, role string
			db       int
		}{{"stat", redisconn.RoleStatistics, events.DBStat}, {"stream", redisconn.RoleStream, events.DBStream}, {"bgtask", redisconn.RoleBgtask, events.DBBgtask}, {"container_log", redisconn.RoleContainerLog, events.DBContainerLog}} {
			rc, release := redisOpt.Shared(c.role, c.db)
			defer release()
			p.hchecks = append(p.hchecks, rpc.HealthCheck{Group: "redis", Component: c.id, Probe: func(ctx context.Context) error { return rc.Ping(ctx).Err() }})
		}
	}
	// Each agent's parts stop in reverse order of their start; the agents
	// stop together.
	var running []*cleanups
	defer func() {
		fs := make([]func(), len(running))
		for i, c := range running {
			fs[i] = c.run
		}
		closeAll(fs...)
	}()
	for i, acfg := range acfgs {
		cl := &cleanups{}
		running = append(running, cl)
		if err := p.startAgent(ctx, acfg, cl); err != nil {
			if p.multi {
				return fmt.Errorf("[[agents]] entry %d (agent %s): %w", i, acfg.Agent.ID, err)
			}
			return err
		}
	}
	checks := make([]metrics.Check, 0, len(p.hchecks))
	for _, hc := range p.hchecks {
		checks = append(checks, metrics.Check{Name: hc.Component, Group: hc.Group, Probe: hc.Probe})
	}
	var cert, key string
	if cfg.Agent.SSLEnabled {
		cert, key = cfg.Agent.SSLCert, cfg.Agent.SSLKey
	}
	hs, err := metrics.Start(am.Reg, metrics.Options{Addr: cfg.Agent.InternalAddr.String(), TLSCert: cert, TLSKey: key, Version: agent.Version, Checks: checks, Log: log.With("component", "http"), Pprof: cfg.Debug.Pprof})
	if err != nil {
		return err
	}
	defer hs.Close()
	for _, st := range p.started {
		st(hs.Addr())
	}
	<-ctx.Done()
	log.Info("agent stopping; kernels keep running")
	return nil
}

// process holds what the agents of one bai-agent process share.
type process struct {
	cfg                          *config.Config
	log                          *slog.Logger
	be                           *docker.Backend
	curve                        *zmq.Curve
	ec                           *etcdconfig.Client
	redisOpt                     *redisconn.Conn
	am                           *metrics.Agent
	accels                       []device.Accelerator
	hchecks                      []rpc.HealthCheck
	subnetAgent, subnetContainer string
	// multi: [[agents]] lists the agents; shared is their allocator.
	multi  bool
	shared *agent.Shared
	// tp is the OTel exporter, started with the first agent (its id names
	// the process in the resource attributes).
	tp *telemetry.Provider
	// started log each agent's "agent started" line once the metrics
	// endpoint listens.
	started []func(internalHTTP string)
}

// cleanups are one agent's stop steps, run in reverse order.
type cleanups struct{ fs []func() }

func (c *cleanups) add(f func()) { c.fs = append(c.fs, f) }

func (c *cleanups) run() {
	for i := len(c.fs) - 1; i >= 0; i-- {
		c.fs[i]()
	}
}

// startAgent starts one agent of the process with its configuration
// cfg: its event producer, the agent itself (recovering its kernels), its
// RPC listener, heartbeats and Redis state, observers and statistics. Its
// stop steps go to cl, also when it fails half-way.
func (p *process) startAgent(ctx context.Context, cfg *config.Config, cl *cleanups) error {
	log, be, ec, redisOpt, am, curve := p.log, p.be, p.ec, p.redisOpt, p.am, p.curve
	if p.multi {
		log = log.With("agent_id", cfg.Agent.ID)
	}
	var (
		sink agent.EventSink = agent.LogSink{Log: log}
		logs agent.LogCollector
		prod *events.Producer
	)
	if ec != nil {
		if err := ec.Register(ctx, cfg.Agent.ID, "starting", advertisedHost(cfg, p.subnetAgent, log), cfg.Watcher.ServiceAddr.Port); err != nil {
			return err
		}
		var err error
		prod, err = events.NewProducer(events.Options{
			AgentID: cfg.Agent.ID, Redis: redisOpt, OutboxDir: filepath.Join(cfg.Agent.VarBasePath, "outbox", cfg.Agent.ID),
			OutboxMax: int64(cfg.Agent.OutboxMaxSize), Legacy: cfg.Agent.LegacyWire(), Log: log.With("component", "events"),
		})
		if err != nil {
			return err
		}
		cl.add(func() {
			// Give queued events (agent_terminated among them) a moment to
			// leave while Redis answers; what does not stays on disk for the
			// next start.
			deadline := time.Now().Add(3 * time.Second)
			for prod.Stats().Connected && prod.Stats().PendingBytes > 0 && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			prod.Close()
		})
		sink = prod
	}
	// CLEAN hands container logs to the state writer, which starts after
	// the agent (its callbacks read the agent); until then logs are not
	// kept.
	stateRef := &stateLogs{}
	if prod != nil {
		logs = stateRef
	}
	var onChange func(string, bool)
	if prod != nil {
		onChange = stateRef.kernelChanged
	}
	a, err := agent.New(ctx, agent.Options{Config: cfg, Backend: be, Log: p.log, Events: sink, Logs: logs, OnKernelChange: onChange, KernelHost: kernelHost(cfg, p.subnetAgent, p.subnetContainer, log),
		Accelerators: p.accels, TaskObserver: am, Shared: p.shared,
		OnStepFailure: func(op, step string) {
			if op == "create" {
				am.CreateStepFailures.Inc(cfg.Agent.ID, step)
			} else {
				am.OpStepFailures.Inc(cfg.Agent.ID, op, step)
			}
		}, OnSync: func(err error) {
			am.SyncTrigger.Inc(cfg.Agent.ID)
			if err != nil {
				am.SyncFailure.Inc(cfg.Agent.ID, "SyncError")
			} else {
				am.SyncSuccess.Inc(cfg.Agent.ID)
			}
		}})
	if err != nil {
		if !p.multi {
			for _, acc := range p.accels {
				_ = acc.Close()
			}
		}
		if errors.Is(err, agent.ErrRunnerMissing) {
			return &ConfigError{Err: err}
		}
		return err
	}
	if err := a.Start(ctx); err != nil {
		// Recovery may have connected runners and taken plugins before it
		// failed: release them, not only the process' exit.
		a.Close()
		return err
	}
	cl.add(a.Close)
	sec := func(d config.Duration) time.Duration { return time.Duration(float64(d) * float64(time.Second)) }
	srv := rpc.NewServer(log.With("component", "rpc"), a.ID())
	srv.SetObserver(am)
	// The agent's identity in service discovery and in OTel resources: a
	// stable id per agent id, so a restart replaces its own entry instead
	// of adding one.
	sdID := uuid.NewSHA1(uuid.NameSpaceOID, []byte("bai-agent/"+a.ID())).String()
	if o := cfg.OtelSettings(); o.Enabled {
		if p.tp == nil {
			tp, err := telemetry.Start(ctx, telemetry.Options{
				Endpoint: o.Endpoint, ServiceName: "agent", ServiceVersion: agent.Version, InstanceID: sdID, InstanceName: "agent-" + a.ID(),
				AgentID: a.ID(), MaxQueueSize: o.MaxQueueSize, MaxExportBatchSize: o.MaxExportBatchSize,
			})
			if err != nil {
				return &ConfigError{Err: err}
			}
			p.tp = tp
			cl.add(func() {
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = tp.Shutdown(sctx)
			})
			log.Info("exporting OpenTelemetry traces over OTLP/HTTP", "endpoint", o.Endpoint)
		}
		tp := p.tp
		srv.SetTracer(func(ctx context.Context, method, agentID string) (context.Context, func(string)) {
			ctx, end := tp.RPC(ctx, method, agentID)
			return agent.WithStepTracer(ctx, tp), end
		})
	}
	srv.SetMaxBodySize(int(cfg.Agent.RPCMaxMessageSize))
	srv.SetErrorHook(func(method, exc string, err error) {
		// As collect_error: every failed RPC becomes agent_error.
		sink.Publish(context.Background(), event.NewAgentError(exc+": "+err.Error(), "rpc method "+method+" (raised by bai-agent)"))
	})
	rpc.AgentMethods(srv, a, be, p.hchecks...)
	tr, err := zmq.Listen(ctx, log.With("component", "rpc"), cfg.Agent.RPCListenAddr.String(), srv, curve)
	if err != nil {
		return err
	}
	cl.add(tr.Close)
	if prod != nil {
		advertised := cfg.Agent.RPCListenAddr
		if cfg.Agent.AdvertisedRPCAddr != nil {
			advertised = *cfg.Agent.AdvertisedRPCAddr
		}
		advertised.Host = advertisedHost(cfg, p.subnetAgent, log)
		pub := ""
		if curve != nil {
			pub = curve.AgentPublic
		}
		legacy := cfg.Agent.LegacyWire()
		interval := time.Duration(float64(cfg.Debug.HeartbeatInterval) * float64(time.Second))
		hb := events.StartHeartbeat(events.HeartbeatOptions{
			AgentID: a.ID(), Redis: redisOpt, Interval: interval, Legacy: legacy, Log: log.With("component", "heartbeat"),
			Info: func() event.AgentInfo {
				return a.AgentInfo(agent.InfoOptions{IP: advertised.Host, Addr: "tcp://" + advertised.String(), PublicKey: pub})
			},
			OnSent: func() {
				am.Heartbeat.Inc(a.ID())
				st := prod.Stats()
				am.OutboxPendingBytes.Set(float64(st.PendingBytes), a.ID())
			},
		})
		// The Redis writers close together: each may take up to its grace
		// period when Redis is unreachable, and the agent must stop promptly.
		var closers []func()
		cl.add(func() { closeAll(closers...) })
		closers = append(closers, hb.Close)
		md := map[string]any{}
		for _, p := range a.Plugins() {
			m := p.Metadata()
			md[fmt.Sprint(m["slot_name"])] = m
		}
		disc := &events.Discovery{
			ID: sdID, DisplayName: "agent-" + a.ID(), Version: agent.Version,
			Address: cfg.Agent.AnnounceInternalAddr.String(), Port: cfg.Agent.AnnounceInternalAddr.Port,
			Registered: time.Now(),
		}
		var redisDisc *events.Discovery
		switch {
		case cfg.ServiceDiscoveryType() != "etcd":
			redisDisc = disc
		case ec == nil:
			log.Warn("service-discovery type is etcd but the agent has no etcd connection (control-plane); not registered")
		default:
			reg := discovery.Start(discovery.Options{Store: ec, Service: disc, Log: log.With("component", "service-discovery")})
			closers = append(closers, reg.Close)
		}
		state := events.StartState(events.StateOptions{
			AgentID: a.ID(), Redis: redisOpt, Log: log.With("component", "redis-state"), Interval: interval,
			Kernels: func() []string {
				var ids []string
				for _, k := range a.Kernels() {
					if k.State() == kernel.Running {
						ids = append(ids, k.ID)
					}
				}
				return ids
			},
			ContainerCount: func() int { return len(a.Kernels()) },
			Images:         a.Images,
			Committing:     a.CommittingKernels,
			Metadata:       md,
			Discovery:      redisDisc,
			Producer:       prod,
			ChunkSize:      int(cfg.ContainerLogs.ChunkSize),
		})
		stateRef.w.Store(state)
		closers = append(closers, state.Close)
		// Orphan kernels: those the manager's sweep stopped stamping
		// (upstream's OrphanKernelCleanupObserver, live database).
		liveRC, releaseLive := redisOpt.Shared(redisconn.RoleLive, events.DBLive)
		reaper := observer.StartOrphanReaper(observer.OrphanOptions{
			AgentID: a.ID(), Agent: observedAgent{a}, Store: observer.RedisPresence{Client: liveRC},
			Interval: sec(cfg.Debug.OrphanKernelCleanupInterval), Log: log.With("component", "orphan-kernel-cleanup"),
		})
		closers = append(closers, func() {
			reaper.Close()
			releaseLive()
		})
		sub := events.Subscribe(redisOpt, a.ID(), log.With("component", "volumes"), func(ctx context.Context, r events.VolumeRequest) (string, string) {
			return a.HandleVolumeRequest(ctx, agent.VolumeRequest{
				Mount: r.Mount, DirName: r.DirName, FSLocation: r.FSLocation, FSType: r.FSType, CmdOptions: r.CmdOptions,
				EditFstab: r.EditFstab, FstabPath: r.FstabPath,
			})
		}, prod, am.ObserveEvent)
		closers = append(closers, sub.Close)
		if err := ec.Register(ctx, a.ID(), "running", advertised.Host, cfg.Watcher.ServiceAddr.Port); err != nil {
			log.Warn("etcd registration", "error", err)
		}
	}
	if dir := cfg.Agent.AbuseReportPath; dir != "" {
		// Kernels reported by an outside detector (upstream's
		// CleanupReportedKernelsTask); without Redis the reports are
		// still acted on, and nothing is published.
		var store observer.AbuseStore
		if redisOpt != nil {
			statRC, releaseStat := redisOpt.Shared(redisconn.RoleStatistics, events.DBStat)
			cl.add(releaseStat)
			store = observer.RedisAbuseReport{Client: statRC}
		}
		ar := observer.StartAbuseReports(observer.AbuseOptions{
			Dir: dir, Terminate: cfg.Agent.ForceTerminateAbusingContainers, Agent: observedAgent{a}, Store: store,
			Interval: sec(cfg.Debug.AbuseReportScanInterval), Log: log.With("component", "abuse-report"),
		})
		cl.add(ar.Close)
	}
	um := cfg.Agent.UtilizationMetric
	collector := stats.NewCollector()
	if cfg.Container.StatsType == "docker" {
		// Slow (one dockerd round trip per container per cycle); for hosts
		// whose cgroups the agent cannot read.
		collector.Docker = func(ctx context.Context, id string) (stats.DockerUsage, error) {
			u, err := be.Stats(ctx, id)
			return stats.DockerUsage(u), err
		}
		collector.Deadline = 5 * time.Second
	}
	mon := monitor.Start(monitor.Options{
		Plugins: a,
		AgentID: a.ID(), Collector: collector, Metrics: am, Redis: redisOpt, Log: log.With("component", "stats"),
		Targets: func() []stats.Target {
			var out []stats.Target
			for _, t := range a.StatTargets() {
				out = append(out, stats.Target(t))
			}
			return out
		},
		NodeInterval: sec(um.Node.Interval), ContainerInterval: sec(um.Container.Interval), ProcessInterval: sec(um.Process.Interval),
		NodeEnabled: um.Node.Enable, ContainerEnabled: um.Container.Enable, ProcessEnabled: um.Process.Enable,
		OnOOM: a.MarkOOM,
	})
	cl.add(mon.Close)
	slots := a.Allocator().Available()
	auth := "none"
	if curve != nil {
		auth = "curve (public key " + curve.AgentPublic + ")"
	}
	rpcAddr := "tcp://" + tr.Addr()
	p.started = append(p.started, func(internalHTTP string) {
		p.log.Info("agent started", "agent_id", a.ID(), "rpc", rpcAddr, "rpc_auth", auth, "control_plane", cfg.Agent.ControlPlane, "version", agent.Version,
			"internal_http", internalHTTP, "cpu", slots["cpu"].String(), "mem", slots["mem"].String(), "kernels", len(a.Kernels()))
	})
	return nil
}

// observedAgent is the agent as the observers see it.
type observedAgent struct{ *agent.Agent }

// ListKernels lists the registered kernels, in any state.
func (o observedAgent) ListKernels() []observer.Kernel {
	ks := o.Kernels()
	out := make([]observer.Kernel, len(ks))
	for i, k := range ks {
		out[i] = observer.Kernel{ID: k.ID, SessionID: k.SessionID}
	}
	return out
}

// closeAll runs close functions concurrently and waits for all of them.
func closeAll(fs ...func()) {
	var wg sync.WaitGroup
	for _, f := range fs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f()
		}()
	}
	wg.Wait()
}

// stateLogs hands CLEAN's container logs to the state writer once it runs.
type stateLogs struct {
	w atomic.Pointer[events.StateWriter]
}

// kernelChanged refreshes the presence keys when a kernel starts and
// removes an ended kernel's key, in the background.
func (s *stateLogs) kernelChanged(kernelID string, running bool) {
	w := s.w.Load()
	if w == nil {
		return
	}
	if running {
		w.RefreshPresence()
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = w.ForgetKernel(ctx, kernelID)
	}()
}

func (s *stateLogs) CollectLogs(ctx context.Context, kernelID, containerID string, logs []byte) error {
	w := s.w.Load()
	if w == nil {
		return errors.New("redis state writer not started")
	}
	return w.CollectLogs(ctx, kernelID, containerID, logs)
}

// advertisedHost is the host the manager dials (heartbeat ip and addr,
// etcd nodes/agents/{id}/ip): [agent] advertised-rpc-addr, else
// rpc-listen-addr, and when that names no address (0.0.0.0), the local
// address in etcd's config/network/subnet/agent or the host name's.
func advertisedHost(cfg *config.Config, subnetAgent string, log *slog.Logger) string {
	host := cfg.Agent.RPCListenAddr.Host
	if cfg.Agent.AdvertisedRPCAddr != nil {
		host = cfg.Agent.AdvertisedRPCAddr.Host
	}
	if !unspecified(host) {
		return host
	}
	h, err := detectHost(subnetAgent, "")
	if err != nil {
		log.Warn("cannot detect the agent's address; advertising the host name's", "error", err)
		h, _ = detectHost("", "")
	}
	return h
}

// kernelHost is the kernel_host of creation results, where an app proxy
// dials a kernel's service ports: [container] advertised-host, else
// bind-host (alias kernel-host), else the local address in etcd's
// config/network/subnet/container, else the agent's advertised host.
func kernelHost(cfg *config.Config, subnetAgent, subnetContainer string, log *slog.Logger) string {
	if cfg.Container.AdvertisedHost != "" {
		return cfg.Container.AdvertisedHost
	}
	if !unspecified(cfg.Container.BindHost) {
		return cfg.Container.BindHost
	}
	if subnetContainer != "" {
		if h, err := detectHost(subnetContainer, ""); err == nil {
			return h
		} else {
			log.Warn("config/network/subnet/container names no local address; using the agent's", "error", err)
		}
	}
	return advertisedHost(cfg, subnetAgent, log)
}

// etcdTLS builds the TLS settings of [etcd] (nil without tls = true).
// dialEtcd connects to [etcd] with its TLS and credentials.
func dialEtcd(ctx context.Context, cfg *config.Config) (*etcdconfig.Client, error) {
	var endpoints []string
	for _, hp := range cfg.Etcd.Addr {
		endpoints = append(endpoints, hp.String())
	}
	etls, err := etcdTLS(cfg.Etcd)
	if err != nil {
		return nil, &ConfigError{Err: err}
	}
	ec, err := etcdconfig.Dial(ctx, etcdconfig.Options{Endpoints: endpoints, Namespace: cfg.Etcd.Namespace, User: cfg.Etcd.User, Password: cfg.Etcd.Password, TLS: etls})
	if err != nil {
		return nil, fmt.Errorf("etcd (needed to find Redis and the manager; set [agent] control-plane = \"none\" for a standalone node): %w", err)
	}
	return ec, nil
}

// overlayEtcd applies the global configuration's values that override
// agent.toml (config/agent/{container-logs,kernel-lifecycles,api} and
// config/container/kernel-{uid,gid}), marking each as set by etcd.
func overlayEtcd(cfg *config.Config, global *etcdconfig.Global) error {
	if err := cfg.ApplyEtcd(global.ContainerLogs, global.KernelLifecycle, global.API); err != nil {
		return &ConfigError{Err: err}
	}
	if global.KernelUID != nil {
		cfg.Container.KernelUID = *global.KernelUID
		cfg.MarkSource("container.kernel-uid", config.Source{Kind: config.FromEtcd, Detail: "config/container/kernel-uid"})
	}
	if global.KernelGID != nil {
		cfg.Container.KernelGID = *global.KernelGID
		cfg.MarkSource("container.kernel-gid", config.Source{Kind: config.FromEtcd, Detail: "config/container/kernel-gid"})
	}
	// The node's resource group may ask for a stricter sandbox runtime
	// than agent.toml's (never a weaker one). Read once at start-up: a
	// running kernel keeps the runtime it was created with. The group is
	// the one the agent registers with (unset: the manager's "default").
	group := cfg.Agent.InitialResourceGroupName
	if group == "" {
		group = "default"
	}
	if v, ok := global.SandboxByGroup[group]; ok {
		key := "config/container/sandbox-type/" + group
		s, isStr := v.(string)
		if !isStr {
			return &ConfigError{Err: fmt.Errorf("etcd %s: a sandbox-type value is expected, found keys below it", key)}
		}
		st, err := sandbox.Stricter(cfg.Container.SandboxType, strings.TrimSpace(s))
		if err != nil {
			return &ConfigError{Err: fmt.Errorf("etcd %s = %q: %w", key, s, err)}
		}
		if st != cfg.Container.SandboxType {
			cfg.Container.SandboxType = st
			cfg.MarkSource("container.sandbox-type", config.Source{Kind: config.FromEtcd, Detail: key})
		}
	}
	return nil
}

// EffectiveConfig overlays what etcd holds for this node on cfg, as
// start-server would, so that "config show --effective" prints the values
// the agent would run with. A standalone node (control-plane = "none")
// reads nothing.
func EffectiveConfig(ctx context.Context, cfg *config.Config) error {
	if cfg.Agent.ControlPlane != "etcd" {
		return nil
	}
	ec, err := dialEtcd(ctx, cfg)
	if err != nil {
		return err
	}
	defer ec.Close()
	global, err := ec.Load(ctx)
	if err != nil {
		return &ConfigError{Err: err}
	}
	return overlayEtcd(cfg, global)
}

func etcdTLS(c config.EtcdConfig) (*tls.Config, error) {
	if !c.TLS {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.TLSSkipVerify} //nolint:gosec // operator's choice (etcd.tls-skip-verify)
	if c.TLSCACert != "" {
		pem, err := os.ReadFile(c.TLSCACert)
		if err != nil {
			return nil, fmt.Errorf("etcd.tls-ca-cert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd.tls-ca-cert: %s holds no PEM certificate", c.TLSCACert)
		}
		tc.RootCAs = pool
	}
	if c.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("etcd.tls-cert/tls-key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func writePIDFile(path string) error {
	if path == "" || path == "/dev/null" {
		return nil
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("agent.pid-file: %w", err)
	}
	return nil
}

func removePIDFile(path string) {
	if path == "" || path == "/dev/null" {
		return
	}
	_ = os.Remove(path)
}
