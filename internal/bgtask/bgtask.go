package bgtask

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/bai-agent/bai-agent/internal/event"
)

// Publisher receives the task events.
type Publisher func(ctx context.Context, ev event.Event)

// Status of a task.
type Status string

// Task states.
const (
	Running   Status = "running"
	Done      Status = "done"
	Failed    Status = "failed"
	Cancelled Status = "cancelled"
)

// Task is a snapshot of one task.
type Task struct {
	ID       string
	Name     string
	Status   Status
	Current  int64
	Total    int64
	Message  string
	Started  time.Time
	Finished time.Time
}

// Reporter lets a task report progress.
type Reporter interface {
	Update(current, total int64, message string)
}

// Func is a task body. Its returned message is the done/failed message.
type Func func(ctx context.Context, r Reporter) (string, error)

// Observer hears when each task starts and ends (upstream's
// BgTaskMetricObserver: the backendai_bgtask_* metrics). status is the
// terminal event's name: bgtask_done, bgtask_failed or bgtask_cancelled.
type Observer interface {
	BgTaskStarted(name string)
	BgTaskFinished(name, status string, d time.Duration)
}

// Manager runs tasks.
type Manager struct {
	publish Publisher
	obs     Observer
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu    sync.Mutex
	tasks map[string]*Task
	order []string
}

// maxKept bounds how many finished tasks are remembered.
const maxKept = 512

// New returns a manager publishing through p.
func New(p Publisher) *Manager {
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{publish: p, ctx: ctx, cancel: cancel, tasks: map[string]*Task{}}
}

// SetObserver sets the observer of the tasks started from now on (nil:
// none).
func (m *Manager) SetObserver(o Observer) {
	m.mu.Lock()
	m.obs = o
	m.mu.Unlock()
}

// NewID returns a fresh task id as str(uuid.UUID) renders it (dashed):
// the form of bgtask events, their cache keys and the bgtask_id of
// commit/push_image replies. check_and_pull replies with Hex(id).
func NewID() string { return uuid.NewString() }

// Hex renders a task id as uuid.UUID.hex (32 digits, no dashes), the
// form check_and_pull replies with.
func Hex(id string) string { return strings.ReplaceAll(id, "-", "") }

// Normalize accepts a task id in either form and returns the dashed one
// ("" when it is not a UUID).
func Normalize(id string) string {
	u, err := uuid.Parse(id)
	if err != nil {
		return ""
	}
	return u.String()
}

type reporter struct {
	m  *Manager
	id string
	// last publication, to throttle bgtask_updated to a few per second
	last time.Time
}

func (r *reporter) Update(current, total int64, message string) {
	r.m.mu.Lock()
	t := r.m.tasks[r.id]
	t.Current, t.Total, t.Message = current, total, message
	r.m.mu.Unlock()
	if time.Since(r.last) < 200*time.Millisecond && current < total {
		return
	}
	r.last = time.Now()
	r.m.publish(r.m.ctx, event.BgtaskUpdated{TaskID: r.id, CurrentProgress: float64(current), TotalProgress: float64(total), Message: &message})
}

// Start runs fn in the background and returns its task id.
func (m *Manager) Start(name string, fn Func) string {
	id := NewID()
	m.mu.Lock()
	m.tasks[id] = &Task{ID: id, Name: name, Status: Running, Started: time.Now()}
	m.order = append(m.order, id)
	obs := m.obs
	m.mu.Unlock()
	t0 := time.Now()
	if obs != nil {
		obs.BgTaskStarted(name)
	}
	// As upstream's BackgroundTaskManager.start: a first update before the
	// task runs, so that the cache key exists as soon as the id is known.
	started := "Task started"
	m.publish(m.ctx, event.BgtaskUpdated{TaskID: id, Message: &started})
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		msg, err := fn(m.ctx, &reporter{m: m, id: id})
		status := Done
		switch {
		case err == nil:
		case errors.Is(err, context.Canceled):
			status, msg = Cancelled, "Task cancelled"
		default:
			status, msg = Failed, err.Error()
		}
		res := event.BgtaskResult{TaskID: id, Message: &msg}
		var ev event.Event = event.BgtaskDone{BgtaskResult: res}
		switch status {
		case Cancelled:
			ev = event.BgtaskCancelled{BgtaskResult: res}
		case Failed:
			ev = event.BgtaskFailed{BgtaskResult: res}
		}
		m.mu.Lock()
		t := m.tasks[id]
		t.Status, t.Message, t.Finished = status, msg, time.Now()
		m.gcLocked()
		m.mu.Unlock()
		if obs != nil {
			obs.BgTaskFinished(name, ev.EventName(), time.Since(t0))
		}
		m.publish(context.WithoutCancel(m.ctx), ev)
	}()
	return id
}

func (m *Manager) gcLocked() {
	for len(m.order) > maxKept {
		id := m.order[0]
		if m.tasks[id].Status == Running {
			break
		}
		delete(m.tasks, id)
		m.order = m.order[1:]
	}
}

// Get returns a task snapshot; id may be dashed or 32-hex.
func (m *Manager) Get(id string) (Task, bool) {
	if n := Normalize(id); n != "" {
		id = n
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tasks[id]
	if !ok {
		return Task{}, false
	}
	return *t, true
}

// Wait blocks until the task finishes or ctx ends.
func (m *Manager) Wait(ctx context.Context, id string) (Task, error) {
	for {
		t, ok := m.Get(id)
		if !ok {
			return Task{}, errors.New("unknown task " + id)
		}
		if t.Status != Running {
			return t, nil
		}
		select {
		case <-ctx.Done():
			return t, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close cancels every task and waits for them.
func (m *Manager) Close() {
	m.cancel()
	m.wg.Wait()
}
