package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/bai-agent/bai-agent/internal/backend"
)

var (
	_ backend.Images   = (*Backend)(nil)
	_ backend.Networks = (*Backend)(nil)
)

// ListImages implements backend.Images.
func (b *Backend) ListImages(ctx context.Context) ([]backend.Image, error) {
	res, err := b.cli.ImageList(ctx, client.ImageListOptions{})
	if err != nil {
		return nil, mapErr(err, "list images")
	}
	out := make([]backend.Image, 0, len(res.Items))
	for _, s := range res.Items {
		out = append(out, backend.Image{ID: s.ID, Tags: s.RepoTags, Labels: s.Labels})
	}
	return out, nil
}

// jsonMessage is one line of Docker's pull/push progress stream.
type jsonMessage struct {
	ID             string `json:"id"`
	Status         string `json:"status"`
	ProgressDetail struct {
		Current int64 `json:"current"`
		Total   int64 `json:"total"`
	} `json:"progressDetail"`
	Error       string `json:"error"`
	ErrorDetail struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
}

// followProgress reads the stream, sums per-layer progress, and returns
// the stream's own error message if it reports one (Docker reports pull
// failures inside a 200 response).
func followProgress(r io.Reader, progress backend.Progress) error {
	dec := json.NewDecoder(r)
	cur, tot := map[string]int64{}, map[string]int64{}
	for {
		var m jsonMessage
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("progress stream: %w", err)
		}
		if m.Error != "" || m.ErrorDetail.Message != "" {
			msg := m.ErrorDetail.Message
			if msg == "" {
				msg = m.Error
			}
			return errors.New(msg)
		}
		if m.ID != "" && m.ProgressDetail.Total > 0 {
			cur[m.ID], tot[m.ID] = m.ProgressDetail.Current, m.ProgressDetail.Total
		}
		if strings.HasPrefix(m.Status, "Pull complete") || strings.HasPrefix(m.Status, "Pushed") || strings.HasPrefix(m.Status, "Already exists") || strings.HasPrefix(m.Status, "Layer already exists") {
			if t, ok := tot[m.ID]; ok {
				cur[m.ID] = t
			}
		}
		if progress != nil {
			var c, t int64
			for id := range tot {
				c += cur[id]
				t += tot[id]
			}
			progress(c, t)
		}
	}
}

// PullImage implements backend.Images.
func (b *Backend) PullImage(ctx context.Context, ref, auth string, progress backend.Progress) error {
	rc, err := b.cli.ImagePull(ctx, ref, client.ImagePullOptions{RegistryAuth: auth})
	if err != nil {
		return mapErr(err, "pull "+ref)
	}
	defer rc.Close()
	if err := followProgress(rc, progress); err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	return nil
}

// PushImage implements backend.Images.
func (b *Backend) PushImage(ctx context.Context, ref, auth string, progress backend.Progress) error {
	if auth == "" {
		// The engine refuses a push without the header; an empty
		// credential is "no auth".
		auth = "e30="
	}
	rc, err := b.cli.ImagePush(ctx, ref, client.ImagePushOptions{RegistryAuth: auth})
	if err != nil {
		return mapErr(err, "push "+ref)
	}
	defer rc.Close()
	if err := followProgress(rc, progress); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	return nil
}

// CommitContainer implements backend.Images.
func (b *Backend) CommitContainer(ctx context.Context, containerID, ref string, changes []string) (string, error) {
	res, err := b.cli.ContainerCommit(ctx, containerID, client.ContainerCommitOptions{Reference: ref, Changes: changes, Author: "bai-agent"})
	if err != nil {
		return "", mapErr(err, "commit container "+containerID)
	}
	return res.ID, nil
}

// SaveImage implements backend.Images (an uncompressed docker-save tar).
func (b *Backend) SaveImage(ctx context.Context, ref string, w io.Writer) error {
	rc, err := b.cli.ImageSave(ctx, []string{ref})
	if err != nil {
		return mapErr(err, "save image "+ref)
	}
	defer rc.Close()
	if _, err := io.Copy(w, rc); err != nil {
		return fmt.Errorf("save image %s: %w", ref, err)
	}
	return nil
}

// RemoveImage implements backend.Images.
func (b *Backend) RemoveImage(ctx context.Context, ref string, force, noPrune bool) error {
	_, err := b.cli.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: force, PruneChildren: !noPrune})
	return mapErr(err, "remove image "+ref)
}

// CreateNetwork implements backend.Networks.
func (b *Backend) CreateNetwork(ctx context.Context, name string, labels map[string]string) error {
	if _, err := b.cli.NetworkInspect(ctx, name, client.NetworkInspectOptions{}); err == nil {
		return nil
	}
	_, err := b.cli.NetworkCreate(ctx, name, client.NetworkCreateOptions{Driver: "bridge", Labels: labels})
	if err != nil && cerrdefs.IsConflict(err) {
		return nil
	}
	return mapErr(err, "create network "+name)
}

// ListNetworks implements backend.Networks. The list endpoint does not
// count attached containers, so each network is inspected.
func (b *Backend) ListNetworks(ctx context.Context, labels map[string]string) ([]backend.Network, error) {
	f := client.Filters{}
	for k, v := range labels {
		f.Add("label", k+"="+v)
	}
	res, err := b.cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		return nil, mapErr(err, "list networks")
	}
	out := make([]backend.Network, 0, len(res.Items))
	for _, n := range res.Items {
		info, err := b.InspectNetwork(ctx, n.ID)
		if errors.Is(err, backend.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, *info)
	}
	return out, nil
}

// InspectNetwork implements backend.Networks.
func (b *Backend) InspectNetwork(ctx context.Context, name string) (*backend.Network, error) {
	res, err := b.cli.NetworkInspect(ctx, name, client.NetworkInspectOptions{})
	if err != nil {
		return nil, mapErr(err, "inspect network "+name)
	}
	n := res.Network
	out := &backend.Network{ID: n.ID, Name: n.Name, Driver: n.Driver, Labels: n.Labels, Created: n.Created, Containers: len(n.Containers)}
	for _, c := range n.IPAM.Config {
		if c.Subnet.IsValid() {
			out.Subnets = append(out.Subnets, c.Subnet.String())
		}
	}
	return out, nil
}

// RemoveNetwork implements backend.Networks.
func (b *Backend) RemoveNetwork(ctx context.Context, name string) error {
	_, err := b.cli.NetworkRemove(ctx, name, client.NetworkRemoveOptions{})
	if err != nil && cerrdefs.IsNotFound(err) {
		return nil
	}
	return mapErr(err, "remove network "+name)
}

// ImportImage imports a root file system archive as image ref (docker
// import); used for the agent's own tiny images (the sandbox probe).
func (b *Backend) ImportImage(ctx context.Context, ref string, rootfs io.Reader) error {
	res, err := b.cli.ImageImport(ctx, client.ImageImportSource{Source: rootfs, SourceName: "-"}, ref, client.ImageImportOptions{})
	if err != nil {
		return mapErr(err, "import image "+ref)
	}
	defer res.Close()
	_, err = io.Copy(io.Discard, res)
	return err
}
