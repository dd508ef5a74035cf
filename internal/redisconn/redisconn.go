package redisconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Roles, as upstream's RedisRole names them (the keys of
// override_configs).
const (
	RoleStatistics   = "statistics"
	RoleLive         = "live"
	RoleImage        = "image"
	RoleStream       = "stream"
	RoleContainerLog = "container_log"
	RoleBgtask       = "bgtask"
)

// Roles lists the roles the agent uses.
var Roles = []string{RoleStatistics, RoleLive, RoleImage, RoleStream, RoleContainerLog, RoleBgtask}

// ErrInvalid is wrapped by every configuration error.
var ErrInvalid = errors.New("invalid redis configuration")

// Target is how to reach one Redis deployment.
type Target struct {
	// Addr is host:port of a plain server; ignored when Sentinel is set.
	Addr string
	// Sentinel lists host:port of the sentinels; ServiceName names the
	// monitored master.
	Sentinel    []string
	ServiceName string
	// Username is the ACL user (Redis 6+); empty means the default user.
	Username         string
	Password         string
	SentinelPassword string
	// TLS connects with TLS; TLSSkipVerify skips certificate checks.
	TLS           bool
	TLSSkipVerify bool
}

// Config is the default target plus per-role overrides.
type Config struct {
	Target
	Overrides map[string]Target
}

func checkHostPort(field, v string) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil || host == "" || port == "" {
		return fmt.Errorf("%w: %s: %q is not host:port", ErrInvalid, field, v)
	}
	return nil
}

func (t Target) validate(prefix string) error {
	if len(t.Sentinel) > 0 {
		for i, s := range t.Sentinel {
			if err := checkHostPort(fmt.Sprintf("%ssentinel[%d]", prefix, i), s); err != nil {
				return err
			}
		}
		if t.ServiceName == "" {
			return fmt.Errorf("%w: %sservice_name is required with sentinel", ErrInvalid, prefix)
		}
		return nil
	}
	if t.Addr == "" {
		return fmt.Errorf("%w: %saddr (or sentinel and service_name) is required", ErrInvalid, prefix)
	}
	return checkHostPort(prefix+"addr", t.Addr)
}

// Validate checks the default target and every override, naming the
// offending key under config/redis.
func (c Config) Validate() error {
	if err := c.Target.validate("config/redis/"); err != nil {
		return err
	}
	roles := make([]string, 0, len(c.Overrides))
	for r := range c.Overrides {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	for _, r := range roles {
		known := false
		for _, k := range Roles {
			known = known || k == r
		}
		if !known {
			continue // roles of other components (rate_limit, tus, ...)
		}
		if err := c.Overrides[r].validate("config/redis/override_configs/" + r + "/"); err != nil {
			return err
		}
	}
	return nil
}

// For returns the target of a role (its override, or the default).
func (c Config) For(role string) Target {
	if t, ok := c.Overrides[role]; ok {
		return t
	}
	return c.Target
}

// Describe renders a target for logs, without secrets.
func (t Target) Describe() string {
	s := t.Addr
	if len(t.Sentinel) > 0 {
		s = "sentinel " + strings.Join(t.Sentinel, ",") + " master " + t.ServiceName
	}
	if t.TLS {
		s += " (tls)"
	}
	return s
}

// Conn makes clients for the agent's roles.
type Conn struct {
	cfg Config
	// Timeouts of every client: one Redis call never blocks an agent
	// loop for long.
	DialTimeout, ReadTimeout, WriteTimeout time.Duration

	mu     sync.Mutex
	shared map[sharedKey]*sharedClient
}

type sharedKey struct {
	role string
	db   int
}

type sharedClient struct {
	c     *redis.Client
	users int
}

// sharedPoolSize bounds the connections of a shared client: the loops of
// every agent of the process use it, each a connection at a time for a
// short command, so a few dozen serve many agents without waiting.
const sharedPoolSize = 32

// Shared returns the process's one client for role on database db,
// created on first use, and release, to call instead of Close: the client
// closes when its last user releases it. The agents of a multi-agent
// process ([[agents]]) each hold several Redis users (state writers,
// statistics, the event producer, the volume subscriber); one client per
// role and database for all of them keeps their connections and buffers
// from growing with the agents.
func (c *Conn) Shared(role string, db int) (*redis.Client, func()) {
	key := sharedKey{role, db}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shared == nil {
		c.shared = map[sharedKey]*sharedClient{}
	}
	sc := c.shared[key]
	if sc == nil {
		sc = &sharedClient{c: c.Client(role, db, func(o *redis.Options) { o.PoolSize = sharedPoolSize })}
		c.shared[key] = sc
	}
	sc.users++
	var once sync.Once
	return sc.c, func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if sc.users--; sc.users == 0 {
				delete(c.shared, key)
				sc.c.Close()
			}
		})
	}
}

// New validates cfg and returns a client factory.
func New(cfg Config) (*Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Conn{cfg: cfg, DialTimeout: 3 * time.Second, ReadTimeout: 3 * time.Second, WriteTimeout: 3 * time.Second}, nil
}

// Config returns the configuration.
func (c *Conn) Config() Config { return c.cfg }

// Connection buffer sizes (see Client).
const (
	bufSize     = 8 << 10
	pipeBufSize = 32 << 10
)

// Client returns a new client for role on database db. tune, if not nil,
// adjusts the options first (pool size, retries). A Sentinel target gives
// a failover client that asks the sentinels for the current master and
// reconnects after a failover.
func (c *Conn) Client(role string, db int, tune func(*redis.Options)) *redis.Client {
	t := c.cfg.For(role)
	o := &redis.Options{
		Addr: t.Addr, DB: db, Username: t.Username, Password: t.Password,
		DialTimeout: c.DialTimeout, ReadTimeout: c.ReadTimeout, WriteTimeout: c.WriteTimeout,
		// go-redis gives every connection 32 KiB read and write buffers,
		// and its pipeline connections 128 KiB each. The agent's commands
		// and replies are small (a stats pipeline of a few KiB per
		// kernel; larger replies are read past the buffer), and a process
		// with many agents holds several clients each: small buffers and
		// at most two pipeline connections per client keep the idle
		// footprint down at the cost of a syscall more on a big reply.
		ReadBufferSize: bufSize, WriteBufferSize: bufSize,
		PipelineReadBufferSize: pipeBufSize, PipelineWriteBufferSize: pipeBufSize, PipelinePoolSize: 2,
		// Maintenance notifications are Redis Enterprise's (a CLIENT
		// command on every connection and a worker manager per client).
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	if t.TLS {
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.TLSSkipVerify} //nolint:gosec // operator's choice (tls_skip_verify)
	}
	if tune != nil {
		tune(o)
	}
	if len(t.Sentinel) == 0 {
		return redis.NewClient(o)
	}
	return redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: t.ServiceName, SentinelAddrs: t.Sentinel, SentinelPassword: t.SentinelPassword,
		DB: o.DB, Username: o.Username, Password: o.Password, TLSConfig: o.TLSConfig,
		DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout,
		PoolSize: o.PoolSize, MaxRetries: o.MaxRetries,
		ReadBufferSize: o.ReadBufferSize, WriteBufferSize: o.WriteBufferSize,
		PipelineReadBufferSize: o.PipelineReadBufferSize, PipelineWriteBufferSize: o.PipelineWriteBufferSize, PipelinePoolSize: o.PipelinePoolSize,
	})
}

// SetLogger sends go-redis' own messages (a pool that cannot dial, a
// sentinel switching masters) to log at DEBUG, as structured records;
// they otherwise go to stderr unformatted, a line per failed dial during
// an outage, which the agent's components already report at WARN with
// the target and what they kept.
func SetLogger(log *slog.Logger) {
	redis.SetLogger(clientLog{log.With("component", "redis-client")})
}

type clientLog struct{ log *slog.Logger }

func (c clientLog) Printf(ctx context.Context, format string, v ...any) {
	c.log.DebugContext(ctx, strings.TrimSpace(fmt.Sprintf(format, v...)))
}
