package metrics

import "time"

// Histogram buckets, in seconds, exactly as upstream's registries declare
// them (a dashboard's histogram_quantile over several agents needs the
// same bucket boundaries on every agent, Python or Go).
var (
	// RPCBuckets: agent/metrics/metric.py RPCMetricObserver.
	RPCBuckets = []float64{0.1, 1, 10, 30, 60, 300, 600}
	// StatBuckets: agent/metrics/metric.py StatTaskObserver.
	StatBuckets = []float64{0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600}
	// EventBuckets: common/metrics/metric.py EventMetricObserver.
	EventBuckets = []float64{0.001, 0.01, 0.1, 0.5, 1, 2, 5, 10, 30}
	// BgTaskBuckets: common/metrics/metric.py BgTaskMetricObserver.
	BgTaskBuckets = []float64{0.1, 1, 10, 30, 60, 300, 600}
)

// Agent is the agent's metric table, with Backend.AI's names and labels.
type Agent struct {
	Reg *Registry

	RPCRequests        *Family
	RPCFailures        *Family
	RPCDuration        *Family
	Container          *Family
	Device             *Family
	Process            *Family
	SyncTrigger        *Family
	SyncSuccess        *Family
	SyncFailure        *Family
	CreateStepFailures *Family
	LogDropped         *Family
	OpStepFailures     *Family
	StatTrigger        *Family
	StatSuccess        *Family
	StatFailure        *Family
	StatDuration       *Family
	Heartbeat          *Family
	AgentCPU           *Family
	AgentMem           *Family
	AgentGoroutines    *Family
	AgentOpenFiles     *Family
	AgentGPU           *Family
	KernelCount        *Family
	OOMKills           *Family
	OutboxPendingBytes *Family
	OutboxDropped      *Family

	// The common registry's event, background-task and process metrics
	// (common/metrics/metric.py).
	EventCount     *Family
	EventFailure   *Family
	EventTime      *Family
	BgTaskCount    *Family
	BgTaskDone     *Family
	BgTaskTime     *Family
	AsyncTaskCount *Family
	ProcCPUPercent *Family
	ProcMemRSS     *Family
	ProcMemVMS     *Family
}

// NewAgent registers the table on a fresh registry.
func NewAgent() *Agent {
	r := NewRegistry()
	return &Agent{
		Reg:                r,
		RPCRequests:        r.NewCounter("backendai_rpc_requests", "Number of RPC requests handled.", "method"),
		RPCFailures:        r.NewCounter("backendai_rpc_failure_requests", "Number of RPC requests that failed.", "method", "exception"),
		RPCDuration:        r.NewHistogram("backendai_rpc_request_duration_seconds", "Duration of RPC requests.", RPCBuckets, "method"),
		Container:          r.NewGauge("backendai_container_utilization", "Container utilization metrics.", "container_metric_name", "agent_id", "kernel_id", "session_id", "user_id", "project_id", "value_type"),
		Device:             r.NewGauge("backendai_device_utilization", "Device utilization metrics.", "device_metric_name", "agent_id", "device_id", "value_type"),
		Process:            r.NewGauge("backendai_process_utilization", "Process utilization metrics.", "process_metric_name", "agent_id", "kernel_id", "session_id", "user_id", "project_id", "container_id", "pid", "value_type"),
		SyncTrigger:        r.NewCounter("backendai_sync_container_lifecycle_trigger_count", "Number of container lifecycle sync passes started.", "agent_id"),
		SyncSuccess:        r.NewCounter("backendai_sync_container_lifecycle_success_count", "Number of container lifecycle sync passes that succeeded.", "agent_id"),
		SyncFailure:        r.NewCounter("backendai_sync_container_lifecycle_failure_count", "Number of container lifecycle sync passes that failed.", "agent_id", "exception"),
		LogDropped:         r.NewCounter("backendai_log_records_dropped", "Number of log records not shipped to Loki (buffer full or Loki unreachable too long).", "agent_id"),
		CreateStepFailures: r.NewCounter("backendai_kernel_create_step_failures_total", "Number of kernel creations that failed, by the step that failed.", "agent_id", "step"),
		OpStepFailures:     r.NewCounter("backendai_kernel_lifecycle_step_failures_total", "Number of other kernel operations (clean, restart) that failed, by operation and step.", "agent_id", "op", "step"),
		StatTrigger:        r.NewCounter("backendai_stat_task_trigger_count", "Number of stat collection tasks started.", "agent_id", "stat_scope"),
		StatSuccess:        r.NewCounter("backendai_stat_task_success_count", "Number of stat collection tasks that succeeded.", "agent_id", "stat_scope"),
		StatFailure:        r.NewCounter("backendai_stat_task_failure_count", "Number of stat collection tasks that failed.", "agent_id", "stat_scope", "exception"),
		StatDuration:       r.NewHistogram("backendai_stat_task_duration_sec", "Duration of stat collection tasks in seconds.", StatBuckets, "agent_id", "stat_scope"),
		Heartbeat:          r.NewCounter("backendai_agent_heartbeat", "Number of heartbeats delivered.", "agent_id"),
		AgentCPU:           r.NewGauge("backendai_agent_cpu_usage", "CPU used by the agent process, in percent of one core.", "agent_id"),
		AgentMem:           r.NewGauge("backendai_agent_mem_usage", "Resident memory of the agent process, in bytes.", "agent_id"),
		AgentGoroutines:    r.NewGauge("backendai_agent_goroutines", "Goroutines of the agent process (a leak shows as steady growth).", "agent_id"),
		AgentOpenFiles:     r.NewGauge("backendai_agent_open_files", "Open file descriptors of the agent process.", "agent_id"),
		AgentGPU:           r.NewGauge("backendai_agent_gpu_usage", "GPU memory used by the agent process, in bytes.", "agent_id"),
		KernelCount:        r.NewGauge("backendai_kernel_count", "Number of kernels on this agent.", "agent_id"),
		OOMKills:           r.NewCounter("backendai_container_oom_kills", "Number of out-of-memory kills seen in kernel containers.", "agent_id", "kernel_id"),
		OutboxPendingBytes: r.NewGauge("backendai_event_outbox_pending_bytes", "Bytes of events waiting in the on-disk outbox for Redis.", "agent_id"),
		OutboxDropped:      r.NewCounter("backendai_event_outbox_dropped", "Number of events dropped because the outbox was full.", "agent_id"),
		EventCount:         r.NewCounter("backendai_event_count", "Total number of events processed.", "event_type"),
		EventFailure:       r.NewCounter("backendai_event_failure_count", "Number of failed events.", "event_type", "exception", "domain", "operation", "error_detail"),
		EventTime:          r.NewHistogram("backendai_event_processing_time_sec", "Processing time of events in seconds.", EventBuckets, "event_type", "status", "domain", "operation", "error_detail"),
		BgTaskCount:        r.NewGauge("backendai_bgtask_count", "Number of background tasks running.", "task_name"),
		BgTaskDone:         r.NewCounter("backendai_bgtask_done_count", "Number of completed background tasks.", "task_name", "status", "domain", "operation", "error_detail"),
		BgTaskTime:         r.NewHistogram("backendai_bgtask_processing_time_sec", "Processing time of background tasks in seconds.", BgTaskBuckets, "task_name", "status", "domain", "operation", "error_detail"),
		AsyncTaskCount:     r.NewGauge("backendai_async_task_count", "Number of active goroutines (upstream: asyncio tasks)."),
		ProcCPUPercent:     r.NewGauge("backendai_cpu_usage_percent", "CPU usage of the agent process, in percent of one core."),
		ProcMemRSS:         r.NewGauge("backendai_memory_used_rss", "Memory used by the agent process in RSS, in bytes."),
		ProcMemVMS:         r.NewGauge("backendai_memory_used_vms", "Virtual memory size of the agent process, in bytes."),
	}
}

// Observe implements the RPC server's observer.
func (a *Agent) Observe(method, exception string, d time.Duration) {
	a.RPCRequests.Inc(method)
	a.RPCDuration.Observe(d.Seconds(), method)
	if exception != "" {
		a.RPCFailures.Inc(method, exception)
	}
}

// ObserveEvent records one consumed event (upstream's EventDispatcher
// wraps every handler this way): exception is "" on success, otherwise
// the error's type name.
func (a *Agent) ObserveEvent(eventType, exception string, d time.Duration) {
	a.EventCount.Inc(eventType)
	if exception == "" {
		a.EventTime.Observe(d.Seconds(), eventType, "success", "", "", "")
		return
	}
	// Errors that are not BackendAIError carry ErrorCode.default().
	a.EventFailure.Inc(eventType, exception, "backendai", "generic", "internal-error")
	a.EventTime.Observe(d.Seconds(), eventType, "failure", "backendai", "generic", "internal-error")
}

// Background-task outcome statuses (upstream BgtaskStatus).
const (
	BgTaskStatusDone      = "bgtask_done"
	BgTaskStatusFailed    = "bgtask_failed"
	BgTaskStatusCancelled = "bgtask_cancelled"
)

// BgTaskStarted implements bgtask.Observer.
func (a *Agent) BgTaskStarted(name string) { a.BgTaskCount.Add(1, name) }

// BgTaskFinished implements bgtask.Observer: status is one of the
// BgTaskStatus* values; the error code is upstream's for a cancelled task
// and for an unhandled error.
func (a *Agent) BgTaskFinished(name, status string, d time.Duration) {
	a.BgTaskCount.Add(-1, name)
	domain, op, detail := "", "", ""
	switch status {
	case BgTaskStatusCancelled:
		domain, op, detail = "bgtask", "execute", "canceled"
	case BgTaskStatusFailed:
		domain, op, detail = "bgtask", "execute", "internal-error"
	}
	a.BgTaskDone.Inc(name, status, domain, op, detail)
	a.BgTaskTime.Observe(d.Seconds(), name, status, domain, op, detail)
}

// ForgetKernel removes every series of a gone kernel.
func (a *Agent) ForgetKernel(kernelID string) {
	a.Container.DeleteMatching("kernel_id", kernelID)
	a.Process.DeleteMatching("kernel_id", kernelID)
	a.OOMKills.DeleteMatching("kernel_id", kernelID)
}
