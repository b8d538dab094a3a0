package bench

import (
	"fmt"
	"io"
	"iter"
	"strings"
	"text/tabwriter"
)

func findPhase(s ScenarioResult, scheduler, mode string) *PhaseResult {
	for i := range s.Phases {
		if s.Phases[i].Scheduler == scheduler && s.Phases[i].Mode == mode {
			return &s.Phases[i]
		}
	}
	return nil
}

// scalePhases yields the phases of the scale scenarios in order, each with
// its scenario: the rows of most of the report's tables.
func scalePhases(ss []ScenarioResult) iter.Seq2[ScenarioResult, PhaseResult] {
	return func(yield func(ScenarioResult, PhaseResult) bool) {
		for _, s := range ss {
			if s.Kind != "scale" {
				continue
			}
			for _, p := range s.Phases {
				if !yield(s, p) {
					return
				}
			}
		}
	}
}

// startTable begins a Markdown table of these columns (its header and
// separator rows) in a tabwriter, so that the text lines up in a terminal
// as well; endTable flushes it and ends the paragraph.
func startTable(w io.Writer, columns ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| "+strings.Join(columns, "\t ")+"\t")
	fmt.Fprintln(tw, "|"+strings.Repeat("---\t", len(columns)))
	return tw
}

func endTable(w io.Writer, tw *tabwriter.Writer) {
	tw.Flush()
	fmt.Fprintln(w)
}

// perPod is v per bound pod, "-" when the phase bound none.
func perPod(v float64, pods int) string {
	if pods <= 0 {
		return "-"
	}
	return num3(v / float64(pods))
}

func scaleAt(ss []ScenarioResult, agents int) *ScenarioResult {
	for i := range ss {
		if ss[i].Kind == "scale" && ss[i].Agents == agents {
			return &ss[i]
		}
	}
	return nil
}

// targets judges the goals of issue #16 against what was measured.
func targets(ss []ScenarioResult) []Target {
	var out []Target
	for _, agents := range []int{1000, 5000} {
		for _, mode := range []string{"burst", "paced"} {
			name := fmt.Sprintf("throughput k8sm ÷ stock at %s agents, %s", thousands(agents), mode)
			s := scaleAt(ss, agents)
			if s == nil {
				out = append(out, NotMeasured(name, "≥ 0.9 ×", fmt.Sprintf("no %s-agent run", thousands(agents))))
				continue
			}
			k, st := findPhase(*s, K8smScheduler, mode), findPhase(*s, StockScheduler, mode)
			if k == nil || st == nil || st.BoundPerSecond <= 0 {
				out = append(out, NotMeasured(name, "≥ 0.9 ×", "a phase is missing"))
				continue
			}
			out = append(out, AtLeast(name, Ratio(k.BoundPerSecond, st.BoundPerSecond), 0.9, "×"))
		}
	}
	// Latency, Reserve and Launch: at 1,000 agents if run, else at the
	// largest size measured.
	var ref *ScenarioResult
	for i := range ss {
		if ss[i].Kind == "scale" && (ref == nil || ss[i].Agents == 1000 || (ref.Agents != 1000 && ss[i].Agents > ref.Agents)) {
			ref = &ss[i]
		}
	}
	if ref != nil {
		name := fmt.Sprintf("p99 create→bound at 100 pods/s offered (k8sm, %d agents)", ref.Agents)
		if p := findPhase(*ref, K8smScheduler, "paced"); p != nil && p.Bound > 0 {
			out = append(out, AtMost(name, p.CreateToBound.P99Ms, 250, "ms"))
		} else {
			out = append(out, NotMeasured(name, "≤ 250 ms", "no paced run"))
		}
		name = fmt.Sprintf("MesosOffers Reserve, mean (k8sm burst, %d agents)", ref.Agents)
		if p := findPhase(*ref, K8smScheduler, "burst"); p != nil && p.ExtensionPointMeanMs["Reserve"] > 0 {
			out = append(out, AtMost(name, p.ExtensionPointMeanMs["Reserve"], 0.1, "ms"))
		} else {
			out = append(out, NotMeasured(name, "≤ 0.1 ms", "no Reserve in the scheduler's metrics"))
		}
		name = fmt.Sprintf("Launch p99 (broker alone, %d agents)", ref.Agents)
		if ref.Broker != nil && ref.Broker.RoundTrips > 0 {
			out = append(out, AtMost(name, ref.Broker.Launch.P99Ms, 5, "ms"))
		} else {
			out = append(out, NotMeasured(name, "≤ 5 ms", "no broker-alone run"))
		}
	}
	const rss = "broker peak RSS at 10,000 agents"
	if s := scaleAt(ss, 10000); s != nil && s.BrokerProc.PeakRSSMiB > 0 {
		out = append(out, AtMost(rss, s.BrokerProc.PeakRSSMiB, 200, "MiB"))
	} else {
		largest := 0.0
		at := 0
		for _, s := range ss {
			if s.Kind == "scale" && s.Agents > at && s.BrokerProc.PeakRSSMiB > 0 {
				at, largest = s.Agents, s.BrokerProc.PeakRSSMiB
			}
		}
		why := "no 10,000-agent run (make bench-big)"
		if at > 0 {
			why += fmt.Sprintf("; %.0f MiB at %d agents", largest, at)
		}
		out = append(out, NotMeasured(rss, "≤ 200 MiB", why))
	}
	return out
}

// thousands writes 5000 as 5,000.
func thousands(n int) string {
	if n < 1000 {
		return fmt.Sprint(n)
	}
	return fmt.Sprintf("%d,%03d", n/1000, n%1000)
}

func ms3(l Latency) string {
	if l.Count == 0 {
		return "-"
	}
	return fmt.Sprintf("%s / %s / %s", num(l.P50Ms), num(l.P90Ms), num(l.P99Ms))
}

func num(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// num3 keeps three significant digits below 1 (extension points take
// microseconds).
func num3(v float64) string {
	if v < 1 {
		return fmt.Sprintf("%.3f", v)
	}
	return num(v)
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// WriteTable prints the results for people (Markdown, so that the same text
// goes into docs/benchmarks.md).
func WriteTable(w io.Writer, res *Results) {
	m := res.Machine
	fmt.Fprintf(w, "k8sm benchmarks — %s\n", HollowNote)
	fmt.Fprintf(w, "%s\n", CheckpointNote(res.Config.HollowCheckpoint))
	fmt.Fprintf(w, "machine: %d CPUs (%s), %d GiB, kernel %s, %s; load average %s at start, %s at end\n\n",
		m.CPUs, m.CPUModel, m.MemoryGiB, m.Kernel, m.GoVersion, m.LoadAvgStart, m.LoadAvgEnd)

	fmt.Fprintln(w, "### Scheduling: k8sm (mesos-scheduler profile) beside the stock scheduler, same process, same Nodes")
	fmt.Fprintln(w)
	tw := startTable(w, "agents", "pods", "scheduler", "load", "bound pods/s", "create→bound p50/p90/p99 ms", "running pods/s", "create→RUNNING p50/p90/p99 ms", "attempts/pod (unschedulable, error)")
	for _, s := range res.Scenarios {
		if s.Kind != "scale" {
			continue
		}
		for _, p := range s.Phases {
			load := "burst"
			if p.Mode == "paced" {
				load = fmt.Sprintf("%g pods/s", p.OfferedRate)
			}
			run, runLat := "-", "-"
			if p.Scheduler == K8smScheduler {
				run, runLat = fmt.Sprintf("%.1f", p.RunningPerSec), ms3(p.CreateToRunning)
			}
			name := "k8sm"
			if p.Scheduler == StockScheduler {
				name = "stock"
			}
			bound := fmt.Sprintf("%d/%d", p.Bound, p.Pods)
			attempts := "-"
			if p.Attempts != nil && p.Pods > 0 {
				total := p.Attempts["scheduled"] + p.Attempts["unschedulable"] + p.Attempts["error"]
				attempts = fmt.Sprintf("%.2f (%g, %g)", total/float64(p.Pods), p.Attempts["unschedulable"], p.Attempts["error"])
			}
			fmt.Fprintf(tw, "| %d\t %s\t %s\t %s\t %.1f\t %s\t %s\t %s\t %s\t\n", s.Agents, bound, name, load, p.BoundPerSecond, ms3(p.CreateToBound), run, runLat, attempts)
		}
		if s.Error != "" {
			fmt.Fprintf(tw, "| %d\t error\t %s\t\t\t\t\t\t\t\n", s.Agents, strings.ReplaceAll(s.Error, "|", "/"))
		}
	}
	tw.Flush()
	for _, s := range res.Scenarios {
		for _, n := range s.Notes {
			fmt.Fprintf(w, "\n%s: %s\n", s.Name, n)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "### k8sm ÷ stock")
	fmt.Fprintln(w)
	tw = startTable(w, "agents", "load", "throughput", "p50 latency", "p99 latency")
	for _, s := range res.Scenarios {
		if s.Kind != "scale" {
			continue
		}
		for _, mode := range []string{"burst", "paced"} {
			k, st := findPhase(s, K8smScheduler, mode), findPhase(s, StockScheduler, mode)
			if k == nil || st == nil {
				continue
			}
			fmt.Fprintf(tw, "| %d\t %s\t %s\t %s\t %s\t\n", s.Agents, mode, ratio(k.BoundPerSecond, st.BoundPerSecond),
				ratio(k.CreateToBound.P50Ms, st.CreateToBound.P50Ms), ratio(k.CreateToBound.P99Ms, st.CreateToBound.P99Ms))
		}
	}
	endTable(w, tw)

	fmt.Fprintln(w, "### Where an attempt's time goes (scheduler_framework_extension_point_duration_seconds, mean ms during the phase)")
	fmt.Fprintln(w)
	tw = startTable(w, append([]string{"agents", "scheduler", "load"}, ExtensionPoints...)...)
	for s, p := range scalePhases(res.Scenarios) {
		name := "k8sm"
		if p.Scheduler == StockScheduler {
			name = "stock"
		}
		fmt.Fprintf(tw, "| %d\t %s\t %s\t", s.Agents, name, p.Mode)
		for _, ep := range ExtensionPoints {
			v, ok := p.ExtensionPointMeanMs[ep]
			if !ok {
				fmt.Fprint(tw, " -\t")
				continue
			}
			fmt.Fprintf(tw, " %s\t", num3(v))
		}
		fmt.Fprintln(tw)
	}
	endTable(w, tw)

	writeBindPhaseTable(w, res.Scenarios)

	fmt.Fprintln(w, "### Mesos offers during each k8sm phase (the broker's k8sm_broker_offers_* metrics)")
	fmt.Fprintln(w)
	tw = startTable(w, "agents", "load", "offers received", "offers declined", "offers held, peak", "held for pending pods, peak")
	for s, p := range scalePhases(res.Scenarios) {
		if p.Scheduler != K8smScheduler {
			continue
		}
		if o := p.Offers; o != nil {
			fmt.Fprintf(tw, "| %d\t %s\t %.0f\t %.0f\t %.0f\t %.0f\t\n", s.Agents, p.Mode, o.Received, o.Declined, o.HeldPeak, o.HeldForPendingPeak)
		} else {
			fmt.Fprintf(tw, "| %d\t %s\t -\t -\t -\t -\t\n", s.Agents, p.Mode)
		}
	}
	endTable(w, tw)

	fmt.Fprintln(w, "### Broker alone (driver plays the plugin over gRPC on loopback) and process costs")
	fmt.Fprintln(w)
	tw = startTable(w, "agents", "Reserve+Launch p50/p90/p99 ms", "Reserve p99 ms", "Launch p99 ms", "offers/s (burst)", "all Nodes Ready after s", "usable Nodes start→end", "broker peak RSS MiB", "broker CPU s", "scheduler peak RSS MiB", "scheduler CPU s")
	for _, s := range res.Scenarios {
		if s.Kind != "scale" {
			continue
		}
		rl, r, l, ops := "-", "-", "-", "-"
		if b := s.Broker; b != nil && b.RoundTrips > 0 {
			rl, r, l = ms3(b.ReserveLaunch), num(b.Reserve.P99Ms), num(b.Launch.P99Ms)
			ops = fmt.Sprintf("%.0f (%d in %.0f ms)", b.OffersPerSecond, b.OfferBurstAgents, b.OfferBurstMs)
			if b.OfferBurstMs < 1 {
				ops = fmt.Sprintf("%d in one event (<1 ms)", b.OfferBurstAgents)
			}
		}
		ready := "never"
		if s.NodesReadySeconds > 0 {
			ready = fmt.Sprintf("%.1f", s.NodesReadySeconds)
		}
		fmt.Fprintf(tw, "| %d\t %s\t %s\t %s\t %s\t %s\t %d→%d\t %.0f\t %.1f\t %.0f\t %.1f\t\n", s.Agents, rl, r, l, ops, ready,
			s.UsableNodesAtStart, s.UsableNodesAtEnd, s.BrokerProc.PeakRSSMiB, s.BrokerProc.CPUSeconds, s.SchedulerProc.PeakRSSMiB, s.SchedulerProc.CPUSeconds)
	}
	endTable(w, tw)

	writeCPUTable(w, res.Scenarios)
	writeEventTables(w, res.Scenarios)

	var vars []ScenarioResult
	for _, s := range res.Scenarios {
		if s.Kind == "variation" {
			vars = append(vars, s)
		}
	}
	if len(vars) > 0 {
		fmt.Fprintf(w, "### What matters to Mesos (k8sm only, %d agents, %d pods, burst)\n\n", vars[0].Agents, vars[0].Pods)
		tw = startTable(w, "scenario", "allocation interval", "refuse s", "batch window", "frameworks", "bound pods/s", "create→bound p50/p90/p99 ms", "create→RUNNING p50/p90/p99 ms", "offers received", "offers declined")
		for _, s := range vars {
			p := findPhase(s, K8smScheduler, "burst")
			if p == nil {
				fmt.Fprintf(tw, "| %s\t error: %s\t\t\t\t\t\t\t\t\t\n", s.Name, strings.ReplaceAll(s.Error, "|", "/"))
				continue
			}
			fmt.Fprintf(tw, "| %s\t %v\t %g\t %v\t %d\t %.1f\t %s\t %s\t %.0f\t %.0f\t\n", s.Name, durString(s.AllocationInterval), s.RefuseSeconds,
				durString(s.BatchWindow), s.Frameworks, p.BoundPerSecond, ms3(p.CreateToBound), ms3(p.CreateToRunning), s.OffersReceived, s.OffersDeclined)
		}
		tw.Flush()
		fmt.Fprintln(w)
	}

	writeKnobTable(w, res.Scenarios)

	fmt.Fprintln(w, "### Targets (reported, never enforced)")
	fmt.Fprintln(w)
	tw = startTable(w, "target", "goal", "achieved", "verdict")
	for _, t := range res.Targets {
		a := "-"
		if t.Measured {
			a = fmt.Sprintf("%s %s", num(t.Achieved), t.Unit)
		}
		fmt.Fprintf(tw, "| %s\t %s\t %s\t %s\t\n", t.Name, t.Goal, a, t.Verdict)
	}
	tw.Flush()
}

func durString(d Duration) string { return fmt.Sprint(timeDuration(d)) }

// writeBindPhaseTable prints where k8sm's binds spent their time: Bind's
// mean (the extension point) and then each phase of the plugin's Bind and
// of the broker's Launch, which it contains.
func writeBindPhaseTable(w io.Writer, ss []ScenarioResult) {
	fmt.Fprintf(w, "### Where k8sm's Bind goes (scheduler: %s, phases of the plugin's Bind; broker: %s, phases of one pod's Launch, inside launch; during the phase)\n", BindPhaseMetric, LaunchPhaseMetric)
	fmt.Fprintln(w)
	tw := startTable(w, "agents", "load", "component", "phase", "count", "mean ms", "p99 ms (from buckets)")
	for s, p := range scalePhases(ss) {
		if p.Scheduler != K8smScheduler {
			continue
		}
		bind := "-"
		if v, ok := p.ExtensionPointMeanMs["Bind"]; ok {
			bind = num3(v)
		}
		fmt.Fprintf(tw, "| %d\t %s\t scheduler\t Bind (extension point)\t -\t %s\t -\t\n", s.Agents, p.Mode, bind)
		if len(p.BindPhases) == 0 {
			fmt.Fprintf(tw, "| %d\t %s\t -\t no phase metrics\t -\t -\t -\t\n", s.Agents, p.Mode)
		}
		for _, t := range p.BindPhases {
			p99 := num3(t.P99Ms)
			if t.P99AboveMs > 0 {
				p99 = "> " + num3(t.P99AboveMs)
			}
			fmt.Fprintf(tw, "| %d\t %s\t %s\t %s\t %.0f\t %s\t %s\t\n", s.Agents, p.Mode, t.Component, t.Phase, t.Count, num3(t.MeanMs), p99)
		}
	}
	endTable(w, tw)
}

// writeCPUTable prints which part of each scale scenario the broker's and
// the scheduler's CPU went to, and per bound pod during each phase.
func writeCPUTable(w io.Writer, ss []ScenarioResult) {
	fmt.Fprintln(w, "### Broker and scheduler CPU by part of the run (user+system s from /proc/<pid>/stat; ms per bound pod)")
	fmt.Fprintln(w)
	tw := startTable(w, "agents", "part", "broker CPU s", "scheduler CPU s", "broker ms per pod", "scheduler ms per pod")
	row := func(agents int, part string, c *PhaseCPU, pods int) {
		if c == nil {
			fmt.Fprintf(tw, "| %d\t %s\t -\t -\t -\t -\t\n", agents, part)
			return
		}
		fmt.Fprintf(tw, "| %d\t %s\t %.2f\t %.2f\t %s\t %s\t\n", agents, part, c.BrokerSeconds, c.SchedulerSeconds, perPod(c.BrokerSeconds*1000, pods), perPod(c.SchedulerSeconds*1000, pods))
	}
	for _, s := range ss {
		if s.Kind != "scale" {
			continue
		}
		row(s.Agents, "before the first phase (Nodes, broker alone, start)", s.BeforePhasesCPU, 0)
		for _, p := range s.Phases {
			row(s.Agents, partName(p), p.CPU, p.Bound)
			row(s.Agents, partName(p)+": deleting its pods", p.DeleteCPU, 0)
		}
		row(s.Agents, "whole run", &PhaseCPU{BrokerSeconds: s.BrokerProc.CPUSeconds, SchedulerSeconds: s.SchedulerProc.CPUSeconds}, 0)
	}
	endTable(w, tw)
}

// partName names a phase as the CPU table does ("k8sm burst").
func partName(p PhaseResult) string {
	if p.Scheduler == K8smScheduler {
		return "k8sm " + p.Mode
	}
	return "stock " + p.Mode
}

// writeEventTables prints, per phase of each scale scenario, what the
// scheduler handled besides its attempts and what the API server wrote to
// pods and Nodes, per bound pod (the CPU table's stretch), and MesosOffers'
// PreFilter answers during each k8sm phase: what tells the scheduler's CPU
// per pod in k8sm's phase from the stock one's (#16).
func writeEventTables(w io.Writer, ss []ScenarioResult) {
	fmt.Fprintf(w, "### The scheduler's events during each phase (%s by event: handled, and the handlers' time; %s by event, summed over queues; per bound pod)\n", EventHandlingMetric, QueueIncomingMetric)
	fmt.Fprintln(w)
	tw := startTable(w, "agents", "part", "event", "handled", "handled per pod", "handler µs per pod", "pods queued per pod")
	for s, p := range scalePhases(ss) {
		ev := p.Events
		if ev == nil {
			fmt.Fprintf(tw, "| %d\t %s\t -\t not read\t -\t -\t -\t\n", s.Agents, partName(p))
			continue
		}
		labels := map[string]bool{}
		for k := range ev.Handled {
			labels[k] = true
		}
		for k := range ev.QueueIncoming {
			labels[k] = true
		}
		for _, k := range sortedKeys(labels) {
			c := ev.Handled[k]
			fmt.Fprintf(tw, "| %d\t %s\t %s\t %.0f\t %s\t %s\t %s\t\n", s.Agents, partName(p), k, c.Count,
				perPod(c.Count, p.Bound), perPod(c.Seconds*1e6, p.Bound), perPod(ev.QueueIncoming[k], p.Bound))
		}
		t := ev.Total()
		queued := 0.0
		for _, v := range ev.QueueIncoming {
			queued += v
		}
		fmt.Fprintf(tw, "| %d\t %s\t all\t %.0f\t %s\t %s\t %s\t\n", s.Agents, partName(p), t.Count,
			perPod(t.Count, p.Bound), perPod(t.Seconds*1e6, p.Bound), perPod(queued, p.Bound))
	}
	endTable(w, tw)
	fmt.Fprintln(w, "AssignedPodUpdate counts an update of a bound pod twice when it changes no label, request or toleration (kube-scheduler records the whole handling, then the requeue for the event it derives): the pod writes below count each once.")
	fmt.Fprintln(w)

	fmt.Fprintf(w, "### Writes to pods and Nodes during each phase (the API server's %s, 2xx, every client's; per bound pod)\n", APIRequestsMetric)
	fmt.Fprintln(w)
	tw = startTable(w, "agents", "part", "write", "count", "per bound pod")
	for s, p := range scalePhases(ss) {
		if p.Events == nil || p.Events.APIWrites == nil {
			fmt.Fprintf(tw, "| %d\t %s\t not read\t -\t -\t\n", s.Agents, partName(p))
			continue
		}
		total := 0.0
		for _, k := range sortedKeys(p.Events.APIWrites) {
			v := p.Events.APIWrites[k]
			total += v
			fmt.Fprintf(tw, "| %d\t %s\t %s\t %.0f\t %s\t\n", s.Agents, partName(p), k, v, perPod(v, p.Bound))
		}
		fmt.Fprintf(tw, "| %d\t %s\t all\t %.0f\t %s\t\n", s.Agents, partName(p), total, perPod(total, p.Bound))
	}
	endTable(w, tw)

	fmt.Fprintf(w, "### MesosOffers' PreFilter during each k8sm phase (%s by result, %s)\n", PreFilterResultsMetric, PreFilterNamedNodesMetric)
	fmt.Fprintln(w)
	cols := append([]string{"agents", "load", "answers", "answers per bound pod"}, preFilterResultOrder...)
	tw = startTable(w, append(cols, "named share", "names per named answer")...)
	for s, p := range scalePhases(ss) {
		if p.Scheduler != K8smScheduler {
			continue
		}
		if p.Events == nil {
			fmt.Fprintf(tw, "| %d\t %s\t not read\t -\t", s.Agents, p.Mode)
			for range preFilterResultOrder {
				fmt.Fprint(tw, " -\t")
			}
			fmt.Fprintln(tw, " -\t -\t")
			continue
		}
		answers, share, names := p.Events.PreFilterAnswers()
		fmt.Fprintf(tw, "| %d\t %s\t %.0f\t %s\t", s.Agents, p.Mode, answers, perPod(answers, p.Bound))
		for _, r := range preFilterResultOrder {
			fmt.Fprintf(tw, " %.0f\t", p.Events.PreFilter[r])
		}
		shareCell, namesCell := "-", "-"
		if answers > 0 {
			shareCell = fmt.Sprintf("%.1f%%", share*100)
		}
		if p.Events.PreFilter["named"] > 0 {
			namesCell = num(names)
		}
		fmt.Fprintf(tw, " %s\t %s\t\n", shareCell, namesCell)
	}
	endTable(w, tw)
}
