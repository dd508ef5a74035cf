package event

// SessionResult carries session_success / session_failure (batch results).
type SessionResult struct {
	SessionID string `json:"session_id"`
	Reason    string `json:"reason"`
	ExitCode  int    `json:"exit_code"`
}

func (e SessionResult) legacy() []any {
	return []any{legacyUUID(e.SessionID), legacyReason(e.Reason), e.ExitCode}
}

// SessionSuccess is session_success: a batch task exited with 0.
type SessionSuccess struct{ SessionResult }

func (SessionSuccess) EventName() string   { return "session_success" }
func (SessionSuccess) Delivery() Delivery  { return Anycast | Broadcast }
func (e SessionSuccess) LegacyArgs() []any { return e.legacy() }

// SessionFailure is session_failure: a batch task failed or timed out.
type SessionFailure struct{ SessionResult }

func (SessionFailure) EventName() string   { return "session_failure" }
func (SessionFailure) Delivery() Delivery  { return Anycast | Broadcast }
func (e SessionFailure) LegacyArgs() []any { return e.legacy() }

// Execution carries the execution_* events around one execute call.
type Execution struct {
	SessionID string `json:"session_id"`
}

// ExecutionStarted is execution_started.
type ExecutionStarted struct{ Execution }

func (ExecutionStarted) EventName() string   { return "execution_started" }
func (ExecutionStarted) Delivery() Delivery  { return Anycast }
func (e ExecutionStarted) LegacyArgs() []any { return []any{legacyUUID(e.SessionID)} }

// ExecutionFinished is execution_finished.
type ExecutionFinished struct{ Execution }

func (ExecutionFinished) EventName() string   { return "execution_finished" }
func (ExecutionFinished) Delivery() Delivery  { return Anycast }
func (e ExecutionFinished) LegacyArgs() []any { return []any{legacyUUID(e.SessionID)} }

// ExecutionTimeout is execution_timeout.
type ExecutionTimeout struct{ Execution }

func (ExecutionTimeout) EventName() string   { return "execution_timeout" }
func (ExecutionTimeout) Delivery() Delivery  { return Anycast }
func (e ExecutionTimeout) LegacyArgs() []any { return []any{legacyUUID(e.SessionID)} }

// ExecutionCancelled is execution_cancelled.
type ExecutionCancelled struct{ Execution }

func (ExecutionCancelled) EventName() string   { return "execution_cancelled" }
func (ExecutionCancelled) Delivery() Delivery  { return Anycast }
func (e ExecutionCancelled) LegacyArgs() []any { return []any{legacyUUID(e.SessionID)} }
