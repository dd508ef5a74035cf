package app

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/identity"
)

// ResolveAgentID settles cfg.Agent.ID before anything uses it (the logger's
// Loki labels, etcd, Redis, container labels): the configured value when
// [agent] id is set, else what upstream's
// get_instance_id would choose on this machine, the cloud instance id
// (asked at [agent] instance-metadata-url) or "i-" + host name. Config
// loading stays free of I/O; this runs once, at start-server.
func ResolveAgentID(ctx context.Context, cfg *config.Config) (identity.Result, error) {
	if cfg.MultiAgent() {
		// Each [[agents]] entry names its agent; [agent] id is no agent's.
		acfgs, err := cfg.AgentConfigs()
		if err != nil {
			return identity.Result{}, &ConfigError{Err: err}
		}
		ids := make([]string, len(acfgs))
		for i, c := range acfgs {
			ids[i] = c.Agent.ID
		}
		return identity.Result{ID: strings.Join(ids, ","), Source: identity.SourceConfig, Reason: "[[agents]]"}, nil
	}
	if src := cfg.SourceOf("agent.id"); src.Kind != config.FromDefault {
		return identity.Result{ID: cfg.Agent.ID, Source: identity.SourceConfig, Reason: src.String()}, nil
	}
	res, err := identity.Detect(ctx, identity.Options{
		MetadataURL: cfg.Agent.InstanceMetadataURL,
		Disabled:    cfg.Agent.InstanceMetadataURL == "",
	})
	if err != nil {
		return res, &ConfigError{Err: fmt.Errorf("%w (set [agent] id)", err)}
	}
	if strings.ContainsAny(res.ID, "/ \t\n") {
		return res, &ConfigError{Err: fmt.Errorf("agent id %q from %s has slashes or spaces (set [agent] id)", res.ID, res.Source)}
	}
	cfg.Agent.ID = res.ID
	return res, nil
}

// LogAgentID logs the chosen id and where it came from (and, at debug
// level, why each cloud probe failed).
func LogAgentID(log *slog.Logger, res identity.Result) {
	attrs := []any{"agent_id", res.ID, "source", string(res.Source)}
	if res.Provider != "" {
		attrs = append(attrs, "cloud_provider", string(res.Provider))
	}
	if res.Reason != "" {
		attrs = append(attrs, "reason", res.Reason)
	}
	log.Info("agent id chosen", attrs...)
	for p, err := range res.Probes {
		log.Debug("cloud detection probe failed", "cloud_provider", string(p), "error", err)
	}
}
