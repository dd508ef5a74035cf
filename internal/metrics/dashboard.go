package metrics

import (
	"encoding/json"
	"regexp"
	"sort"
	"strings"
)

var metricRef = regexp.MustCompile(`\bbackendai_[a-zA-Z0-9_]+`)

// DashboardMetrics returns the backendai_* metric names a Grafana
// dashboard's queries use (every "expr" and templating "query" string,
// at any depth), sorted. It checks docs/grafana-dashboard.json against
// what the agent exports.
func DashboardMetrics(dashboard []byte) ([]string, error) {
	var doc any
	if err := json.Unmarshal(dashboard, &doc); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if s, ok := e.(string); ok && (k == "expr" || k == "query") {
					for _, m := range metricRef.FindAllString(s, -1) {
						seen[m] = true
					}
					continue
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(doc)
	out := make([]string, 0, len(seen))
	for m := range seen {
		out = append(out, m)
	}
	sort.Strings(out)
	return out, nil
}

// ExposedNames returns the sample names a text-format scrape offers:
// those of its samples and, for families without series yet, those their
// # TYPE line promises (a histogram's _bucket, _sum and _count).
func ExposedNames(scrape string) map[string]bool {
	names := map[string]bool{}
	for _, line := range strings.Split(scrape, "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			f := strings.Fields(rest)
			if len(f) != 2 {
				continue
			}
			names[f[0]] = true
			if f[1] == "histogram" {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					names[f[0]+s] = true
				}
			}
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}
