package etcdconfig

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bai-agent/bai-agent/internal/redisconn"
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
	scheme    string
	refresh   time.Duration
	mu        sync.Mutex
	token     string
	tokenAt   time.Time
}

// Options connect a Client.
type Options struct {
	Endpoints []string // http://host:port
	Namespace string
	User      string
	Password  string
	Timeout   time.Duration
	// TLS, if set, speaks HTTPS to the endpoints.
	TLS *tls.Config
	// TokenRefresh is the age after which the auth token is renewed before
	// the next call (default 60 s, well under etcd's default 300-s
	// --auth-token-ttl). A call answered "unauthenticated" renews it too.
	TokenRefresh time.Duration
}

// Dial checks that an endpoint answers (and authenticates when a user is
// given).
func Dial(ctx context.Context, o Options) (*Client, error) {
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	if o.TokenRefresh == 0 {
		o.TokenRefresh = 60 * time.Second
	}
	hc := &http.Client{Timeout: o.Timeout}
	scheme := "http://"
	if o.TLS != nil {
		hc.Transport = &http.Transport{TLSClientConfig: o.TLS, Proxy: nil}
		scheme = "https://"
	}
	c := &Client{http: hc, endpoints: o.Endpoints, prefix: "/sorna/" + o.Namespace + "/", user: o.User, password: o.Password, scheme: scheme, refresh: o.TokenRefresh}
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
	c.token, c.tokenAt = out.Token, time.Now()
	return nil
}

// grpcUnauthenticated is the gRPC status code the gateway reports for an
// expired or invalid auth token.
const grpcUnauthenticated = 16

// gatewayError is the JSON body of a failed gateway call.
type gatewayError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// call POSTs a gateway request to the first endpoint that answers. With
// a user it authenticates first, renews the token once it is older than
// the refresh age, and renews it and retries once when the server says the
// token is no longer valid.
func (c *Client) call(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	var lastErr error
	for _, ep := range c.endpoints {
		base := strings.TrimSuffix(ep, "/")
		if !strings.Contains(base, "://") {
			base = c.scheme + base
		}
		for attempt := 0; attempt < 2; attempt++ {
			token, err := c.tokenFor(ctx, base, attempt > 0)
			if err != nil {
				lastErr = err
				break
			}
			retry, err := c.post(ctx, base, path, token, body, out)
			if err == nil {
				return nil
			}
			lastErr = err
			if !retry {
				break
			}
		}
	}
	return lastErr
}

// tokenFor returns the auth token to send ("" without a user), renewing
// it when it is missing, old, or force is set.
func (c *Client) tokenFor(ctx context.Context, base string, force bool) (string, error) {
	if c.user == "" {
		return "", nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if force || c.token == "" || time.Since(c.tokenAt) > c.refresh {
		if err := c.authenticate(ctx, base); err != nil {
			return "", err
		}
	}
	return c.token, nil
}

// post sends one request; retry reports an unauthenticated answer to a
// request that carried a token.
func (c *Client) post(ctx context.Context, base, path, token string, body []byte, out any) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return false, err
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	resp.Body.Close()
	if err != nil {
		return false, err
	}
	if resp.StatusCode != http.StatusOK {
		var ge gatewayError
		_ = json.Unmarshal(data, &ge)
		return token != "" && ge.Code == grpcUnauthenticated, fmt.Errorf("%s: HTTP %d: %s", path, resp.StatusCode, strings.TrimSpace(string(data)))
	}
	return false, json.Unmarshal(data, out)
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

// parseRedisTarget reads one Redis target (config/redis or one of its
// override_configs) as upstream's redis_config_iv accepts it: addr as
// "host:port" or {host, port}; sentinel as "h1:p1,h2:p2" or a list;
// use_tls / tls_skip_verify as booleans or their strings.
func parseRedisTarget(m map[string]any, prefix string) (redisconn.Target, error) {
	var t redisconn.Target
	t.Addr = asString(m["addr"])
	if hp, ok := m["addr"].(map[string]any); ok {
		t.Addr = asString(hp["host"]) + ":" + asString(hp["port"])
	}
	switch v := m["sentinel"].(type) {
	case nil:
	case string:
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				t.Sentinel = append(t.Sentinel, s)
			}
		}
	case map[string]any: // a list stored as keys 0, 1, ...
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { a, _ := strconv.Atoi(keys[i]); b, _ := strconv.Atoi(keys[j]); return a < b })
		for _, k := range keys {
			t.Sentinel = append(t.Sentinel, asString(v[k]))
		}
	default:
		return t, fmt.Errorf("%ssentinel: %v is neither \"host:port,...\" nor a list", prefix, v)
	}
	t.ServiceName = asString(m["service_name"])
	if t.ServiceName == "" {
		t.ServiceName = asString(m["service-name"])
	}
	t.Username = asString(m["username"])
	t.Password = asString(m["password"])
	t.SentinelPassword = asString(m["sentinel_password"])
	for _, b := range []struct {
		key string
		dst *bool
	}{{"use_tls", &t.TLS}, {"tls_skip_verify", &t.TLSSkipVerify}} {
		switch v := strings.ToLower(asString(m[b.key])); v {
		case "", "false", "0", "no":
		case "true", "1", "yes":
			*b.dst = true
		default:
			return t, fmt.Errorf("%s%s: %q is not a boolean", prefix, b.key, v)
		}
	}
	return t, nil
}

// Global is what the agent reads from etcd at start-up.
type Global struct {
	Redis           redisconn.Config
	Volumes         map[string]any
	API             map[string]any
	ContainerLogs   map[string]any
	KernelLifecycle map[string]any
	KernelUID       *int
	KernelGID       *int
	Accelerators    map[string]any
	SubnetAgent     string
	SubnetContainer string
	// SandboxByGroup is config/container/sandbox-type/{resource group}:
	// a sandbox-type a resource group's nodes run with at least.
	SandboxByGroup map[string]any
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
	g := &Global{}
	red, err := c.GetPrefix(ctx, "config/redis")
	if err != nil {
		return nil, err
	}
	if g.Redis.Target, err = parseRedisTarget(red, c.prefix+"config/redis/"); err != nil {
		return nil, err
	}
	if ov, ok := red["override_configs"].(map[string]any); ok {
		g.Redis.Overrides = map[string]redisconn.Target{}
		for role, v := range ov {
			m, _ := v.(map[string]any)
			t, err := parseRedisTarget(m, c.prefix+"config/redis/override_configs/"+role+"/")
			if err != nil {
				return nil, err
			}
			g.Redis.Overrides[role] = t
		}
	}
	if g.Redis.Addr == "" && len(g.Redis.Sentinel) == 0 {
		return nil, fmt.Errorf("%w: %sconfig/redis/addr (the Redis address, e.g. 127.0.0.1:6379; or config/redis/sentinel with service_name)", ErrMissing, c.prefix)
	}
	if err := g.Redis.Validate(); err != nil {
		return nil, fmt.Errorf("%w (under %s)", err, c.prefix)
	}
	if g.Volumes, err = c.GetPrefix(ctx, "volumes"); err != nil {
		return nil, err
	}
	if g.API, err = c.GetPrefix(ctx, "config/agent/api"); err != nil {
		return nil, err
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
	if g.SandboxByGroup, err = c.GetPrefix(ctx, "config/container/sandbox-type"); err != nil {
		return nil, err
	}
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

// PutAll writes several keys in one transaction (AsyncEtcd.put_dict).
func (c *Client) PutAll(ctx context.Context, kvs map[string]string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	keys := make([]string, 0, len(kvs))
	for k := range kvs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	ops := make([]map[string]any, 0, len(keys))
	for _, k := range keys {
		ops = append(ops, map[string]any{"request_put": map[string]any{"key": []byte(c.key(k)), "value": []byte(kvs[k])}})
	}
	var out map[string]any
	if err := c.call(ctx, "/v3/kv/txn", map[string]any{"success": ops}, &out); err != nil {
		return fmt.Errorf("etcd put %d keys: %w", len(kvs), err)
	}
	return nil
}

// DeletePrefix removes k and every key below it (AsyncEtcd.delete_prefix
// on k: its range is the raw prefix, so "a/b" also covers "a/bc").
func (c *Client) DeletePrefix(ctx context.Context, k string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	key := c.key(k)
	var out map[string]any
	if err := c.call(ctx, "/v3/kv/deleterange", map[string]any{"key": []byte(key), "range_end": rangeEnd(key)}, &out); err != nil {
		return fmt.Errorf("etcd delete prefix %s: %w", k, err)
	}
	return nil
}
