package main

import (
	"context"
	"errors"
	"flag"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestHelp(t *testing.T) {
	if _, err := parseFlags([]string{"--help"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
}

func TestFlags(t *testing.T) {
	t.Setenv("MESOS_ALLOCATION_INTERVAL", "250ms")
	o, err := parseFlags([]string{"--port=0", "--agents=2", "--hollow", "--offer_timeout=5secs",
		"--resources=cpus(web):1;cpus:3;mem:1024;ports:[31000-31010]", "--attributes=rack:r1;level:3",
		`--executor_environment_variables={"A":"b"}`, "--agent_port=40000"})
	if err != nil {
		t.Fatal(err)
	}
	if o.offerTimeout != 5*time.Second || o.allocInterval != 250*time.Millisecond || !o.hollow {
		t.Fatalf("options %+v", o)
	}
	cfg, err := config(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Agents) != 2 || cfg.Agents[1].Port != 40001 || cfg.Agents[0].ExecutorEnvironment["A"] != "b" || len(cfg.Agents[0].Attributes) != 2 {
		t.Fatalf("config %+v", cfg)
	}
	if _, err := parseFlags([]string{"--offer_timeout=soon"}); err == nil {
		t.Fatal("bad duration accepted")
	}
	if _, err := parseFlags([]string{"--resources=cpus"}); err != nil {
		t.Fatal(err)
	} else if _, err := config(&options{resources: "cpus"}); err == nil {
		t.Fatal("bad resources accepted")
	}
}

func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// A fixed port is needed to reach it; take one the OS just gave out.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	go func() {
		done <- run(ctx, []string{"--port=" + strconv.Itoa(port), "--agents=1", "--hollow", "--allocation_interval=50ms"})
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/health")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("master did not come up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestAgentsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agents.json")
	if err := os.WriteFile(path, []byte(`[
 {"hostname": "a1", "port": 41001, "attributes": "zone:a", "executor_environment_variables": {"K8SM_NODE_NAME": "a1"}},
 {"hostname": "a2", "resources": "cpus:1;mem:512", "work_dir": "/tmp/a2"}
]`), 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := parseFlags([]string{"--agents=5", "--agents_file=" + path, "--attributes=zone:z",
		`--executor_environment_variables={"SHARED":"1"}`, "--resources=cpus:4;mem:8192"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Agents) != 2 {
		t.Fatalf("the file lists 2 agents, config has %d", len(cfg.Agents))
	}
	a1, a2 := cfg.Agents[0], cfg.Agents[1]
	if a1.Hostname != "a1" || a1.Port != 41001 || a1.Attributes[0].GetText().GetValue() != "a" || a1.ExecutorEnvironment["K8SM_NODE_NAME"] != "a1" || a1.ExecutorEnvironment["SHARED"] != "" {
		t.Errorf("agent a1: %+v", a1)
	}
	if a2.Hostname != "a2" || a2.WorkDir != "/tmp/a2" || a2.Attributes[0].GetText().GetValue() != "z" || a2.ExecutorEnvironment["SHARED"] != "1" {
		t.Errorf("agent a2: %+v", a2)
	}
	if cpus := a2.Resources[0]; cpus.GetName() != "cpus" || cpus.GetScalar().GetValue() != 1 {
		t.Errorf("agent a2 resources %v", a2.Resources)
	}
	for name, body := range map[string]string{"typo": `[{"hostnme": "x"}]`, "empty": `[]`, "bad resources": `[{"resources": "cpus"}]`} {
		p := filepath.Join(t.TempDir(), "agents.json")
		_ = os.WriteFile(p, []byte(body), 0o644)
		o, err := parseFlags([]string{"--agents_file=" + p})
		if err == nil {
			_, err = config(o)
		}
		if err == nil {
			t.Errorf("%s: %s accepted", name, body)
		}
	}
}
