package identity

import (
	"context"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// Provider is a cloud whose instance metadata service answered; its values
// are upstream's CloudProvider strings.
type Provider string

// The clouds upstream knows, in the order it starts their probes.
const (
	AWS   Provider = "amazon"
	Azure Provider = "azure"
	GCP   Provider = "google"
)

// Source says where an id came from (the "source" of the log line).
type Source string

// Where an id can come from. SourceConfig is set by the caller when
// [agent] id (or its environment override) is given; Detect never returns
// it.
const (
	SourceConfig   Source = "config"
	SourceAWS      Source = "aws-instance-metadata"
	SourceAzure    Source = "azure-instance-metadata"
	SourceGCP      Source = "gcp-instance-metadata"
	SourceHostname Source = "hostname"
)

const (
	// DefaultMetadataURL is the link-local address all three clouds serve
	// their instance metadata on (upstream's URLs all use it).
	DefaultMetadataURL = "http://169.254.169.254"
	// DefaultDetectTimeout bounds the whole cloud detection (upstream's
	// total of 1 s), so a machine outside any cloud starts fast.
	DefaultDetectTimeout = time.Second
	// DefaultFetchTimeout bounds each request for the id once a cloud is
	// known.
	DefaultFetchTimeout = time.Second

	azureAPIVersion = "2021-02-01"
	maxBody         = 1 << 20
)

// Options configure Detect; the zero value probes the real metadata
// address with the default deadlines.
type Options struct {
	// MetadataURL is the base URL of the instance metadata services
	// (scheme, host and optional port, no trailing path). "" uses
	// DefaultMetadataURL; Disabled skips detection.
	MetadataURL string
	// Disabled skips the metadata services: the id is "i-" + host name.
	Disabled bool
	// DetectTimeout bounds the probes that find the cloud (0: default).
	DetectTimeout time.Duration
	// FetchTimeout bounds each request for the id (0: default).
	FetchTimeout time.Duration
	// Hostname returns the host name (nil: os.Hostname).
	Hostname func() (string, error)
	// Client sends the requests (nil: a client that ignores proxy
	// settings, as the link-local service is never behind a proxy).
	Client *http.Client
}

// Result is the chosen id and where it came from.
type Result struct {
	ID       string
	Source   Source
	Provider Provider // "" when no cloud answered
	// Reason says why the host name was used (empty for a cloud id).
	Reason string
	// Probes holds why each cloud's probe failed, for a debug log (nil when
	// detection was disabled).
	Probes map[Provider]error
}

// Detect chooses the id as upstream's get_instance_id does: the cloud
// instance id when a metadata service answers, else "i-" + host name. It
// fails only when it needs the host name and cannot read it.
func Detect(ctx context.Context, o Options) (Result, error) {
	m := newMetadata(o)
	if o.Disabled {
		return m.fallback(Result{Reason: "instance metadata detection is disabled"})
	}
	provider, probes := m.detect(ctx)
	if provider == "" {
		return m.fallback(Result{Reason: "no cloud instance metadata service answered", Probes: probes})
	}
	var (
		id  string
		err error
		src Source
	)
	switch provider {
	case AWS:
		src = SourceAWS
		id, err = m.awsID(ctx)
	case Azure:
		src = SourceAzure
		id, err = m.azureID(ctx)
	case GCP:
		src = SourceGCP
		id, err = m.gcpID(ctx)
	}
	if err != nil {
		return m.fallback(Result{Provider: provider, Reason: fmt.Sprintf("%s instance id: %v", provider, err), Probes: probes})
	}
	return Result{ID: id, Source: src, Provider: provider, Probes: probes}, nil
}

type metadata struct {
	base          string
	detectTimeout time.Duration
	fetchTimeout  time.Duration
	hostname      func() (string, error)
	client        *http.Client
}

func newMetadata(o Options) *metadata {
	m := &metadata{
		base:          strings.TrimRight(o.MetadataURL, "/"),
		detectTimeout: o.DetectTimeout,
		fetchTimeout:  o.FetchTimeout,
		hostname:      o.Hostname,
		client:        o.Client,
	}
	if m.base == "" {
		m.base = DefaultMetadataURL
	}
	if m.detectTimeout <= 0 {
		m.detectTimeout = DefaultDetectTimeout
	}
	if m.fetchTimeout <= 0 {
		m.fetchTimeout = DefaultFetchTimeout
	}
	if m.hostname == nil {
		m.hostname = os.Hostname
	}
	if m.client == nil {
		// A zero Transport has no Proxy function: $HTTP_PROXY is not
		// consulted.
		m.client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	}
	return m
}

// fallback completes r with upstream's off-cloud id, "i-" + host name.
func (m *metadata) fallback(r Result) (Result, error) {
	host, err := m.hostname()
	if err != nil {
		return r, fmt.Errorf("agent id: %s, and the host name: %w", r.Reason, err)
	}
	if host == "" {
		return r, fmt.Errorf("agent id: %s, and the host name is empty", r.Reason)
	}
	r.ID, r.Source = "i-"+host, SourceHostname
	return r, nil
}

// detect probes the three clouds at once and returns the first that gives
// a valid answer within the detection deadline ("" when none does), with
// each failed probe's error.
func (m *metadata) detect(ctx context.Context) (Provider, map[Provider]error) {
	ctx, cancel := context.WithTimeout(ctx, m.detectTimeout)
	defer cancel()
	type answer struct {
		p   Provider
		err error
	}
	probes := []struct {
		p   Provider
		run func(context.Context) error
	}{{AWS, m.probeAWS}, {Azure, m.probeAzure}, {GCP, m.probeGCP}}
	ch := make(chan answer, len(probes))
	for _, pr := range probes {
		go func() { ch <- answer{pr.p, pr.run(ctx)} }()
	}
	var winner Provider
	errs := make(map[Provider]error, len(probes))
	for range probes {
		a := <-ch
		if a.err == nil && winner == "" {
			winner = a.p
			cancel() // the others' answers no longer matter
			continue
		}
		if a.err != nil && winner == "" {
			errs[a.p] = a.err
		}
	}
	return winner, errs
}

func (m *metadata) probeAWS(ctx context.Context) error {
	body, err := m.get(ctx, "/latest/meta-data/", nil, true)
	if err != nil {
		return err
	}
	if !strings.Contains(body, "instance-id") {
		return fmt.Errorf("metadata listing names no instance-id: %q", clip(body, 200))
	}
	return nil
}

func (m *metadata) probeAzure(ctx context.Context) error {
	body, err := m.get(ctx, "/metadata/instance/compute?api-version="+azureAPIVersion, http.Header{"Metadata": {"true"}}, true)
	if err != nil {
		return err
	}
	var o map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &o); err != nil {
		return fmt.Errorf("compute metadata is not a JSON object: %w", err)
	}
	if _, ok := o["vmId"]; !ok {
		return fmt.Errorf("compute metadata has no vmId: %q", clip(body, 200))
	}
	return nil
}

func (m *metadata) probeGCP(ctx context.Context) error {
	body, err := m.get(ctx, "/computeMetadata/v1/instance/id", http.Header{"Metadata-Flavor": {"Google"}}, true)
	if err != nil {
		return err
	}
	if _, err := strconv.ParseUint(body, 10, 64); err != nil {
		return fmt.Errorf("instance id %q is not a number", clip(body, 64))
	}
	return nil
}

func (m *metadata) awsID(ctx context.Context) (string, error) {
	id, err := m.get(ctx, "/latest/meta-data/instance-id", nil, false)
	if err != nil {
		return "", err
	}
	if id == "" {
		return "", errors.New("empty instance-id")
	}
	return id, nil
}

func (m *metadata) azureID(ctx context.Context) (string, error) {
	body, err := m.get(ctx, "/metadata/instance?api-version="+azureAPIVersion, http.Header{"Metadata": {"true"}}, false)
	if err != nil {
		return "", err
	}
	var o struct {
		Compute struct {
			Name *string `json:"name"`
			VMID *string `json:"vmId"`
		} `json:"compute"`
	}
	if err := json.Unmarshal([]byte(body), &o); err != nil {
		return "", fmt.Errorf("instance metadata: %w", err)
	}
	if o.Compute.Name == nil || o.Compute.VMID == nil {
		return "", errors.New("instance metadata lacks compute.name or compute.vmId")
	}
	u, err := parseUUID(*o.Compute.VMID)
	if err != nil {
		return "", err
	}
	return "i-" + *o.Compute.Name + "-" + hash5(u[len(u)-5:]), nil
}

func (m *metadata) gcpID(ctx context.Context) (string, error) {
	h := http.Header{"Metadata-Flavor": {"Google"}}
	raw, err := m.get(ctx, "/computeMetadata/v1/instance/id", h, false)
	if err != nil {
		return "", err
	}
	n, err := strconv.ParseUint(raw, 10, 64)
	if err != nil {
		return "", fmt.Errorf("instance id %q is not a 64-bit number", clip(raw, 64))
	}
	name, err := m.get(ctx, "/computeMetadata/v1/instance/name", h, false)
	if err != nil {
		return "", fmt.Errorf("instance name: %w", err)
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	return "i-" + name + "-" + hash5(b[3:]), nil
}

// hash5 is upstream's short instance hash: the RFC 4648 base32 of five
// bytes (eight characters, no padding), in lower case.
func hash5(b []byte) string {
	return strings.ToLower(base32.StdEncoding.EncodeToString(b))
}

// parseUUID reads a UUID in the forms Python's uuid.UUID(str) accepts:
// optional "urn:" and "uuid:" prefixes and braces, hyphens anywhere, 32
// hexadecimal digits.
func parseUUID(s string) ([]byte, error) {
	t := strings.TrimPrefix(strings.TrimPrefix(s, "urn:"), "uuid:")
	t = strings.Trim(t, "{}")
	t = strings.ReplaceAll(t, "-", "")
	if len(t) != 32 {
		return nil, fmt.Errorf("vmId %q is not a UUID", clip(s, 64))
	}
	b, err := hex.DecodeString(t)
	if err != nil {
		return nil, fmt.Errorf("vmId %q is not a UUID", clip(s, 64))
	}
	return b, nil
}

// get fetches base+path under the fetch deadline (the caller's context may
// be shorter) and returns the body with surrounding white space removed,
// as upstream's curl helper does. A probe (exact200) accepts only 200; an
// id request accepts any status below 400, as aiohttp's raise_for_status.
func (m *metadata) get(ctx context.Context, path string, h http.Header, exact200 bool) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, m.fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.base+path, nil)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", path, err)
	}
	for k, v := range h {
		req.Header.Set(k, v[0])
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return "", fmt.Errorf("GET %s: reading the body: %w", path, err)
	}
	if (exact200 && resp.StatusCode != http.StatusOK) || resp.StatusCode >= 400 {
		return "", fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
	}
	return strings.TrimSpace(string(b)), nil
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
