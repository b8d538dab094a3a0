package mesos_test

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	brokermesos "github.com/k8sm/k8sm/broker/mesos"
	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/master"
	"github.com/k8sm/k8sm/pkg/certfiles/certfilestest"
)

// TestFrameworkAuthentication: against a master that authenticates HTTP
// frameworks (as --authenticate_http_frameworks does), the client without
// a secret and with a wrong one is refused (401) and never subscribes,
// saying which flags to check; with the right secret it subscribes, and
// its later calls (ACKNOWLEDGE, DECLINE, …) are authenticated too.
func TestFrameworkAuthentication(t *testing.T) {
	s := startSim(t, mesossim.Config{Master: master.Config{Credentials: map[string]string{"k8sm": "right"}}})
	for name, secret := range map[string]string{"no secret": "", "wrong secret": "wrong"} {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			fw := framework()
			fw.Principal = strPtr("k8sm")
			r, _ := runClient(t, ctx, brokermesos.Config{Detector: brokermesos.StaticMaster(s.MasterURL()), Framework: fw, Secret: secret,
				MinBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
			err := waitLastError(t, ctx, r.c)
			if !strings.Contains(err.Error(), "Mesos refused the framework's credentials") || !strings.Contains(err.Error(), "--secret-file") {
				t.Errorf("refused subscription says %q; want it to name the credentials and --secret-file", err)
			}
			if n := r.c.Subscriptions(); n != 0 {
				t.Errorf("%d subscriptions with a refused secret", n)
			}
			if fws := s.Leader().State()["frameworks"].([]map[string]any); len(fws) != 0 {
				t.Errorf("master registered %d frameworks for a refused client", len(fws))
			}
		})
	}
	t.Run("right secret", func(t *testing.T) {
		ctx := testCtx(t)
		fw := framework()
		fw.Principal = strPtr("k8sm")
		r, _ := runClient(t, ctx, brokermesos.Config{Detector: brokermesos.StaticMaster(s.MasterURL()), Framework: fw, Secret: "right"})
		r.rec.next(t, ctx, scheduler.Event_SUBSCRIBED)
		offers := r.rec.next(t, ctx, scheduler.Event_OFFERS).GetOffers().Offers
		// A call after SUBSCRIBE: the master answers 401 to one without credentials.
		if err := r.c.Call(ctx, &scheduler.Call{Type: scheduler.Call_DECLINE, Decline: &scheduler.Call_Decline{OfferIDs: offerIDs(offers)}}); err != nil {
			t.Fatalf("DECLINE on an authenticated subscription: %v", err)
		}
		if err := r.c.LastError(); err != nil {
			t.Errorf("LastError while subscribed: %v", err)
		}
	})
}

// TestTLSMaster: an https master is reached with the CA given in
// Config.TLS, and a ZooKeeper-style http:// address is turned into https
// by brokermesos.HTTPS.
func TestTLSMaster(t *testing.T) {
	serverTLS, pool := certfilestest.NewCA(t, "mesos-ca").ServerTLS(t)
	s := startSim(t, mesossim.Config{Master: master.Config{TLS: serverTLS}})
	plain := brokermesos.StaticMaster("http://" + strings.TrimPrefix(s.MasterURL(), "https://"))

	ctx := testCtx(t)
	r, _ := runClient(t, ctx, brokermesos.Config{Detector: brokermesos.HTTPS{Detector: plain}, Framework: framework(), TLS: &tls.Config{RootCAs: pool}})
	r.rec.next(t, ctx, scheduler.Event_SUBSCRIBED)

	// Without the CA the master's certificate is refused.
	other, _ := runClient(t, ctx, brokermesos.Config{Detector: brokermesos.HTTPS{Detector: plain}, Framework: framework(),
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err := waitLastError(t, ctx, other.c); !strings.Contains(err.Error(), "certificate") {
		t.Errorf("subscribing without the master's CA: %v, want a certificate error", err)
	}
}

func waitLastError(t *testing.T, ctx context.Context, c *brokermesos.Client) error {
	t.Helper()
	for {
		if err := c.LastError(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			t.Fatal("no subscription attempt failed")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func strPtr(s string) *string { return &s }

func offerIDs(offers []mesos.Offer) []mesos.OfferID {
	ids := make([]mesos.OfferID, 0, len(offers))
	for _, o := range offers {
		ids = append(ids, o.ID)
	}
	return ids
}
