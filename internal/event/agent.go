package event

// AgentStarted is agent_started (AgentStartedEvent).
type AgentStarted struct {
	Reason string `json:"reason"`
}

func (AgentStarted) EventName() string   { return "agent_started" }
func (AgentStarted) Delivery() Delivery  { return Anycast }
func (e AgentStarted) LegacyArgs() []any { return []any{e.Reason} }

// AgentTerminated is agent_terminated (AgentTerminatedEvent).
type AgentTerminated struct {
	Reason string `json:"reason"`
}

func (AgentTerminated) EventName() string   { return "agent_terminated" }
func (AgentTerminated) Delivery() Delivery  { return Anycast }
func (e AgentTerminated) LegacyArgs() []any { return []any{e.Reason} }

// Log levels of AgentError.Severity (ai.backend.logging.types.LogLevel).
const (
	SeverityCritical = "CRITICAL"
	SeverityError    = "ERROR"
	SeverityWarning  = "WARNING"
)

// AgentError is agent_error (AgentErrorEvent): the Python agent publishes
// one for every failed RPC and background failure. Message is
// "ExceptionName: text" as traceback.format_exception_only renders it.
type AgentError struct {
	Message    string            `json:"message"`
	Traceback  *string           `json:"traceback"`
	User       *string           `json:"user"`
	ContextEnv map[string]string `json:"context_env"`
	Severity   string            `json:"severity"`
}

func (AgentError) EventName() string  { return "agent_error" }
func (AgentError) Delivery() Delivery { return Anycast }
func (e AgentError) LegacyArgs() []any {
	var tb, user any
	if e.Traceback != nil {
		tb = *e.Traceback
	}
	if e.User != nil {
		user = *e.User
	}
	env := map[string]any{}
	for k, v := range e.ContextEnv {
		env[k] = v
	}
	return []any{e.Message, tb, user, env, e.Severity}
}

// NewAgentError fills the defaults the Python model has (empty
// context_env, severity ERROR).
func NewAgentError(message, traceback string) AgentError {
	e := AgentError{Message: message, ContextEnv: map[string]string{}, Severity: SeverityError}
	if traceback != "" {
		e.Traceback = &traceback
	}
	return e
}

// DoAgentResourceCheck is do_agent_resource_check, sent when an
// allocation fails so that the manager re-reads the agent's capacity.
type DoAgentResourceCheck struct {
	AgentID string `json:"agent_id"`
}

func (DoAgentResourceCheck) EventName() string   { return "do_agent_resource_check" }
func (DoAgentResourceCheck) Delivery() Delivery  { return Anycast }
func (e DoAgentResourceCheck) LegacyArgs() []any { return []any{e.AgentID} }

// ScannedImage is an installed image as the periodic image scan saw it.
type ScannedImage struct {
	Canonical string `json:"canonical"`
	Digest    string `json:"digest"`
}

// AgentInstalledImagesRemove tells the manager which images left this
// node since the previous scan (agent_installed_images_remove), so that
// its image table stops offering them here.
type AgentInstalledImagesRemove struct {
	ScannedImages map[string]ScannedImage `json:"scanned_images"`
}

func (AgentInstalledImagesRemove) EventName() string  { return "agent_installed_images_remove" }
func (AgentInstalledImagesRemove) Delivery() Delivery { return Anycast }

// LegacyArgs is (scanned_images,) with each image as its to_dict.
func (e AgentInstalledImagesRemove) LegacyArgs() []any {
	m := make(map[string]any, len(e.ScannedImages))
	for c, img := range e.ScannedImages {
		m[c] = map[string]any{"canonical": img.Canonical, "digest": img.Digest}
	}
	return []any{m}
}
