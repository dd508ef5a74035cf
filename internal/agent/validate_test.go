package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/bai-agent/bai-agent/internal/vfolder"
)

func TestValidateCreation(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", maxBootstrapBytes+1)
	for _, tc := range []struct {
		name string
		cfg  CreationConfig
		want string // "" accepts; else a part of the error naming the key
	}{
		{"plain", CreationConfig{Environ: map[string]string{"A": "1", "_b9": "x=y", "PATH_X": ""}}, ""},
		{"newline smuggles an entry", CreationConfig{Environ: map[string]string{"ZZZ": "x\nLOCAL_USER_ID=0"}}, "environ[ZZZ] contains a NUL, newline"},
		{"carriage return", CreationConfig{Environ: map[string]string{"ZZZ": "x\r"}}, "environ[ZZZ]"},
		{"NUL in value", CreationConfig{Environ: map[string]string{"ZZZ": "x\x00y"}}, "environ[ZZZ]"},
		{"equals in key", CreationConfig{Environ: map[string]string{"A=B": "x"}}, `environ key "A=B"`},
		{"newline in key", CreationConfig{Environ: map[string]string{"A\nB": "x"}}, "environ key"},
		{"digit first", CreationConfig{Environ: map[string]string{"1A": "x"}}, "environ key"},
		{"empty key", CreationConfig{Environ: map[string]string{"": "x"}}, "environ key"},
		{"uid", CreationConfig{Environ: map[string]string{"LOCAL_USER_ID": "0"}}, "environ[LOCAL_USER_ID] is set by the agent"},
		{"gid", CreationConfig{Environ: map[string]string{"LOCAL_GROUP_ID": "0"}}, "environ[LOCAL_GROUP_ID]"},
		{"groups", CreationConfig{Environ: map[string]string{"ADDITIONAL_GIDS": "0"}}, "environ[ADDITIONAL_GIDS]"},
		{"sudo", CreationConfig{Environ: map[string]string{"SUDO_SESSION_ENABLED": "1"}}, "environ[SUDO_SESSION_ENABLED]"},
		{"preload", CreationConfig{Environ: map[string]string{"LD_PRELOAD": "/home/work/x.so"}}, "environ[LD_PRELOAD]"},
		{"runner config dir", CreationConfig{Environ: map[string]string{"BAI_KRUNNER_CONFIGDIR": "/home/work"}}, "environ[BAI_KRUNNER_CONFIGDIR]"},
		{"manager's own variables", CreationConfig{Environ: map[string]string{"BACKENDAI_KERNEL_ID": "k", "BACKENDAI_ACCESS_KEY": "AK", "BACKENDAI_CLUSTER_HOSTS": "main1"}}, ""},
		{"bootstrap too large", CreationConfig{BootstrapScript: big}, "bootstrap_script"},
		{"startup NUL", CreationConfig{StartupCommand: "a\x00b"}, "startup_command"},
		{"dotfile escapes", CreationConfig{InternalData: map[string]any{"dotfiles": []any{map[string]any{"path": "../x", "data": "d"}}}}, "dotfiles[0].path"},
		{"dotfile escapes absolute", CreationConfig{InternalData: map[string]any{"dotfiles": []any{map[string]any{"path": "/home/work/../../etc/x", "data": "d"}}}}, ""},
		{"dotfile perm", CreationConfig{InternalData: map[string]any{"dotfiles": []any{map[string]any{"path": ".x", "data": "d", "perm": "4755"}}}}, "dotfiles[0].perm"},
		{"dotfile data type", CreationConfig{InternalData: map[string]any{"dotfiles": []any{map[string]any{"path": ".x", "data": 3}}}}, "dotfiles[0]"},
		{"dotfiles type", CreationConfig{InternalData: map[string]any{"dotfiles": "x"}}, "internal_data.dotfiles"},
		{"dotfiles too large", CreationConfig{InternalData: map[string]any{"dotfiles": []any{map[string]any{"path": ".x", "data": strings.Repeat("x", maxDotfileBytes+1)}}}}, "internal_data.dotfiles"},
		{"dotfile ok", CreationConfig{InternalData: map[string]any{"dotfiles": []any{map[string]any{"path": ".config/a", "data": "d", "perm": "600"}}}}, ""},
		{"ssh key type", CreationConfig{InternalData: map[string]any{"ssh_keypair": map[string]any{"public_key": 5}}}, "ssh_keypair.public_key"},
		{"mount NUL", CreationConfig{Mounts: []MountSpec{{Name: "a", HostPath: "/x\x00", KernelPath: "/home/work/a"}}}, "mounts[0].host_path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validateCreation(&tc.cfg)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// An absolute dotfile path that leaves /home/work is skipped (as
// before), a relative one that does is refused, and paths are normalised.
func TestUserDotfilesPaths(t *testing.T) {
	t.Parallel()
	dots, err := userDotfiles(map[string]any{"dotfiles": []any{
		map[string]any{"path": "/etc/profile", "data": "x"},
		map[string]any{"path": "/home/work/.bashrc", "data": "y\n", "perm": "0600"},
		map[string]any{"path": "./.config//app/rc", "data": "z"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if dots[0].rel != "" || dots[1].rel != ".bashrc" || dots[1].perm != 0o600 || dots[1].data != "y\n" || dots[2].rel != ".config/app/rc" || dots[2].data != "z\n" {
		t.Fatalf("%+v", dots)
	}
}

func TestWithoutSecrets(t *testing.T) {
	t.Parallel()
	cfg := &CreationConfig{
		Image:        ImageConfig{Registry: RegistryInfo{Name: "r", URL: "https://r", Username: "u", Password: "hunter2"}},
		InternalData: map[string]any{"docker_credentials": map[string]any{"password": "hunter2"}, "ssh_keypair": "kept"},
	}
	kept := withoutSecrets(cfg)
	if kept.Image.Registry.Password != "" || kept.Image.Registry.Username != "" || kept.InternalData["docker_credentials"] != nil || kept.InternalData["ssh_keypair"] != "kept" {
		t.Fatalf("kept %+v", kept)
	}
	if cfg.Image.Registry.Password != "hunter2" || cfg.InternalData["docker_credentials"] == nil {
		t.Fatal("the request's own config lost its credentials (the pull needs them)")
	}
}

// A restart refuses vfolder mount points under /home/work that the
// kernel replaced with links (Docker would resolve them inside the
// container: data -> /opt/container).
func TestCheckMountPoints(t *testing.T) {
	t.Parallel()
	work := t.TempDir()
	_ = os.MkdirAll(filepath.Join(work, "plain"), 0o755)
	_ = os.Symlink("/opt/container", filepath.Join(work, "link"))
	_ = os.Symlink("/opt", filepath.Join(work, "parent"))
	for _, tc := range []struct {
		target string
		ok     bool
	}{
		{"/home/work/plain", true},
		{"/home/work/missing", true},
		{"/models", true},
		{"/home/work/link", false},
		{"/home/work/parent/container", false},
	} {
		err := checkMountPoints(work, []resource.Mount{{Source: "/x", Target: tc.target, Perm: resource.PermRW}})
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, vfolder.ErrInvalidMount)) {
			t.Errorf("%s: %v", tc.target, err)
		}
	}
}
