package main

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"

	bosun "github.com/bosun-dev/bosun/sdk-guest/go"
)

// publish writes the HealthCheck's status when something in it changed.
func (p *pass) publish(targets []target) {
	now := bosun.FormatTime(p.now)
	var old status
	if p.hc.Status != nil {
		old = *p.hc.Status
	}
	st := status{
		ObservedGeneration:   p.hc.Metadata.Generation,
		ObservedTargets:      p.observed,
		HealthyTargets:       p.healthy,
		InFlightRemediations: len(p.st.Records),
		Unhealthy:            []unhealthyStatus{},
		Conditions:           []bosun.Condition{},
	}
	for _, r := range p.st.Records {
		st.Unhealthy = append(st.Unhealthy, unhealthyStatus{Name: r.Name, Namespace: r.Namespace, Remediations: r.Steps, ConditionsHealthyTimestamp: r.HealthySince})
	}
	for _, t := range p.waiting {
		st.Unhealthy = append(st.Unhealthy, unhealthyStatus{Name: t.name, Namespace: t.namespace, Remediations: []remediationStatus{}})
	}
	sort.Slice(st.Unhealthy, func(i, j int) bool {
		a, b := st.Unhealthy[i], st.Unhealthy[j]
		return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
	})
	disabled := bosun.Condition{Type: "Disabled", Status: "False", Reason: "HealthCheckEnabled", Message: "No issues found, the HealthCheck is enabled."}
	switch {
	case p.invalid != "":
		st.Phase, st.Reason = phaseDisabled, "invalid: "+p.invalid
		disabled = bosun.Condition{Type: "Disabled", Status: "True", Reason: "InvalidSpec", Message: p.invalid}
	case len(p.hc.Spec.PauseRequests) > 0:
		st.Phase, st.Reason = phasePaused, fmt.Sprintf("pause requested: %v", p.hc.Spec.PauseRequests)
	case len(p.st.Records) > 0:
		st.Phase, st.Reason = phaseRemediating, fmt.Sprintf("%d remediation(s) in flight", len(p.st.Records))
	default:
		st.Phase, st.Reason = phaseEnabled, "no remediation in flight"
	}
	st.Conditions = setCondition(st.Conditions, old.Conditions, disabled, now)
	// NodeHealthCheck's storm conditions, reason and messages.
	storm := bosun.Condition{Type: "StormActive", Status: "False", Reason: "HealthyNodeThresholdChange", Message: "Storm mode is deactivated, remediation can occur normally"}
	if p.storm {
		storm = bosun.Condition{Type: "StormActive", Status: "True", Reason: "HealthyNodeThresholdChange", Message: "Storm mode is activated - preventing any new remediation until the storm is over and cooldown duration expired: " + p.stormReason}
	}
	cooldown := bosun.Condition{Type: "StormCooldownActive", Status: "False", Reason: "HealthyNodeThresholdChange", Message: "Storm cooldown completed"}
	if p.cooldown {
		cooldown = bosun.Condition{Type: "StormCooldownActive", Status: "True", Reason: "HealthyNodeThresholdChange", Message: "Storm cooldown delay started - waiting before resuming normal remediation"}
	}
	st.Conditions = setCondition(st.Conditions, old.Conditions, storm, now)
	st.Conditions = setCondition(st.Conditions, old.Conditions, cooldown, now)
	old.LastUpdateTime = ""
	if reflect.DeepEqual(normalize(old), normalize(st)) {
		return
	}
	st.LastUpdateTime = now
	if _, err := p.ctx.Submit(bosun.StatusPatch(p.ref, st)); err != nil {
		p.ctx.Info(fmt.Sprintf("status of HealthCheck %s not written yet: %v", p.hc.Metadata.Name, err))
	}
}

// normalize: a status as JSON, for comparison with what the cache holds.
func normalize(s status) any {
	b, _ := json.Marshal(s)
	var v any
	_ = json.Unmarshal(b, &v)
	return v
}
