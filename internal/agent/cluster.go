// Cluster sessions: how a kernel joins its session's network (bridge,
// overlay or the host's), the session-wide SSH key and port mapping its
// runner reads from config/ssh, and the removal of session networks this
// agent created once no kernel uses them.

package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

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

// hostNetworkPorts gives a host-network kernel its ports: the runner's
// REPL ports, sshd and ttyd take host ports and the runner binds them
// itself (intrinsic-ports.json); sshd takes the port the manager assigned
// in cluster_ssh_port_mapping when there is one; every other service
// binds its own port number on the host, so its host port is its
// container port. It returns the pool ports taken.
func (j *createJob) hostNetworkPorts() ([]int, error) {
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
	j.ks.ReplIn, j.ks.ReplOut = taken[0], taken[1]
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
	if mapped != 0 && j.a.claimAssigned(mapped) {
		taken = append(taken, mapped)
	}
	for _, sp := range j.services {
		if fixedHostPorts(sp) {
			for _, p := range sp.HostPorts {
				if j.a.claimAssigned(p) {
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
func intrinsicPorts(s *KernelSpec) map[string]int {
	m := map[string]int{"replin": s.ReplIn, "replout": s.ReplOut}
	for _, sp := range s.Services {
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
func (a *Agent) writeClusterFiles(k *Kernel, s *KernelSpec, c *ClusterInfo) error {
	owner := safefs.NoOwner
	if uid, gid, ok := s.kernelUser(); ok && os.Geteuid() == 0 {
		owner = safefs.Owner{UID: uid, GID: gid}
	}
	if c.hostNetwork() {
		b, _ := json.Marshal(intrinsicPorts(s))
		if err := writeScratchFile(s.Scratch.Config, "intrinsic-ports.json", b, 0o644, safefs.NoOwner); err != nil {
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
		if err := writeScratchFile(s.Scratch.Config, "ssh/"+f.name, f.body, f.mode, owner); err != nil {
			return err
		}
	}
	return nil
}
