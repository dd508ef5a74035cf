package etcdconfig

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Client is a namespaced etcd client. It speaks etcd's v3 JSON gateway
// (/v3/kv/range, /v3/kv/put; enabled by default in etcd 3.4 and later)
// over plain HTTP instead of linking the gRPC client: the agent needs a
// handful of reads and writes, and the gRPC stack would add about 10 MiB
// to its resident memory.
type Client struct {
	http      *http.Client
	endpoints []string
	prefix    string
	user      string
	password  string
	mu        sync.Mutex
	token     string
}

// Options connect a Client.
type Options struct {
	Endpoints []string // http://host:port
	Namespace string
	User      string
	Password  string
	Timeout   time.Duration
}

// Dial checks that an endpoint answers (and authenticates when a user is
// given).
func Dial(ctx context.Context, o Options) (*Client, error) {
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	c := &Client{http: &http.Client{Timeout: o.Timeout}, endpoints: o.Endpoints, prefix: "/sorna/" + o.Namespace + "/", user: o.User, password: o.Password}
	var st struct {
		Version string `json:"version"`
	}
	if err := c.call(ctx, "/v3/maintenance/status", map[string]any{}, &st); err != nil {
		return nil, fmt.Errorf("etcd %v does not answer: %w", o.Endpoints, err)
	}
	return c, nil
}

// Close releases idle connections.
func (c *Client) Close() error {
	c.http.CloseIdleConnections()
	return nil
}

func (c *Client) authenticate(ctx context.Context, base string) error {
	body, _ := json.Marshal(map[string]string{"name": c.user, "password": c.password})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v3/auth/authenticate", bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var out struct {
		Token string `json:"token"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		return err
	}
	if out.Token == "" {
		return fmt.Errorf("etcd authentication as %q failed: %s", c.user, out.Error)
	}
	c.token = out.Token
	return nil
}

// call POSTs a gateway request to the first endpoint that answers.
func (c *Client) call(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	var lastErr error
	for _, ep := range c.endpoints {
		base := strings.TrimSuffix(ep, "/")
		if !strings.Contains(base, "://") {
			base = "http://" + base
		}
		c.mu.Lock()
		if c.user != "" && c.token == "" {
			if err := c.authenticate(ctx, base); err != nil {
				c.mu.Unlock()
				lastErr = err
				continue
			}
		}
		token := c.token
		c.mu.Unlock()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", token)
		}
		resp, err := c.http.Do(req)
		if err != nil {
			lastErr = err
			continue
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		resp.Body.Close()
		if err != nil {
			lastErr = err
			continue
		}
		if resp.StatusCode != http.StatusOK {
			lastErr = fmt.Errorf("%s: HTTP %d: %s", path, resp.StatusCode, strings.TrimSpace(string(data)))
			continue
		}
		return json.Unmarshal(data, out)
	}
	return lastErr
}

type kv struct {
	Key   []byte `json:"key"`
	Value []byte `json:"value"`
}

// rangeEnd is the end of the prefix range of k (k with its last byte + 1).
func rangeEnd(k string) []byte {
	b := []byte(k)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return b[:i+1]
		}
	}
	return []byte{0}
}

func (c *Client) rangeKeys(ctx context.Context, key string, prefix bool) ([]kv, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req := map[string]any{"key": []byte(key)}
	if prefix {
		req["range_end"] = rangeEnd(key)
	}
	var out struct {
		Kvs []kv `json:"kvs"`
	}
	if err := c.call(ctx, "/v3/kv/range", req, &out); err != nil {
		return nil, err
	}
	return out.Kvs, nil
}

// key mangles a key the way Backend.AI's AsyncEtcd does: each path
// component URL-quoted.
func (c *Client) key(k string) string {
	parts := strings.Split(k, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return c.prefix + strings.Join(parts, "/")
}

// Get reads one key ("" and false when absent).
func (c *Client) Get(ctx context.Context, k string) (string, bool, error) {
	kvs, err := c.rangeKeys(ctx, c.key(k), false)
	if err != nil {
		return "", false, fmt.Errorf("etcd get %s: %w", k, err)
	}
	if len(kvs) == 0 {
		return "", false, nil
	}
	return string(kvs[0].Value), true, nil
}

// GetPrefix reads every key below k as a nested map, the way AsyncEtcd's
// get_prefix does ("a/b" = 1 and "a/c/d" = 2 become {b: 1, c: {d: 2}}).
// A key that is both a value and a prefix keeps its value under "".
func (c *Client) GetPrefix(ctx context.Context, k string) (map[string]any, error) {
	base := c.key(k) + "/"
	kvs, err := c.rangeKeys(ctx, base, true)
	if err != nil {
		return nil, fmt.Errorf("etcd get prefix %s: %w", k, err)
	}
	out := map[string]any{}
	for _, kv := range kvs {
		rest := strings.TrimPrefix(string(kv.Key), base)
		parts := strings.Split(rest, "/")
		m := out
		for i, p := range parts {
			p, _ = url.PathUnescape(p)
			if i == len(parts)-1 {
				if sub, ok := m[p].(map[string]any); ok {
					sub[""] = string(kv.Value)
				} else {
					m[p] = string(kv.Value)
				}
				break
			}
			sub, ok := m[p].(map[string]any)
			if !ok {
				sub = map[string]any{}
				if v, isStr := m[p].(string); isStr {
					sub[""] = v
				}
				m[p] = sub
			}
			m = sub
		}
	}
	return out, nil
}

// Put writes one key.
func (c *Client) Put(ctx context.Context, k, v string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var out map[string]any
	if err := c.call(ctx, "/v3/kv/put", map[string]any{"key": []byte(c.key(k)), "value": []byte(v)}, &out); err != nil {
		return fmt.Errorf("etcd put %s: %w", k, err)
	}
	return nil
}

// RedisConfig is config/redis.
type RedisConfig struct {
	Addr     string
	Password string
	// Sentinel and service name are accepted and reported; sentinel mode is
	// not implemented yet.
	Sentinel    string
	ServiceName string
}

// Global is what the agent reads from etcd at start-up.
type Global struct {
	Redis           RedisConfig
	Volumes         map[string]any
	API             map[string]any
	ContainerLogs   map[string]any
	KernelLifecycle map[string]any
	KernelUID       *int
	KernelGID       *int
	Accelerators    map[string]any
	SubnetAgent     string
	SubnetContainer string
	PullTimeout     time.Duration
}

// ErrMissing is wrapped when a required key is absent.
var ErrMissing = errors.New("missing etcd key")

func asString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return ""
}

// Load reads the global configuration.
func (c *Client) Load(ctx context.Context) (*Global, error) {
	g := &Global{PullTimeout: 7200 * time.Second}
	red, err := c.GetPrefix(ctx, "config/redis")
	if err != nil {
		return nil, err
	}
	g.Redis.Addr = asString(red["addr"])
	if g.Redis.Addr == "" {
		if hp, ok := red["addr"].(map[string]any); ok {
			g.Redis.Addr = asString(hp["host"]) + ":" + asString(hp["port"])
		}
	}
	g.Redis.Password = asString(red["password"])
	if s, ok := red["sentinel"]; ok {
		b, _ := json.Marshal(s)
		g.Redis.Sentinel = string(b)
	}
	g.Redis.ServiceName = asString(red["service_name"])
	if g.Redis.Addr == "" && g.Redis.Sentinel == "" {
		return nil, fmt.Errorf("%w: %sconfig/redis/addr (the Redis address, e.g. 127.0.0.1:6379)", ErrMissing, c.prefix)
	}
	if g.Redis.Addr != "" {
		if _, port, ok := strings.Cut(g.Redis.Addr, ":"); !ok || port == "" {
			return nil, fmt.Errorf("%sconfig/redis/addr: %q is not host:port", c.prefix, g.Redis.Addr)
		}
	}
	if g.Volumes, err = c.GetPrefix(ctx, "volumes"); err != nil {
		return nil, err
	}
	if g.API, err = c.GetPrefix(ctx, "config/agent/api"); err != nil {
		return nil, err
	}
	if v := asString(g.API["pull-timeout"]); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			return nil, fmt.Errorf("%sconfig/agent/api/pull-timeout: %q is not a positive number of seconds", c.prefix, v)
		}
		g.PullTimeout = time.Duration(f * float64(time.Second))
	}
	if g.ContainerLogs, err = c.GetPrefix(ctx, "config/agent/container-logs"); err != nil {
		return nil, err
	}
	if g.KernelLifecycle, err = c.GetPrefix(ctx, "config/agent/kernel-lifecycles"); err != nil {
		return nil, err
	}
	for _, kv := range []struct {
		key string
		dst **int
	}{{"config/container/kernel-uid", &g.KernelUID}, {"config/container/kernel-gid", &g.KernelGID}} {
		v, ok, err := c.Get(ctx, kv.key)
		if err != nil {
			return nil, err
		}
		if ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < -1 {
				return nil, fmt.Errorf("%s%s: %q is not a uid/gid", c.prefix, kv.key, v)
			}
			*kv.dst = &n
		}
	}
	if g.Accelerators, err = c.GetPrefix(ctx, "config/plugins/accelerator"); err != nil {
		return nil, err
	}
	sn, err := c.GetPrefix(ctx, "config/network/subnet")
	if err != nil {
		return nil, err
	}
	g.SubnetAgent, g.SubnetContainer = asString(sn["agent"]), asString(sn["container"])
	return g, nil
}

// WaitForManager blocks until some key under nodes/manager is "up".
func (c *Client) WaitForManager(ctx context.Context, log *slog.Logger) error {
	for {
		m, err := c.GetPrefix(ctx, "nodes/manager")
		if err == nil {
			for _, v := range m {
				if asString(v) == "up" {
					return nil
				}
			}
		}
		log.Info("waiting for a manager to be up (nodes/manager in etcd); set skip-manager-detection to skip")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(3 * time.Second):
		}
	}
}

// Register writes nodes/agents/{id} and its ip (and watcher port).
func (c *Client) Register(ctx context.Context, id, status, ip string, watcherPort int) error {
	if err := c.Put(ctx, "nodes/agents/"+id, status); err != nil {
		return err
	}
	if ip != "" {
		if err := c.Put(ctx, "nodes/agents/"+id+"/ip", ip); err != nil {
			return err
		}
	}
	if watcherPort > 0 {
		if err := c.Put(ctx, "nodes/agents/"+id+"/watcher_port", strconv.Itoa(watcherPort)); err != nil {
			return err
		}
	}
	return nil
}
