package agent

import (
	"context"
	"testing"
)

// The agent dies while a kernel is between containers (a restart removed
// the old one and had not made the new one): on its return the kernel's
// scratch is all that is left. The manager must hear that the kernel
// ended, and nothing may be left.
func TestVanishedWhileAgentAway_Fake(t *testing.T) {
	t.Parallel()
	c := newCore(t, nil, nil)
	info, err := c.create(nil)
	if err != nil {
		t.Fatal(err)
	}
	c.agent.Close()
	if err := c.be.Remove(context.Background(), info.ContainerID); err != nil {
		t.Fatal(err)
	}
	c.events = &recorder{}
	c.opts.Events = c.events
	c.agent = c.start()
	ev, ok := c.events.find("kernel_terminated", info.ID)
	if !ok || ev["reason"] != ReasonContainerNotFound || ev["session_id"] == nil || ev["session_id"] == "" {
		t.Fatalf("kernel_terminated after the agent's return: %v %v", ev, ok)
	}
	c.assertNothingTaken("after recovery")
}
