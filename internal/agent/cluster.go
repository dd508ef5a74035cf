// Cluster sessions: how a kernel joins its session's network (bridge,
// overlay or the host's), the session-wide SSH key and port mapping its
// runner reads from config/ssh, and the removal of session networks this
// agent created once no kernel uses them.

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/safefs"
)

const (
	// LabelClusterNetwork marks a session network (upstream's label).
	LabelClusterNetwork = "ai.backend.cluster-network"
	// LabelNetworkOwner names the agent that created a session network,
	// so that only it removes the network.
	LabelNetworkOwner = "ai.backend.network-owner"
	// overlayIfname is the interface name of an overlay endpoint inside a
	// kernel, as upstream's overlay plugin sets it.
	overlayIfname = "baimulti0"
	// networkSweepGrace keeps a new, still empty session network: the
	// manager creates it before it asks for the kernels.
	networkSweepGrace = 10 * time.Minute
	// networkSweepInterval spaces the sync loop's sweeps.
	networkSweepInterval = time.Minute
)

// kernelHostname is the kernel's cluster hostname (default role+idx).
func kernelHostname(cfg *CreationConfig) string {
	if cfg.ClusterHostname != "" {
		return cfg.ClusterHostname
	}
	role := cfg.ClusterRole
	if role == "" {
		role = "main"
	}
	return fmt.Sprintf("%s%d", role, cfg.ClusterIdx)
}

// validateNetwork refuses a network mode this agent cannot apply, before
// anything is taken.
func validateNetwork(c *ClusterInfo) error {
	switch c.NetworkMode {
	case "", "bridge", "host":
	case "overlay":
		if c.NetworkName == "" {
			return fmt.Errorf("%w: cluster_info.network_config.network_name is required for an overlay network", ErrInvalidArgument)
		}
	default:
		return fmt.Errorf("%w: network plugin %s not loaded (cluster_info.network_config.mode)", ErrInvalidArgument, c.NetworkMode)
	}
	return nil
}

// applyNetwork puts the kernel on its session's network, as upstream's
// apply_network and its overlay/host plugins do: a bridge or overlay
// network with the cluster hostname as a DNS alias, or the host's
// namespace with the other kernels' hosts in /etc/hosts.
func (a *Agent) applyNetwork(ctx context.Context, spec *backend.ContainerSpec, cfg *CreationConfig, c *ClusterInfo) {
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
		if sub := a.gwbridgeSubnet(ctx); sub != "" {
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
func (a *Agent) gwbridgeSubnet(ctx context.Context) string {
	nw, ok := a.be.(backend.Networks)
	if !ok {
		return ""
	}
	n, err := nw.InspectNetwork(ctx, "docker_gwbridge")
	if err != nil || len(n.Subnets) == 0 {
		return ""
	}
	return n.Subnets[0]
}

// hostNetworkPorts gives a host-network kernel its ports: the runner's
// REPL ports, sshd and ttyd take host ports and the runner binds them
// itself (intrinsic-ports.json); sshd takes the port the manager assigned
// in cluster_ssh_port_mapping when there is one; every other service
// binds its own port number on the host, so its host port is its
// container port. It returns the pool ports taken.
func (j *createJob) hostNetworkPorts() ([]int, error) {
	k := j.k
	n := 2
	mapped := 0
	if hp, ok := j.cluster.sshMapping(j.cfg); ok {
		mapped = hp.Port
	}
	for _, sp := range j.services {
		switch {
		case sp.Name == "sshd" && mapped != 0:
		case sp.Name == "sshd" || sp.Name == "ttyd":
			n += len(sp.ContainerPorts)
		}
	}
	taken, err := j.a.ports.Take(n)
	if err != nil {
		return nil, err
	}
	k.ReplIn, k.ReplOut = taken[0], taken[1]
	next := 2
	for i := range j.services {
		sp := &j.services[i]
		sp.HostPorts = nil
		for _, cp := range sp.ContainerPorts {
			switch {
			case sp.Name == "sshd" && mapped != 0:
				sp.HostPorts = append(sp.HostPorts, mapped)
			case sp.Name == "sshd" || sp.Name == "ttyd":
				sp.HostPorts = append(sp.HostPorts, taken[next])
				next++
			default:
				sp.HostPorts = append(sp.HostPorts, cp)
			}
		}
	}
	// The assigned sshd port and the allocated host ports came from this
	// agent's pool (assign_port): they are the kernel's now, and go back
	// with its other ports.
	if mapped != 0 && j.a.ports.IsUsed(mapped) {
		taken = append(taken, mapped)
	}
	for _, sp := range j.services {
		if fixedHostPorts(sp) {
			for _, p := range sp.HostPorts {
				if j.a.ports.IsUsed(p) {
					taken = append(taken, p)
				}
			}
		}
	}
	return taken, nil
}

// sshMapping finds the kernel's own entry in cluster_ssh_port_mapping:
// under its cluster hostname (what upstream's agent looks up), or under
// "node-<kernel id>" (the key the manager's launcher actually writes).
func (c *ClusterInfo) sshMapping(cfg *CreationConfig) (HostPort, bool) {
	if hp, ok := c.SSHPortMapping[kernelHostname(cfg)]; ok {
		return hp, true
	}
	hp, ok := c.SSHPortMapping["node-"+cfg.KernelID]
	return hp, ok
}

// intrinsicPorts is config/intrinsic-ports.json for a host-network
// kernel: the ports its runner binds instead of 2000, 2001, 2200, 7681.
func intrinsicPorts(k *Kernel) map[string]int {
	m := map[string]int{"replin": k.ReplIn, "replout": k.ReplOut}
	for _, sp := range k.Services {
		if (sp.Name == "sshd" || sp.Name == "ttyd") && len(sp.HostPorts) > 0 {
			m[sp.Name] = sp.HostPorts[0]
		}
	}
	return m
}

// writeClusterFiles writes what the kernel's runner needs to join its
// cluster: config/ssh/id_cluster{,.pub} and port-mapping.json from
// cluster_info (as upstream's prepare_ssh), and intrinsic-ports.json for
// a host-network kernel. Files are owned by the kernel user when the
// agent runs as root, so the runner can read the private key.
func (a *Agent) writeClusterFiles(k *Kernel, c *ClusterInfo) error {
	owner := safefs.NoOwner
	if uid, gid, ok := kernelOwner(k); ok && os.Geteuid() == 0 {
		owner = safefs.Owner{UID: uid, GID: gid}
	}
	if c.hostNetwork() {
		b, _ := json.Marshal(intrinsicPorts(k))
		if err := writeScratchFile(k.Scratch.Config, "intrinsic-ports.json", b, 0o644, safefs.NoOwner); err != nil {
			return err
		}
	}
	if c.SSHKeypair == nil {
		return nil
	}
	priv := c.SSHKeypair.PrivateKey
	if !strings.HasSuffix(priv, "\n") {
		priv += "\n"
	}
	files := []struct {
		name string
		body []byte
		mode os.FileMode
	}{
		{"id_cluster", []byte(priv), 0o600},
		{"id_cluster.pub", []byte(strings.TrimSpace(c.SSHKeypair.PublicKey) + "\n"), 0o644},
	}
	if len(c.SSHPortMapping) > 0 {
		b, err := json.Marshal(c.SSHPortMapping)
		if err != nil {
			return err
		}
		files = append(files, struct {
			name string
			body []byte
			mode os.FileMode
		}{"port-mapping.json", b, 0o644})
	}
	for _, f := range files {
		if err := writeScratchFile(k.Scratch.Config, "ssh/"+f.name, f.body, f.mode, owner); err != nil {
			return err
		}
	}
	return nil
}

// CreateLocalNetwork creates a bridge network for a single-node
// multi-container session (idempotent). It carries this agent's id so
// that the agent removes it once the session's last kernel is gone.
func (a *Agent) CreateLocalNetwork(ctx context.Context, name string) error {
	nw, ok := a.be.(backend.Networks)
	if !ok {
		return fmt.Errorf("networks: %w", ErrUnsupported)
	}
	return nw.CreateNetwork(ctx, name, map[string]string{LabelClusterNetwork: "1", LabelNetworkOwner: a.id})
}

// DestroyLocalNetwork removes it; a missing network is fine.
func (a *Agent) DestroyLocalNetwork(ctx context.Context, name string) error {
	nw, ok := a.be.(backend.Networks)
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
func (a *Agent) sweepNetworks(ctx context.Context, only string) {
	nw, ok := a.be.(backend.Networks)
	if !ok {
		return
	}
	list, err := nw.ListNetworks(ctx, map[string]string{LabelClusterNetwork: "1", LabelNetworkOwner: a.id})
	if err != nil {
		if !errors.Is(err, ErrUnsupported) {
			a.log.Warn("listing session networks", "error", err)
		}
		return
	}
	inUse := map[string]bool{}
	for _, k := range a.Kernels() {
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
			a.log.Warn("removing an unused session network", "network", n.Name, "error", err)
			continue
		}
		a.log.Info("session network removed: no kernel uses it", "network", n.Name)
	}
}
