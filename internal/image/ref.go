package image

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"

	"github.com/bai-agent/bai-agent/internal/wire"
)

// ErrInvalidRef is a malformed image name, project or policy.
var ErrInvalidRef = errors.New("invalid image reference")

// Docker Hub defaults of ImageRef.parse_image_str.
const (
	defaultRegistry   = "index.docker.io"
	defaultRepository = "lablup"
)

// tagRx is the tag grammar of common/docker.py (rx_slug).
var tagRx = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$`)

// ParseRef builds the manager's ImageRef from an ImageConfig's canonical
// name, project and registry name, with the rules of
// ImageRef.from_image_config: the registry part is split off only when it
// is the named registry (or an IP address), the project is stripped from
// the image name, and the tag defaults to "latest".
func ParseRef(canonical, project, registry, architecture string, isLocal bool) (wire.ImageRef, error) {
	if canonical == "" {
		return wire.ImageRef{}, fmt.Errorf("%w: canonical name is empty", ErrInvalidRef)
	}
	if strings.Contains(canonical, "://") || strings.HasPrefix(canonical, "//") {
		return wire.ImageRef{}, fmt.Errorf("%w: %q: an image name is not a URL", ErrInvalidRef, canonical)
	}
	reg, rest := defaultRegistry, canonical
	if i := strings.Index(canonical, "/"); i >= 0 {
		maybe := canonical[:i]
		switch {
		case maybe == registry || isIPAddr(maybe):
			reg, rest = maybe, canonical[i+1:]
		case registry == "":
			reg, rest = defaultRegistry, canonical
		default:
			reg, rest = registry, canonical
		}
	}
	name, tag := rest, "latest"
	if i := strings.LastIndex(rest, ":"); i >= 0 && !strings.Contains(rest[i:], "/") {
		name, tag = rest[:i], rest[i+1:]
	}
	if name == "" {
		return wire.ImageRef{}, fmt.Errorf("%w: %q: empty image repository/name", ErrInvalidRef, canonical)
	}
	if !strings.Contains(name, "/") && (reg == "docker.io" || strings.HasSuffix(reg, ".docker.io")) {
		name = defaultRepository + "/" + name
	}
	if !tagRx.MatchString(tag) {
		return wire.ImageRef{}, fmt.Errorf("%w: %q: invalid tag %q", ErrInvalidRef, canonical, tag)
	}
	switch {
	case project == "":
	case name == project:
		name = ""
	case strings.HasPrefix(name, project+"/"):
		name = strings.TrimPrefix(name, project+"/")
	default:
		return wire.ImageRef{}, fmt.Errorf("%w: project %q does not match the canonical name %q", ErrInvalidRef, project, canonical)
	}
	if architecture == "" {
		architecture = "x86_64"
	}
	return wire.ImageRef{Name: name, Project: project, Tag: tag, Registry: reg, Architecture: NormalizeArch(architecture), IsLocal: isLocal}, nil
}

func isIPAddr(s string) bool {
	host := s
	if h, _, err := net.SplitHostPort(s); err == nil {
		host = h
	}
	return net.ParseIP(host) != nil
}

// NormalizeArch maps Docker/Go architecture names to Backend.AI's
// (arch_name_aliases).
func NormalizeArch(a string) string {
	switch a {
	case "amd64", "x86-64", "x86_64":
		return "x86_64"
	case "arm64", "aarch64", "armv8":
		return "aarch64"
	}
	return a
}

// DockerName is the name the container runtime knows a kernel image by:
// the short name (project/name:tag) for a local image, which has no
// registry, and the canonical name otherwise, as the Python agent passes
// it to Docker.
func DockerName(r wire.ImageRef) string {
	if r.IsLocal {
		return Short(r)
	}
	return r.Canonical()
}

// Short is ImageRef.short: project/name:tag without the registry.
func Short(r wire.ImageRef) string {
	s := wire.ImageRef{Project: r.Project, Name: r.Name, Tag: r.Tag}
	return s.Canonical()
}
