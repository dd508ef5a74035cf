package coderunner

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Request is one execute call.
type Request struct {
	RunID string
	Mode  string // query, batch, input, continue
	Code  string
	Opts  map[string]any
	// APIVersion picks the result shape (1: stdout/stderr strings; 2+:
	// console).
	APIVersion int
	// Flush is how long to collect before answering "continued" (nil:
	// until the run finishes or waits for input).
	Flush *time.Duration
}

// attach makes id the current run, waiting (FIFO) while another run is
// current.
func (c *Client) attach(ctx context.Context, id string) (*run, error) {
	c.mu.Lock()
	r, ok := c.runs[id]
	if !ok {
		r = &run{id: id, q: make(chan Record, runQueueCap), active: make(chan struct{}), dec: map[string][]byte{}}
		c.runs[id] = r
	}
	switch {
	case c.current == nil:
		c.current = r
		closeOnce(r.active)
	case c.current == r:
	default:
		queued := false
		for _, w := range c.waiters {
			if w == r {
				queued = true
			}
		}
		if !queued {
			c.waiters = append(c.waiters, r)
		}
	}
	c.mu.Unlock()
	select {
	case <-r.active:
		return r, nil
	case <-ctx.Done():
		c.abandon(r)
		return nil, ctx.Err()
	case <-c.done:
		return nil, ErrClosed
	}
}

// abandon takes a run whose caller gave up while queued out of the FIFO:
// left there it would become current with nobody collecting it, and every
// later run would wait behind it for ever. A run activated meanwhile is
// finished instead.
func (c *Client) abandon(r *run) {
	c.mu.Lock()
	for i, w := range c.waiters {
		if w == r {
			c.waiters = append(c.waiters[:i], c.waiters[i+1:]...)
			delete(c.runs, r.id)
			c.mu.Unlock()
			return
		}
	}
	c.mu.Unlock()
	select {
	case <-r.active:
		c.finish(r)
	default:
	}
}

func closeOnce(ch chan struct{}) {
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// Preattach makes runID the current run now if no run is current, so
// output that arrives before the first Execute of that run is kept (a
// batch job's records queued by the runner while the agent restarted).
func (c *Client) Preattach(runID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.current != nil {
		return
	}
	r, ok := c.runs[runID]
	if !ok {
		r = &run{id: runID, q: make(chan Record, runQueueCap), active: make(chan struct{}), dec: map[string][]byte{}}
		c.runs[runID] = r
	}
	c.current = r
	closeOnce(r.active)
}

// finish ends r and activates the next waiter.
func (c *Client) finish(r *run) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.runs, r.id)
	if c.current != r {
		return
	}
	c.current = nil
	if len(c.waiters) > 0 {
		c.current = c.waiters[0]
		c.waiters = c.waiters[1:]
		closeOnce(c.current.active)
	}
}

func optString(opts map[string]any, k string) string {
	if v, ok := opts[k].(string); ok {
		return v
	}
	return ""
}

// Execute feeds the run by mode and collects its records until a terminal
// one or the flush timeout, returning the reference's result map.
func (c *Client) Execute(ctx context.Context, req Request) (map[string]any, error) {
	if req.RunID == "" {
		req.RunID = NewRunID()
	}
	r, err := c.attach(ctx, req.RunID)
	if err != nil {
		return nil, err
	}
	switch req.Mode {
	case "batch":
		for _, k := range []string{"clean", "build", "exec"} {
			if err := c.enqueue(k, optString(req.Opts, k)); err != nil {
				return nil, err
			}
		}
	case "query":
		err = c.enqueue("code", req.Code)
	case "input":
		err = c.enqueue("input", req.Code)
	case "continue":
	default:
		return nil, fmt.Errorf("unknown execute mode %q", req.Mode)
	}
	if err != nil {
		return nil, err
	}
	var timeout <-chan time.Time
	if req.Flush != nil {
		t := time.NewTimer(*req.Flush)
		defer t.Stop()
		timeout = t.C
	}
	var recs []Record
	size := 0
	status := "continued"
	var exit any
	var options any
collect:
	for size < MaxReply {
		select {
		case rec := <-r.q:
			r.queued.Add(-int64(len(rec.Data)))
			switch rec.Type {
			case "finished", "clean-finished", "build-finished":
				var m struct {
					ExitCode *int `json:"exitCode"`
				}
				_ = json.Unmarshal([]byte(rec.Data), &m)
				if m.ExitCode != nil {
					exit = *m.ExitCode
				}
				status = rec.Type
				if rec.Type == "finished" {
					// Unlike the reference, clean- and build-finished keep
					// the run attached, so output between the batch steps
					// is not lost.
					c.finish(r)
				}
				break collect
			case "waiting-input":
				status = "waiting-input"
				opts := map[string]any{}
				if rec.Data != "" {
					_ = json.Unmarshal([]byte(rec.Data), &opts)
				}
				options = opts
				break collect
			case "exec-timeout":
				status = "exec-timeout"
				c.finish(r)
				break collect
			default:
				recs = append(recs, rec)
				size += len(rec.Data)
			}
		case <-timeout:
			break collect
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.done:
			return nil, ErrClosed
		}
	}
	if n := r.dropped.Swap(0); n > 0 {
		recs = append(recs, Record{"stderr", fmt.Sprintf("\n[bai-agent: %d bytes of this run's output were dropped: it came faster than it was collected (a run holds at most %d MiB or %d records), or a record was over %d MiB]\n", n, RunQueueBytes>>20, RunQueue, MaxRecord>>20)})
	}
	return shape(req.RunID, status, exit, options, recs, req.APIVersion), nil
}

// shape builds the result map of the reference agent's execute().
func shape(runID, status string, exit, options any, recs []Record, apiVersion int) map[string]any {
	// Builders, not +=: a reply joins thousands of 4-KiB records, and
	// repeated concatenation copies the whole string each time.
	if apiVersion == 1 {
		var out, errs strings.Builder
		media, html := []any{}, []any{}
		for _, r := range recs {
			switch r.Type {
			case "stdout":
				out.WriteString(r.Data)
			case "stderr":
				errs.WriteString(r.Data)
			case "media":
				var m struct {
					Type string `json:"type"`
					Data any    `json:"data"`
				}
				_ = json.Unmarshal([]byte(r.Data), &m)
				media = append(media, []any{m.Type, m.Data})
			case "html":
				html = append(html, r.Data)
			}
		}
		return map[string]any{"runId": runID, "status": status, "exitCode": exit, "options": options, "stdout": out.String(), "stderr": errs.String(), "media": media, "html": html, "files": []any{}}
	}
	console := []any{}
	var kind string
	var buf strings.Builder
	flush := func() {
		if kind != "" {
			console = append(console, []any{kind, buf.String()})
		}
		kind = ""
		buf.Reset()
	}
	for _, r := range recs {
		switch r.Type {
		case "stdout", "stderr":
			if r.Type != kind {
				flush()
				kind = r.Type
			}
			buf.WriteString(r.Data)
		case "media":
			flush()
			var m struct {
				Type string `json:"type"`
				Data any    `json:"data"`
			}
			_ = json.Unmarshal([]byte(r.Data), &m)
			console = append(console, []any{"media", []any{m.Type, m.Data}})
		default:
			flush()
			console = append(console, []any{r.Type, r.Data})
		}
	}
	flush()
	return map[string]any{"runId": runID, "status": status, "exitCode": exit, "options": options, "console": console, "files": []any{}}
}
