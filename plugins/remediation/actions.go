package main

// Which targets a HealthCheck selects and judges unhealthy, and what each action does.

import (
	"encoding/json"
	"fmt"
	"time"

	bosun "github.com/bosun-dev/bosun/sdk-guest/go"
)

// targets lists the nodes or pods the HealthCheck selects, judged against its
// unhealthy conditions. Excluded nodes and pods being deleted or finished are not
// targets.
func (p *pass) targets() ([]target, error) {
	s := &p.hc.Spec
	var out []target
	if s.Target.Kind == "Node" {
		nodes, err := bosun.ListAs[bosun.NodeObject](p.ctx, "v1", "Node", "", "")
		if err != nil {
			return nil, err
		}
		for i := range nodes {
			n := &nodes[i]
			if n.Metadata.Labels[medik8sExclude] == "true" || n.Metadata.Labels[bosunExclude] == "true" {
				continue
			}
			if ok, _ := s.Selector.Matches(n.Metadata.Labels); !ok {
				continue
			}
			t := target{key: n.Metadata.Name, kind: "Node", name: n.Metadata.Name, uid: n.Metadata.UID, node: n}
			p.judge(&t, n.Status.Conditions)
			out = append(out, t)
		}
		return out, nil
	}
	pods, err := bosun.ListAs[bosun.PodObject](p.ctx, "v1", "Pod", s.Target.Namespace, "")
	if err != nil {
		return nil, err
	}
	namespaces := map[string]bool{}
	seen := map[string]bool{}
	for i := range pods {
		pod := &pods[i]
		if pod.Metadata.DeletionTimestamp != "" || pod.Status.Phase == "Succeeded" || pod.Status.Phase == "Failed" {
			continue
		}
		if ok, _ := s.Selector.Matches(pod.Metadata.Labels); !ok {
			continue
		}
		if s.Target.NamespaceSelector != nil && !p.namespaceMatches(pod.Metadata.Namespace, namespaces) {
			continue
		}
		key := pod.Metadata.Namespace + "/" + pod.Metadata.Name
		t := target{key: key, kind: "Pod", name: pod.Metadata.Name, namespace: pod.Metadata.Namespace, uid: pod.Metadata.UID, pod: pod}
		conditions := append([]bosun.Condition(nil), pod.Status.Conditions...)
		// CrashLoopBackOff: a pseudo-condition, True since the plugin first saw it.
		seenKey := key + "/" + pod.Metadata.UID
		if crashLooping(pod) {
			if p.st.Seen[seenKey] == "" {
				p.st.Seen[seenKey] = bosun.FormatTime(p.now)
			}
			conditions = append(conditions, bosun.Condition{Type: "CrashLoopBackOff", Status: "True", LastTransitionTime: p.st.Seen[seenKey]})
			seen[seenKey] = true
		}
		p.judge(&t, conditions)
		out = append(out, t)
	}
	for k := range p.st.Seen {
		if !seen[k] {
			delete(p.st.Seen, k)
		}
	}
	return out, nil
}

func crashLooping(pod *bosun.PodObject) bool {
	for _, c := range pod.Status.ContainerStatuses {
		if c.State.Waiting != nil && c.State.Waiting.Reason == "CrashLoopBackOff" {
			return true
		}
	}
	return false
}

func (p *pass) namespaceMatches(ns string, cache map[string]bool) bool {
	if v, ok := cache[ns]; ok {
		return v
	}
	var o struct {
		Metadata bosun.ObjectMeta `json:"metadata"`
	}
	ok, err := p.ctx.GetAs(bosun.NewRef("v1", "Namespace", ns), &o)
	match := false
	if ok && err == nil {
		match, _ = p.hc.Spec.Target.NamespaceSelector.Matches(o.Metadata.Labels)
	}
	cache[ns] = match
	return match
}

// judge marks the target unhealthy when one of the unhealthy conditions has held for
// its duration (OR-ed, as NodeHealthCheck's); a node with no Ready condition at all
// counts as Ready Unknown since it was created.
func (p *pass) judge(t *target, conditions []bosun.Condition) {
	for _, u := range p.hc.Spec.UnhealthyConditions {
		c, ok := bosun.FindCondition(conditions, u.Type)
		if !ok && t.kind == "Node" && u.Type == "Ready" && u.Status == "Unknown" {
			c, ok = bosun.Condition{Type: "Ready", Status: "Unknown"}, true
		}
		if !ok || c.Status != u.Status {
			continue
		}
		since, err := bosun.ParseTime(c.LastTransitionTime)
		if err != nil {
			since = p.now
		}
		if p.now.Sub(since) >= u.duration {
			t.unhealthy, t.soon, t.since = true, false, since
			t.why = fmt.Sprintf("%s %s for %s", u.Type, u.Status, p.now.Sub(since).Round(time.Second))
			return
		}
		t.soon = true
	}
}

// act does the record's current step; what is done once is not repeated, what must
// be kept up (a cordon, evictions) is checked on every pass.
func (p *pass) act(r *record, t *target) {
	step := r.Steps[len(r.Steps)-1].Action
	switch step {
	case cordon:
		p.cordon(r, t)
	case drain:
		p.cordon(r, t)
		p.drain(r, t)
	case outOfService:
		p.cordon(r, t)
		p.drain(r, t)
		if t.node.Ready() == "True" {
			r.Failed = "not applicable: the node is Ready (out-of-service is only for a node that is not)"
			return
		}
		if !t.node.HasTaint(outOfServiceKey, "NoExecute") && !r.Sent {
			p.submit(r, bosun.TaintNode(t.name, bosun.Taint{Key: outOfServiceKey, Value: "nodeshutdown", Effect: bosun.NoExecute}), false)
			r.Tainted = true
		}
	case reboot:
		if r.Sent {
			return
		}
		agent, err := p.nodeAgent(t.name)
		if err != nil {
			r.Failed = err.Error()
			return
		}
		payload, _ := json.Marshal(map[string]string{"action": "reboot", "node": t.name})
		p.submit(r, bosun.Pod(agent.Metadata.Namespace, agent.Metadata.Name, p.c.NodeAgentPlugin, string(payload)), true)
	case restartContainer:
		if r.Sent {
			return
		}
		var names []string
		for _, c := range t.pod.Status.ContainerStatuses {
			if !c.Ready {
				names = append(names, c.Name)
			}
		}
		payload, _ := json.Marshal(map[string]any{"action": "restart", "containers": names})
		p.submit(r, bosun.Pod(t.namespace, t.name, p.c.PodAgentPlugin, string(payload)), true)
	case deletePod:
		if r.Sent {
			return
		}
		p.submit(r, bosun.DeleteObject(t.ref()), true)
	}
}

// submit sends a step's command; with `pending`, its outcome decides the step (a
// failure escalates at once).
func (p *pass) submit(r *record, c bosun.Command, pending bool) {
	id, err := p.ctx.Submit(c)
	if err != nil {
		// Refused at once (rate, budget, permission): tried again on a later pass.
		p.ctx.Info(fmt.Sprintf("%s of %s: %v; tried again later", r.Steps[len(r.Steps)-1].Action, r.Name, err))
		return
	}
	r.Sent = true
	if pending {
		r.Pending = uint64(id)
	}
}

func (p *pass) cordon(r *record, t *target) {
	if t.node.Spec.Unschedulable {
		return
	}
	if _, err := p.ctx.Submit(bosun.CordonNode(t.name)); err != nil {
		p.ctx.Info(fmt.Sprintf("cordon of %s: %v; tried again later", t.name, err))
		return
	}
	r.Cordoned = true
}

// drain evicts the node's pods (not DaemonSet pods, not mirror pods, not the node-agent
// pod a reboot needs) through the Eviction API: PodDisruptionBudgets and the runtime's
// budgets apply; a refused eviction is asked again after evictionRetryMs.
func (p *pass) drain(r *record, t *target) {
	agents, _ := parseSelector(p.c.NodeAgentSelector)
	pods, err := p.allPods()
	if err != nil {
		p.ctx.Warn("drain: " + err.Error())
		return
	}
	if r.Evicted == nil {
		r.Evicted = map[string]string{}
	}
	retry := time.Duration(p.c.EvictionRetryMs) * time.Millisecond
	present := map[string]bool{}
	for i := range pods {
		pod := &pods[i]
		if pod.Spec.NodeName != t.name || pod.Metadata.DeletionTimestamp != "" {
			continue
		}
		if owner, ok := pod.Metadata.ControllerOf(); ok && owner.Kind == "DaemonSet" {
			continue
		}
		if _, mirror := pod.Metadata.Annotations["kubernetes.io/config.mirror"]; mirror {
			continue
		}
		if agent, _ := agents.Matches(pod.Metadata.Labels); agent {
			continue
		}
		present[pod.Metadata.UID] = true
		if at, ok := r.Evicted[pod.Metadata.UID]; ok {
			if when, err := bosun.ParseTime(at); err == nil && p.now.Sub(when) < retry {
				continue
			}
		}
		if _, err := p.ctx.Submit(bosun.EvictPod(pod.Ref())); err != nil {
			p.ctx.Debug(fmt.Sprintf("eviction of %s/%s: %v", pod.Metadata.Namespace, pod.Metadata.Name, err))
		}
		r.Evicted[pod.Metadata.UID] = bosun.FormatTime(p.now)
	}
	for uid := range r.Evicted {
		if !present[uid] {
			delete(r.Evicted, uid)
		}
	}
}

// nodeAgent is the node-agent pod on the node (the reboot action's sidecar).
func (p *pass) nodeAgent(node string) (*bosun.PodObject, error) {
	sel, _ := parseSelector(p.c.NodeAgentSelector)
	pods, err := p.allPods()
	if err != nil {
		return nil, err
	}
	for i := range pods {
		pod := &pods[i]
		if ok, _ := sel.Matches(pod.Metadata.Labels); ok && pod.Spec.NodeName == node && pod.Metadata.DeletionTimestamp == "" {
			return pod, nil
		}
	}
	return nil, fmt.Errorf("no node-agent pod (%s) runs on node %s", p.c.NodeAgentSelector, node)
}

// allPods lists every pod once per pass (drains and reboots of many nodes share it).
func (p *pass) allPods() ([]bosun.PodObject, error) {
	if p.pods == nil {
		pods, err := bosun.ListAs[bosun.PodObject](p.ctx, "v1", "Pod", "", "")
		if err != nil {
			return nil, err
		}
		p.pods = pods
	}
	return p.pods, nil
}
