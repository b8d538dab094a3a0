// Package failpoint lets a test stop a k8sm process at an exact point of its
// work: SIGKILL it there (a crash between two steps no outside signal can
// time), or hold it there while the test changes the world around it.
//
// It is for tests only and off unless a process is started with a
// failpoints directory (the components' --failpoints-dir flag, empty by
// default); nothing in a shipped configuration sets one. A point is armed by
// writing a file named after it into that directory, holding the action:
//
//	crash  the process SIGKILLs itself when it reaches the point
//	pause  it waits there until the file <point>.paused, which it creates,
//	       is removed
//
// A point fires once: the process removes the file as it fires, so that a
// restarted process runs on.
package failpoint

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

// The points k8sm's components have.
const (
	// SchedulerBind: the MesosOffers plugin's Bind, before it awaits the
	// broker's Reserve answer and launches: after Reserve, before Bind.
	SchedulerBind = "scheduler-bind"
	// BrokerAccepted: the broker's ACCEPT was taken by the master (the
	// call returned), before the broker acts on the answer.
	BrokerAccepted = "broker-accepted"
)

var dir atomic.Pointer[string]

// Enable arms the points through files in d; "" leaves them off.
func Enable(d string) {
	if d != "" {
		dir.Store(&d)
	}
}

// Hit fires the point name if it is armed; a no-op unless Enable was called.
func Hit(name string) {
	d := dir.Load()
	if d == nil {
		return
	}
	file := filepath.Join(*d, name)
	action, err := os.ReadFile(file)
	if err != nil {
		return
	}
	// Whoever removes the file fires the point: once, and never twice
	// from two goroutines.
	if err := os.Remove(file); err != nil {
		return
	}
	switch strings.TrimSpace(string(action)) {
	case "crash":
		klog.InfoS("Failpoint: SIGKILL", "point", name)
		klog.Flush()
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	case "pause":
		paused := file + ".paused"
		if err := os.WriteFile(paused, nil, 0o644); err != nil {
			klog.ErrorS(err, "Failpoint: cannot pause", "point", name)
			return
		}
		klog.InfoS("Failpoint: paused until the test removes the file", "point", name, "file", paused)
		for {
			if _, err := os.Stat(paused); errors.Is(err, os.ErrNotExist) {
				klog.InfoS("Failpoint: resumed", "point", name)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	default:
		klog.InfoS("Failpoint: unknown action ignored (crash or pause)", "point", name, "action", string(action))
	}
}

// DirFlag is a flag value (pflag.Value) that enables the points as it is
// set: for commands whose flags are parsed by code that is not k8sm's.
type DirFlag struct{}

func (DirFlag) String() string {
	if d := dir.Load(); d != nil {
		return *d
	}
	return ""
}

func (DirFlag) Set(d string) error { Enable(d); return nil }

func (DirFlag) Type() string { return "string" }
