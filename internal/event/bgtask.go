package event

// Bgtask events are broadcast and cached under bgtask.{task_id} (the
// dashed UUID, as str(uuid.UUID) renders it) for subscribers that arrive
// late.

// BgtaskUpdated is bgtask_updated.
type BgtaskUpdated struct {
	TaskID          string  `json:"task_id"`
	CurrentProgress float64 `json:"current_progress"`
	TotalProgress   float64 `json:"total_progress"`
	Message         *string `json:"message"`
}

func (BgtaskUpdated) EventName() string  { return "bgtask_updated" }
func (BgtaskUpdated) Delivery() Delivery { return Broadcast }
func (e BgtaskUpdated) CacheKey() string { return "bgtask." + e.TaskID }
func (e BgtaskUpdated) LegacyArgs() []any {
	return []any{e.TaskID, e.CurrentProgress, e.TotalProgress, optStr(e.Message)}
}

// BgtaskResult carries the final bgtask events.
type BgtaskResult struct {
	TaskID  string  `json:"task_id"`
	Message *string `json:"message"`
}

func (e BgtaskResult) CacheKey() string  { return "bgtask." + e.TaskID }
func (e BgtaskResult) LegacyArgs() []any { return []any{e.TaskID, optStr(e.Message)} }

// BgtaskDone is bgtask_done.
type BgtaskDone struct{ BgtaskResult }

func (BgtaskDone) EventName() string  { return "bgtask_done" }
func (BgtaskDone) Delivery() Delivery { return Broadcast }

// BgtaskFailed is bgtask_failed.
type BgtaskFailed struct{ BgtaskResult }

func (BgtaskFailed) EventName() string  { return "bgtask_failed" }
func (BgtaskFailed) Delivery() Delivery { return Broadcast }

// BgtaskCancelled is bgtask_cancelled.
type BgtaskCancelled struct{ BgtaskResult }

func (BgtaskCancelled) EventName() string  { return "bgtask_cancelled" }
func (BgtaskCancelled) Delivery() Delivery { return Broadcast }
