package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/bai-agent/bai-agent/internal/kuser"
	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/bai-agent/bai-agent/internal/safefs"
	"github.com/bai-agent/bai-agent/internal/vfolder"
)

// Bounds on what a creation config may carry into a kernel's files. The
// manager's own limits are far below these (dotfiles: 64 KiB per user);
// they stop a request from filling the host's scratch or memory.
const (
	maxEnvironEntries = 4096
	maxEnvironBytes   = 1 << 20 // all keys and values together
	maxBootstrapBytes = 1 << 20
	maxDotfiles       = 1024
	maxDotfileBytes   = 1 << 20 // all dotfiles together
	maxSSHKeyBytes    = 64 << 10
	// maxSupplementaryGIDs is Linux's NGROUPS_MAX.
	maxSupplementaryGIDs = 65536
)

// agentOwnedEnv are variables the agent computes; a creation config that
// sets them is refused rather than merged, because each one changes who
// the kernel's code runs as or what the runner trusts: LOCAL_USER_ID=0
// keeps user code as root, SUDO_SESSION_ENABLED grants sudo (upstream
// takes it from internal_data.sudo_session_enabled only), LD_PRELOAD runs
// code in every process the runner starts as root, and the BAI_KRUNNER_*
// variables point the runner at another config folder.
var agentOwnedEnv = map[string]string{
	"LOCAL_USER_ID":              "the kernel's uid comes from the manager's uid field or [container] kernel-uid",
	"LOCAL_GROUP_ID":             "the kernel's gid comes from the manager's main_gid field or [container] kernel-gid",
	"ADDITIONAL_GIDS":            "supplementary groups come from the manager's supplementary_gids field",
	"SUDO_SESSION_ENABLED":       "sudo comes from internal_data.sudo_session_enabled",
	"LD_PRELOAD":                 "it would run in every process the runner starts, root's included",
	"BACKENDAI_PERSISTENT_PATHS": "the agent computes it from the mounts",
}

// validEnvKey is POSIX's portable name: [A-Za-z_][A-Za-z0-9_]*.
func validEnvKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// validateEnviron refuses an environment that would smuggle entries:
// Docker takes "K=V" strings, and environ.txt is one entry a line, so a
// newline in a value becomes a second entry (a later duplicate wins in
// dockerd), and NUL ends a C string early.
func validateEnviron(env map[string]string) error {
	if len(env) > maxEnvironEntries {
		return fmt.Errorf("%w: environ has %d entries (at most %d)", ErrInvalidArgument, len(env), maxEnvironEntries)
	}
	total := 0
	for k, v := range env {
		total += len(k) + len(v) + 2
		if !validEnvKey(k) {
			return fmt.Errorf("%w: environ key %q is not a variable name ([A-Za-z_][A-Za-z0-9_]*)", ErrInvalidArgument, k)
		}
		if strings.ContainsAny(v, "\x00\n\r") {
			return fmt.Errorf("%w: environ[%s] contains a NUL, newline or carriage return", ErrInvalidArgument, k)
		}
		if why, ok := agentOwnedEnv[k]; ok {
			return fmt.Errorf("%w: environ[%s] is set by the agent, not the request (%s)", ErrInvalidArgument, k, why)
		}
		if strings.HasPrefix(k, "BAI_KRUNNER_") {
			return fmt.Errorf("%w: environ[%s]: BAI_KRUNNER_* variables are the runner's own", ErrInvalidArgument, k)
		}
	}
	if total > maxEnvironBytes {
		return fmt.Errorf("%w: environ is %d bytes (at most %d)", ErrInvalidArgument, total, maxEnvironBytes)
	}
	return nil
}

// dotfile is one checked internal_data.dotfiles entry; rel is "" for a
// path outside /home/work (skipped with a warning, as before).
type dotfile struct {
	path, rel, data string
	perm            fs.FileMode
}

// userDotfiles checks internal_data.dotfiles: a list of {path, perm
// (octal string), data}; paths relative to /home/work or absolute in it,
// never leaving it, within the size bounds.
func userDotfiles(internal map[string]any) ([]dotfile, error) {
	raw, ok := internal["dotfiles"]
	if !ok || raw == nil {
		return nil, nil
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: internal_data.dotfiles: expected a list, got %T", ErrInvalidArgument, raw)
	}
	if len(list) > maxDotfiles {
		return nil, fmt.Errorf("%w: internal_data.dotfiles has %d entries (at most %d)", ErrInvalidArgument, len(list), maxDotfiles)
	}
	var out []dotfile
	total := 0
	for i, d := range list {
		m, ok := d.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%w: internal_data.dotfiles[%d]: expected a dict, got %T", ErrInvalidArgument, i, d)
		}
		p, ok1 := m["path"].(string)
		data, ok2 := m["data"].(string)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("%w: internal_data.dotfiles[%d]: path and data must be strings", ErrInvalidArgument, i)
		}
		total += len(data)
		if total > maxDotfileBytes {
			return nil, fmt.Errorf("%w: internal_data.dotfiles: more than %d bytes in all", ErrInvalidArgument, maxDotfileBytes)
		}
		perm := fs.FileMode(0o644)
		if ps, ok := m["perm"].(string); ok && ps != "" {
			n, err := strconv.ParseUint(ps, 8, 32)
			if err != nil || n > 0o777 {
				return nil, fmt.Errorf("%w: internal_data.dotfiles[%d].perm %q is not an octal mode (000-777)", ErrInvalidArgument, i, ps)
			}
			perm = fs.FileMode(n)
		}
		if strings.IndexByte(p, 0) >= 0 {
			return nil, fmt.Errorf("%w: internal_data.dotfiles[%d].path has a NUL byte", ErrInvalidArgument, i)
		}
		rel := p
		if path.IsAbs(p) {
			r, ok := strings.CutPrefix(path.Clean(p), workDir+"/")
			if !ok {
				out = append(out, dotfile{path: p})
				continue
			}
			rel = r
		}
		comps, err := safefs.Split(rel)
		if err != nil || len(comps) == 0 {
			return nil, fmt.Errorf("%w: internal_data.dotfiles[%d].path %q leaves /home/work", ErrInvalidArgument, i, p)
		}
		if !strings.HasSuffix(data, "\n") {
			data += "\n"
		}
		out = append(out, dotfile{path: p, rel: strings.Join(comps, "/"), data: data, perm: perm})
	}
	return out, nil
}

// validateCreation checks what a creation config would write into the
// kernel's files or environment, before anything is taken for it.
func validateCreation(cfg *CreationConfig) error {
	if err := validateEnviron(cfg.Environ); err != nil {
		return err
	}
	if len(cfg.BootstrapScript) > maxBootstrapBytes {
		return fmt.Errorf("%w: bootstrap_script is %d bytes (at most %d)", ErrInvalidArgument, len(cfg.BootstrapScript), maxBootstrapBytes)
	}
	if strings.IndexByte(cfg.StartupCommand, 0) >= 0 {
		return fmt.Errorf("%w: startup_command has a NUL byte", ErrInvalidArgument)
	}
	if _, err := userDotfiles(cfg.InternalData); err != nil {
		return err
	}
	if kp, ok := cfg.InternalData["ssh_keypair"]; ok && kp != nil {
		m, ok := kp.(map[string]any)
		if !ok {
			return fmt.Errorf("%w: internal_data.ssh_keypair: expected a dict, got %T", ErrInvalidArgument, kp)
		}
		for _, f := range []string{"public_key", "private_key"} {
			if v, present := m[f]; present && v != nil {
				s, ok := v.(string)
				if !ok {
					return fmt.Errorf("%w: internal_data.ssh_keypair.%s: expected a string, got %T", ErrInvalidArgument, f, v)
				}
				if len(s) > maxSSHKeyBytes || strings.IndexByte(s, 0) >= 0 {
					return fmt.Errorf("%w: internal_data.ssh_keypair.%s is not a key (%d bytes)", ErrInvalidArgument, f, len(s))
				}
			}
		}
	}
	// uid_t and gid_t are 32 bits: 4294967296 would be root to setuid(2)
	// while every "uid != 0" check passes.
	for _, f := range []struct {
		name string
		v    *int
	}{{"uid", cfg.UID}, {"main_gid", cfg.MainGID}} {
		if f.v != nil && !kuser.ValidID(*f.v) {
			return fmt.Errorf("%w: %s %d is not a uid/gid (0-%d)", ErrInvalidArgument, f.name, *f.v, kuser.MaxID)
		}
	}
	if len(cfg.SupplementaryGIDs) > maxSupplementaryGIDs {
		return fmt.Errorf("%w: supplementary_gids has %d entries (at most %d)", ErrInvalidArgument, len(cfg.SupplementaryGIDs), maxSupplementaryGIDs)
	}
	for i, g := range cfg.SupplementaryGIDs {
		if !kuser.ValidID(g) {
			return fmt.Errorf("%w: supplementary_gids[%d] %d is not a gid (0-%d)", ErrInvalidArgument, i, g, kuser.MaxID)
		}
	}
	for i, m := range cfg.Mounts {
		for _, f := range []struct{ name, v string }{{"host_path", m.HostPath}, {"kernel_path", m.KernelPath}, {"name", m.Name}} {
			if strings.ContainsAny(f.v, "\x00\n") {
				return fmt.Errorf("%w: mounts[%d].%s contains a NUL or newline", ErrInvalidArgument, i, f.name)
			}
		}
	}
	return nil
}

// secretInternalData are internal_data keys that carry credentials: used
// by the creation steps from the request itself, never kept with the
// kernel (whose config is persisted in kconfig.json, readable inside the
// kernel).
var secretInternalData = []string{"docker_credentials"}

// withoutSecrets is the copy of a creation config the kernel keeps: no
// registry credentials, no credential entries of internal_data. The
// request's own config still has them for the pull.
func withoutSecrets(cfg *CreationConfig) CreationConfig {
	c := *cfg
	c.Image.Registry.Username, c.Image.Registry.Password = "", ""
	if c.InternalData != nil {
		c.InternalData = make(map[string]any, len(cfg.InternalData))
		for k, v := range cfg.InternalData {
			c.InternalData[k] = v
		}
		for _, k := range secretInternalData {
			delete(c.InternalData, k)
		}
	}
	return c
}

// checkMountSources refuses bind mounts whose source now goes through a
// symbolic link. Sources were resolved once, at validation, and vfolder
// sub-folders are changed by their users: a sub-folder swapped for a link
// to a host folder would be followed by Docker when it mounts it. Checked
// right before a container is created (creation, restart); the window
// between this check and Docker's mount at start remains (docs/SECURITY.md).
func checkMountSources(mounts []resource.Mount) error {
	for _, m := range mounts {
		if m.IsVolume() {
			continue
		}
		if err := safefs.CheckNoLinks(m.Source); err != nil {
			return fmt.Errorf("%w: the source of %s changed since it was checked: %v", vfolder.ErrInvalidMount, m.Target, err)
		}
	}
	return nil
}

// checkMountPoints refuses a restart whose vfolder mount points under
// /home/work were replaced by the kernel: Docker (runc) creates a mount
// point by resolving its path inside the container, through the work
// folder the kernel's user writes, so a link left at /home/work/data
// (-> /opt/container) would put the vfolder there.
func checkMountPoints(work string, mounts []resource.Mount) error {
	root, err := safefs.OpenRoot(work)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, m := range mounts {
		rel, ok := strings.CutPrefix(m.Target, workDir+"/")
		if !ok {
			continue
		}
		info, err := root.Lstat(rel)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return fmt.Errorf("%w: the mount point %s: %v", vfolder.ErrInvalidMount, m.Target, err)
		case info.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("%w: the mount point %s was replaced by a symbolic link", vfolder.ErrInvalidMount, m.Target)
		}
	}
	return nil
}
