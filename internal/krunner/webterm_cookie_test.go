package krunner

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"
)

// The web terminal never leaves its token in a cookie. Cookies are not
// scoped by port (RFC 6265 §8.5) and SameSite=Strict counts HOST:OTHER as
// the same site, so a browser would send such a cookie to every other
// port of the host: other kernels' service ports (jupyter, tensorboard,
// the image's own apps, run by other users, without credentials of their
// own) or, behind a port-mode app proxy, every other app on the proxy's
// host, whose owner could then open a shell in this kernel. A browser
// (a cookie jar) opens the terminal the old way (/?token=) and the new
// one (/#token=, the page then asks /token with a bearer token); another
// service on another port of the same host then receives no token.
func TestWebTermTokenNotInCookie(t *testing.T) {
	a := startRunner(t, "shell")
	port := a.r.o.TermPorts[0]
	body, _ := json.Marshal(map[string]any{"name": "ttyd", "port": port, "ports": []int{port}, "protocol": "http", "options": map[string]any{}})
	a.send("start-service", string(body))
	if _, rec := a.until("service-result"); !strings.Contains(rec.data, `"running"`) {
		t.Fatalf("start ttyd: %s", rec.data)
	}
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for _, step := range []struct {
		path, bearer string
	}{
		{"/?token=" + testTermToken, ""},
		{"/xterm.js?token=" + testTermToken, ""},
		{"/xterm.css", ""},
		{"/", ""},
		{"/token?token=" + testTermToken, ""},
		{"/token", testTermToken},
	} {
		req, _ := http.NewRequest("GET", base+step.path, nil)
		if step.bearer != "" {
			req.Header.Set("Authorization", "Bearer "+step.bearer)
		}
		resp, err := browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %d", step.path, resp.StatusCode)
		}
		for _, c := range resp.Cookies() {
			t.Errorf("GET %s sets cookie %q (Path=%q, Domain=%q): the browser sends it to every port of the host", step.path, c.Name, c.Path, c.Domain)
		}
	}
	// Another user's service on another port of the same host.
	var got []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		got = append(got, req.Header.Values("Cookie")...)
	}))
	defer other.Close()
	resp, err := browser.Get(other.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, c := range got {
		if strings.Contains(c, testTermToken) {
			t.Errorf("a service on another port of the host received the terminal's token: Cookie: %s", c)
		}
	}
}
