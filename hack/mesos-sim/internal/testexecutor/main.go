// Command testexecutor is a small custom executor written only against
// mesos-go's executor libraries, standing in for the k8sm executor in tests.
// It reports TASK_RUNNING with its MESOS_* environment as the status data,
// keeps tasks running until KILL, echoes MESSAGE back, and on SHUTDOWN kills
// its tasks and exits (unless TESTEXECUTOR_IGNORE_SHUTDOWN=1). With
// checkpointing it re-subscribes after the agent restarts.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/encoding"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
	"github.com/mesos/mesos-go/api/v1/lib/executor"
	"github.com/mesos/mesos-go/api/v1/lib/executor/calls"
	"github.com/mesos/mesos-go/api/v1/lib/executor/config"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/httpexec"
)

type state struct {
	cfg     config.Config
	sender  calls.Sender
	info    mesos.ExecutorInfo
	tasks   map[string]mesos.TaskInfo
	unacked map[string]executor.Call_Update // by uuid
	unTasks map[string]mesos.TaskInfo       // launched, no update acknowledged yet
	quit    bool
}

func main() {
	cfg, err := config.FromEnv()
	if err != nil {
		log.Fatalf("testexecutor: loading configuration: %v", err)
	}
	endpoint := url.URL{Scheme: "http", Host: cfg.AgentEndpoint, Path: "/api/v1/executor"}
	codec := codecs.ByMediaType[codecs.MediaTypeProtobuf]
	if os.Getenv("TESTEXECUTOR_JSON") == "1" {
		codec = codecs.ByMediaType[codecs.MediaTypeJSON]
	}
	cli := httpcli.New(httpcli.Endpoint(endpoint.String()), httpcli.Codec(codec))
	opts := executor.CallOptions{calls.Framework(cfg.FrameworkID), calls.Executor(cfg.ExecutorID)}
	st := &state{
		cfg:     cfg,
		sender:  calls.SenderWith(httpexec.NewSender(cli.Send), opts...),
		tasks:   map[string]mesos.TaskInfo{},
		unacked: map[string]executor.Call_Update{},
		unTasks: map[string]mesos.TaskInfo{},
	}
	subscriber := calls.SenderWith(httpexec.NewSender(cli.Send, httpcli.Close(true)), opts...)
	// TESTEXECUTOR_SUBSCRIBE_DELAY keeps the executor registering for a
	// while, as a real one is while it starts.
	if d, err := time.ParseDuration(os.Getenv("TESTEXECUTOR_SUBSCRIBE_DELAY")); err == nil {
		time.Sleep(d)
	}
	lost := time.Time{}
	for {
		var tasks []mesos.TaskInfo
		for _, t := range st.unTasks {
			tasks = append(tasks, t)
		}
		var updates []executor.Call_Update
		for _, u := range st.unacked {
			updates = append(updates, u)
		}
		resp, err := subscriber.Send(context.Background(), calls.NonStreaming(calls.Subscribe(tasks, updates)))
		if err == nil {
			lost = time.Time{}
			err = st.loop(resp)
			resp.Close()
		}
		log.Printf("testexecutor: subscription ended: %v", err)
		if st.quit {
			return
		}
		if !cfg.Checkpoint {
			os.Exit(2)
		}
		if lost.IsZero() {
			lost = time.Now()
		}
		if time.Since(lost) > cfg.RecoveryTimeout {
			log.Printf("testexecutor: agent did not come back within %v", cfg.RecoveryTimeout)
			os.Exit(3)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (st *state) loop(dec encoding.Decoder) error {
	for !st.quit {
		var e executor.Event
		if err := dec.Decode(&e); err != nil {
			if errors.Is(err, io.EOF) {
				return io.EOF
			}
			return err
		}
		switch e.Type {
		case executor.Event_SUBSCRIBED:
			st.info = e.Subscribed.ExecutorInfo
		case executor.Event_LAUNCH:
			st.launch(e.Launch.Task)
		case executor.Event_LAUNCH_GROUP:
			for _, t := range e.LaunchGroup.TaskGroup.Tasks {
				st.launch(t)
			}
		case executor.Event_KILL:
			st.finish(e.Kill.TaskID, mesos.TASK_KILLED)
		case executor.Event_ACKNOWLEDGED:
			delete(st.unacked, string(e.Acknowledged.UUID))
			delete(st.unTasks, e.Acknowledged.TaskID.Value)
		case executor.Event_MESSAGE:
			resp, err := st.sender.Send(context.Background(), calls.NonStreaming(calls.Message(append([]byte("echo:"), e.Message.Data...))))
			if resp != nil {
				resp.Close()
			}
			if err != nil {
				log.Printf("testexecutor: sending message: %v", err)
			}
		case executor.Event_SHUTDOWN:
			if os.Getenv("TESTEXECUTOR_IGNORE_SHUTDOWN") == "1" {
				continue
			}
			for id, t := range st.tasks {
				st.finish(t.TaskID, mesos.TASK_KILLED)
				delete(st.tasks, id)
			}
			st.quit = true
		case executor.Event_ERROR:
			return errors.New("ERROR event: " + e.Error.Message)
		}
	}
	return nil
}

func envData() []byte {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok && (strings.HasPrefix(k, "MESOS_") || k == "LIBPROCESS_PORT") {
			env[k] = v
		}
	}
	b, _ := json.Marshal(env)
	return b
}

func (st *state) launch(t mesos.TaskInfo) {
	st.tasks[t.TaskID.Value] = t
	st.unTasks[t.TaskID.Value] = t
	st.update(t.TaskID, mesos.TASK_RUNNING, envData())
	if string(t.Data) == "running-twice" {
		st.update(t.TaskID, mesos.TASK_RUNNING, []byte("again"))
	}
	if string(t.Data) == "finish" {
		st.finish(t.TaskID, mesos.TASK_FINISHED)
	}
}

func (st *state) finish(id mesos.TaskID, s mesos.TaskState) {
	if _, ok := st.tasks[id.Value]; !ok {
		return
	}
	delete(st.tasks, id.Value)
	st.update(id, s, nil)
}

func (st *state) update(id mesos.TaskID, s mesos.TaskState, data []byte) {
	u, _ := uuid.New().MarshalBinary()
	eid := st.info.ExecutorID
	if eid.Value == "" {
		eid = mesos.ExecutorID{Value: st.cfg.ExecutorID}
	}
	status := mesos.TaskStatus{TaskID: id, State: s.Enum(), Source: mesos.SOURCE_EXECUTOR.Enum(), ExecutorID: &eid, UUID: u, Data: data}
	call := calls.Update(status)
	resp, err := st.sender.Send(context.Background(), calls.NonStreaming(call))
	if resp != nil {
		resp.Close()
	}
	if err != nil {
		log.Printf("testexecutor: sending %s for %s: %v", s, id.Value, err)
	}
	// Kept until ACKNOWLEDGED, and resent on re-subscription if the agent restarts.
	st.unacked[string(u)] = *call.Update
}
