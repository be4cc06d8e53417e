// remediation: a controller plugin written in Go that keeps nodes and pods healthy as
// HealthCheck objects (bosun.dev/v1alpha1) ask, modelled on medik8s NodeHealthCheck: a
// target whose conditions match an unhealthy condition for its duration gets escalating
// remediations (pods: restart-container through its sidecar, delete-pod; nodes: cordon,
// drain, out-of-service, reboot), each tried after the previous one timed out or failed,
// never more at once than maxInFlight, none new while fewer targets than minHealthy are
// healthy (a storm) or while paused, and every disruption through the command pipe, so
// the runtime's budgets — shared with releases and SidecarSet upgrades — apply. See
// README.md.
package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	bosun "github.com/bosun-dev/bosun/sdk-guest/go"
)

// Labels that keep a node out of remediation (medik8s's, and Bosun's own).
const (
	medik8sExclude  = "remediation.medik8s.io/exclude-from-remediation"
	bosunExclude    = "remediation.bosun.dev/exclude"
	outOfServiceKey = "node.kubernetes.io/out-of-service"
	releaseStatus   = "release.bosun.dev/status"
)

type config struct {
	// PollMs: how often each HealthCheck is looked at (default 1000).
	PollMs int `json:"pollMs"`
	// PodAgentPlugin: the pod-agent plugin in a pod's sidecar that restarts its app
	// (restart-container; default "app-probe").
	PodAgentPlugin string `json:"podAgentPlugin"`
	// NodeAgentSelector: the label selector of node-agent pods (reboot; default
	// "remediation.bosun.dev/node-agent=true"), NodeAgentPlugin the pod-agent plugin in
	// their sidecar that reboots the node (default "node-agent").
	NodeAgentSelector string `json:"nodeAgentSelector"`
	NodeAgentPlugin   string `json:"nodeAgentPlugin"`
	// EvictionRetryMs: how long a pod refused eviction waits before it is asked again
	// (default 5000).
	EvictionRetryMs int `json:"evictionRetryMs"`
}

type remediator struct{ c config }

var plugin = &remediator{}

func (*remediator) Metadata() bosun.Metadata {
	return bosun.NewMetadata("remediation", "0.1.0").
		Description("HealthCheck: escalating remediation of nodes and pods, within minHealthy, maxInFlight and the runtime's budgets").
		Subscribe(apiVersion, "HealthCheck").
		Permit(apiVersion, "HealthCheck", bosun.Read, bosun.Patch, bosun.RecordEvent).
		Permit("v1", "Node", bosun.Read, bosun.Cordon, bosun.RecordEvent).
		Permit("v1", "Pod", bosun.Read, bosun.Evict, bosun.Delete, bosun.PodCommand, bosun.RecordEvent).
		Permit("v1", "Namespace", bosun.Read).
		Permit("apps/v1", "StatefulSet", bosun.Read)
}

func (p *remediator) Init(text string) error {
	c := config{PollMs: 1000, PodAgentPlugin: "app-probe", NodeAgentSelector: "remediation.bosun.dev/node-agent=true", NodeAgentPlugin: "node-agent", EvictionRetryMs: 5000}
	if err := bosun.ParseConfig(text, &c); err != nil {
		return err
	}
	if c.PollMs < 10 || c.PollMs > 600_000 {
		return fmt.Errorf("invalid config: pollMs %d is not between 10 and 600000", c.PollMs)
	}
	if c.EvictionRetryMs < 0 {
		return fmt.Errorf("invalid config: evictionRetryMs must not be negative")
	}
	if _, err := parseSelector(c.NodeAgentSelector); err != nil {
		return fmt.Errorf("invalid config: nodeAgentSelector: %v", err)
	}
	p.c = c
	return nil
}

// parseSelector reads "k=v,k2=v2" (equality only) into a selector.
func parseSelector(s string) (*bosun.LabelSelector, error) {
	sel := &bosun.LabelSelector{MatchLabels: map[string]string{}}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not key=value", part)
		}
		sel.MatchLabels[k] = v
	}
	return sel, nil
}

func (p *remediator) Reconcile(ctx *bosun.Context, req *bosun.Request) (bosun.Outcome, error) {
	key := "hc/" + req.Target.Name
	var hc healthCheck
	found, err := ctx.GetAs(req.Target, &hc)
	if err != nil {
		return bosun.Done(), err
	}
	if !found {
		ctx.StateDelete(key)
		return bosun.Done(), nil
	}
	st := loadState(ctx, key)
	pass := &pass{ctx: ctx, c: &p.c, hc: &hc, ref: req.Target, st: st, now: ctx.Now()}
	pass.outcomes(req.Outcomes)
	next := pass.run()
	if err := saveState(ctx, key, st); err != nil {
		return bosun.Done(), err
	}
	pass.publish(next)
	return bosun.RequeueAfter(time.Duration(p.c.PollMs) * time.Millisecond), nil
}

func init() { bosun.ExportController(plugin) }

func main() {}

// ---- plugin state: what is in flight, per HealthCheck ----

// record is one target under remediation.
type record struct {
	Kind      string              `json:"kind"`
	Name      string              `json:"name"`
	Namespace string              `json:"namespace,omitempty"`
	UID       string              `json:"uid"`
	Steps     []remediationStatus `json:"steps"`
	// HealthySince: when its conditions stopped matching.
	HealthySince string `json:"healthySince,omitempty"`
	// What this remediation did that is undone when it ends.
	Cordoned bool `json:"cordoned,omitempty"`
	Tainted  bool `json:"tainted,omitempty"`
	// The command of the current step that reports back (a pod-command, a deletion).
	Pending uint64 `json:"pending,omitempty"`
	// Sent: the current step's one-shot command went out.
	Sent bool `json:"sent,omitempty"`
	// Failed: why the current step failed (the next one starts at once).
	Failed string `json:"failed,omitempty"`
	// Evicted: pods asked to leave (uid → when), asked again after evictionRetryMs.
	Evicted map[string]string `json:"evicted,omitempty"`
}

type hcState struct {
	Records map[string]*record `json:"records"`
	// Seen: when a pod's container was first seen in CrashLoopBackOff (key ns/name/uid).
	Seen map[string]string `json:"seen,omitempty"`
	// Storm: no new remediation because too few targets are healthy, since this time;
	// StormEnded: when enough were healthy again (the cooldown runs from it).
	Storm      string `json:"storm,omitempty"`
	StormEnded string `json:"stormEnded,omitempty"`
	// Skipped: the reason a target was last told it is skipped (one Event per reason).
	Skipped map[string]string `json:"skipped,omitempty"`
	// Undo: nodes whose ended remediation left a cordon or a taint still to remove.
	Undo map[string]*record `json:"undo,omitempty"`
}

func loadState(ctx *bosun.Context, key string) *hcState {
	st := &hcState{}
	if raw, ok := ctx.StateGet(key); ok {
		if err := json.Unmarshal(raw, st); err != nil {
			ctx.Warn(fmt.Sprintf("plugin state %s is not readable (%v): starting afresh", key, err))
			st = &hcState{}
		}
	}
	if st.Records == nil {
		st.Records = map[string]*record{}
	}
	if st.Seen == nil {
		st.Seen = map[string]string{}
	}
	if st.Skipped == nil {
		st.Skipped = map[string]string{}
	}
	if st.Undo == nil {
		st.Undo = map[string]*record{}
	}
	return st
}

func saveState(ctx *bosun.Context, key string, st *hcState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return ctx.StateSet(key, b)
}

// ---- one pass over a HealthCheck ----

type pass struct {
	ctx *bosun.Context
	c   *config
	hc  *healthCheck
	ref bosun.ObjectRef
	st  *hcState
	now time.Time
	// Filled by run, published by publish.
	observed, healthy int
	waiting           []target
	phase, reason     string
	storm, cooldown   bool
	stormReason       string
	// pods: every pod, listed once per pass when a drain or a reboot needs them.
	pods    []bosun.PodObject
	invalid string
}

// target is a node or a pod the HealthCheck selects.
type target struct {
	key       string
	kind      string
	name      string
	namespace string
	uid       string
	node      *bosun.NodeObject
	pod       *bosun.PodObject
	// unhealthy: a condition matched for its duration; since: from when. soon: one
	// matches, its duration not over yet (not healthy, not remediated yet).
	unhealthy bool
	soon      bool
	since     time.Time
	why       string
}

func (t *target) ref() bosun.ObjectRef {
	if t.kind == "Pod" {
		return bosun.NewRef("v1", "Pod", t.name).InNamespace(t.namespace)
	}
	return bosun.NewRef("v1", "Node", t.name)
}

func (t *target) String() string {
	if t.namespace != "" {
		return fmt.Sprintf("pod %s/%s", t.namespace, t.name)
	}
	return "node " + t.name
}

func (p *pass) event(regarding bosun.ObjectRef, kind bosun.EventType, reason, message string) {
	if _, err := p.ctx.Submit(bosun.Event(regarding, kind, reason, message)); err != nil {
		p.ctx.Debug(fmt.Sprintf("event %s not recorded: %v", reason, err))
	}
}

// outcomes: a pod-command or a deletion of a current step that failed fails the step.
func (p *pass) outcomes(list []bosun.CommandOutcome) {
	for _, o := range list {
		for _, r := range p.st.Records {
			if r.Pending != o.ID {
				continue
			}
			r.Pending = 0
			switch o.Verdict {
			case bosun.Failed:
				r.Failed = "failed: " + o.Message
			case bosun.RefusedVerdict:
				// Refused by a guardrail (a budget, a rate): sent again on a later pass.
				r.Sent = false
				p.ctx.Info(fmt.Sprintf("%s of %s/%s refused, retried later: %s", current(r), r.Namespace, r.Name, o.Message))
			}
		}
	}
}

func current(r *record) string {
	if len(r.Steps) == 0 {
		return ""
	}
	return r.Steps[len(r.Steps)-1].Action
}

func (p *pass) run() []target {
	s := &p.hc.Spec
	if err := s.validate(); err != nil {
		p.invalid = err.Error()
		return nil
	}
	targets, err := p.targets()
	if err != nil {
		p.invalid = err.Error()
		return nil
	}
	p.observed = len(targets)
	byKey := map[string]*target{}
	for i := range targets {
		byKey[targets[i].key] = &targets[i]
	}
	// In flight: advance, end or escalate.
	keys := make([]string, 0, len(p.st.Records))
	for k := range p.st.Records {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p.advance(k, p.st.Records[k], byKey[k])
	}
	// Healthy: no condition matches and nothing in flight.
	var candidates []*target
	for i := range targets {
		t := &targets[i]
		_, inFlight := p.st.Records[t.key]
		switch {
		case !t.unhealthy && !t.soon && !inFlight:
			p.healthy++
			delete(p.st.Skipped, t.key)
		case t.unhealthy && !inFlight:
			candidates = append(candidates, t)
		}
	}
	// Oldest failure first; ties by name, so the order never depends on the cache's.
	sort.SliceStable(candidates, func(i, j int) bool {
		a, b := candidates[i], candidates[j]
		if !a.since.Equal(b.since) {
			return a.since.Before(b.since)
		}
		return a.key < b.key
	})
	p.guard(candidates)
	p.reverts()
	for _, t := range candidates {
		if _, started := p.st.Records[t.key]; !started {
			p.waiting = append(p.waiting, *t)
		}
	}
	return targets
}

// guard starts remediations for the candidates the guards let through and says why the
// others wait.
func (p *pass) guard(candidates []*target) {
	s := &p.hc.Spec
	minHealthy, err := s.minHealthyCount(p.observed)
	if err != nil {
		p.invalid = err.Error()
		return
	}
	// The storm (NodeHealthCheck's storm recovery): below the threshold no new
	// remediation starts; once enough are healthy again it lasts stormCooldownDuration
	// more. Unlike NodeHealthCheck, StormActive is set also without a cooldown.
	if p.healthy < minHealthy {
		if p.st.Storm == "" {
			p.st.Storm = bosun.FormatTime(p.now)
			p.event(p.ref, bosun.Warning, "StormRecoveryStarted", fmt.Sprintf("Storm recovery mode activated - delaying remediation until threshold is reached (%d of %d targets healthy, %d needed)", p.healthy, p.observed, minHealthy))
		}
		if p.st.StormEnded != "" {
			p.st.StormEnded = ""
		}
		p.storm, p.stormReason = true, fmt.Sprintf("%d of %d targets healthy, %d needed", p.healthy, p.observed, minHealthy)
	} else if p.st.Storm != "" {
		if p.st.StormEnded == "" {
			p.st.StormEnded = bosun.FormatTime(p.now)
			if s.stormCooldown > 0 {
				p.event(p.ref, bosun.Warning, "StormRecoveryCooldownStarted", fmt.Sprintf("Storm recovery mode will exit after cooldown delay (%s)", s.stormCooldown))
			}
		}
		ended, _ := bosun.ParseTime(p.st.StormEnded)
		if left := s.stormCooldown - p.now.Sub(ended); left > 0 {
			p.storm, p.cooldown = true, true
			p.stormReason = fmt.Sprintf("%d of %d targets healthy again; cooldown %s left", p.healthy, p.observed, left.Round(time.Second))
		} else {
			p.event(p.ref, bosun.Normal, "StormRecoveryEnded", fmt.Sprintf("Storm recovery mode deactivated - normal remediation resumed (%d of %d targets healthy)", p.healthy, p.observed))
			p.st.Storm, p.st.StormEnded = "", ""
		}
	}
	maxInFlight := s.maxInFlightCount(p.observed)
	for _, t := range candidates {
		var why string
		switch {
		case len(s.PauseRequests) > 0:
			why = "paused: " + strings.Join(s.PauseRequests, "; ")
		case p.storm:
			why = "storm recovery active: " + p.stormReason
		case maxInFlight >= 0 && len(p.st.Records) >= maxInFlight:
			why = fmt.Sprintf("maxInFlight: %d remediations in flight", len(p.st.Records))
		default:
			why = p.releaseRunning(t)
		}
		if why != "" {
			if p.st.Skipped[t.key] != skippedKind(why) {
				p.st.Skipped[t.key] = skippedKind(why)
				p.event(t.ref(), bosun.Warning, "RemediationSkipped", fmt.Sprintf("HealthCheck %s: %s is unhealthy (%s) but not remediated: %s", p.hc.Metadata.Name, t, t.why, why))
			}
			continue
		}
		delete(p.st.Skipped, t.key)
		first := s.EscalatingRemediations[0]
		r := &record{Kind: t.kind, Name: t.name, Namespace: t.namespace, UID: t.uid,
			Steps: []remediationStatus{{Action: first.Action, Started: bosun.FormatTime(p.now)}}}
		p.st.Records[t.key] = r
		p.event(t.ref(), bosun.Normal, "RemediationStarted", fmt.Sprintf("HealthCheck %s: %s is unhealthy (%s): %s", p.hc.Metadata.Name, t, t.why, first.Action))
		p.act(r, t)
	}
}

// skippedKind is the reason's kind (before the colon): one Event per kind of reason.
func skippedKind(why string) string {
	k, _, _ := strings.Cut(why, ":")
	return k
}

// releaseRunning: a pod of a StatefulSet the release plugin is releasing waits (it reads
// the release's progress annotation on the StatefulSet: updated < total). A release the
// release plugin paused (on pods that failed to start at the new revision) waits for
// nothing but those pods: remediating them is what lets it go on, so it does not hold
// remediation back.
func (p *pass) releaseRunning(t *target) string {
	if t.pod == nil {
		return ""
	}
	owner, ok := t.pod.Metadata.ControllerOf()
	if !ok || owner.Kind != "StatefulSet" {
		return ""
	}
	var sts struct {
		Metadata bosun.ObjectMeta `json:"metadata"`
	}
	ref := bosun.NewRef("apps/v1", "StatefulSet", owner.Name).InNamespace(t.namespace)
	if ok, err := p.ctx.GetAs(ref, &sts); !ok || err != nil {
		return ""
	}
	var progress struct {
		Updated int    `json:"updated"`
		Total   int    `json:"total"`
		Paused  string `json:"paused"`
	}
	text, ok := sts.Metadata.Annotations[releaseStatus]
	if !ok || json.Unmarshal([]byte(text), &progress) != nil || progress.Updated >= progress.Total || progress.Paused != "" {
		return ""
	}
	return fmt.Sprintf("release: StatefulSet %s is being released (%d of %d updated)", owner.Name, progress.Updated, progress.Total)
}

// advance moves one in-flight remediation: ended when its target is healthy (for
// healthyDelay) or gone, escalated when its step timed out or failed, else its step
// goes on.
func (p *pass) advance(key string, r *record, t *target) {
	s := &p.hc.Spec
	end := func(how string) {
		p.undo(r)
		delete(p.st.Records, key)
		what := fmt.Sprintf("%s %s", strings.ToLower(r.Kind), r.Name)
		if r.Namespace != "" {
			what = fmt.Sprintf("pod %s/%s", r.Namespace, r.Name)
		}
		p.event(p.ref, bosun.Normal, "RemediationSucceeded", fmt.Sprintf("%s %s after %s", what, how, strings.Join(actions(r), ", ")))
	}
	if t == nil || t.uid != r.UID {
		end("was replaced")
		return
	}
	if !t.unhealthy {
		if r.HealthySince == "" {
			r.HealthySince = bosun.FormatTime(p.now)
		}
		since, _ := bosun.ParseTime(r.HealthySince)
		if p.now.Sub(since) >= s.healthyDelay {
			end("is healthy again")
		}
		return
	}
	r.HealthySince = ""
	if len(s.PauseRequests) > 0 {
		// Paused: no escalation and no action; a target that recovers still ends.
		return
	}
	step := &r.Steps[len(r.Steps)-1]
	started, _ := bosun.ParseTime(step.Started)
	i := indexOf(s.EscalatingRemediations, step.Action)
	timedOut := i >= 0 && p.now.Sub(started) >= s.EscalatingRemediations[i].timeout
	if (timedOut || r.Failed != "") && step.TimedOut == "" {
		why := "timed out"
		if r.Failed != "" {
			why = r.Failed
		}
		step.TimedOut = bosun.FormatTime(p.now)
		if i >= 0 && i+1 < len(s.EscalatingRemediations) {
			next := s.EscalatingRemediations[i+1].Action
			r.Steps = append(r.Steps, remediationStatus{Action: next, Started: bosun.FormatTime(p.now)})
			r.Sent, r.Pending, r.Failed = false, 0, ""
			p.event(t.ref(), bosun.Warning, "Escalated", fmt.Sprintf("HealthCheck %s: %s of %s %s: %s", p.hc.Metadata.Name, step.Action, t, why, next))
		} else {
			p.event(t.ref(), bosun.Warning, "RemediationFailed", fmt.Sprintf("HealthCheck %s: %s of %s %s and it was the last remediation: %s stays unhealthy until someone looks", p.hc.Metadata.Name, step.Action, t, why, t))
		}
	}
	if r.Steps[len(r.Steps)-1].TimedOut == "" {
		p.act(r, t)
	}
}

func indexOf(list []remediation, action string) int {
	for i, r := range list {
		if r.Action == action {
			return i
		}
	}
	return -1
}

func actions(r *record) []string {
	var out []string
	for _, s := range r.Steps {
		out = append(out, s.Action)
	}
	return out
}

// undo queues what the ended remediation did to a node to be reverted: its
// out-of-service taint, its cordon.
func (p *pass) undo(r *record) {
	if r.Kind == "Node" && (r.Tainted || r.Cordoned) {
		p.st.Undo[r.Name] = &record{Kind: r.Kind, Name: r.Name, Tainted: r.Tainted, Cordoned: r.Cordoned}
	}
}

// reverts removes the taints and cordons of ended remediations, on every pass until the
// node shows neither (a refused command is sent again).
func (p *pass) reverts() {
	for name, r := range p.st.Undo {
		if _, busy := p.st.Records[name]; busy {
			delete(p.st.Undo, name)
			continue
		}
		var node bosun.NodeObject
		if ok, err := p.ctx.GetAs(bosun.NewRef("v1", "Node", name), &node); !ok || err != nil {
			delete(p.st.Undo, name)
			continue
		}
		tainted := r.Tainted && node.HasTaint(outOfServiceKey, "NoExecute")
		cordoned := r.Cordoned && node.Spec.Unschedulable
		if tainted {
			if _, err := p.ctx.Submit(bosun.UntaintNodeEffect(name, outOfServiceKey, bosun.NoExecute)); err != nil {
				p.ctx.Warn(fmt.Sprintf("cannot remove the out-of-service taint of %s yet: %v", name, err))
			}
		}
		if cordoned {
			if _, err := p.ctx.Submit(bosun.UncordonNode(name)); err != nil {
				p.ctx.Warn(fmt.Sprintf("cannot uncordon %s yet: %v", name, err))
			}
		}
		if !tainted && !cordoned {
			delete(p.st.Undo, name)
		}
	}
}
