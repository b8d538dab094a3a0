// Package kernel keeps the host's own kernel settings while the embedded
// kubelet may have changed them, so that they are given back even when the
// executor was killed. It links nothing of the kubelet: the local cluster's
// teardown uses it too.
package kernel

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/klog/v2"
)

// Tunables are the kernel settings the kubelet's container manager sets
// (pkg/kubelet/cm setupKernelTunables) when protectDefaults is off.
var Tunables = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

// DefaultFile is where the host's own settings are kept while
// a kubelet of k8sm runs: one file per host (the settings are the host's,
// whichever agent's executor changed them), outside any sandbox.
const DefaultFile = "/var/lib/k8sm/kernel-defaults.json"

// Defaults gives the host back the kernel settings it had before any
// kubelet of k8sm changed them, even when the executor that started that
// kubelet was killed: they are kept in File from before the kubelet starts
// until the executor's final exit. An executor reading them at start only
// would take a crashed kubelet's settings for the host's and keep them for
// ever.
type Defaults struct {
	// File keeps the settings (default DefaultFile).
	File string
	// ProcSys is where the settings are read and written (default
	// /proc/sys).
	ProcSys string
}

func (k Defaults) file() string {
	if k.File == "" {
		return DefaultFile
	}
	return k.File
}

func (k Defaults) path(t string) string {
	root := k.ProcSys
	if root == "" {
		root = "/proc/sys"
	}
	return filepath.Join(root, t)
}

// Record returns the host's own settings, to give back with Restore. When an
// earlier executor left them in File (it never exited cleanly), they are
// those, and are written back at once; otherwise they are the current ones,
// kept in File before the kubelet can change them.
func (k Defaults) Record(logger klog.Logger) (map[string]string, error) {
	if b, err := os.ReadFile(k.file()); err == nil {
		var saved map[string]string
		if err := json.Unmarshal(b, &saved); err != nil {
			return nil, fmt.Errorf("reading the host's kernel settings kept in %s (remove it if the host's settings are as they should be): %w", k.file(), err)
		}
		logger.Info("Restoring the kernel settings an earlier executor's kubelet changed and did not give back", "file", k.file(), "settings", saved)
		k.write(logger, saved)
		return saved, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("reading the host's kernel settings kept in %s: %w", k.file(), err)
	}
	saved := map[string]string{}
	for _, t := range Tunables {
		if b, err := os.ReadFile(k.path(t)); err == nil {
			saved[t] = strings.TrimSpace(string(b))
		}
	}
	b, err := json.Marshal(saved)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(k.file()), 0o755); err != nil {
		return nil, fmt.Errorf("keeping the host's kernel settings: %w", err)
	}
	tmp := k.file() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return nil, fmt.Errorf("keeping the host's kernel settings: %w", err)
	}
	if err := os.Rename(tmp, k.file()); err != nil {
		return nil, fmt.Errorf("keeping the host's kernel settings: %w", err)
	}
	return saved, nil
}

// Restore writes saved back where it changed and forgets it.
func (k Defaults) Restore(logger klog.Logger, saved map[string]string) {
	k.write(logger, saved)
	if err := os.Remove(k.file()); err != nil && !errors.Is(err, os.ErrNotExist) {
		logger.Error(err, "Removing the kept kernel settings", "file", k.file())
	}
}

func (k Defaults) write(logger klog.Logger, saved map[string]string) {
	for t, v := range saved {
		b, err := os.ReadFile(k.path(t))
		if err != nil || strings.TrimSpace(string(b)) == v {
			continue
		}
		if err := os.WriteFile(k.path(t), []byte(v), 0o644); err != nil {
			logger.Error(err, "Restoring kernel setting", "setting", t, "value", v)
		}
	}
}
