package redisconn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
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

// Client returns a new client for role on database db. tune, if not nil,
// adjusts the options first (pool size, retries). A Sentinel target gives
// a failover client that asks the sentinels for the current master and
// reconnects after a failover.
func (c *Conn) Client(role string, db int, tune func(*redis.Options)) *redis.Client {
	t := c.cfg.For(role)
	o := &redis.Options{
		Addr: t.Addr, DB: db, Username: t.Username, Password: t.Password,
		DialTimeout: c.DialTimeout, ReadTimeout: c.ReadTimeout, WriteTimeout: c.WriteTimeout,
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
	})
}
