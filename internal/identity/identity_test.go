package identity

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// cloud is a fake instance metadata service of one provider. It answers
// its own provider's URLs only with the exact query and headers upstream
// sends (a wrong one fails the test), 404s every other path, and records
// what it was asked.
type cloud struct {
	t        *testing.T
	provider Provider
	answers  map[string]string // path -> body; a missing own path answers 404
	status   map[string]int    // path -> status other than 200
	slow     map[string]bool   // path -> block until the client gives up
	imdsv2   bool              // AWS: refuse requests without a session token (401)

	mu   sync.Mutex
	seen []string
}

func (c *cloud) serve(t *testing.T) *httptest.Server {
	t.Helper()
	c.t = t
	srv := httptest.NewServer(http.HandlerFunc(c.handle))
	t.Cleanup(srv.Close)
	return srv
}

func (c *cloud) requests() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.seen...)
}

// own reports whether path belongs to this provider's service, and checks
// the request's query and headers against upstream's.
func (c *cloud) own(r *http.Request) bool {
	p := r.URL.Path
	switch c.provider {
	case AWS:
		if !strings.HasPrefix(p, "/latest/") {
			return false
		}
		if r.URL.RawQuery != "" {
			c.t.Errorf("aws %s: unexpected query %q", p, r.URL.RawQuery)
		}
	case Azure:
		if !strings.HasPrefix(p, "/metadata/") {
			return false
		}
		if r.URL.RawQuery != "api-version=2021-02-01" {
			c.t.Errorf("azure %s: query %q, want api-version=2021-02-01", p, r.URL.RawQuery)
		}
		if got := r.Header.Values("Metadata"); len(got) != 1 || got[0] != "true" {
			c.t.Errorf("azure %s: Metadata header %q, want [true]", p, got)
		}
	case GCP:
		if !strings.HasPrefix(p, "/computeMetadata/") {
			return false
		}
		if got := r.Header.Values("Metadata-Flavor"); len(got) != 1 || got[0] != "Google" {
			c.t.Errorf("gcp %s: Metadata-Flavor header %q, want [Google]", p, got)
		}
	}
	if r.Method != http.MethodGet {
		c.t.Errorf("%s %s: method %s, want GET", c.provider, p, r.Method)
	}
	return true
}

func (c *cloud) handle(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.seen = append(c.seen, r.URL.RequestURI())
	c.mu.Unlock()
	if !c.own(r) {
		http.NotFound(w, r)
		return
	}
	p := r.URL.Path
	if c.imdsv2 && r.Header.Get("X-Aws-Ec2-Metadata-Token") == "" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if c.slow[p] {
		<-r.Context().Done()
		return
	}
	if st, ok := c.status[p]; ok {
		w.WriteHeader(st)
		return
	}
	body, ok := c.answers[p]
	if !ok {
		http.NotFound(w, r)
		return
	}
	_, _ = w.Write([]byte(body))
}

const (
	awsListing = "ami-id\nami-launch-index\nhostname\ninstance-id\ninstance-type\nlocal-ipv4\n"
	azureVMID  = "02aab8a4-74ef-476e-8182-f6d2ba4166a6"
	azureFull  = `{"compute":{"name":"bai-vm-01","vmId":"` + azureVMID + `","vmSize":"Standard_NC6"},"network":{}}`
	azureShort = `{"name":"bai-vm-01","vmId":"` + azureVMID + `"}`
	gcpID      = "4520031799277581759"
)

func awsCloud() *cloud {
	return &cloud{provider: AWS, answers: map[string]string{
		"/latest/meta-data/":            awsListing,
		"/latest/meta-data/instance-id": "i-0123456789abcdef0\n",
	}}
}

func azureCloud() *cloud {
	return &cloud{provider: Azure, answers: map[string]string{
		"/metadata/instance/compute": azureShort,
		"/metadata/instance":         azureFull,
	}}
}

func gcpCloud() *cloud {
	return &cloud{provider: GCP, answers: map[string]string{
		"/computeMetadata/v1/instance/id":   gcpID,
		"/computeMetadata/v1/instance/name": "gpu-node-3",
	}}
}

func with(c *cloud, f func(*cloud)) *cloud { f(c); return c }

func testHost() (string, error) { return "testhost", nil }

// The expected ids come from upstream's own formulas, computed with
// Debian's python3:
//
//	base64.b32encode(uuid.UUID("02aab8a4-...-f6d2ba4166a6").bytes[-5:]).decode().lower() == "2k5eczvg"
//	base64.b32encode((4520031799277581759).to_bytes(8, "big")[-5:]).decode().lower() == "7euwr5n7"
//	base64.b32encode((2**64-1).to_bytes(8, "big")[-5:]).decode().lower() == "77777777"
func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cloud    *cloud // nil: nothing listens at the metadata URL
		disabled bool
		wantID   string
		wantSrc  Source
		wantProv Provider
		wantAsk  []string // requests the service must have seen (subset)
	}{
		{name: "aws", cloud: awsCloud(), wantID: "i-0123456789abcdef0", wantSrc: SourceAWS, wantProv: AWS,
			wantAsk: []string{"/latest/meta-data/", "/latest/meta-data/instance-id"}},
		{name: "azure", cloud: azureCloud(), wantID: "i-bai-vm-01-2k5eczvg", wantSrc: SourceAzure, wantProv: Azure,
			wantAsk: []string{"/metadata/instance/compute?api-version=2021-02-01", "/metadata/instance?api-version=2021-02-01"}},
		{name: "azure vmId in braces, upper case", cloud: with(azureCloud(), func(c *cloud) {
			c.answers["/metadata/instance"] = `{"compute":{"name":"bai-vm-01","vmId":"{02AAB8A4-74EF-476E-8182-F6D2BA4166A6}"}}`
		}), wantID: "i-bai-vm-01-2k5eczvg", wantSrc: SourceAzure, wantProv: Azure},
		{name: "gcp", cloud: gcpCloud(), wantID: "i-gpu-node-3-7euwr5n7", wantSrc: SourceGCP, wantProv: GCP,
			wantAsk: []string{"/computeMetadata/v1/instance/id", "/computeMetadata/v1/instance/name"}},
		{name: "gcp largest id", cloud: with(gcpCloud(), func(c *cloud) {
			c.answers["/computeMetadata/v1/instance/id"] = "18446744073709551615"
		}), wantID: "i-gpu-node-3-77777777", wantSrc: SourceGCP, wantProv: GCP},
		{name: "none answering", cloud: &cloud{provider: "none"}, wantID: "i-testhost", wantSrc: SourceHostname,
			wantAsk: []string{"/latest/meta-data/", "/metadata/instance/compute?api-version=2021-02-01", "/computeMetadata/v1/instance/id"}},
		{name: "nothing listening", wantID: "i-testhost", wantSrc: SourceHostname},
		{name: "disabled", cloud: awsCloud(), disabled: true, wantID: "i-testhost", wantSrc: SourceHostname},
		// Upstream asks without a session token: an IMDSv2-only instance
		// is not detected, and its id is the host name's. So is ours.
		{name: "aws requiring imdsv2", cloud: with(awsCloud(), func(c *cloud) { c.imdsv2 = true }), wantID: "i-testhost", wantSrc: SourceHostname},
		{name: "aws listing without instance-id", cloud: with(awsCloud(), func(c *cloud) { c.answers["/latest/meta-data/"] = "ami-id\n" }),
			wantID: "i-testhost", wantSrc: SourceHostname},
		{name: "aws instance-id failing", cloud: with(awsCloud(), func(c *cloud) { c.status = map[string]int{"/latest/meta-data/instance-id": 500} }),
			wantID: "i-testhost", wantSrc: SourceHostname, wantProv: AWS},
		{name: "aws instance-id empty", cloud: with(awsCloud(), func(c *cloud) { c.answers["/latest/meta-data/instance-id"] = " \n" }),
			wantID: "i-testhost", wantSrc: SourceHostname, wantProv: AWS},
		{name: "azure without vmId", cloud: with(azureCloud(), func(c *cloud) { c.answers["/metadata/instance/compute"] = `{"name":"x"}` }),
			wantID: "i-testhost", wantSrc: SourceHostname},
		{name: "azure bad vmId", cloud: with(azureCloud(), func(c *cloud) {
			c.answers["/metadata/instance"] = `{"compute":{"name":"bai-vm-01","vmId":"not-a-uuid"}}`
		}), wantID: "i-testhost", wantSrc: SourceHostname, wantProv: Azure},
		{name: "azure not json", cloud: with(azureCloud(), func(c *cloud) { c.answers["/metadata/instance"] = "<html>" }),
			wantID: "i-testhost", wantSrc: SourceHostname, wantProv: Azure},
		{name: "gcp id not a number", cloud: with(gcpCloud(), func(c *cloud) { c.answers["/computeMetadata/v1/instance/id"] = "abc" }),
			wantID: "i-testhost", wantSrc: SourceHostname},
		{name: "gcp without name", cloud: with(gcpCloud(), func(c *cloud) { delete(c.answers, "/computeMetadata/v1/instance/name") }),
			wantID: "i-testhost", wantSrc: SourceHostname, wantProv: GCP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := "http://127.0.0.1:1" // nothing listens on port 1
			if tc.cloud != nil {
				url = tc.cloud.serve(t).URL
			}
			res, err := Detect(context.Background(), Options{MetadataURL: url, Disabled: tc.disabled, Hostname: testHost})
			if err != nil {
				t.Fatal(err)
			}
			if res.ID != tc.wantID || res.Source != tc.wantSrc || res.Provider != tc.wantProv {
				t.Fatalf("got id %q source %q provider %q (reason %q, probes %v); want %q %q %q",
					res.ID, res.Source, res.Provider, res.Reason, res.Probes, tc.wantID, tc.wantSrc, tc.wantProv)
			}
			if (res.Source == SourceHostname) != (res.Reason != "") {
				t.Fatalf("source %s with reason %q", res.Source, res.Reason)
			}
			if tc.cloud == nil {
				return
			}
			seen := tc.cloud.requests()
			if tc.disabled && len(seen) > 0 {
				t.Fatalf("disabled detection asked %v", seen)
			}
			for _, want := range tc.wantAsk {
				found := false
				for _, s := range seen {
					found = found || s == want
				}
				if !found {
					t.Errorf("service was not asked %s; it saw %v", want, seen)
				}
			}
		})
	}
}

// TestDetectDeadlines: a metadata address that accepts connections and
// never answers costs no more than the detection deadline, and a cloud
// that is detected but hangs on the id request costs no more than the
// fetch deadline; both end with the host name.
func TestDetectDeadlines(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cloud  *cloud
		opts   Options
		budget time.Duration // generous upper bound of the whole call
		prov   Provider
	}{
		{name: "every probe hangs", cloud: &cloud{provider: AWS, slow: map[string]bool{"/latest/meta-data/": true}},
			opts: Options{DetectTimeout: 200 * time.Millisecond}, budget: time.Second},
		{name: "instance-id hangs", cloud: with(awsCloud(), func(c *cloud) { c.slow = map[string]bool{"/latest/meta-data/instance-id": true} }),
			opts: Options{FetchTimeout: 200 * time.Millisecond}, budget: time.Second, prov: AWS},
		{name: "gcp name hangs", cloud: with(gcpCloud(), func(c *cloud) { c.slow = map[string]bool{"/computeMetadata/v1/instance/name": true} }),
			opts: Options{FetchTimeout: 200 * time.Millisecond}, budget: time.Second, prov: GCP},
		// The defaults (upstream's 1 s for detection) bound a hanging
		// service too.
		{name: "defaults", cloud: &cloud{provider: AWS, slow: map[string]bool{"/latest/meta-data/": true}},
			budget: DefaultDetectTimeout + time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			o.MetadataURL, o.Hostname = tc.cloud.serve(t).URL, testHost
			t0 := time.Now()
			res, err := Detect(context.Background(), o)
			took := time.Since(t0)
			if err != nil {
				t.Fatal(err)
			}
			if res.ID != "i-testhost" || res.Provider != tc.prov {
				t.Fatalf("got %+v", res)
			}
			if took > testutil.Slow(tc.budget) {
				t.Fatalf("took %s, over %s", took, tc.budget)
			}
			if !strings.Contains(res.Reason+errString(res.Probes[AWS]), "deadline") {
				t.Fatalf("reason %q / probes %v do not name the deadline", res.Reason, res.Probes)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestDetectCallerContext: the caller's cancellation ends detection at
// once.
func TestDetectCallerContext(t *testing.T) {
	c := &cloud{provider: AWS, slow: map[string]bool{"/latest/meta-data/": true}}
	url := c.serve(t).URL
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	res, err := Detect(ctx, Options{MetadataURL: url, Hostname: testHost, DetectTimeout: 10 * time.Second})
	if err != nil || res.Source != SourceHostname {
		t.Fatalf("%+v %v", res, err)
	}
	if took := time.Since(t0); took > testutil.Slow(2*time.Second) {
		t.Fatalf("took %s", took)
	}
}

func TestDetectHostnameError(t *testing.T) {
	boom := errors.New("boom")
	_, err := Detect(context.Background(), Options{Disabled: true, Hostname: func() (string, error) { return "", boom }})
	if !errors.Is(err, boom) {
		t.Fatalf("err %v, want it to wrap %v", err, boom)
	}
	_, err = Detect(context.Background(), Options{Disabled: true, Hostname: func() (string, error) { return "", nil }})
	if err == nil {
		t.Fatal("an empty host name gave an id")
	}
}
