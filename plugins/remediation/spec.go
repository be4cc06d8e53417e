package main

// The HealthCheck object (bosun.dev/v1alpha1, runtime/api/src/healthcheck.rs) as this
// plugin reads it, with its defaults and validation.

import (
	"fmt"
	"sort"
	"time"

	bosun "github.com/bosun-dev/bosun/sdk-guest/go"
)

const apiVersion = "bosun.dev/v1alpha1"

// Actions, in the order they make sense.
const (
	restartContainer = "restart-container"
	deletePod        = "delete-pod"
	cordon           = "cordon"
	drain            = "drain"
	outOfService     = "out-of-service"
	reboot           = "reboot"
)

type unhealthyCondition struct {
	Type     string `json:"type"`
	Status   string `json:"status"`
	Duration string `json:"duration"`
	duration time.Duration
}

type remediation struct {
	Action  string `json:"action"`
	Order   int    `json:"order"`
	Timeout string `json:"timeout"`
	timeout time.Duration
}

type spec struct {
	Target struct {
		Kind              string               `json:"kind"`
		Namespace         string               `json:"namespace,omitempty"`
		NamespaceSelector *bosun.LabelSelector `json:"namespaceSelector,omitempty"`
	} `json:"target"`
	Selector               bosun.LabelSelector  `json:"selector"`
	UnhealthyConditions    []unhealthyCondition `json:"unhealthyConditions,omitempty"`
	MinHealthy             *bosun.IntOrString   `json:"minHealthy,omitempty"`
	MaxUnhealthy           *bosun.IntOrString   `json:"maxUnhealthy,omitempty"`
	MaxInFlight            *bosun.IntOrString   `json:"maxInFlight,omitempty"`
	EscalatingRemediations []remediation        `json:"escalatingRemediations,omitempty"`
	PauseRequests          []string             `json:"pauseRequests,omitempty"`
	HealthyDelay           string               `json:"healthyDelay,omitempty"`
	StormCooldownDuration  string               `json:"stormCooldownDuration,omitempty"`

	healthyDelay  time.Duration
	stormCooldown time.Duration
}

type healthCheck struct {
	Metadata bosun.ObjectMeta `json:"metadata"`
	Spec     spec             `json:"spec"`
	Status   *status          `json:"status,omitempty"`
}

// Defaults when the HealthCheck lists none: NodeHealthCheck's for nodes (Ready False or
// Unknown for 300 s), and for pods Ready False for 300 s or a container in
// CrashLoopBackOff for 60 s.
func defaultConditions(kind string) []unhealthyCondition {
	if kind == "Pod" {
		return []unhealthyCondition{
			{Type: "Ready", Status: "False", Duration: "300s"},
			{Type: "CrashLoopBackOff", Status: "True", Duration: "60s"},
		}
	}
	return []unhealthyCondition{
		{Type: "Ready", Status: "False", Duration: "300s"},
		{Type: "Ready", Status: "Unknown", Duration: "300s"},
	}
}

// Default escalations: nodes cordon → drain → out-of-service → reboot; pods
// restart-container → delete-pod.
func defaultRemediations(kind string) []remediation {
	if kind == "Pod" {
		return []remediation{
			{Action: restartContainer, Order: 0, Timeout: "60s"},
			{Action: deletePod, Order: 1, Timeout: "120s"},
		}
	}
	return []remediation{
		{Action: cordon, Order: 0, Timeout: "60s"},
		{Action: drain, Order: 1, Timeout: "300s"},
		{Action: outOfService, Order: 2, Timeout: "300s"},
		{Action: reboot, Order: 3, Timeout: "600s"},
	}
}

func parseDuration(field, s string, fallback time.Duration) (time.Duration, error) {
	if s == "" {
		return fallback, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s %q is not a duration (such as 300s or 5m)", field, s)
	}
	return d, nil
}

// validate fills the defaults in and says what is wrong: a HealthCheck with an error is
// Disabled, its message in the status.
func (s *spec) validate() error {
	switch s.Target.Kind {
	case "Node", "Pod":
	case "":
		return fmt.Errorf("spec.target.kind is required: Node or Pod")
	default:
		return fmt.Errorf("spec.target.kind %q is not Node or Pod", s.Target.Kind)
	}
	if (s.MinHealthy != nil) == (s.MaxUnhealthy != nil) {
		return fmt.Errorf("exactly one of spec.minHealthy and spec.maxUnhealthy must be set (they are mutually exclusive)")
	}
	for _, v := range []struct {
		name string
		v    *bosun.IntOrString
	}{{"minHealthy", s.MinHealthy}, {"maxUnhealthy", s.MaxUnhealthy}, {"maxInFlight", s.MaxInFlight}} {
		if v.v == nil {
			continue
		}
		if n, err := v.v.ScaledValue(100, true); err != nil || n < 0 {
			return fmt.Errorf("spec.%s %q is not a number or a percentage", v.name, v.v.String())
		}
	}
	if _, err := s.Selector.Matches(nil); err != nil {
		return fmt.Errorf("spec.selector: %v", err)
	}
	if _, err := s.Target.NamespaceSelector.Matches(nil); err != nil {
		return fmt.Errorf("spec.target.namespaceSelector: %v", err)
	}
	if len(s.UnhealthyConditions) == 0 {
		s.UnhealthyConditions = defaultConditions(s.Target.Kind)
	}
	for i := range s.UnhealthyConditions {
		c := &s.UnhealthyConditions[i]
		d, err := parseDuration(fmt.Sprintf("spec.unhealthyConditions[%d].duration", i), c.Duration, 0)
		if err != nil {
			return err
		}
		c.duration = d
	}
	if len(s.EscalatingRemediations) == 0 {
		s.EscalatingRemediations = defaultRemediations(s.Target.Kind)
	}
	orders := map[int]bool{}
	for i := range s.EscalatingRemediations {
		r := &s.EscalatingRemediations[i]
		ok := map[string]bool{restartContainer: true, deletePod: true}
		if s.Target.Kind == "Node" {
			ok = map[string]bool{cordon: true, drain: true, outOfService: true, reboot: true}
		}
		if !ok[r.Action] {
			return fmt.Errorf("spec.escalatingRemediations[%d].action %q is not an action for a %s", i, r.Action, s.Target.Kind)
		}
		if orders[r.Order] {
			return fmt.Errorf("spec.escalatingRemediations: order %d is used twice", r.Order)
		}
		orders[r.Order] = true
		d, err := parseDuration(fmt.Sprintf("spec.escalatingRemediations[%d].timeout", i), r.Timeout, 5*time.Minute)
		if err != nil {
			return err
		}
		r.timeout = d
	}
	sort.SliceStable(s.EscalatingRemediations, func(i, j int) bool {
		return s.EscalatingRemediations[i].Order < s.EscalatingRemediations[j].Order
	})
	var err error
	if s.healthyDelay, err = parseDuration("spec.healthyDelay", s.HealthyDelay, 0); err != nil {
		return err
	}
	if s.stormCooldown, err = parseDuration("spec.stormCooldownDuration", s.StormCooldownDuration, 0); err != nil {
		return err
	}
	return nil
}

// minHealthyCount is the number of healthy targets below which no new remediation
// starts. Percentages round up, as NodeHealthCheck's getMinHealthy (intstr
// GetScaledValueFromIntOrPercent with roundUp true, for both fields): minHealthy 51% of
// 10 is 6; maxUnhealthy 25% of 10 allows 3 unhealthy, so 7 must be healthy. A
// maxUnhealthy above the number of targets is an error, as NodeHealthCheck's.
func (s *spec) minHealthyCount(observed int) (int, error) {
	if s.MinHealthy != nil {
		return s.MinHealthy.ScaledValue(observed, true)
	}
	n, err := s.MaxUnhealthy.ScaledValue(observed, true)
	if err != nil {
		return 0, err
	}
	if n > observed {
		return 0, fmt.Errorf("maxUnhealthy %s is greater than the number of targets (%d)", s.MaxUnhealthy, observed)
	}
	return observed - n, nil
}

// maxInFlightCount is the most remediations at once; -1 for no limit.
func (s *spec) maxInFlightCount(observed int) int {
	if s.MaxInFlight == nil {
		return -1
	}
	n, _ := s.MaxInFlight.ScaledValue(observed, true)
	return n
}
