// Session networks: the bridge or overlay network a multi-kernel session
// joins, which this agent creates for the manager and removes once no
// kernel of its own uses it.

package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/bai-agent/bai-agent/internal/backend"
)

// networks creates, applies and sweeps session networks.
type networks struct {
	be  backend.Backend
	id  string
	log *slog.Logger
	// kernels lists the registered kernels (their networks are in use).
	kernels func() []*Kernel

	mu sync.Mutex
	// lastSweep is when the sync loop last looked for unused session
	// networks.
	lastSweep time.Time
}

func newNetworks(be backend.Backend, id string, log *slog.Logger, kernels func() []*Kernel) *networks {
	return &networks{be: be, id: id, log: log, kernels: kernels}
}

// sweepDue reports whether a periodic sweep is due, and if so counts it
// as done now.
func (ns *networks) sweepDue() bool {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if time.Since(ns.lastSweep) < networkSweepInterval {
		return false
	}
	ns.lastSweep = time.Now()
	return true
}

// applyNetwork puts the kernel on its session's network, as upstream's
// apply_network and its overlay/host plugins do: a bridge or overlay
// network with the cluster hostname as a DNS alias, or the host's
// namespace with the other kernels' hosts in /etc/hosts.
func (ns *networks) applyNetwork(ctx context.Context, spec *backend.ContainerSpec, cfg *CreationConfig, c *ClusterInfo) {
	hostname := kernelHostname(cfg)
	switch c.NetworkMode {
	case "", "bridge":
		if c.NetworkName != "" {
			spec.Network = c.NetworkName
			spec.NetworkAliases = []string{hostname}
		}
	case "overlay":
		spec.Network = c.NetworkName
		spec.NetworkAliases = []string{hostname}
		spec.NetworkDriverOpts = map[string]string{"com.docker.network.endpoint.ifname": overlayIfname}
		// Open MPI must not pick the swarm's gateway bridge for its TCP
		// transport: it does not route between nodes.
		if sub := ns.gwbridgeSubnet(ctx); sub != "" {
			spec.Env = append(spec.Env, "OMPI_MCA_btl_tcp_if_exclude=127.0.0.1/32,"+sub)
		}
	case "host":
		spec.Network = "host"
		spec.Ports = nil
		// Each host's name resolves to the agent host that runs it; the
		// port is in port-mapping.json and ~/.ssh/config.
		names := make([]string, 0, len(c.SSHPortMapping))
		for name := range c.SSHPortMapping {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			spec.ExtraHosts = append(spec.ExtraHosts, name+":"+c.SSHPortMapping[name].Host)
		}
	}
}

// gwbridgeSubnet is the subnet of the swarm's docker_gwbridge ("" when
// this engine is not in a swarm).
func (ns *networks) gwbridgeSubnet(ctx context.Context) string {
	nw, ok := ns.be.(backend.Networks)
	if !ok {
		return ""
	}
	n, err := nw.InspectNetwork(ctx, "docker_gwbridge")
	if err != nil || len(n.Subnets) == 0 {
		return ""
	}
	return n.Subnets[0]
}

// CreateLocalNetwork creates a bridge network for a single-node
// multi-container session (idempotent). It carries this agent's id so
// that the agent removes it once the session's last kernel is gone.
func (ns *networks) CreateLocalNetwork(ctx context.Context, name string) error {
	nw, ok := ns.be.(backend.Networks)
	if !ok {
		return fmt.Errorf("networks: %w", ErrUnsupported)
	}
	return nw.CreateNetwork(ctx, name, map[string]string{LabelClusterNetwork: "1", LabelNetworkOwner: ns.id})
}

// DestroyLocalNetwork removes it; a missing network is fine.
func (ns *networks) DestroyLocalNetwork(ctx context.Context, name string) error {
	nw, ok := ns.be.(backend.Networks)
	if !ok {
		return fmt.Errorf("networks: %w", ErrUnsupported)
	}
	return nw.RemoveNetwork(ctx, name)
}

// sweepNetworks removes the session networks this agent created that no
// container uses and no kernel of this agent refers to. A network younger
// than networkSweepGrace is kept unless only is set (the network a kernel
// just left): the manager makes it before the kernels. It runs after
// each kernel's cleanup and in the sync loop, so a network outlives
// neither its last kernel nor an agent killed in between.
func (ns *networks) sweep(ctx context.Context, only string) {
	nw, ok := ns.be.(backend.Networks)
	if !ok {
		return
	}
	list, err := nw.ListNetworks(ctx, map[string]string{LabelClusterNetwork: "1", LabelNetworkOwner: ns.id})
	if err != nil {
		if !errors.Is(err, ErrUnsupported) {
			ns.log.Warn("listing session networks", "error", err)
		}
		return
	}
	inUse := map[string]bool{}
	for _, k := range ns.kernels() {
		if k.Network != "" && k.Network != "host" {
			inUse[k.Network] = true
		}
	}
	for _, n := range list {
		if n.Containers > 0 || inUse[n.Name] {
			continue
		}
		if n.Name != only && time.Since(n.Created) < networkSweepGrace {
			continue
		}
		if err := nw.RemoveNetwork(ctx, n.Name); err != nil {
			ns.log.Warn("removing an unused session network", "network", n.Name, "error", err)
			continue
		}
		ns.log.Info("session network removed: no kernel uses it", "network", n.Name)
	}
}
