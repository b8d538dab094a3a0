// Package filereload holds a value parsed from files and parses them again
// when any of them changes on disk, so that a rotated certificate or an
// edited policy (a re-mounted Secret or ConfigMap, a rewritten file) takes
// effect without a restart. Both the scheduler plugin and the broker use it.
package filereload

import (
	"fmt"
	"os"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// stamp is what says a file changed: a rewrite changes the modification
// time or the size, and a Secret or ConfigMap update swaps the file behind a
// symlink, which os.Stat follows.
type stamp struct {
	mod  time.Time
	size int64
}

func stat(path string) (stamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}, err
	}
	return stamp{mod: fi.ModTime(), size: fi.Size()}, nil
}

// Value is a value parsed from files. A file that changed into something
// unusable (a half-written rotation, a bad edit) keeps the last good value in
// use and logs why: refusing everything because of one bad edit would turn
// it into an outage.
type Value[T any] struct {
	what  string
	files []string
	parse func() (T, error)

	mu     sync.Mutex
	stamps []stamp
	val    T
	loaded bool
}

// New reads the files once, so that a wrong path or a bad file fails at
// start-up; what names them in logs and errors ("role policy /etc/…").
func New[T any](what string, files []string, parse func() (T, error)) (*Value[T], error) {
	v := &Value[T]{what: what, files: files, parse: parse}
	if _, err := v.Get(); err != nil {
		return nil, err
	}
	return v, nil
}

// Get returns the value as the files hold it now, parsing them again if any
// changed since the last call.
func (r *Value[T]) Get() (T, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	stamps := make([]stamp, len(r.files))
	var statErr error
	for i, f := range r.files {
		s, err := stat(f)
		if err != nil {
			statErr = fmt.Errorf("reading %s: %w", r.what, err)
			break
		}
		stamps[i] = s
	}
	if statErr == nil && r.loaded && equalStamps(stamps, r.stamps) {
		return r.val, nil
	}
	if statErr == nil {
		v, err := r.parse()
		if err == nil {
			if r.loaded {
				klog.InfoS("Reloaded files", "what", r.what, "files", r.files)
			}
			r.val, r.stamps, r.loaded = v, stamps, true
			return v, nil
		}
		statErr = err
	}
	if r.loaded {
		klog.ErrorS(statErr, "Keeping the files last read: the changed ones cannot be used", "what", r.what, "files", r.files)
		return r.val, nil
	}
	var zero T
	return zero, statErr
}

func equalStamps(a, b []stamp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].mod.Equal(b[i].mod) || a[i].size != b[i].size {
			return false
		}
	}
	return true
}
