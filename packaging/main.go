// Command packaging builds bai-agent's .deb and .rpm with nfpm: the
// binary, systemd units for the agent and the watcher, a default
// /etc/backend.ai/agent.toml (kept on upgrade) and the man pages.
//
// It is its own module so that nfpm's dependencies stay out of the
// agent's. Run it through "make package".
package main

import (
	"compress/gzip"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm"
)

func main() {
	var version, bin, manDir, out string
	flag.StringVar(&version, "version", "", "package version")
	flag.StringVar(&bin, "bin", "../bin/bai-agent", "the bai-agent binary")
	flag.StringVar(&manDir, "man", "../bin/man", "folder of man pages (bai-agent gen-man)")
	flag.StringVar(&out, "out", "../dist", "output folder")
	flag.Parse()
	if err := build(version, bin, manDir, out); err != nil {
		fmt.Fprintln(os.Stderr, "packaging:", err)
		os.Exit(1)
	}
}

func build(version, bin, manDir, out string) error {
	if version == "" {
		return fmt.Errorf("-version is required")
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	gzDir, err := os.MkdirTemp("", "bai-man-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(gzDir)
	pages, err := filepath.Glob(filepath.Join(manDir, "*.1"))
	if err != nil || len(pages) == 0 {
		return fmt.Errorf("no man pages in %s (run bai-agent gen-man)", manDir)
	}
	sort.Strings(pages)
	contents := files.Contents{
		{Source: bin, Destination: "/usr/bin/bai-agent", FileInfo: &files.ContentFileInfo{Mode: 0o755}},
		// The kernel runner, found next to the agent binary.
		{Source: filepath.Join(filepath.Dir(bin), "bai-krunner"), Destination: "/usr/bin/bai-krunner", FileInfo: &files.ContentFileInfo{Mode: 0o755}},
		{Source: "systemd/backendai-agent.service", Destination: "/lib/systemd/system/backendai-agent.service", FileInfo: &files.ContentFileInfo{Mode: 0o644}},
		{Source: "systemd/backendai-agent-watcher.service", Destination: "/lib/systemd/system/backendai-agent-watcher.service", FileInfo: &files.ContentFileInfo{Mode: 0o644}},
		{Source: "agent.toml", Destination: "/etc/backend.ai/agent.toml", Type: files.TypeConfigNoReplace, FileInfo: &files.ContentFileInfo{Mode: 0o640}},
	}
	for _, p := range pages {
		gz := filepath.Join(gzDir, filepath.Base(p)+".gz")
		if err := gzipFile(p, gz); err != nil {
			return err
		}
		contents = append(contents, &files.Content{Source: gz, Destination: "/usr/share/man/man1/" + filepath.Base(gz), FileInfo: &files.ContentFileInfo{Mode: 0o644}})
	}
	for _, format := range []string{"deb", "rpm"} {
		info := &nfpm.Info{
			Name: "bai-agent", Arch: "amd64", Platform: "linux", Version: version,
			Maintainer:  "bai-agent developers <bai-agent@localhost>",
			Description: "Backend.AI compute-node agent (bai-agent), a drop-in replacement for the Python agent",
			Homepage:    "https://github.com/bai-agent/bai-agent", License: "LGPL-3.0",
			Section: "admin", Priority: "optional",
			Overridables: nfpm.Overridables{
				Contents: contents,
				Scripts:  nfpm.Scripts{PostInstall: "postinstall.sh", PreRemove: "preremove.sh", PostRemove: "postremove.sh"},
			},
		}
		// The binary links libzmq (CGO); the package names differ.
		if format == "deb" {
			info.Depends = []string{"libzmq5", "docker.io | docker-ce"}
		} else {
			info.Depends = []string{"zeromq"}
		}
		info = nfpm.WithDefaults(info)
		if err := nfpm.PrepareForPackager(info, format); err != nil {
			return fmt.Errorf("%s: %w", format, err)
		}
		pkgr, err := nfpm.Get(format)
		if err != nil {
			return err
		}
		name := filepath.Join(out, pkgr.ConventionalFileName(info))
		f, err := os.Create(name)
		if err != nil {
			return err
		}
		if err := pkgr.Package(info, f); err != nil {
			f.Close()
			os.Remove(name)
			return fmt.Errorf("%s: %w", format, err)
		}
		if err := f.Close(); err != nil {
			return err
		}
		fmt.Println(name)
	}
	return nil
}

func gzipFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	zw, _ := gzip.NewWriterLevel(f, gzip.BestCompression)
	if _, err := io.Copy(zw, in); err != nil {
		f.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
