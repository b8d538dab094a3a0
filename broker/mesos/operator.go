package mesos

import (
	"context"
	"fmt"

	"github.com/mesos/mesos-go/api/v1/lib/httpcli/httpmaster"
	"github.com/mesos/mesos-go/api/v1/lib/master"
	mastercalls "github.com/mesos/mesos-go/api/v1/lib/master/calls"
)

// Agents lists the agents the master of the current subscription knows,
// through the v1 operator API (GET_AGENTS). A framework that SUPPRESSes
// offers while nothing is pending is offered nothing from an agent that
// joins, so offers alone never show it: this does.
func (c *Client) Agents(ctx context.Context) ([]master.Response_GetAgents_Agent, error) {
	c.mu.Lock()
	endpoint := c.master
	subscribed := c.caller != nil
	c.mu.Unlock()
	if !subscribed || endpoint == "" {
		return nil, ErrNotSubscribed
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	resp, err := httpmaster.NewSender(c.httpClient(endpoint+"/api/v1", nil).Send).Send(ctx, mastercalls.NonStreaming(mastercalls.GetAgents()))
	if err != nil {
		return nil, fmt.Errorf("listing agents at %s (GET_AGENTS): %w", endpoint, err)
	}
	defer resp.Close()
	var r master.Response
	if err := resp.Decode(&r); err != nil {
		return nil, fmt.Errorf("decoding GET_AGENTS from %s: %w", endpoint, err)
	}
	return r.GetGetAgents().GetAgents(), nil
}
