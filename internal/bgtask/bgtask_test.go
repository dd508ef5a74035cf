package bgtask

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/bai-agent/bai-agent/internal/event"
)

func TestTaskLifecycle(t *testing.T) {
	var mu sync.Mutex
	var events []string
	var first event.Event
	m := New(func(_ context.Context, ev event.Event) {
		mu.Lock()
		if first == nil {
			first = ev
		}
		events = append(events, ev.EventName())
		mu.Unlock()
	})
	ok := m.Start("ok", func(ctx context.Context, r Reporter) (string, error) {
		r.Update(1, 2, "half")
		r.Update(2, 2, "all")
		return "fine", nil
	})
	if u, err := uuid.Parse(ok); err != nil || u.String() != ok {
		t.Fatalf("id %q is not a dashed UUID", ok)
	}
	mu.Lock()
	if up, isUp := first.(event.BgtaskUpdated); !isUp || up.TaskID != ok || up.Message == nil || *up.Message != "Task started" || up.CacheKey() != "bgtask."+ok {
		t.Errorf("first event %#v, want bgtask_updated \"Task started\" for %s", first, ok)
	}
	mu.Unlock()
	if _, found := m.Get(Hex(ok)); !found {
		t.Errorf("Get(%s) by its hex form found nothing", Hex(ok))
	}
	bad := m.Start("bad", func(ctx context.Context, r Reporter) (string, error) { return "", errors.New("boom") })
	slow := m.Start("slow", func(ctx context.Context, r Reporter) (string, error) {
		<-ctx.Done()
		return "", ctx.Err()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if tk, _ := m.Wait(ctx, ok); tk.Status != Done || tk.Message != "fine" || tk.Current != 2 {
		t.Fatalf("ok task: %+v", tk)
	}
	if tk, _ := m.Wait(ctx, bad); tk.Status != Failed || tk.Message != "boom" {
		t.Fatalf("bad task: %+v", tk)
	}
	m.Close()
	if tk, _ := m.Get(slow); tk.Status != Cancelled {
		t.Fatalf("slow task: %+v", tk)
	}
	mu.Lock()
	defer mu.Unlock()
	want := map[string]bool{"bgtask_updated": true, "bgtask_done": true, "bgtask_failed": true, "bgtask_cancelled": true}
	for _, e := range events {
		delete(want, e)
	}
	if len(want) != 0 {
		t.Fatalf("missing events %v in %v", want, events)
	}
}

type recObserver struct {
	mu     sync.Mutex
	events []string
}

func (r *recObserver) BgTaskStarted(name string) {
	r.mu.Lock()
	r.events = append(r.events, "start "+name)
	r.mu.Unlock()
}

func (r *recObserver) BgTaskFinished(name, status string, d time.Duration) {
	r.mu.Lock()
	r.events = append(r.events, "end "+name+" "+status)
	r.mu.Unlock()
}

// The observer hears every task's start and its terminal status, under
// upstream's BgtaskStatus names.
func TestObserverHearsStartAndEnd(t *testing.T) {
	m := New(func(context.Context, event.Event) {})
	obs := &recObserver{}
	m.SetObserver(obs)
	defer m.Close()
	ok := m.Start("pull_image", func(context.Context, Reporter) (string, error) { return "done", nil })
	bad := m.Start("push_image", func(context.Context, Reporter) (string, error) { return "", errors.New("boom") })
	for _, id := range []string{ok, bad} {
		if _, err := m.Wait(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	// The observer hears the end just after Wait sees the status: poll.
	deadline := time.Now().Add(5 * time.Second)
	for {
		obs.mu.Lock()
		got := strings.Join(obs.events, ";")
		obs.mu.Unlock()
		if strings.Contains(got, "end pull_image bgtask_done") && strings.Contains(got, "end push_image bgtask_failed") &&
			strings.Contains(got, "start pull_image") && strings.Contains(got, "start push_image") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("observer heard %s", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
