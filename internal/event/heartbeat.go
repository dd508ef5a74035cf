package event

import (
	"encoding/json"
	"sort"

	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/bai-agent/bai-agent/internal/wire"
	"github.com/bai-agent/bai-agent/internal/wire/msgpack"
)

// AgentInfo is the heartbeat's agent_info (common/data/agent/types.py
// AgentInfo), typed; AgentHeartbeat renders it in both wire forms.
type AgentInfo struct {
	IP           string
	Region       string
	ScalingGroup string // "" is null
	Addr         string // tcp://host:port the manager dials
	PublicKey    string // Z85 CURVE key; "" is null
	PublicHost   string
	Version      string
	Architecture string
	// Plugins are compute_plugins: key -> version and extra info.
	Plugins              map[string]PluginInfo
	Available            resource.Slots
	SlotTypes            map[resource.SlotName]resource.SlotType
	AutoTerminateAbusing bool
}

// PluginInfo is one compute plugin's entry.
type PluginInfo struct {
	Version string
	Extra   map[string]any
}

func (i AgentInfo) plugins() map[string]any {
	out := map[string]any{}
	for k, p := range i.Plugins {
		m := map[string]any{"version": p.Version}
		for ek, ev := range p.Extra {
			m[ek] = ev
		}
		out[k] = m
	}
	return out
}

func optional(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func sortedSlots(m map[resource.SlotName]resource.SlotType) []resource.SlotName {
	out := make([]resource.SlotName, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out
}

// current is the JSON shape of current managers: slots as
// [{resource_type, quantity}] and slot types as strings.
func (i AgentInfo) current() map[string]any {
	var slots []any
	for _, s := range i.Available.Names() {
		slots = append(slots, map[string]any{"resource_type": string(s), "quantity": resource.FormatAmount(i.Available[s])})
	}
	units := map[string]any{}
	for s, t := range i.SlotTypes {
		units[string(s)] = string(t)
	}
	return map[string]any{
		"ip": i.IP, "region": i.Region, "scaling_group": optional(i.ScalingGroup), "addr": i.Addr,
		"public_key": optional(i.PublicKey), "public_host": i.PublicHost, "version": i.Version,
		"compute_plugins": i.plugins(), "architecture": i.Architecture, "auto_terminate_abusing_kernel": i.AutoTerminateAbusing,
		"available_resource_slots": slots, "slot_key_and_units": units,
	}
}

// legacy is the shape managers <= 26.8.1 unpickle: a pickled
// ResourceSlot, SlotName keys with SlotTypes enum values, the public key
// as bytes.
func (i AgentInfo) legacy() map[string]any {
	m := i.current()
	rs := wire.ResourceSlot{}
	for s, v := range i.Available {
		rs[string(s)] = v
	}
	m["available_resource_slots"] = rs
	units := msgpack.Map{}
	for _, s := range sortedSlots(i.SlotTypes) {
		units = append(units, msgpack.KV{Key: wire.SlotName(s), Val: wire.Enum{Class: "ai.backend.common.types.SlotTypes", Value: string(i.SlotTypes[s])}})
	}
	m["slot_key_and_units"] = units
	if i.PublicKey != "" {
		m["public_key"] = []byte(i.PublicKey)
	}
	return m
}

// AgentHeartbeat is agent_heartbeat. It is sent by its own loop
// (internal/events Heartbeat), never queued.
type AgentHeartbeat struct{ Info AgentInfo }

func (AgentHeartbeat) EventName() string  { return "agent_heartbeat" }
func (AgentHeartbeat) Delivery() Delivery { return Anycast }

// MarshalJSON renders {"agent_info": {...}}.
func (e AgentHeartbeat) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{"agent_info": e.Info.current()})
}

// LegacyArgs is [agent_info].
func (e AgentHeartbeat) LegacyArgs() []any { return []any{e.Info.legacy()} }
