package zmq

/*
#include <malloc.h>
*/
import "C"

import (
	"context"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// largeMessage is the size from which a received message marks the
// process for trimming.
const largeMessage = 1 << 20

// trimAfter is how long after the last large message the trimmer waits,
// so that a burst is trimmed once, at its end.
const trimAfter = 2 * time.Second

// trimmer gives memory back to the system after large messages. Without
// it a burst of big frames leaves the agent's RSS several times its idle
// size for good: the Go heap keeps the freed spans, and glibc's malloc,
// whose mmap threshold grows with every large free, keeps libzmq's message
// buffers on its heap. Both are returned here, once the burst is over.
type trimmer struct {
	lastLarge atomic.Int64 // unix nanos of the last large message; 0 when trimmed
}

func (tr *trimmer) sawLarge() { tr.lastLarge.Store(time.Now().UnixNano()) }

func (tr *trimmer) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		last := tr.lastLarge.Load()
		if last == 0 || time.Since(time.Unix(0, last)) < trimAfter {
			continue
		}
		if tr.lastLarge.CompareAndSwap(last, 0) {
			debug.FreeOSMemory()
			C.malloc_trim(0)
		}
	}
}
