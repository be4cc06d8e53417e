package main

import bosun "github.com/bosun-dev/bosun/sdk-guest/go"

// Phases, as NodeHealthCheck's.
const (
	phaseDisabled    = "Disabled"
	phasePaused      = "Paused"
	phaseRemediating = "Remediating"
	phaseEnabled     = "Enabled"
)

type remediationStatus struct {
	Action   string `json:"action"`
	Started  string `json:"started"`
	TimedOut string `json:"timedOut,omitempty"`
}

type unhealthyStatus struct {
	Name         string              `json:"name"`
	Namespace    string              `json:"namespace,omitempty"`
	Remediations []remediationStatus `json:"remediations"`
	// ConditionsHealthyTimestamp: when the target's conditions turned healthy again
	// (the remediation ends after healthyDelay).
	ConditionsHealthyTimestamp string `json:"conditionsHealthyTimestamp,omitempty"`
}

type status struct {
	ObservedGeneration   int64             `json:"observedGeneration"`
	ObservedTargets      int               `json:"observedTargets"`
	HealthyTargets       int               `json:"healthyTargets"`
	InFlightRemediations int               `json:"inFlightRemediations"`
	Unhealthy            []unhealthyStatus `json:"unhealthy"`
	Phase                string            `json:"phase"`
	Reason               string            `json:"reason,omitempty"`
	Conditions           []bosun.Condition `json:"conditions"`
	LastUpdateTime       string            `json:"lastUpdateTime,omitempty"`
}

// setCondition sets a condition, keeping its transition time when its status holds.
func setCondition(list []bosun.Condition, old []bosun.Condition, c bosun.Condition, now string) []bosun.Condition {
	c.LastTransitionTime = now
	if prev, ok := bosun.FindCondition(old, c.Type); ok && prev.Status == c.Status {
		c.LastTransitionTime = prev.LastTransitionTime
	}
	return append(list, c)
}
