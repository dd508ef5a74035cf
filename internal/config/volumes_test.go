package config

import (
	"strings"
	"testing"
)

// The volume keys: upstream's mount-path-uid-gid ("uid:gid" or
// "user:group") and bai-agent's deadlines with their defaults.
func TestVolumeKeys(t *testing.T) {
	res, err := Load("a.toml", []byte("[agent]\nbackend = \"docker\"\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if a := res.Config.Agent; a.VolumeMountTimeout != 60 || a.VolumeUnmountTimeout != 10 || a.MountPathUIDGID != "" {
		t.Fatalf("defaults: %v %v %q", a.VolumeMountTimeout, a.VolumeUnmountTimeout, a.MountPathUIDGID)
	}
	for _, v := range []string{"1000:1000", "bai:bai"} {
		res, err := Load("a.toml", []byte("[agent]\nbackend = \"docker\"\nmount-path-uid-gid = \""+v+"\"\nvolume-unmount-timeout = 2.5\n"), noEnv)
		if err != nil || res.Config.Agent.MountPathUIDGID != v || res.Config.Agent.VolumeUnmountTimeout != 2.5 {
			t.Fatalf("%q: %v", v, err)
		}
	}
	for _, v := range []string{"1000", ":1000", "1000:", "a b:c", "../x:y"} {
		_, err := Load("a.toml", []byte("[agent]\nbackend = \"docker\"\nmount-path-uid-gid = \""+v+"\"\n"), noEnv)
		if err == nil || !strings.Contains(err.Error(), "mount-path-uid-gid") {
			t.Errorf("%q accepted (%v)", v, err)
		}
	}
	if _, err := Load("a.toml", []byte("[agent]\nbackend = \"docker\"\nvolume-mount-timeout = -1\n"), noEnv); err == nil {
		t.Error("negative timeout accepted")
	}
}
