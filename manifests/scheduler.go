package manifests

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// MesosOffersPlugin is the name the k8sm scheduler plugin registers under
// (plugin/mesosoffers.Name). It is spelled out here so that this package,
// which programs import for the manifests alone, does not pull in the
// scheduler framework.
const MesosOffersPlugin = "MesosOffers"

// SchedulerConfig is a KubeSchedulerConfiguration held as a generic YAML
// tree rather than the typed API: fields this package does not know, and
// the plugin's args, pass through as the file spells them, and rendering
// adds no zero-valued fields the file does not set.
type SchedulerConfig map[string]any

// ShippedSchedulerConfig returns the KubeSchedulerConfiguration that
// manifests/scheduler.yaml deploys (key scheduler-config.yaml of its
// ConfigMap), for a program to point at its own broker and API server. Each
// call returns a fresh copy.
func ShippedSchedulerConfig() (SchedulerConfig, error) {
	raw, err := FS.ReadFile("scheduler.yaml")
	if err != nil {
		return nil, fmt.Errorf("reading manifests/scheduler.yaml: %w", err)
	}
	return parseSchedulerConfig(raw)
}

// parseSchedulerConfig finds the KubeSchedulerConfiguration in the
// ConfigMap of manifest, the text of manifests/scheduler.yaml.
func parseSchedulerConfig(manifest []byte) (SchedulerConfig, error) {
	var text string
	err := eachDocument(manifest, func(doc []byte) error {
		var obj struct {
			Kind string            `json:"kind"`
			Data map[string]string `json:"data"`
		}
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			return err
		}
		if obj.Kind == "ConfigMap" && obj.Data["scheduler-config.yaml"] != "" {
			text = obj.Data["scheduler-config.yaml"]
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if text == "" {
		return nil, fmt.Errorf("manifests/scheduler.yaml has no ConfigMap with scheduler-config.yaml")
	}
	var cfg SchedulerConfig
	if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
		return nil, fmt.Errorf("reading the KubeSchedulerConfiguration of manifests/scheduler.yaml: %w", err)
	}
	if cfg == nil {
		return nil, fmt.Errorf("the KubeSchedulerConfiguration of manifests/scheduler.yaml is empty")
	}
	return cfg, nil
}

// eachDocument calls f with each YAML document of manifest, the text of
// manifests/scheduler.yaml.
func eachDocument(manifest []byte, f func(doc []byte) error) error {
	docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifest)))
	for {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err == nil {
			err = f(doc)
		}
		if err != nil {
			return fmt.Errorf("reading manifests/scheduler.yaml: %w", err)
		}
	}
}

// ShippedSchedulerFeatureGates returns the value of the --feature-gates flag
// the Deployment of manifests/scheduler.yaml gives the kube-scheduler
// container ("" when it gives none), so that a program starting the
// scheduler itself (hack/cluster, the benchmark) runs it with the same
// gates.
func ShippedSchedulerFeatureGates() (string, error) {
	raw, err := FS.ReadFile("scheduler.yaml")
	if err != nil {
		return "", fmt.Errorf("reading manifests/scheduler.yaml: %w", err)
	}
	return parseSchedulerFeatureGates(raw)
}

func parseSchedulerFeatureGates(manifest []byte) (string, error) {
	var gates []string
	found := false
	err := eachDocument(manifest, func(doc []byte) error {
		var obj struct {
			Kind string `json:"kind"`
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct {
							Name    string   `json:"name"`
							Command []string `json:"command"`
							Args    []string `json:"args"`
						} `json:"containers"`
					} `json:"spec"`
				} `json:"template"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			return err
		}
		if obj.Kind != "Deployment" {
			return nil
		}
		for _, c := range obj.Spec.Template.Spec.Containers {
			if c.Name != "kube-scheduler" {
				continue
			}
			found = true
			for _, a := range append(c.Command, c.Args...) {
				if v, ok := strings.CutPrefix(a, "--feature-gates="); ok && v != "" {
					gates = append(gates, v)
				}
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if !found {
		return "", errors.New("manifests/scheduler.yaml has no Deployment with a kube-scheduler container")
	}
	return strings.Join(gates, ","), nil
}

// MesosOffersArgs returns the args of every MesosOffers pluginConfig, of
// all profiles, for the caller to edit in place (an absent args becomes an
// empty one). It is an error if there is none: a configuration that cannot
// be pointed at a broker schedules nothing onto Mesos.
func (c SchedulerConfig) MesosOffersArgs() ([]map[string]any, error) {
	var out []map[string]any
	profiles, _ := c["profiles"].([]any)
	for _, p := range profiles {
		pm, _ := p.(map[string]any)
		pcs, _ := pm["pluginConfig"].([]any)
		for _, pc := range pcs {
			pc, _ := pc.(map[string]any)
			if pc["name"] != MesosOffersPlugin {
				continue
			}
			args, _ := pc["args"].(map[string]any)
			if args == nil {
				args = map[string]any{}
				pc["args"] = args
			}
			out = append(out, args)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("manifests/scheduler.yaml configures no %s plugin (pluginConfig of a profile) to point at the broker", MesosOffersPlugin)
	}
	return out, nil
}

// SetBrokerAddresses points every MesosOffers plugin at addrs (gRPC
// targets, as args.brokerAddresses takes them) instead of the in-cluster
// broker Service.
func (c SchedulerConfig) SetBrokerAddresses(addrs ...string) error {
	all, err := c.MesosOffersArgs()
	if err != nil {
		return err
	}
	for _, args := range all {
		args["brokerAddresses"] = append([]string(nil), addrs...)
	}
	return nil
}

// SetBrokerTLS makes every MesosOffers plugin verify the broker with caFile
// and present certFile/keyFile (mutual TLS), replacing any tls the file sets.
func (c SchedulerConfig) SetBrokerTLS(caFile, certFile, keyFile string) error {
	all, err := c.MesosOffersArgs()
	if err != nil {
		return err
	}
	for _, args := range all {
		args["tls"] = map[string]any{"caFile": caFile, "certFile": certFile, "keyFile": keyFile}
	}
	return nil
}

// SetRolePolicyFile points every MesosOffers plugin at the role policy in
// path (ShippedRolePolicy written where the program runs) instead of the
// ConfigMap the Deployment mounts; "" leaves the plugin on its built-in
// policy.
func (c SchedulerConfig) SetRolePolicyFile(path string) error {
	all, err := c.MesosOffersArgs()
	if err != nil {
		return err
	}
	for _, args := range all {
		if path == "" {
			delete(args, "rolePolicyFile")
		} else {
			args["rolePolicyFile"] = path
		}
	}
	return nil
}

// ShippedRolePolicy is the role policy manifests/role-policy.yaml deploys
// (key role-policy.yaml of its ConfigMap), which the broker and the
// scheduler plugin read.
func ShippedRolePolicy() ([]byte, error) {
	raw, err := FS.ReadFile("role-policy.yaml")
	if err != nil {
		return nil, fmt.Errorf("reading manifests/role-policy.yaml: %w", err)
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		return nil, fmt.Errorf("reading manifests/role-policy.yaml: %w", err)
	}
	p := cm.Data["role-policy.yaml"]
	if p == "" {
		return nil, errors.New("manifests/role-policy.yaml has no role-policy.yaml in its ConfigMap")
	}
	return []byte(p), nil
}

// SetBrokerPlaintext drops the plugin's tls, for a broker serving plaintext
// on loopback (a test's or a benchmark's in-process broker).
func (c SchedulerConfig) SetBrokerPlaintext() error {
	all, err := c.MesosOffersArgs()
	if err != nil {
		return err
	}
	for _, args := range all {
		delete(args, "tls")
	}
	return nil
}

// SetClientConnection replaces clientConnection: the scheduler talks to the
// API server of kubeconfig (the shipped file has none: in a pod the
// scheduler uses its ServiceAccount). A zero qps or burst is left out, so
// that the scheduler's default applies.
func (c SchedulerConfig) SetClientConnection(kubeconfig string, qps float32, burst int) {
	cc := map[string]any{"kubeconfig": kubeconfig}
	if qps != 0 {
		cc["qps"] = qps
	}
	if burst != 0 {
		cc["burst"] = burst
	}
	c["clientConnection"] = cc
}

// SetLeaderElect turns leader election on or off, keeping the lease's name
// and namespace of the shipped file.
func (c SchedulerConfig) SetLeaderElect(on bool) {
	le, _ := c["leaderElection"].(map[string]any)
	if le == nil {
		le = map[string]any{}
		c["leaderElection"] = le
	}
	le["leaderElect"] = on
}

// YAML renders the configuration as kube-scheduler's --config reads it.
func (c SchedulerConfig) YAML() ([]byte, error) {
	out, err := yaml.Marshal(map[string]any(c))
	if err != nil {
		return nil, fmt.Errorf("rendering the KubeSchedulerConfiguration of manifests/scheduler.yaml: %w", err)
	}
	return out, nil
}
