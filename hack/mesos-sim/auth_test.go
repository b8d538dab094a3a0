package mesossim_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/simtest"
	"github.com/k8sm/k8sm/hack/mesos-sim/wire"
	"github.com/k8sm/k8sm/pkg/certfiles/certfilestest"
)

// rawSubscribe posts SUBSCRIBE with the given Authorization header (none
// when empty) and returns the response, body unread.
func rawSubscribe(t *testing.T, ctx context.Context, cli *http.Client, url, ct, authorization string, info mesos.FrameworkInfo) *http.Response {
	t.Helper()
	b, err := wire.Encode(ct, &scheduler.Call{Type: scheduler.Call_SUBSCRIBE, Subscribe: &scheduler.Call_Subscribe{FrameworkInfo: &info}})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/api/v1/scheduler", bytes.NewReader(b))
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Accept", ct)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := cli.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestFrameworkAuthentication: with --authenticate_http_frameworks the
// scheduler API answers as Mesos 1.11's does (libprocess' basic
// authenticator, then validation::scheduler::call::validate).
func TestFrameworkAuthentication(t *testing.T) {
	mc := fastMaster()
	mc.Credentials = map[string]string{"k8sm": "s3cret", "other": "pw"}
	sim := startSim(t, mesossim.Config{Master: mc})
	url := sim.MasterURL()
	for _, ct := range encodings {
		t.Run(ct, func(t *testing.T) {
			ctx := testCtx(t)
			info := fwInfo("auth")
			info.Principal = strPtr("k8sm")
			basic := func(principal, secret string) string {
				req, _ := http.NewRequest(http.MethodGet, "/", nil)
				req.SetBasicAuth(principal, secret)
				return req.Header.Get("Authorization")
			}
			for name, authz := range map[string]string{
				"no credentials":    "",
				"wrong secret":      basic("k8sm", "guess"),
				"unknown principal": basic("nobody", "s3cret"),
				"not basic":         "Bearer s3cret",
				"secret with colon": basic("k8sm", "s3cret:"),
			} {
				resp := rawSubscribe(t, ctx, http.DefaultClient, url, ct, authz, info)
				var body []byte
				if resp.StatusCode != http.StatusOK { // a subscription's body never ends
					body, _ = io.ReadAll(resp.Body)
				}
				if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != `Basic realm="mesos-master-scheduler"` || len(body) != 0 {
					t.Errorf("%s: status %d, WWW-Authenticate %q, body %q; want 401 with the realm's challenge and no body",
						name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
				}
			}

			// Authenticated as another principal than FrameworkInfo's: 400.
			resp := rawSubscribe(t, ctx, http.DefaultClient, url, ct, basic("other", "pw"), info)
			body, _ := io.ReadAll(resp.Body)
			if want := "Failed to validate scheduler::Call: Authenticated principal 'other' does not match principal 'k8sm' set in `FrameworkInfo`"; resp.StatusCode != http.StatusBadRequest || string(body) != want {
				t.Errorf("principal mismatch: status %d %q, want 400 %q", resp.StatusCode, body, want)
			}

			s, err := simtest.Conn{Principal: "k8sm", Secret: "s3cret"}.Subscribe(ctx, url, ct, info)
			if err != nil {
				t.Fatalf("right principal and secret: %v", err)
			}
			t.Cleanup(s.Close)
			// A call of this framework authenticated as another principal.
			call := &scheduler.Call{Type: scheduler.Call_REVIVE, FrameworkID: &mesos.FrameworkID{Value: s.FrameworkID}}
			code, msg, err := simtest.Conn{Principal: "other", Secret: "pw"}.Post(ctx, url, ct, s.StreamID, call)
			if err != nil {
				t.Fatal(err)
			}
			if want := "Authenticated principal 'other' does not match principal 'k8sm' set in `FrameworkInfo`"; code != http.StatusBadRequest || msg != want {
				t.Errorf("call as another principal: %d %q, want 400 %q", code, msg, want)
			}
			if code, msg, err := simtest.Post(ctx, url, ct, s.StreamID, call); err != nil || code != http.StatusUnauthorized {
				t.Errorf("unauthenticated call: %d %q %v, want 401", code, msg, err)
			}
			if err := s.MustAccept(ctx, call); err != nil {
				t.Errorf("authenticated call: %v", err)
			}

			// Authenticated without a principal in FrameworkInfo: the master
			// fills in the authenticated one.
			anon := fwInfo("auth-anon")
			s2, err := simtest.Conn{Principal: "other", Secret: "pw"}.Subscribe(ctx, url, ct, anon)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s2.Close)
			fws := getState(t, ctx, url+"/master/frameworks")["frameworks"].([]any)
			found := false
			for _, f := range fws {
				f := f.(map[string]any)
				if f["id"] == s2.FrameworkID {
					found = true
					if f["principal"] != "other" {
						t.Errorf("framework subscribed as 'other' without a principal shows principal %v", f["principal"])
					}
				}
			}
			if !found {
				t.Errorf("framework %s not in /master/frameworks", s2.FrameworkID)
			}
		})
	}
	// Other endpoints are in other realms, which are not authenticated here.
	getState(t, testCtx(t), url+"/master/state")
}

// TestTLSMaster: with LIBPROCESS_SSL_ENABLED the master serves https only.
func TestTLSMaster(t *testing.T) {
	serverTLS, pool := certfilestest.NewCA(t, "mesos-ca").ServerTLS(t)
	mc := fastMaster()
	mc.TLS = serverTLS
	sim := startSim(t, mesossim.Config{Master: mc})
	url := sim.MasterURL()
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("MasterURL %q of a TLS master", url)
	}
	ctx := testCtx(t)
	cli := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	s, err := simtest.Conn{Client: cli}.Subscribe(ctx, url, wire.JSON, fwInfo("tls"))
	if err != nil {
		t.Fatalf("subscribing over https with the CA: %v", err)
	}
	s.Close()
	if _, err := simtest.Subscribe(ctx, url, wire.JSON, fwInfo("untrusted")); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("subscribing without trusting the CA: %v, want a certificate error", err)
	}
	if _, err := simtest.Subscribe(ctx, "http://"+strings.TrimPrefix(url, "https://"), wire.JSON, fwInfo("plain")); err == nil {
		t.Error("plain http reached a TLS master")
	}

	// With LIBPROCESS_SSL_SUPPORT_DOWNGRADE one port serves both.
	mc.TLSDowngrade = true
	both := startSim(t, mesossim.Config{Master: mc})
	s, err = simtest.Conn{Client: cli}.Subscribe(ctx, both.MasterURL(), wire.Protobuf, fwInfo("tls"))
	if err != nil {
		t.Fatalf("https on a downgrading master: %v", err)
	}
	s.Close()
	s, err = simtest.Subscribe(ctx, "http://"+strings.TrimPrefix(both.MasterURL(), "https://"), wire.Protobuf, fwInfo("plain"))
	if err != nil {
		t.Fatalf("plain http on a downgrading master: %v", err)
	}
	s.Close()
}

func strPtr(s string) *string { return &s }
