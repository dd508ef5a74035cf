package krunner

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/bai-agent/bai-agent/internal/fsutil"
)

// Cluster sessions: the kernels of one session reach each other over SSH
// with the session's key (config/ssh/id_cluster, written by the agent),
// by cluster hostname (main1, sub1, …) on the session network, or through
// port-mapping.json in host-network sessions.

const (
	clusterBlockBegin = "# >>> bai-agent cluster hosts (managed; rewritten at each start) >>>"
	clusterBlockEnd   = "# <<< bai-agent cluster hosts <<<"
)

// IntrinsicPorts reads config/intrinsic-ports.json: in a host-network
// kernel the runner binds these host ports instead of 2000, 2001, 2200
// and 7681. A missing file gives an empty map.
func IntrinsicPorts(configDir string) (map[string]int, error) {
	b, err := os.ReadFile(filepath.Join(configDir, "intrinsic-ports.json"))
	if os.IsNotExist(err) {
		return map[string]int{}, nil
	}
	if err != nil {
		return nil, err
	}
	m := map[string]int{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("intrinsic-ports.json: %w", err)
	}
	for k, p := range m {
		if p < 1 || p > 65535 {
			return nil, fmt.Errorf("intrinsic-ports.json: %s: port %d is out of range", k, p)
		}
	}
	return m, nil
}

// clusterSSHConfig is the ~/.ssh/config block for the session's other
// kernels, as upstream's runner writes it: one entry per host of
// port-mapping.json, or else one "Host role*" entry per replica role on
// port 2200. Host keys are per container and change on every restart, so
// they are neither checked nor recorded.
func clusterSSHConfig(configDir string, getenv func(string) string) ([]byte, error) {
	key := filepath.Join(configDir, "ssh", "id_cluster")
	if _, err := os.Stat(key); err != nil {
		return nil, nil
	}
	var b bytes.Buffer
	entry := func(host, hostname string, port int) {
		fmt.Fprintf(&b, "Host %s\n", host)
		if hostname != "" {
			fmt.Fprintf(&b, "\tHostName %s\n", hostname)
		}
		fmt.Fprintf(&b, "\tPort %d\n\tStrictHostKeyChecking no\n\tUserKnownHostsFile /dev/null\n\tLogLevel ERROR\n\tIdentityFile %s\n", port, key)
	}
	if raw, err := os.ReadFile(filepath.Join(configDir, "ssh", "port-mapping.json")); err == nil {
		var pm map[string][2]any
		if err := json.Unmarshal(raw, &pm); err != nil {
			return nil, fmt.Errorf("port-mapping.json: %w", err)
		}
		names := make([]string, 0, len(pm))
		for n := range pm {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			host, _ := pm[n][0].(string)
			port, ok := pm[n][1].(float64)
			if host == "" || !ok {
				return nil, fmt.Errorf("port-mapping.json: %s: want [host, port]", n)
			}
			entry(n, host, int(port))
		}
		return b.Bytes(), nil
	}
	replicas := getenv("BACKENDAI_CLUSTER_REPLICAS")
	if replicas == "" {
		replicas = "main:1"
	}
	for _, pair := range strings.Split(replicas, ",") {
		i := strings.LastIndexByte(pair, ':')
		if i <= 0 {
			continue
		}
		entry(pair[:i]+"*", "", 2200)
	}
	return b.Bytes(), nil
}

// prepareClusterSSH puts the cluster block into ~/.ssh/config, replacing
// the one a previous start wrote and keeping the user's own entries.
func (r *Runner) prepareClusterSSH() error {
	block, err := clusterSSHConfig(r.o.ConfigDir, r.getenv)
	if err != nil || block == nil {
		return err
	}
	dir := filepath.Join(r.o.WorkDir, ".ssh")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	path := filepath.Join(dir, "config")
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	kept := string(old)
	if i := strings.Index(kept, clusterBlockBegin); i >= 0 {
		if j := strings.Index(kept[i:], clusterBlockEnd); j >= 0 {
			kept = kept[:i] + strings.TrimPrefix(kept[i+j+len(clusterBlockEnd):], "\n")
		}
	}
	// The cluster entries come first: in ssh_config the first value
	// obtained for a keyword wins.
	out := clusterBlockBegin + "\n" + string(block) + clusterBlockEnd + "\n" + kept
	return fsutil.WriteFileAtomic(path, []byte(out), 0o600)
}

// getenv reads the kernel's environment (container env and environ.txt).
func (r *Runner) getenv(k string) string {
	for i := len(r.env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(r.env[i], k+"="); ok {
			return v
		}
	}
	return ""
}
