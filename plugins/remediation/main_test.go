package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	bosun "github.com/bosun-dev/bosun/sdk-guest/go"
)

// The rounding of minHealthy and maxUnhealthy for 10 targets: percentages round up, as
// NodeHealthCheck's (intstr.GetScaledValueFromIntOrPercent(v, total, true)).
func TestMinHealthyAndMaxUnhealthyRoundingFor10Targets(t *testing.T) {
	for _, c := range []struct {
		field, value string
		want         int // healthy targets needed
	}{
		{"minHealthy", `"0%"`, 0},
		{"minHealthy", `"10%"`, 1},
		{"minHealthy", `"25%"`, 3},
		{"minHealthy", `"51%"`, 6},
		{"minHealthy", `"80%"`, 8},
		{"minHealthy", `"100%"`, 10},
		{"minHealthy", `7`, 7},
		{"maxUnhealthy", `"0%"`, 10},
		{"maxUnhealthy", `"10%"`, 9},
		{"maxUnhealthy", `"25%"`, 7},
		{"maxUnhealthy", `"49%"`, 5},
		{"maxUnhealthy", `2`, 8},
		{"maxUnhealthy", `"100%"`, 0},
	} {
		var s spec
		if err := json.Unmarshal([]byte(fmt.Sprintf(`{"target":{"kind":"Node"},"%s":%s}`, c.field, c.value)), &s); err != nil {
			t.Fatal(err)
		}
		if err := s.validate(); err != nil {
			t.Fatalf("%s %s: %v", c.field, c.value, err)
		}
		if got, err := s.minHealthyCount(10); err != nil || got != c.want {
			t.Errorf("%s %s of 10: %d healthy needed (%v), want %d", c.field, c.value, got, err, c.want)
		}
	}
	var s spec
	_ = json.Unmarshal([]byte(`{"target":{"kind":"Node"},"maxUnhealthy":12}`), &s)
	if _, err := s.minHealthyCount(10); err == nil || err.Error() != "maxUnhealthy 12 is greater than the number of targets (10)" {
		t.Errorf("maxUnhealthy over the targets: %v", err)
	}
}

func TestInvalidSpecsAreRefusedWithAReason(t *testing.T) {
	for _, c := range []struct{ spec, want string }{
		{`{}`, "spec.target.kind is required"},
		{`{"target":{"kind":"Service"},"minHealthy":1}`, `"Service" is not Node or Pod`},
		{`{"target":{"kind":"Node"},"minHealthy":"50%","maxUnhealthy":1}`, "mutually exclusive"},
		{`{"target":{"kind":"Node"}}`, "exactly one of spec.minHealthy and spec.maxUnhealthy"},
		{`{"target":{"kind":"Node"},"minHealthy":"half"}`, `spec.minHealthy "half"`},
		{`{"target":{"kind":"Node"},"minHealthy":1,"escalatingRemediations":[{"action":"delete-pod","order":1}]}`, `"delete-pod" is not an action for a Node`},
		{`{"target":{"kind":"Pod"},"minHealthy":1,"escalatingRemediations":[{"action":"delete-pod","order":1},{"action":"restart-container","order":1}]}`, "order 1 is used twice"},
		{`{"target":{"kind":"Pod"},"minHealthy":1,"unhealthyConditions":[{"type":"Ready","status":"False","duration":"soon"}]}`, `duration "soon"`},
	} {
		var s spec
		if err := json.Unmarshal([]byte(c.spec), &s); err != nil {
			t.Fatal(err)
		}
		if err := s.validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.spec, err, c.want)
		}
	}
}

// ---- reconciles against the SDK's in-memory host ----

var t0 = time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)

func node(name string, ready string, since time.Time, unschedulable bool, taints ...string) string {
	ts := []map[string]string{}
	for _, k := range taints {
		ts = append(ts, map[string]string{"key": k, "effect": "NoExecute"})
	}
	b, _ := json.Marshal(map[string]any{
		"apiVersion": "v1", "kind": "Node",
		"metadata": map[string]any{"name": name, "uid": "uid-" + name},
		"spec":     map[string]any{"unschedulable": unschedulable, "taints": ts},
		"status": map[string]any{"conditions": []map[string]string{
			{"type": "Ready", "status": ready, "lastTransitionTime": bosun.FormatTime(since)}}},
	})
	return string(b)
}

func pod(ns, name, nodeName string) string {
	return fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":%q,"namespace":%q,"uid":"uid-%s"},
		"spec":{"nodeName":%q,"containers":[{"name":"app"}]},"status":{"phase":"Running"}}`, name, ns, name, nodeName)
}

func hcJSON(spec string) string {
	return fmt.Sprintf(`{"apiVersion":"bosun.dev/v1alpha1","kind":"HealthCheck","metadata":{"name":"nodes","generation":1},"spec":%s}`, spec)
}

type run struct {
	t *testing.T
	h *bosun.TestHost
	p *remediator
}

func newRun(t *testing.T, objects ...string) *run {
	h := bosun.NewTestHost()
	for _, o := range objects {
		h.WithObject(o)
	}
	p := &remediator{}
	if err := p.Init(""); err != nil {
		t.Fatal(err)
	}
	return &run{t: t, h: h, p: p}
}

// at reconciles the HealthCheck at t0+offset and returns the commands it submitted.
func (r *run) at(offset time.Duration) []string {
	r.t.Helper()
	r.h.NowMs = uint64(t0.Add(offset).UnixMilli())
	r.h.Commands = nil
	out, err := r.h.Reconcile(r.p, &bosun.Request{Target: bosun.NewRef("bosun.dev/v1alpha1", "HealthCheck", "nodes")})
	if err != nil {
		r.t.Fatal(err)
	}
	if ms, ok := out.RequeueAfterMs(); !ok || ms != 1000 {
		r.t.Fatalf("requeue after the poll interval, got %v %v", ms, ok)
	}
	var cmds []string
	for _, c := range r.h.Commands {
		cmds = append(cmds, c.String())
	}
	return cmds
}

func has(cmds []string, prefix string) bool {
	for _, c := range cmds {
		if strings.HasPrefix(c, prefix) {
			return true
		}
	}
	return false
}

func count(cmds []string, prefix string) int {
	n := 0
	for _, c := range cmds {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

// statusOf is the last status patch among cmds.
func statusOf(t *testing.T, cmds []string) status {
	t.Helper()
	for i := len(cmds) - 1; i >= 0; i-- {
		if rest, ok := strings.CutPrefix(cmds[i], "merge-patch bosun.dev/v1alpha1/HealthCheck nodes "); ok {
			var p struct{ Status status }
			if err := json.Unmarshal([]byte(rest), &p); err != nil {
				t.Fatal(err)
			}
			return p.Status
		}
	}
	t.Fatalf("no status patch in %v", cmds)
	return status{}
}

func TestANotReadyNodeIsCordonedDrainedTaintedAndRestored(t *testing.T) {
	down := t0.Add(-10 * time.Second)
	r := newRun(t,
		hcJSON(`{"target":{"kind":"Node"},"selector":{},"minHealthy":"50%"}`),
		node("n1", "False", down, false), node("n2", "True", t0.Add(-time.Hour), false),
		pod("shop", "web-0", "n1"), pod("shop", "web-1", "n2"))
	cmds := r.at(0)
	if has(cmds, "cordon") || statusOf(t, cmds).HealthyTargets != 1 {
		t.Fatalf("not yet 300 s: %v", cmds)
	}
	cmds = r.at(300 * time.Second)
	if !has(cmds, "cordon n1") || !has(cmds, "event Normal RemediationStarted v1/Node n1") || has(cmds, "evict") {
		t.Fatalf("cordon first: %v", cmds)
	}
	s := statusOf(t, cmds)
	if s.Phase != phaseRemediating || s.InFlightRemediations != 1 || len(s.Unhealthy) != 1 || s.Unhealthy[0].Remediations[0].Action != cordon {
		t.Fatalf("status: %+v", s)
	}
	r.h.WithObject(node("n1", "False", down, true))
	if cmds = r.at(330 * time.Second); has(cmds, "cordon") || has(cmds, "evict") {
		t.Fatalf("nothing to do while the cordon holds: %v", cmds)
	}
	cmds = r.at(361 * time.Second)
	if !has(cmds, "event Warning Escalated v1/Node n1") || !has(cmds, "evict v1/Pod shop/web-0") || has(cmds, "evict v1/Pod shop/web-1") {
		t.Fatalf("drain after the cordon's 60 s: %v", cmds)
	}
	if cmds = r.at(362 * time.Second); has(cmds, "evict") {
		t.Fatalf("an eviction is not asked again before evictionRetryMs: %v", cmds)
	}
	if cmds = r.at(367 * time.Second); !has(cmds, "evict v1/Pod shop/web-0") {
		t.Fatalf("asked again after 5 s: %v", cmds)
	}
	cmds = r.at(662 * time.Second)
	if !has(cmds, "taint n1 node.kubernetes.io/out-of-service=nodeshutdown:NoExecute") {
		t.Fatalf("out-of-service after drain's 300 s: %v", cmds)
	}
	r.h.WithObject(node("n1", "False", down, true, outOfServiceKey))
	if cmds = r.at(663 * time.Second); has(cmds, "taint") {
		t.Fatalf("tainted once: %v", cmds)
	}
	// Healthy again: the escalation stops, the taint and the cordon go.
	r.h.WithObject(node("n1", "True", t0.Add(700*time.Second), true, outOfServiceKey))
	cmds = r.at(700 * time.Second)
	if !has(cmds, "untaint n1 node.kubernetes.io/out-of-service:NoExecute") || !has(cmds, "uncordon n1") ||
		!has(cmds, "event Normal RemediationSucceeded bosun.dev/v1alpha1/HealthCheck nodes: node n1 is healthy again after cordon, drain, out-of-service") {
		t.Fatalf("restored: %v", cmds)
	}
	if s := statusOf(t, cmds); s.Phase != phaseEnabled || s.HealthyTargets != 2 || len(s.Unhealthy) != 0 {
		t.Fatalf("status: %+v", s)
	}
	r.h.WithObject(node("n1", "True", t0.Add(700*time.Second), false))
	if cmds = r.at(701 * time.Second); has(cmds, "uncordon") || has(cmds, "untaint") {
		t.Fatalf("reverted once the node shows it: %v", cmds)
	}
}

func TestAStormStopsNewRemediationsUntilRecoveryAndCooldown(t *testing.T) {
	down := t0.Add(-time.Hour)
	objects := []string{hcJSON(`{"target":{"kind":"Node"},"selector":{},"minHealthy":"80%","stormCooldownDuration":"60s"}`)}
	for i := 0; i < 20; i++ {
		ready := "True"
		if i < 6 {
			ready = "False"
		}
		objects = append(objects, node(fmt.Sprintf("n%02d", i), ready, down, false))
	}
	r := newRun(t, objects...)
	cmds := r.at(0)
	s := statusOf(t, cmds)
	if has(cmds, "cordon") || s.HealthyTargets != 14 || len(s.Unhealthy) != 6 {
		t.Fatalf("14 of 20 healthy, 16 needed: nothing starts: %v", cmds)
	}
	if c, _ := bosun.FindCondition(s.Conditions, "StormActive"); c.Status != "True" {
		t.Fatalf("StormActive: %+v", s.Conditions)
	}
	if count(cmds, "event Warning RemediationSkipped") != 6 || !has(cmds, "event Warning StormRecoveryStarted") {
		t.Fatalf("each skipped target is told why, once: %v", cmds)
	}
	if cmds = r.at(time.Second); has(cmds, "event Warning RemediationSkipped") {
		t.Fatalf("not told twice: %v", cmds)
	}
	// Two come back: 16 healthy; the storm holds for the cooldown, then the rest start.
	for i := 0; i < 2; i++ {
		r.h.WithObject(node(fmt.Sprintf("n%02d", i), "True", t0.Add(10*time.Second), false))
	}
	cmds = r.at(10 * time.Second)
	if has(cmds, "cordon") {
		t.Fatalf("cooldown: %v", cmds)
	}
	cmds = r.at(71 * time.Second)
	if count(cmds, "cordon") != 4 || !has(cmds, "event Normal StormRecoveryEnded") {
		t.Fatalf("after the cooldown the 4 still down start: %v", cmds)
	}
	if c, _ := bosun.FindCondition(statusOf(t, cmds).Conditions, "StormActive"); c.Status != "False" {
		t.Fatal("storm over")
	}
}

func TestMaxInFlightPauseAndExclusion(t *testing.T) {
	down := t0.Add(-time.Hour)
	exclude := `{"apiVersion":"v1","kind":"Node","metadata":{"name":"n9","uid":"u9","labels":{"remediation.medik8s.io/exclude-from-remediation":"true"}},
		"status":{"conditions":[{"type":"Ready","status":"False","lastTransitionTime":"2026-12-06T09:00:00Z"}]}}`
	r := newRun(t, hcJSON(`{"target":{"kind":"Node"},"selector":{},"maxInFlight":1,"minHealthy":0}`),
		node("n1", "False", down, false), node("n2", "Unknown", down, false), node("n3", "True", down, false), exclude)
	cmds := r.at(0)
	if count(cmds, "cordon") != 1 || !has(cmds, "event Warning RemediationSkipped v1/Node n2") || has(cmds, "v1/Node n9") {
		t.Fatalf("one at a time, n9 excluded: %v", cmds)
	}
	if s := statusOf(t, cmds); s.ObservedTargets != 3 {
		t.Fatalf("excluded nodes are not observed: %+v", s)
	}
	r = newRun(t, hcJSON(`{"target":{"kind":"Node"},"selector":{},"maxUnhealthy":"100%","pauseRequests":["maintenance window"]}`),
		node("n1", "False", down, false))
	cmds = r.at(0)
	if has(cmds, "cordon") || statusOf(t, cmds).Phase != phasePaused || !has(cmds, "event Warning RemediationSkipped v1/Node n1: HealthCheck nodes: node n1 is unhealthy (Ready False for 1h0m0s) but not remediated: paused: maintenance window") {
		t.Fatalf("paused: %v", cmds)
	}
	r = newRun(t, hcJSON(`{"target":{"kind":"Node"},"minHealthy":1,"maxUnhealthy":1}`))
	if s := statusOf(t, r.at(0)); s.Phase != phaseDisabled || !strings.Contains(s.Reason, "mutually exclusive") {
		t.Fatalf("disabled: %+v", s)
	}
}

func TestACrashLoopingPodIsRestartedThenDeleted(t *testing.T) {
	crash := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-0","namespace":"shop","uid":"u1","labels":{"app":"web"}},
		"spec":{"nodeName":"n1","containers":[{"name":"app"}]},"status":{"phase":"Running","containerStatuses":[
		{"name":"app","ready":false,"restartCount":4,"state":{"waiting":{"reason":"CrashLoopBackOff"}}}]}}`
	r := newRun(t, hcJSON(`{"target":{"kind":"Pod","namespace":"shop"},"selector":{"matchLabels":{"app":"web"}},"minHealthy":0}`), crash)
	if cmds := r.at(0); has(cmds, "pod ") {
		t.Fatalf("60 s first: %v", cmds)
	}
	cmds := r.at(60 * time.Second)
	if !has(cmds, `pod shop/web-0 app-probe {"action":"restart","containers":["app"]}`) {
		t.Fatalf("restart through the sidecar: %v", cmds)
	}
	if cmds = r.at(90 * time.Second); has(cmds, "pod ") {
		t.Fatalf("sent once: %v", cmds)
	}
	cmds = r.at(121 * time.Second)
	if !has(cmds, "delete v1/Pod shop/web-0") || !has(cmds, "event Warning Escalated v1/Pod shop/web-0") {
		t.Fatalf("deleted after restart-container's 60 s: %v", cmds)
	}
	// Replaced by its controller: a new uid, healthy.
	r.h.WithObject(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-0","namespace":"shop","uid":"u2","labels":{"app":"web"}},
		"spec":{"nodeName":"n1","containers":[{"name":"app"}]},"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}`)
	cmds = r.at(130 * time.Second)
	if !has(cmds, "event Normal RemediationSucceeded bosun.dev/v1alpha1/HealthCheck nodes: pod shop/web-0 was replaced after restart-container, delete-pod") {
		t.Fatalf("replaced: %v", cmds)
	}
}

func TestAPodOfAStatefulSetBeingReleasedWaitsUnlessTheReleaseIsPaused(t *testing.T) {
	crash := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"db-1","namespace":"shop","uid":"u1","labels":{"app":"db"},
		"ownerReferences":[{"apiVersion":"apps/v1","kind":"StatefulSet","name":"db","controller":true}]},
		"spec":{"containers":[{"name":"db"}]},"status":{"phase":"Running","containerStatuses":[
		{"name":"db","ready":false,"state":{"waiting":{"reason":"CrashLoopBackOff"}}}]}}`
	sts := func(status string) string {
		b, _ := json.Marshal(map[string]any{"apiVersion": "apps/v1", "kind": "StatefulSet",
			"metadata": map[string]any{"name": "db", "namespace": "shop", "annotations": map[string]string{releaseStatus: status}}})
		return string(b)
	}
	hc := hcJSON(`{"target":{"kind":"Pod","namespace":"shop"},"selector":{},"maxUnhealthy":1,
		"unhealthyConditions":[{"type":"CrashLoopBackOff","status":"True","duration":"0s"}],
		"escalatingRemediations":[{"action":"delete-pod","order":0,"timeout":"60s"}]}`)
	r := newRun(t, hc, crash, sts(`{"updated":1,"total":4}`))
	cmds := r.at(0)
	if has(cmds, "delete") || !has(cmds, "event Warning RemediationSkipped v1/Pod shop/db-1: HealthCheck nodes: pod shop/db-1 is unhealthy (CrashLoopBackOff True for 0s) but not remediated: release: StatefulSet db is being released (1 of 4 updated)") {
		t.Fatalf("waits for the release: %v", cmds)
	}
	r.h.WithObject(sts(`{"updated":1,"total":4,"paused":"1 pods failed to start"}`))
	if cmds = r.at(time.Second); !has(cmds, "delete v1/Pod shop/db-1") {
		t.Fatalf("a paused release holds nothing back: %v", cmds)
	}
	r = newRun(t, hc, crash, sts(`{"updated":4,"total":4}`))
	if cmds = r.at(0); !has(cmds, "delete v1/Pod shop/db-1") {
		t.Fatalf("a finished release holds nothing back: %v", cmds)
	}
}
