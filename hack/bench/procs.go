package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/common/model"
	"k8s.io/component-base/metrics/testutil"
)

// child is a program the driver started and must stop.
type child struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan error
}

func startChild(name, logPath, bin string, args ...string) (*child, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating the log of %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group, so that a stop reaches nothing else.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, log: f, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait() }()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// exited reports the exit error if the child has ended.
func (c *child) exited() (bool, error) {
	select {
	case err := <-c.done:
		c.done <- err
		return true, err
	default:
		return false, nil
	}
}

// stop ends the child: SIGTERM, then SIGKILL after 10 seconds.
func (c *child) stop() {
	if c == nil {
		return
	}
	if ok, _ := c.exited(); !ok {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-c.pid(), syscall.SIGKILL)
			<-c.done
		}
	}
	c.log.Close()
}

// ProcStats is what /proc says about one process.
type ProcStats struct {
	// PeakRSSMiB is VmHWM: the most resident memory the process ever had.
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	// CPUSeconds is user+system time since the process started.
	CPUSeconds float64 `json:"cpu_seconds"`
}

func procStats(pid int) (ProcStats, error) {
	var s ProcStats
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			s.PeakRSSMiB = float64(int(kb/1024*10)) / 10
		}
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the command (which may hold spaces) start after ')'.
	rest := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	if len(rest) > 13 {
		ut, _ := strconv.ParseFloat(rest[11], 64)
		st, _ := strconv.ParseFloat(rest[12], 64)
		s.CPUSeconds = float64(int((ut+st)/100*100)) / 100 // USER_HZ is 100 on Linux
	}
	return s, nil
}

// PhaseCPU is the CPU (user+system seconds) the broker and the scheduler
// spent over a stretch of a scenario.
type PhaseCPU struct {
	BrokerSeconds    float64 `json:"broker_seconds"`
	SchedulerSeconds float64 `json:"scheduler_seconds"`
}

// cpuNow reads what the broker and the scheduler have spent so far; nil
// when either cannot be read.
func (e *scenarioEnv) cpuNow() *PhaseCPU {
	if e.broker == nil || e.sched == nil {
		return nil
	}
	b, err := procStats(e.broker.pid())
	if err != nil {
		return nil
	}
	s, err := procStats(e.sched.pid())
	if err != nil {
		return nil
	}
	return &PhaseCPU{BrokerSeconds: b.CPUSeconds, SchedulerSeconds: s.CPUSeconds}
}

// cpuSince is what was spent from before to after; nil if either is.
func cpuSince(before, after *PhaseCPU) *PhaseCPU {
	if before == nil || after == nil {
		return nil
	}
	return &PhaseCPU{BrokerSeconds: after.BrokerSeconds - before.BrokerSeconds, SchedulerSeconds: after.SchedulerSeconds - before.SchedulerSeconds}
}

// fetch GETs url into path (a CPU profile takes as long as it asks).
func fetch(ctx context.Context, url, path string) error {
	client := &http.Client{Transport: &http.Transport{
		// The scheduler serves a self-signed certificate on loopback.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback, benchmark only
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("fetching %s: %s: %s", url, resp.Status, msg)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("fetching %s: %w", url, err)
	}
	return f.Close()
}

// httpOK reports whether GET url answers 200.
func httpOK(ctx context.Context, url string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // loopback
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// metricValue reads one sample of a Prometheus /metrics page: the first
// of metric name that carries every label of labels (it may carry more).
func metricValue(ctx context.Context, url, name string, labels map[string]string) (float64, bool) {
	samples, ok := metricSamples(ctx, url, name, labels)
	if !ok || len(samples) == 0 {
		return 0, false
	}
	return samples[0], true
}

// metricSum is the sum of every sample of name that carries every label of
// labels (e.g. a histogram's _sum over its status label).
func metricSum(ctx context.Context, url, name string, labels map[string]string) (float64, bool) {
	samples, ok := metricSamples(ctx, url, name, labels)
	if !ok || len(samples) == 0 {
		return 0, false
	}
	total := 0.0
	for _, v := range samples {
		total += v
	}
	return total, true
}

func metricSamples(ctx context.Context, url, name string, labels map[string]string) ([]float64, bool) {
	samples, ok := scrape(ctx, url)
	if !ok {
		return nil, false
	}
	return matching(samples, name, labels), true
}

// scrape reads a /metrics page.
func scrape(ctx context.Context, url string) (testutil.Metrics, bool) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, false
	}
	// The scheduler serves a self-signed certificate on loopback.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // loopback
	resp, err := client.Do(req)
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	page, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, false
	}
	samples := testutil.NewMetrics()
	if err := testutil.ParseMetrics(string(page), &samples); err != nil {
		return nil, false
	}
	return samples, true
}

// matching are the values of name's samples that carry every label of labels.
func matching(samples testutil.Metrics, name string, labels map[string]string) []float64 {
	var out []float64
next:
	for _, s := range samples[name] {
		for k, v := range labels {
			if string(s.Metric[model.LabelName(k)]) != v {
				continue next
			}
		}
		out = append(out, float64(s.Value))
	}
	return out
}
