package event

// KernelLifecycle carries the fields of every kernel creation event.
type KernelLifecycle struct {
	KernelID  string `json:"kernel_id"`
	SessionID string `json:"session_id"`
	Reason    string `json:"reason"`
}

func (e KernelLifecycle) legacy(extra any) []any {
	return []any{legacyUUID(e.KernelID), legacyUUID(e.SessionID), legacyReason(e.Reason), extra}
}

// KernelPreparing is kernel_preparing.
type KernelPreparing struct{ KernelLifecycle }

func (KernelPreparing) EventName() string   { return "kernel_preparing" }
func (KernelPreparing) Delivery() Delivery  { return Anycast | Broadcast }
func (e KernelPreparing) LegacyArgs() []any { return e.legacy(nil) }

// KernelPulling is kernel_pulling, sent when create_kernels has to pull
// the image first.
type KernelPulling struct{ KernelLifecycle }

func (KernelPulling) EventName() string   { return "kernel_pulling" }
func (KernelPulling) Delivery() Delivery  { return Anycast | Broadcast }
func (e KernelPulling) LegacyArgs() []any { return e.legacy(nil) }

// KernelCreating is kernel_creating.
type KernelCreating struct{ KernelLifecycle }

func (KernelCreating) EventName() string   { return "kernel_creating" }
func (KernelCreating) Delivery() Delivery  { return Anycast | Broadcast }
func (e KernelCreating) LegacyArgs() []any { return e.legacy(nil) }

// KernelStarted is kernel_started with the creation info the manager
// stores against the kernel.
type KernelStarted struct {
	KernelLifecycle
	CreationInfo CreationInfo `json:"creation_info"`
}

func (KernelStarted) EventName() string   { return "kernel_started" }
func (KernelStarted) Delivery() Delivery  { return Anycast | Broadcast }
func (e KernelStarted) LegacyArgs() []any { return e.legacy(e.CreationInfo.legacy()) }

// KernelTerminated is kernel_terminated.
type KernelTerminated struct {
	KernelID  string `json:"kernel_id"`
	SessionID string `json:"session_id"`
	Reason    string `json:"reason"`
	ExitCode  int    `json:"exit_code"`
}

func (KernelTerminated) EventName() string  { return "kernel_terminated" }
func (KernelTerminated) Delivery() Delivery { return Anycast | Broadcast }
func (e KernelTerminated) LegacyArgs() []any {
	return []any{legacyUUID(e.KernelID), legacyUUID(e.SessionID), legacyReason(e.Reason), e.ExitCode}
}

// DoSyncKernelLogs is do_sync_kernel_logs: the container's logs are in
// Redis for the manager to copy.
type DoSyncKernelLogs struct {
	KernelID    string `json:"kernel_id"`
	ContainerID string `json:"container_id"`
}

func (DoSyncKernelLogs) EventName() string  { return "do_sync_kernel_logs" }
func (DoSyncKernelLogs) Delivery() Delivery { return Anycast }
func (e DoSyncKernelLogs) LegacyArgs() []any {
	return []any{legacyUUID(e.KernelID), e.ContainerID}
}

// CreationInfo is KernelCreationInfo.
type CreationInfo struct {
	ContainerID  string            `json:"container_id"`
	KernelHost   string            `json:"kernel_host"`
	ReplInPort   int               `json:"repl_in_port"`
	ReplOutPort  int               `json:"repl_out_port"`
	ServicePorts []ServicePortInfo `json:"service_ports"`
	UsedDevices  UsedDevices       `json:"used_devices"`
}

// ServicePortInfo is one service port of a kernel.
type ServicePortInfo struct {
	Name           string `json:"name"`
	Protocol       string `json:"protocol"`
	ContainerPorts []int  `json:"container_ports"`
	HostPorts      []int  `json:"host_ports"`
	IsInference    bool   `json:"is_inference"`
	// Extras from service definitions (receivers that do not know them
	// ignore them, as pydantic does).
	URLTemplate      string   `json:"url_template,omitempty"`
	AllowedArguments []string `json:"allowed_arguments,omitempty"`
	AllowedEnvs      []string `json:"allowed_envs,omitempty"`
}

// Wire renders a service port as the manager reads it, in events and in
// RPC results alike (the one renderer of both).
func (p ServicePortInfo) Wire() map[string]any {
	m := map[string]any{"name": p.Name, "protocol": p.Protocol, "container_ports": intsAny(p.ContainerPorts), "host_ports": intsAny(p.HostPorts), "is_inference": p.IsInference}
	if p.URLTemplate != "" {
		m["url_template"] = p.URLTemplate
	}
	if len(p.AllowedArguments) > 0 {
		m["allowed_arguments"] = stringsAny(p.AllowedArguments)
	}
	if len(p.AllowedEnvs) > 0 {
		m["allowed_envs"] = stringsAny(p.AllowedEnvs)
	}
	return m
}

func intsAny(l []int) []any {
	out := make([]any, len(l))
	for i, v := range l {
		out[i] = v
	}
	return out
}

func stringsAny(l []string) []any {
	out := make([]any, len(l))
	for i, s := range l {
		out[i] = s
	}
	return out
}

// UsedDevices is {device name: {device id: UsedDevice}}.
type UsedDevices struct {
	Units map[string]map[string]UsedDevice `json:"units"`
}

// UsedDevice is one device unit a kernel holds. ModelName,
// ProcessingUnits and MemorySize are null for intrinsic slots (cpu, mem),
// exactly as the Python agent sends them; only accelerators report them.
type UsedDevice struct {
	ModelName       *string           `json:"model_name"`
	Used            map[string]string `json:"used"`
	ProcessingUnits *int64            `json:"processing_units"`
	MemorySize      *int64            `json:"memory_size"`
}

func (c CreationInfo) legacy() map[string]any {
	sp := make([]any, 0, len(c.ServicePorts))
	for _, p := range c.ServicePorts {
		sp = append(sp, p.Wire())
	}
	units := map[string]any{}
	for dev, per := range c.UsedDevices.Units {
		m := map[string]any{}
		for id, u := range per {
			used := map[string]any{}
			for k, v := range u.Used {
				used[k] = v
			}
			var model, pu, ms any
			if u.ModelName != nil {
				model = *u.ModelName
			}
			if u.ProcessingUnits != nil {
				pu = *u.ProcessingUnits
			}
			if u.MemorySize != nil {
				ms = *u.MemorySize
			}
			m[id] = map[string]any{"model_name": model, "used": used, "processing_units": pu, "memory_size": ms}
		}
		units[dev] = m
	}
	return map[string]any{
		"container_id": c.ContainerID, "kernel_host": c.KernelHost, "repl_in_port": c.ReplInPort, "repl_out_port": c.ReplOutPort,
		"service_ports": sp, "used_devices": map[string]any{"units": units},
	}
}
