package config

import (
	"net"
	"net/url"
	"strings"
)

// Otel is the [otel] section, with upstream's OTELConfig defaults.
type Otel struct {
	Enabled            bool
	LogLevel           string // "INFO"; bai-agent exports no logs over OTLP
	Endpoint           string // "http://localhost:4317"
	MaxQueueSize       int    // 65536
	MaxExportBatchSize int    // 4096
}

// rawKey reads key of a raw table under its dashed or underscored name.
func rawKey(v any, key string) any {
	if x := rawField(v, key); x != nil {
		return x
	}
	return rawField(v, strings.ReplaceAll(key, "-", "_"))
}

func rawInt(v any, key string, def int) int {
	if n, ok := rawKey(v, key).(int64); ok {
		return int(n)
	}
	return def
}

func rawString(v any, key, def string) string {
	if s, ok := rawKey(v, key).(string); ok && s != "" {
		return s
	}
	return def
}

// OtelSettings returns [otel] with upstream's defaults filled in.
func (c *Config) OtelSettings() Otel {
	return Otel{
		Enabled:            rawEnabled(c.Otel),
		LogLevel:           rawString(c.Otel, "log-level", "INFO"),
		Endpoint:           rawString(c.Otel, "endpoint", "http://localhost:4317"),
		MaxQueueSize:       rawInt(c.Otel, "max-queue-size", 65536),
		MaxExportBatchSize: rawInt(c.Otel, "max-export-batch-size", 4096),
	}
}

// otlpGRPCEndpoint reports whether endpoint names OTLP/gRPC's port 4317
// (upstream's default), which bai-agent's OTLP/HTTP exporter cannot use.
func otlpGRPCEndpoint(endpoint string) bool {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		// "host:4317" without a scheme.
		_, port, err := net.SplitHostPort(endpoint)
		return err == nil && port == "4317"
	}
	return u.Port() == "4317"
}

// ServiceDiscoveryType is [service-discovery] type: "redis" (upstream's
// default) or "etcd".
func (c *Config) ServiceDiscoveryType() string {
	if t, ok := rawField(c.ServiceDiscovery, "type").(string); ok && t != "" {
		return t
	}
	return "redis"
}
