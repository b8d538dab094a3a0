// Package agentconn is the executor's line to its Mesos agent over the v1
// executor HTTP API: it subscribes, re-subscribes after the agent restarts
// (with the tasks and updates the agent has not acknowledged), gives every
// update a fresh uuid and keeps it until it is ACKNOWLEDGED, and gives up
// when the agent stays away longer than the recovery timeout.
package agentconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"sync"
	"time"

	"github.com/google/uuid"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
	"github.com/mesos/mesos-go/api/v1/lib/executor"
	"github.com/mesos/mesos-go/api/v1/lib/executor/calls"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/httpexec"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/executor/config"
)

// ErrAgentGone means the agent did not come back within the recovery
// timeout (or, for a non-checkpointing framework, that it went away at all):
// the executor must stop its pods and exit, as the agent will not.
var ErrAgentGone = errors.New("the Mesos agent is gone")

// State is what must survive an executor restart for the agent to be told
// the truth on re-subscription.
type State struct {
	// Tasks were launched but none of their updates is acknowledged yet.
	Tasks []mesos.TaskInfo `json:"tasks,omitempty"`
	// Updates were sent but are not acknowledged yet.
	Updates []executor.Call_Update `json:"updates,omitempty"`
}

// Handler receives every event in order. It must not block for long: the
// agent's stream is read in between.
type Handler func(ctx context.Context, e *executor.Event)

// Conn is one executor's connection.
type Conn struct {
	env     config.Env
	sender  calls.Sender // ordinary calls
	sub     calls.Sender // the subscription, on its own connection
	onState func(State)

	mu      sync.Mutex
	tasks   map[string]mesos.TaskInfo
	updates map[string]executor.Call_Update // by uuid
	order   []string                        // uuids, oldest first
}

// New returns a connection for env; restored is the state checkpointed by an
// earlier process of the same executor, onState is called whenever the state
// changes (to checkpoint it).
func New(env config.Env, restored State, onState func(State)) *Conn {
	endpoint := url.URL{Scheme: "http", Host: env.AgentEndpoint, Path: "/api/v1/executor"}
	cli := httpcli.New(
		httpcli.Endpoint(endpoint.String()),
		httpcli.Codec(codecs.ByMediaType[codecs.MediaTypeProtobuf]),
		httpcli.Do(httpcli.With(httpcli.Timeout(10*time.Second))),
	)
	opts := executor.CallOptions{calls.Framework(env.FrameworkID), calls.Executor(env.ExecutorID)}
	c := &Conn{
		env:     env,
		sender:  calls.SenderWith(httpexec.NewSender(cli.Send), opts...),
		sub:     calls.SenderWith(httpexec.NewSender(cli.Send, httpcli.Close(true)), opts...),
		onState: onState,
		tasks:   map[string]mesos.TaskInfo{},
		updates: map[string]executor.Call_Update{},
	}
	for _, t := range restored.Tasks {
		c.tasks[t.TaskID.Value] = t
	}
	for _, u := range restored.Updates {
		id := string(u.Status.UUID)
		c.updates[id] = u
		c.order = append(c.order, id)
	}
	return c
}

// State returns the unacknowledged tasks and updates.
func (c *Conn) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stateLocked()
}

func (c *Conn) stateLocked() State {
	var s State
	for _, t := range c.tasks {
		s.Tasks = append(s.Tasks, t)
	}
	for _, id := range c.order {
		s.Updates = append(s.Updates, c.updates[id])
	}
	return s
}

func (c *Conn) changed() {
	if c.onState != nil {
		c.onState(c.State())
	}
}

// Run subscribes and hands every event to h until ctx ends (nil), the agent
// is gone (ErrAgentGone) or the agent refuses the executor for good.
func (c *Conn) Run(ctx context.Context, h Handler) error {
	logger := klog.FromContext(ctx)
	var lostSince time.Time
	backoff := time.Duration(0)
	for {
		subscribed, err := c.subscribeOnce(ctx, h)
		if ctx.Err() != nil {
			return nil
		}
		if subscribed {
			lostSince, backoff = time.Time{}, 0
		}
		if lostSince.IsZero() {
			lostSince = time.Now()
		}
		if !c.env.Checkpoint {
			// The agent shuts down such executors when their connection
			// breaks; there is nothing to come back to.
			return fmt.Errorf("%w: subscription ended and the framework does not checkpoint: %v", ErrAgentGone, err)
		}
		if gone := time.Since(lostSince); gone > c.env.RecoveryTimeout {
			return fmt.Errorf("%w: no agent for %v (recovery timeout %v): %v", ErrAgentGone, gone.Round(time.Second), c.env.RecoveryTimeout, err)
		}
		// Exponential backoff with jitter, bounded by what the agent asked for.
		backoff = min(max(2*backoff, 100*time.Millisecond), c.env.SubscriptionBackoffMax)
		wait := time.Duration(rand.Int64N(int64(backoff) + 1))
		logger.Info("Subscription to the agent ended, subscribing again", "err", err, "wait", wait, "lostFor", time.Since(lostSince).Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// subscribeOnce runs one subscription; subscribed says whether the agent
// accepted it (so that the recovery clock restarts).
func (c *Conn) subscribeOnce(ctx context.Context, h Handler) (subscribed bool, err error) {
	st := c.State()
	resp, err := c.sub.Send(ctx, calls.NonStreaming(calls.Subscribe(st.Tasks, st.Updates)))
	if err != nil {
		if resp != nil {
			resp.Close()
		}
		return false, fmt.Errorf("subscribing to agent %s: %w", c.env.AgentEndpoint, err)
	}
	defer resp.Close()
	// Closing the body is what unblocks Decode when ctx ends.
	stop := context.AfterFunc(ctx, func() { resp.Close() })
	defer stop()
	for {
		var e executor.Event
		if err := resp.Decode(&e); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return subscribed, fmt.Errorf("reading events from agent %s: %w", c.env.AgentEndpoint, err)
		}
		switch e.Type {
		case executor.Event_SUBSCRIBED:
			subscribed = true
		case executor.Event_LAUNCH:
			c.launched(e.Launch.Task)
		case executor.Event_LAUNCH_GROUP:
			for _, t := range e.LaunchGroup.TaskGroup.Tasks {
				c.launched(t)
			}
		case executor.Event_ACKNOWLEDGED:
			c.acknowledged(e.Acknowledged.TaskID.Value, e.Acknowledged.UUID)
		case executor.Event_HEARTBEAT:
			continue
		}
		h(ctx, &e)
		if e.Type == executor.Event_ERROR {
			klog.FromContext(ctx).Info("Agent sent ERROR", "message", e.GetError().GetMessage())
		}
	}
}

func (c *Conn) launched(t mesos.TaskInfo) {
	c.mu.Lock()
	c.tasks[t.TaskID.Value] = t
	c.mu.Unlock()
	c.changed()
}

func (c *Conn) acknowledged(taskID string, id []byte) {
	c.mu.Lock()
	delete(c.tasks, taskID)
	if _, ok := c.updates[string(id)]; ok {
		delete(c.updates, string(id))
		for i, u := range c.order {
			if u == string(id) {
				c.order = append(c.order[:i], c.order[i+1:]...)
				break
			}
		}
	}
	c.mu.Unlock()
	c.changed()
}

// Update sends a status update with a fresh uuid. It is kept until the
// agent acknowledges it, so an update the agent never got is delivered by
// the next SUBSCRIBE; the error only says the agent did not take it now.
func (c *Conn) Update(ctx context.Context, status mesos.TaskStatus) error {
	id := uuid.New()
	status.UUID = id[:]
	status.Source = mesos.SOURCE_EXECUTOR.Enum()
	if status.Timestamp == nil {
		now := float64(time.Now().UnixNano()) / 1e9
		status.Timestamp = &now
	}
	if status.ExecutorID == nil {
		status.ExecutorID = &mesos.ExecutorID{Value: c.env.ExecutorID}
	}
	if status.AgentID == nil && c.env.AgentID != "" {
		status.AgentID = &mesos.AgentID{Value: c.env.AgentID}
	}
	c.mu.Lock()
	c.updates[string(status.UUID)] = executor.Call_Update{Status: status}
	c.order = append(c.order, string(status.UUID))
	c.mu.Unlock()
	c.changed()
	resp, err := c.sender.Send(ctx, calls.NonStreaming(calls.Update(status)))
	if resp != nil {
		resp.Close()
	}
	if err != nil {
		return fmt.Errorf("sending %s of task %s to the agent: %w", status.State, status.TaskID.Value, err)
	}
	return nil
}

// Message sends framework data to the scheduler.
func (c *Conn) Message(ctx context.Context, data []byte) error {
	resp, err := c.sender.Send(ctx, calls.NonStreaming(calls.Message(data)))
	if resp != nil {
		resp.Close()
	}
	if err != nil {
		return fmt.Errorf("sending a message to the scheduler: %w", err)
	}
	return nil
}
