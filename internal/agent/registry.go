// The kernel registry: which kernels this agent has, and how the recently
// terminated ones ended. It only stores; the kernels' owners change them.

package agent

import (
	"sort"
	"sync"

	"github.com/bai-agent/bai-agent/internal/kernel"
)

// maxRecent bounds how many terminated kernels are remembered.
const maxRecent = 256

// registry holds the live kernels by id and the terminations of the last
// maxRecent ones. Its locks are never held across I/O.
type registry struct {
	mu      sync.Mutex
	kernels map[string]*Kernel

	recentMu sync.Mutex
	recent   map[string]kernel.Termination
	order    []string // recent's ids, oldest first
}

func newRegistry() *registry {
	return &registry{kernels: map[string]*Kernel{}, recent: map[string]kernel.Termination{}}
}

// get returns a live kernel.
func (r *registry) get(id string) (*Kernel, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k, ok := r.kernels[id]
	return k, ok
}

// list returns every live kernel, sorted by id.
func (r *registry) list() []*Kernel {
	r.mu.Lock()
	out := make([]*Kernel, 0, len(r.kernels))
	for _, k := range r.kernels {
		out = append(out, k)
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// add enters k, refusing an id that is there already; then, still under
// the lock, calls started (so that nothing sees k before its owner runs).
func (r *registry) add(k *Kernel, started func(*Kernel)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.kernels[k.ID]; ok {
		return kernelErr(k.ID, ErrKernelExists)
	}
	r.kernels[k.ID] = k
	if started != nil {
		started(k)
	}
	return nil
}

// remove drops id if it is still k (a newer kernel under the same id
// stays).
func (r *registry) remove(id string, k *Kernel) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.kernels[id] == k {
		delete(r.kernels, id)
	}
}

// remember records how a kernel ended, forgetting the oldest beyond
// maxRecent.
func (r *registry) remember(id string, t kernel.Termination) {
	r.recentMu.Lock()
	defer r.recentMu.Unlock()
	if _, ok := r.recent[id]; !ok {
		r.order = append(r.order, id)
	}
	r.recent[id] = t
	for len(r.order) > maxRecent {
		delete(r.recent, r.order[0])
		r.order = r.order[1:]
	}
}

// termination tells how a recently terminated kernel ended.
func (r *registry) termination(id string) (kernel.Termination, bool) {
	r.recentMu.Lock()
	defer r.recentMu.Unlock()
	t, ok := r.recent[id]
	return t, ok
}
