// Package mesos is the broker's connection to the Mesos master over the v1
// scheduler HTTP API: it finds the leading master, subscribes (re-using the
// stored FrameworkID), watches heartbeats, re-subscribes with backoff,
// hands every event to a Handler in order and acknowledges status updates
// once the Handler is done with them.
package mesos

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/encoding"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/apierrors"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/httpsched"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/broker/mesos/eventstream"
	"github.com/k8sm/k8sm/broker/metrics"
)

// Detector finds the leading master.
type Detector interface {
	// Master blocks until a master leads and returns its base URL
	// (http://host:port) and a channel that is closed when the leader
	// changes (nil when it never does).
	Master(ctx context.Context) (url string, changed <-chan struct{}, err error)
}

// StaticMaster is a Detector for --master=http://host:port. Several masters
// behind one address still work: the client follows their 307 redirects.
type StaticMaster string

// Master implements Detector.
func (s StaticMaster) Master(context.Context) (string, <-chan struct{}, error) {
	return strings.TrimRight(string(s), "/"), nil, nil
}

// HTTPS reaches the masters its Detector finds over https: a MasterInfo in
// ZooKeeper names no scheme, and masters built with libprocess SSL serve
// https only.
type HTTPS struct{ Detector }

// Master implements Detector.
func (h HTTPS) Master(ctx context.Context) (string, <-chan struct{}, error) {
	u, changed, err := h.Detector.Master(ctx)
	if err != nil {
		return "", nil, err
	}
	return "https://" + strings.TrimPrefix(u, "http://"), changed, nil
}

// IDStore keeps the FrameworkID across broker restarts.
type IDStore interface {
	Get(ctx context.Context) (string, error)
	Set(ctx context.Context, id string) error
}

// MemoryIDStore is an IDStore for tests and single-process use.
type MemoryIDStore struct {
	mu sync.Mutex
	id string
}

// Get implements IDStore.
func (m *MemoryIDStore) Get(context.Context) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.id, nil
}

// Set implements IDStore.
func (m *MemoryIDStore) Set(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.id = id
	return nil
}

// Handler consumes the events of a subscription, one at a time, in order.
type Handler interface {
	// HandleEvent handles one event. SUBSCRIBED comes first on every
	// (re)subscription. For an UPDATE carrying a uuid, a nil error lets the
	// client ACKNOWLEDGE it; an error leaves it unacknowledged so that Mesos
	// sends it again.
	HandleEvent(ctx context.Context, ev *scheduler.Event) error
	// Disconnected is called when a subscription ends: offers of the old
	// subscription are void.
	Disconnected(ctx context.Context)
}

// OffersHandler is a Handler that takes the offers of an OFFERS event one
// at a time, as they are decoded from the stream: the client then never
// holds a whole decoded OFFERS event (~13 MiB at 10,000 agents, for ~3 MiB
// on the wire) besides what the handler keeps of it.
type OffersHandler interface {
	Handler
	// NewOfferBatch is called at the first offer of an event.
	NewOfferBatch() OfferBatch
}

// OfferBatch takes the offers of one OFFERS event.
type OfferBatch interface {
	// Offer is called for each offer as it is decoded, off the event loop
	// (the loop handles nothing meanwhile). It must change no state but the
	// batch's: the rest of the event may turn out malformed, and then the
	// batch is dropped without Commit.
	Offer(o *mesos.Offer)
	// Commit is called on the event loop once the whole event was read, in
	// place of HandleEvent; ev is the event without its offers.
	Commit(ctx context.Context, ev *scheduler.Event)
}

// StatusObserver is a Handler that also sees each task status on the event
// loop, in the order of the stream, before the UPDATE is queued for
// HandleEvent (which runs on status workers, one task's updates in order but
// different tasks' in any). What must follow the stream's order across
// tasks — where tasks run, and that the answers of a reconciliation arrived
// before a later call's — is kept here. It must not block.
type StatusObserver interface {
	ObserveStatus(ctx context.Context, st *mesos.TaskStatus)
}

// Caller makes calls on the current subscription; the handler, the offer
// declines and the launcher share it.
type Caller interface {
	// Call sends c with the framework id set. It fails with ErrNotSubscribed
	// while no subscription is up.
	Call(ctx context.Context, c *scheduler.Call) error
}

// ErrNotSubscribed is returned by Call between subscriptions.
var ErrNotSubscribed = errors.New("not subscribed to a Mesos master")

// ErrFailedOver means another scheduler subscribed with this framework's id
// and the master dropped this one ("Framework failed over"): another broker
// leads. Run returns it instead of subscribing again, which would take the
// framework back and make the two brokers fail each other over in turn.
var ErrFailedOver = errors.New("another scheduler took over the framework")

// Config of the client.
type Config struct {
	Detector Detector
	// Framework is what SUBSCRIBE sends; its ID is taken from Store.
	Framework mesos.FrameworkInfo
	Store     IDStore
	// Secret authenticates Framework.Principal with HTTP basic auth.
	Secret string
	// TLS verifies https masters (nil: the system's roots).
	TLS *tls.Config
	// MediaType of the event stream and calls: application/x-protobuf
	// (default) or application/json.
	MediaType string
	// MissedHeartbeats is how many heartbeat intervals may pass without any
	// event before the connection is considered dead (default 3).
	MissedHeartbeats int
	// MinBackoff and MaxBackoff bound the wait between subscription attempts
	// (default 500ms and 30s).
	MinBackoff, MaxBackoff time.Duration
	// CallTimeout bounds every call but SUBSCRIBE (default 10s).
	CallTimeout time.Duration
	// StatusTimeout bounds the handling of one UPDATE (default 30s): its
	// API writes must end, or the update waits for Mesos to send it again.
	StatusTimeout time.Duration
	// StatusWorkers handle UPDATEs concurrently, each task's in order
	// (default 4).
	StatusWorkers int
}

// Client is a Mesos scheduler connection. Create it with New, then Run.
type Client struct {
	cfg   Config
	codec encoding.Codec

	mu       sync.Mutex
	caller   calls.Caller
	fwID     string
	master   string
	subCount int
	lastErr  error
}

// New validates cfg.
func New(cfg Config) (*Client, error) {
	if cfg.Detector == nil {
		return nil, errors.New("mesos client: no master detector")
	}
	if cfg.Store == nil {
		cfg.Store = &MemoryIDStore{}
	}
	if cfg.MediaType == "" {
		cfg.MediaType = string(codecs.MediaTypeProtobuf)
	}
	codec, ok := codecs.ByMediaType[encoding.MediaType(cfg.MediaType)]
	if !ok {
		return nil, fmt.Errorf("mesos client: unsupported media type %q (application/x-protobuf or application/json)", cfg.MediaType)
	}
	if cfg.MissedHeartbeats <= 0 {
		cfg.MissedHeartbeats = 3
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 500 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 10 * time.Second
	}
	if cfg.StatusTimeout <= 0 {
		cfg.StatusTimeout = 30 * time.Second
	}
	if cfg.StatusWorkers <= 0 {
		cfg.StatusWorkers = 4
	}
	return &Client{cfg: cfg, codec: codec}, nil
}

// FrameworkID is the id of the current (or last) subscription.
func (c *Client) FrameworkID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fwID
}

// Subscriptions is the number of successful subscriptions so far.
func (c *Client) Subscriptions() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.subCount
}

// LastError is why the last subscription attempt failed or ended (nil
// while subscribed, or before the first attempt).
func (c *Client) LastError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

func (c *Client) setLastError(err error) {
	c.mu.Lock()
	c.lastErr = err
	c.mu.Unlock()
}

// Call implements Caller.
func (c *Client) Call(ctx context.Context, call *scheduler.Call) error {
	c.mu.Lock()
	caller, id := c.caller, c.fwID
	c.mu.Unlock()
	if caller == nil {
		return fmt.Errorf("%s: %w", call.Type, ErrNotSubscribed)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	resp, err := caller.Call(ctx, call.With(calls.Framework(id)))
	if resp != nil {
		_ = resp.Close()
	}
	if err != nil {
		return fmt.Errorf("%s call: %w", call.Type, err)
	}
	return nil
}

// Run keeps a subscription up until ctx ends, or returns ErrFailedOver when
// another scheduler took the framework over.
func (c *Client) Run(ctx context.Context, h Handler) error {
	logger := klog.FromContext(ctx)
	backoff := c.backoff()
	for ctx.Err() == nil {
		master, changed, err := c.cfg.Detector.Master(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			logger.Error(err, "Detecting the leading Mesos master")
		} else {
			subscribed, err := c.subscribeOnce(ctx, master, changed, h)
			c.setLastError(err)
			if subscribed {
				backoff = c.backoff()
			}
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, ErrFailedOver) {
				logger.Info("Another scheduler took over the framework: stepping down", "master", master, "err", err)
				return err
			}
			logger.Info("Mesos subscription ended; subscribing again", "master", master, "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff.Step()):
		}
	}
	return ctx.Err()
}

// backoff between subscription attempts: from MinBackoff, doubling up to
// MaxBackoff, each wait drawn from the upper half of the step (jitter keeps
// a fleet of frameworks from stampeding a new master).
func (c *Client) backoff() wait.Backoff {
	return wait.Backoff{Duration: c.cfg.MinBackoff / 2, Factor: 2, Jitter: 1, Cap: c.cfg.MaxBackoff / 2, Steps: math.MaxInt32}
}

func (c *Client) newCaller(endpoint string, stream *atomic.Pointer[http.Response]) calls.Caller {
	// Without a candidate, httpsched returns every error but a redirect
	// as it is. Its default retries the same endpoint for any error (up to
	// 9 times over a minute) and reports a failed non-SUBSCRIBE call as a
	// success: a refused secret, an untrusted certificate or a 400 would
	// show only as "no answer to SUBSCRIBE" and calls would fail silently.
	// Run's own backoff retries subscriptions.
	noCandidate := httpsched.EndpointCandidates(func() string { return "" })
	return httpsched.NewCaller(c.httpClient(endpoint+"/api/v1/scheduler", stream), httpsched.AllowReconnection(true), noCandidate)
}

// idleCalls is how many idle connections to the master the client keeps
// for its calls (Go's default is 2). The broker's calls overlap: an
// ACKNOWLEDGE per status from several status workers, an ACCEPT per agent a
// batch flushes, DECLINEs, REVIVEs. With 2 idle connections every call
// beyond the second opened a connection of its own (and over https paid a
// TLS handshake on both sides) and closed it after one call.
const idleCalls = 64

// httpClient calls one API of the master as the framework's principal,
// over the configured TLS. The response that opens an event stream (a 200
// with a Mesos-Stream-Id) is kept in stream, when not nil: the client reads
// the stream itself (eventstream), not through mesos-go's decoder.
func (c *Client) httpClient(url string, stream *atomic.Pointer[http.Response]) *httpcli.Client {
	do := []httpcli.ConfigOpt{httpcli.Transport(func(t *http.Transport) {
		t.MaxIdleConns = idleCalls
		t.MaxIdleConnsPerHost = idleCalls
		t.IdleConnTimeout = 90 * time.Second
	})}
	if p := c.cfg.Framework.GetPrincipal(); p != "" && c.cfg.Secret != "" {
		do = append(do, httpcli.BasicAuth(p, c.cfg.Secret))
	}
	if c.cfg.TLS != nil {
		do = append(do, httpcli.TLSConfig(c.cfg.TLS.Clone()))
	}
	doer := httpcli.With(do...)
	if stream != nil {
		next := doer
		doer = func(req *http.Request) (*http.Response, error) {
			res, err := next(req)
			if err == nil && res.StatusCode == http.StatusOK && res.Header.Get("Mesos-Stream-Id") != "" {
				stream.Store(res)
			}
			return res, err
		}
	}
	return httpcli.New(httpcli.Endpoint(url), httpcli.Codec(c.codec), httpcli.Do(doer))
}

// subscribeOnce runs one subscription; subscribed reports whether SUBSCRIBED arrived.
func (c *Client) subscribeOnce(ctx context.Context, master string, changed <-chan struct{}, h Handler) (subscribed bool, err error) {
	logger := klog.FromContext(ctx).WithValues("master", master)
	id, err := c.cfg.Store.Get(ctx)
	if err != nil {
		return false, fmt.Errorf("reading the stored framework id: %w", err)
	}
	info := c.cfg.Framework
	info.ID = nil
	if id != "" {
		info.ID = &mesos.FrameworkID{Value: id}
	}
	stream := new(atomic.Pointer[http.Response])
	caller := c.newCaller(master, stream)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	logger.Info("Subscribing to Mesos", "frameworkID", id, "roles", info.Roles)
	resp, err := c.handshake(sctx, cancel, caller, &info, changed)
	if err != nil {
		metrics.Subscriptions.WithLabelValues("error").Inc()
		if apiErr := (*apierrors.Error)(nil); errors.As(err, &apiErr) && apierrors.CodeNotAuthenticated.Matches(apiErr) {
			err = fmt.Errorf("Mesos refused the framework's credentials (principal %q): check --principal and --secret-file against the masters' --credentials: %w", info.GetPrincipal(), err)
		}
		if id != "" && strings.Contains(err.Error(), "Framework has been removed") {
			// Mesos tore the framework down (failover timeout passed); its
			// id can never be used again.
			logger.Info("Mesos removed the framework; registering a new one", "frameworkID", id)
			if serr := c.cfg.Store.Set(ctx, ""); serr != nil {
				logger.Error(serr, "Forgetting the removed framework id")
			}
		}
		return false, fmt.Errorf("subscribing to %s: %w", master, err)
	}
	defer resp.Close()
	res := stream.Load()
	if res == nil {
		return false, fmt.Errorf("subscribing to %s: the answer to SUBSCRIBE opened no event stream (no Mesos-Stream-Id)", master)
	}
	reader := eventstream.NewReader(res.Body, c.cfg.MediaType == string(codecs.MediaTypeJSON))
	offersHandler, _ := h.(OffersHandler)

	type decoded struct {
		ev    *scheduler.Event
		batch OfferBatch
		err   error
	}
	// The next event is decoded only once the handler is done with the one
	// before: an OFFERS event of 10,000 agents is ~13 MiB decoded, so any
	// read-ahead costs the broker's memory that much per event whenever the
	// handler lags (a buffered channel of one held up to three: handled,
	// queued, decoded and waiting), and buys nothing (the socket buffers the
	// stream anyway). The reader goroutine is there so that the loop still
	// watches the watchdog, ctx and a leader change while a read blocks.
	events := make(chan decoded)
	more := make(chan struct{}, 1)
	more <- struct{}{}
	go func() {
		defer close(events)
		for {
			select {
			case <-more:
			case <-sctx.Done():
				return
			}
			var batch OfferBatch
			var offer func(*mesos.Offer)
			if offersHandler != nil {
				offer = func(o *mesos.Offer) {
					if batch == nil {
						batch = offersHandler.NewOfferBatch()
					}
					batch.Offer(o)
				}
			}
			ev, err := reader.Next(offer)
			if err != nil {
				batch = nil // a malformed event's offers go nowhere
			}
			select {
			case events <- decoded{ev, batch, err}:
			case <-sctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()

	statuses := c.startStatusWorkers(sctx, h)
	defer func() {
		// The workers first: they ack through the caller.
		cancel()
		statuses.stop()
		c.mu.Lock()
		c.caller = nil
		c.mu.Unlock()
		if subscribed {
			metrics.Connected.Set(0)
			h.Disconnected(ctx)
		}
	}()

	// Until SUBSCRIBED tells the interval, wait as for the master's default.
	watchdog := time.NewTimer(time.Duration(c.cfg.MissedHeartbeats) * 15 * time.Second)
	defer watchdog.Stop()
	interval := 15 * time.Second
	for {
		select {
		case <-ctx.Done():
			return subscribed, ctx.Err()
		case <-changed:
			return subscribed, fmt.Errorf("the leading master changed")
		case <-watchdog.C:
			return subscribed, fmt.Errorf("no event for %v (%d heartbeat intervals): connection presumed dead", time.Duration(c.cfg.MissedHeartbeats)*interval, c.cfg.MissedHeartbeats)
		case d, ok := <-events:
			if !ok {
				return subscribed, ctx.Err()
			}
			if d.err != nil {
				return subscribed, fmt.Errorf("reading the event stream: %w", d.err)
			}
			ev := d.ev
			if !watchdog.Stop() {
				select {
				case <-watchdog.C:
				default:
				}
			}
			switch ev.Type {
			case scheduler.Event_SUBSCRIBED:
				s := ev.GetSubscribed()
				if hb := s.GetHeartbeatIntervalSeconds(); hb > 0 {
					interval = time.Duration(hb * float64(time.Second))
				}
				newID := s.FrameworkID.GetValue()
				if newID != id {
					// Store before anything else happens: a crash now must
					// not lose the framework that tasks will run under.
					if err := c.cfg.Store.Set(ctx, newID); err != nil {
						return subscribed, fmt.Errorf("storing framework id %s: %w", newID, err)
					}
				}
				c.mu.Lock()
				c.caller, c.fwID, c.master = caller, newID, master
				c.subCount++
				c.mu.Unlock()
				subscribed = true
				c.setLastError(nil)
				metrics.Subscriptions.WithLabelValues("success").Inc()
				metrics.Connected.Set(1)
				logger.Info("Subscribed to Mesos", "frameworkID", newID, "heartbeat", interval)
			case scheduler.Event_ERROR:
				msg := ev.GetError().GetMessage()
				if strings.Contains(msg, "removed") {
					if err := c.cfg.Store.Set(ctx, ""); err != nil {
						logger.Error(err, "Forgetting the removed framework id")
					}
				}
				if strings.Contains(msg, "failed over") {
					return subscribed, fmt.Errorf("Mesos sent ERROR: %s: %w", msg, ErrFailedOver)
				}
				return subscribed, fmt.Errorf("Mesos sent ERROR: %s", msg)
			}
			watchdog.Reset(time.Duration(c.cfg.MissedHeartbeats) * interval)
			switch ev.Type {
			case scheduler.Event_HEARTBEAT:
			case scheduler.Event_UPDATE:
				if o, ok := h.(StatusObserver); ok {
					o.ObserveStatus(sctx, &ev.GetUpdate().Status)
				}
				statuses.enqueue(ev)
			case scheduler.Event_OFFERS:
				if d.batch != nil {
					d.batch.Commit(sctx, ev)
				} else if err := h.HandleEvent(sctx, ev); err != nil {
					logger.Error(err, "Handling a Mesos event", "event", ev.Type)
				}
			default:
				if err := h.HandleEvent(sctx, ev); err != nil {
					logger.Error(err, "Handling a Mesos event", "event", ev.Type)
				}
			}
			more <- struct{}{}
		}
	}
}

// handshake sends SUBSCRIBE and waits for the response headers. A master
// that accepts the connection but never answers (a dying process, a
// partition that drops packets) must not hold the client: the wait ends
// after CallTimeout, or as soon as ZooKeeper names another leader. Once the
// stream is open the event loop's heartbeat watchdog takes over.
func (c *Client) handshake(ctx context.Context, cancel context.CancelFunc, caller calls.Caller, info *mesos.FrameworkInfo, changed <-chan struct{}) (mesos.Response, error) {
	done := make(chan struct{})
	var leaderChanged, timedOut atomic.Bool
	go func() {
		t := time.NewTimer(c.cfg.CallTimeout)
		defer t.Stop()
		select {
		case <-done:
		case <-changed:
			leaderChanged.Store(true)
			cancel()
		case <-t.C:
			timedOut.Store(true)
			cancel()
		}
	}()
	resp, err := caller.Call(ctx, calls.Subscribe(info))
	close(done)
	switch {
	case err == nil:
		return resp, nil
	case leaderChanged.Load():
		return nil, fmt.Errorf("the leading master changed while subscribing: %w", err)
	case timedOut.Load():
		return nil, fmt.Errorf("no answer to SUBSCRIBE within %v: %w", c.cfg.CallTimeout, err)
	}
	return nil, err
}

func (c *Client) ack(ctx context.Context, st mesos.TaskStatus) {
	if len(st.UUID) == 0 || st.AgentID == nil {
		return
	}
	err := c.Call(ctx, calls.Acknowledge(st.AgentID.Value, st.TaskID.Value, st.UUID))
	if err != nil {
		metrics.Acks.WithLabelValues("error").Inc()
		// Mesos resends unacknowledged updates; nothing is lost.
		klog.FromContext(ctx).Error(err, "Acknowledging a status update", "task", st.TaskID.Value, "state", st.GetState())
		return
	}
	metrics.Acks.WithLabelValues("success").Inc()
}
