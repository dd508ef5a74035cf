package config

import (
	"fmt"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
)

// Multi-agent mode: [[agents]] lists several agents that one bai-agent
// process runs, as upstream's AgentRuntime does. [agent], [container] and
// [resource] are the defaults; each entry overrides some of their keys in
// its own agent/container tables. Everything else (etcd, Redis, logging,
// internal-addr, the metrics endpoint) is the process's and shared.

// agentOverrideKeys are the keys an [[agents]] entry may set in its
// [agents.agent] table: upstream's OverridableAgentConfig, plus the
// addresses bai-agent gives each agent (every agent has its own RPC
// listener) and its region.
var agentOverrideKeys = []string{
	"id", "rpc-listen-addr", "advertised-rpc-addr", "region",
	"initial-resource-group-name", "scaling-group-type", "force-terminate-abusing-containers",
	"kernel-creation-concurrency", "sync-container-lifecycles", "utilization-metric",
}

// containerOverrideKeys are the keys an entry may set in its
// [agents.container] table: upstream's OverridableContainerConfig less
// those bai-agent does not implement (jail-args, scratch-nfs-*,
// swarm-enabled, alternative-bridge).
var containerOverrideKeys = []string{
	"kernel-uid", "kernel-gid", "port-range", "port-reuse-cooldown-sec", "stats-type",
	"sandbox-type", "scratch-type", "scratch-root", "scratch-size",
}

// agentEntry is one parsed [[agents]] entry.
type agentEntry struct {
	index     int
	agent     map[string]any
	container map[string]any
}

// MultiAgent reports whether the config lists [[agents]].
func (c *Config) MultiAgent() bool { return len(c.agentEntries) > 0 }

// AgentConfigs returns one configuration per agent the process runs: the
// config itself without [[agents]], else a copy per entry with the
// entry's overrides applied. Unless an entry sets its own scratch-root,
// its kernels' scratch lives in <scratch-root>/<agent id>: each agent
// removes the scratch folders it does not own when it starts.
func (c *Config) AgentConfigs() ([]*Config, error) {
	if len(c.agentEntries) == 0 {
		return []*Config{c}, nil
	}
	out := make([]*Config, 0, len(c.agentEntries))
	for _, e := range c.agentEntries {
		cp, err := c.applyEntry(e)
		if err != nil {
			return nil, err
		}
		out = append(out, cp)
	}
	return out, nil
}

// applyEntry is the config of one entry's agent.
func (c *Config) applyEntry(e agentEntry) (*Config, error) {
	cp := *c
	cp.Agents = nil
	cp.agentEntries = nil
	cp.sources = maps.Clone(c.sources)
	cp.Agent.ExtraMountRoots = slices.Clone(c.Agent.ExtraMountRoots)
	if c.Agent.AdvertisedRPCAddr != nil {
		a := *c.Agent.AdvertisedRPCAddr
		cp.Agent.AdvertisedRPCAddr = &a
	}
	prefix := fmt.Sprintf("agents[%d]", e.index)
	b := &binder{file: c.Source, pos: map[string]Position{}}
	if err := b.bindStruct(prefix+".agent", e.agent, reflect.ValueOf(&cp.Agent).Elem()); err != nil {
		return nil, err
	}
	if err := b.bindStruct(prefix+".container", e.container, reflect.ValueOf(&cp.Container).Elem()); err != nil {
		return nil, err
	}
	if _, ok := e.container["scratch-root"]; !ok {
		cp.Container.ScratchRoot = filepath.Join(c.Container.ScratchRoot, cp.Agent.ID)
	}
	if err := cp.validate(b); err != nil {
		return nil, fmt.Errorf("[[agents]] entry %d (id %q): %w", e.index, cp.Agent.ID, err)
	}
	if c.Source != "" {
		if abs, err := filepath.Abs(c.Source); err == nil {
			cp.resolvePaths(filepath.Dir(abs))
		}
	}
	return &cp, nil
}

// parseAgents reads [[agents]] into c.agentEntries and checks what the
// entries may set and that the agents they make can run side by side.
func (c *Config) parseAgents(b *binder) error {
	if isEmpty(c.Agents) {
		return nil
	}
	list, ok := c.Agents.([]any)
	if !ok {
		return b.errorf("agents", "must be an array of tables ([[agents]])")
	}
	if len(list) == 1 {
		return b.errorf("agents", "lists one agent: multi-agent mode needs two or more [[agents]] entries (for one agent, set [agent] id and leave [[agents]] out), as upstream")
	}
	ids := map[string]int{}
	for i, it := range list {
		where := fmt.Sprintf("agents[%d]", i)
		m, ok := it.(map[string]any)
		if !ok {
			return b.errorf("agents", "entry %d is not a table", i)
		}
		e := agentEntry{index: i, agent: map[string]any{}, container: map[string]any{}}
		for k, v := range m {
			switch k {
			case "agent", "container":
				t, ok := v.(map[string]any)
				if !ok {
					return b.errorf("agents."+k, "%s.%s must be a table", where, k)
				}
				allowed := agentOverrideKeys
				if k == "container" {
					allowed = containerOverrideKeys
				}
				for kk := range t {
					if !slices.Contains(allowed, kk) {
						return b.errorf("agents."+k+"."+kk, "%s.%s.%s cannot be set per agent (set it in [%s] for all agents); an entry may set %s.{%s}",
							where, k, kk, k, k, strings.Join(allowed, ", "))
					}
				}
				if k == "agent" {
					e.agent = t
				} else {
					e.container = t
				}
			case "resource":
				return b.errorf("agents.resource", "%s.resource: per-agent allocations (allocation-mode = \"manual\") are not implemented; multi-agent mode runs with allocation-mode = \"shared\"", where)
			default:
				return b.errorf("agents."+k, "%s.%s: unknown table; an entry has agent and container", where, k)
			}
		}
		id, _ := e.agent["id"].(string)
		if id == "" {
			return b.errorf("agents.agent.id", "%s.agent.id is required (each agent needs its own id)", where)
		}
		if j, dup := ids[id]; dup {
			return b.errorf("agents.agent.id", "agents[%d] and agents[%d] have the same id %q", j, i, id)
		}
		ids[id] = i
		c.agentEntries = append(c.agentEntries, e)
	}
	cfgs, err := c.AgentConfigs()
	if err != nil {
		return err
	}
	// Each agent has its own RPC listener, advertised to the manager in its
	// heartbeats, and its own scratch folders.
	listen := map[string]string{}
	advertised := map[string]string{}
	scratch := map[string]string{}
	var ranges []agentRange
	for i, ac := range cfgs {
		name := fmt.Sprintf("agents[%d] (id %q)", i, ac.Agent.ID)
		la := fmt.Sprint(ac.Agent.RPCListenAddr.Port)
		if prev, dup := listen[la]; dup {
			return b.errorf("agents.agent.rpc-listen-addr", "%s and %s both listen on port %s: give each [[agents]] entry its own agent.rpc-listen-addr", prev, name, la)
		}
		listen[la] = name
		if ac.Agent.AdvertisedRPCAddr != nil {
			aa := ac.Agent.AdvertisedRPCAddr.String()
			if prev, dup := advertised[aa]; dup {
				return b.errorf("agents.agent.advertised-rpc-addr", "%s and %s both advertise %s: give each [[agents]] entry its own agent.advertised-rpc-addr (or leave [agent] advertised-rpc-addr unset)", prev, name, aa)
			}
			advertised[aa] = name
		}
		sr := filepath.Clean(ac.Container.ScratchRoot)
		if prev, dup := scratch[sr]; dup {
			return b.errorf("agents.container.scratch-root", "%s and %s both keep scratch in %s: each agent removes the scratch folders it does not own", prev, name, sr)
		}
		scratch[sr] = name
		ranges = append(ranges, agentRange{name, ac.Container.PortRange})
	}
	// Agents with the same port-range share one pool of host ports;
	// ranges that differ must not overlap.
	sort.Slice(ranges, func(i, j int) bool { return ranges[i].r[0] < ranges[j].r[0] })
	for i := 1; i < len(ranges); i++ {
		p, q := ranges[i-1], ranges[i]
		if p.r != q.r && q.r[0] <= p.r[1] {
			return b.errorf("agents.container.port-range", "%s and %s have overlapping port ranges %d-%d and %d-%d: give them the same range (one shared pool) or ranges that do not overlap",
				p.name, q.name, p.r[0], p.r[1], q.r[0], q.r[1])
		}
	}
	return nil
}

type agentRange struct {
	name string
	r    PortRange
}
