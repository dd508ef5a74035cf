package sandbox

import (
	"fmt"
	"slices"
	"strings"
)

// LabelRuntime is the image label asking for a sandbox at least as strict
// as its value (a sandbox-type value: docker, crun, gvisor, or a runtime
// name registered with the engine).
const LabelRuntime = "ai.backend.sandbox-runtime"

// Runtime names of the ranked runtimes.
const (
	RuntimeDefault = "" // the engine's default runtime (runc)
	RuntimeCrun    = "crun"
	RuntimeGVisor  = "runsc"
)

// IsGVisor reports whether runtime is gVisor by its name: runsc, or a
// variant registered as runsc-<anything> (runsc-ptrace, runsc-kvm). Under
// it the kernel's processes live inside the Sentry, not on the host.
func IsGVisor(runtime string) bool {
	return runtime == RuntimeGVisor || strings.HasPrefix(runtime, RuntimeGVisor+"-")
}

// unranked is the rank of a runtime outside the known order.
const unranked = -1

// RuntimeFor maps a sandbox-type value to the engine runtime name: docker
// is the engine's default (""), gvisor is runsc, anything else is taken as
// a runtime name registered with the engine.
func RuntimeFor(sandboxType string) string {
	switch sandboxType {
	case "", "docker":
		return RuntimeDefault
	case "gvisor":
		return RuntimeGVisor
	}
	return sandboxType
}

// Name is how a runtime is shown in messages.
func Name(runtime string) string {
	if runtime == RuntimeDefault {
		return "the engine's default runtime"
	}
	return runtime
}

// rank orders the known runtimes; unranked for others.
func rank(runtime string) int {
	switch runtime {
	case RuntimeDefault, "runc", "io.containerd.runc.v2":
		return 0
	case RuntimeCrun:
		return 1
	case RuntimeGVisor:
		return 2
	}
	return unranked
}

// ValidateType checks a sandbox-type value: jail is refused with the
// alternatives, and a name must be usable as a Docker runtime name.
func ValidateType(v string) error {
	if v == "jail" {
		return fmt.Errorf("%q (Backend.AI's jail, a ptrace sandbox for the Python agent) is not supported; use \"docker\" (the engine's default runtime), \"crun\", \"gvisor\" (runsc) or the name of a runtime registered with the engine", v)
	}
	if v == "" || strings.ContainsAny(v, " \t\n/:,=") {
		return fmt.Errorf("%q is not a runtime name; use \"docker\", \"crun\", \"gvisor\" or the name of a runtime registered with the engine", v)
	}
	return nil
}

// Policy is the node's sandbox setting.
type Policy struct {
	// Node is the node's runtime (RuntimeFor of sandbox-type).
	Node string
}

// NewPolicy makes the policy of a sandbox-type value.
func NewPolicy(sandboxType string) (Policy, error) {
	if err := ValidateType(sandboxType); err != nil {
		return Policy{}, fmt.Errorf("container.sandbox-type: %w", err)
	}
	return Policy{Node: RuntimeFor(sandboxType)}, nil
}

// Resolve gives the runtime of a kernel whose image has labels: the node's
// unless the image asks for a stricter ranked one. An image asking for a
// runtime that cannot be ranked (other than the node's own) is refused,
// as is one whose value is not a runtime name.
func (p Policy) Resolve(labels map[string]string) (string, error) {
	v, ok := labels[LabelRuntime]
	if !ok || v == "" {
		return p.Node, nil
	}
	if err := ValidateType(v); err != nil {
		return "", fmt.Errorf("image label %s: %w", LabelRuntime, err)
	}
	want := RuntimeFor(v)
	if want == p.Node {
		return p.Node, nil
	}
	wr, nr := rank(want), rank(p.Node)
	switch {
	case nr == unranked:
		// The node's own unranked runtime counts as the strictest.
		if wr == unranked {
			return "", fmt.Errorf("image label %s asks for runtime %q, which cannot be ranked against this node's %q", LabelRuntime, want, p.Node)
		}
		return p.Node, nil
	case wr == unranked:
		return "", fmt.Errorf("image label %s asks for runtime %q, which is not known to be stricter than this node's (%s); known order: runc < crun < runsc", LabelRuntime, want, Name(p.Node))
	case wr > nr:
		return want, nil
	}
	return p.Node, nil
}

// Runtimes lists the runtimes kernels of this node may get: the node's
// and the stricter ranked ones.
func (p Policy) Runtimes() []string {
	out := []string{p.Node}
	nr := rank(p.Node)
	if nr == unranked {
		return out
	}
	for _, r := range []string{RuntimeCrun, RuntimeGVisor} {
		if rank(r) > nr && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// Merge combines the sandbox runtime with one an accelerator asks for
// (the legacy nvidia runtime): the default sandbox lets the accelerator's
// through; a sandbox runtime and another accelerator runtime cannot both
// apply, which is refused rather than silently dropping either.
func Merge(sandbox, accel string) (string, error) {
	if accel == "" || accel == sandbox {
		return sandbox, nil
	}
	if sandbox == RuntimeDefault {
		return accel, nil
	}
	return "", fmt.Errorf("the kernel's sandbox runtime %q and its accelerator's runtime %q cannot both apply", sandbox, accel)
}

// Stricter gives the sandbox-type a node runs with when its resource
// group asks for groupType (an etcd key): the group may raise the node's
// runtime, never lower it. A group value that is not a runtime name, or
// that cannot be ranked against the node's, is an error: a sandbox
// setting the agent cannot honour must stop it rather than be dropped.
func Stricter(nodeType, groupType string) (string, error) {
	if err := ValidateType(groupType); err != nil {
		return "", err
	}
	node, group := RuntimeFor(nodeType), RuntimeFor(groupType)
	if node == group {
		return nodeType, nil
	}
	nr, gr := rank(node), rank(group)
	switch {
	case gr == unranked:
		return "", fmt.Errorf("runtime %q is not known to be stricter than this node's (%s); known order: runc < crun < runsc", group, Name(node))
	case nr == unranked, gr <= nr:
		// The node's own unranked runtime counts as the strictest.
		return nodeType, nil
	}
	return groupType, nil
}
