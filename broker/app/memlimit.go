package app

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/klog/v2"
)

// cgroupLimitShare is how much of the container's memory limit the Go heap
// may aim at when --memory-limit is not given: the rest is for what the
// runtime does not count (stacks of cgo, the binary's mappings) and slack
// before the kernel's OOM killer.
const cgroupLimitShare = 0.9

// unlimited is above any real limit: cgroup v1 reports "no limit" as the
// largest page-aligned int64, v2 as "max".
const unlimited = int64(1) << 62

// memoryLimit is the soft limit the Go runtime gets, in bytes (0: none) and
// where it comes from. An explicit --memory-limit wins ("0" turns it off);
// then GOMEMLIMIT, which the runtime already applied; then the cgroup's.
func memoryLimit(flag string, cgroupRoot, procSelfCgroup string) (int64, string, error) {
	if flag != "" {
		q, err := resource.ParseQuantity(flag)
		if err != nil || q.Sign() < 0 {
			return 0, "", fmt.Errorf("--memory-limit=%q must be a quantity of bytes such as 180Mi, or 0 for no limit", flag)
		}
		return q.Value(), "--memory-limit", nil
	}
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0, "GOMEMLIMIT", nil
	}
	limit, err := cgroupMemoryLimit(cgroupRoot, procSelfCgroup)
	if err != nil || limit <= 0 || limit >= unlimited {
		return 0, "", nil // no limit known: the runtime's default
	}
	return int64(float64(limit) * cgroupLimitShare), "cgroup memory limit", nil
}

// applyMemoryLimit sets the runtime's soft memory limit: the Go heap is
// collected harder as it nears it, instead of growing to twice the live
// heap (GOGC=100) before each collection.
func applyMemoryLimit(logger klog.Logger, limit int64, source string) {
	if source == "GOMEMLIMIT" || source == "" {
		logger.Info("Go memory limit", "source", source, "bytes", debug.SetMemoryLimit(-1))
		return
	}
	if limit == 0 {
		limit = unlimitedRuntime
	}
	debug.SetMemoryLimit(limit)
	logger.Info("Go memory limit", "source", source, "bytes", limit)
}

// unlimitedRuntime is the runtime's own "no limit" (math.MaxInt64).
const unlimitedRuntime = int64(^uint64(0) >> 1)

// cgroupMemoryLimit reads the memory limit of this process's cgroup, v2
// (memory.max) or v1 (memory.limit_in_bytes).
func cgroupMemoryLimit(root, procSelfCgroup string) (int64, error) {
	f, err := os.Open(procSelfCgroup)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var v1, v2 string
	haveV2 := false
	s := bufio.NewScanner(f)
	for s.Scan() {
		// hierarchy-id:controllers:path
		parts := strings.SplitN(s.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2, haveV2 = parts[2], true
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "memory" {
				v1 = parts[2]
			}
		}
	}
	var file string
	switch {
	case v1 != "":
		file = filepath.Join(root, "memory", v1, "memory.limit_in_bytes")
	case haveV2:
		file = filepath.Join(root, v2, "memory.max")
	default:
		return 0, errors.New("no memory cgroup")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	v := strings.TrimSpace(string(b))
	if v == "max" {
		return unlimited, nil
	}
	return strconv.ParseInt(v, 10, 64)
}
