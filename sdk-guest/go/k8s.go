package bosun

// Typed access to the Kubernetes objects controllers read most (nodes, pods), the
// metav1 pieces every operator needs (label selectors, int-or-percent values, times),
// decoded by the plugin itself from the cache's JSON: the SDK stays standard-library
// only and a plugin decodes just the fields it reads.

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ObjectMeta is the part of metav1.ObjectMeta plugins read.
type ObjectMeta struct {
	Name              string            `json:"name"`
	Namespace         string            `json:"namespace,omitempty"`
	UID               string            `json:"uid,omitempty"`
	Generation        int64             `json:"generation,omitempty"`
	ResourceVersion   string            `json:"resourceVersion,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
	CreationTimestamp string            `json:"creationTimestamp,omitempty"`
	DeletionTimestamp string            `json:"deletionTimestamp,omitempty"`
	OwnerReferences   []OwnerReference  `json:"ownerReferences,omitempty"`
}

// OwnerReference names an object's owner.
type OwnerReference struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	UID        string `json:"uid,omitempty"`
	Controller bool   `json:"controller,omitempty"`
}

// ControllerOf returns the owner reference marked controller, if any.
func (m *ObjectMeta) ControllerOf() (OwnerReference, bool) {
	for _, o := range m.OwnerReferences {
		if o.Controller {
			return o, true
		}
	}
	return OwnerReference{}, false
}

// Condition is a status condition (node, pod or metav1.Condition).
type Condition struct {
	Type               string `json:"type"`
	Status             string `json:"status"`
	Reason             string `json:"reason,omitempty"`
	Message            string `json:"message,omitempty"`
	LastTransitionTime string `json:"lastTransitionTime,omitempty"`
	LastHeartbeatTime  string `json:"lastHeartbeatTime,omitempty"`
	ObservedGeneration int64  `json:"observedGeneration,omitempty"`
}

// FindCondition returns the condition of type t.
func FindCondition(conditions []Condition, t string) (Condition, bool) {
	for _, c := range conditions {
		if c.Type == t {
			return c, true
		}
	}
	return Condition{}, false
}

// NodeTaint is a taint as a Node's spec holds it.
type NodeTaint struct {
	Key       string `json:"key"`
	Value     string `json:"value,omitempty"`
	Effect    string `json:"effect"`
	TimeAdded string `json:"timeAdded,omitempty"`
}

// NodeObject is the part of a v1 Node plugins read.
type NodeObject struct {
	Metadata ObjectMeta `json:"metadata"`
	Spec     struct {
		Unschedulable bool        `json:"unschedulable,omitempty"`
		Taints        []NodeTaint `json:"taints,omitempty"`
	} `json:"spec"`
	Status struct {
		Conditions []Condition `json:"conditions,omitempty"`
		NodeInfo   struct {
			BootID string `json:"bootID,omitempty"`
		} `json:"nodeInfo"`
	} `json:"status"`
}

// Ready reports the status of the node's Ready condition ("True", "False", "Unknown";
// "Unknown" when it has none).
func (n *NodeObject) Ready() string {
	if c, ok := FindCondition(n.Status.Conditions, "Ready"); ok {
		return c.Status
	}
	return "Unknown"
}

// HasTaint reports whether the node carries a taint with this key and effect.
func (n *NodeObject) HasTaint(key, effect string) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == key && t.Effect == effect {
			return true
		}
	}
	return false
}

// ContainerState is one of waiting, running or terminated.
type ContainerState struct {
	Waiting *struct {
		Reason  string `json:"reason,omitempty"`
		Message string `json:"message,omitempty"`
	} `json:"waiting,omitempty"`
	Running *struct {
		StartedAt string `json:"startedAt,omitempty"`
	} `json:"running,omitempty"`
	Terminated *struct {
		ExitCode   int32  `json:"exitCode"`
		Reason     string `json:"reason,omitempty"`
		FinishedAt string `json:"finishedAt,omitempty"`
	} `json:"terminated,omitempty"`
}

// ContainerStatus is a container's status in a pod.
type ContainerStatus struct {
	Name         string         `json:"name"`
	Image        string         `json:"image,omitempty"`
	ImageID      string         `json:"imageID,omitempty"`
	Ready        bool           `json:"ready"`
	RestartCount int32          `json:"restartCount"`
	State        ContainerState `json:"state"`
	LastState    ContainerState `json:"lastState"`
}

// PodObject is the part of a v1 Pod plugins read.
type PodObject struct {
	Metadata ObjectMeta `json:"metadata"`
	Spec     struct {
		NodeName   string `json:"nodeName,omitempty"`
		Containers []struct {
			Name  string `json:"name"`
			Image string `json:"image,omitempty"`
		} `json:"containers"`
	} `json:"spec"`
	Status struct {
		Phase             string            `json:"phase,omitempty"`
		Conditions        []Condition       `json:"conditions,omitempty"`
		ContainerStatuses []ContainerStatus `json:"containerStatuses,omitempty"`
	} `json:"status"`
}

// Ref is the pod's reference.
func (p *PodObject) Ref() ObjectRef {
	return NewRef("v1", "Pod", p.Metadata.Name).InNamespace(p.Metadata.Namespace)
}

// Ref is the node's reference.
func (n *NodeObject) Ref() ObjectRef { return NewRef("v1", "Node", n.Metadata.Name) }

// ListAs lists objects of one kind from the cache and decodes each into a T (an empty
// namespace lists all namespaces; selector as for Context.List).
func ListAs[T any](ctx *Context, apiVersion, kind, namespace, selector string) ([]T, error) {
	items, err := ctx.ListRaw(apiVersion, kind, namespace, selector)
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(items))
	for _, text := range items {
		var v T
		if err := json.Unmarshal([]byte(text), &v); err != nil {
			return nil, fmt.Errorf("decoding a %s/%s: %w", apiVersion, kind, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// LabelSelectorRequirement is one matchExpressions entry.
type LabelSelectorRequirement struct {
	Key      string   `json:"key"`
	Operator string   `json:"operator"`
	Values   []string `json:"values,omitempty"`
}

// LabelSelector is a metav1.LabelSelector.
type LabelSelector struct {
	MatchLabels      map[string]string          `json:"matchLabels,omitempty"`
	MatchExpressions []LabelSelectorRequirement `json:"matchExpressions,omitempty"`
}

// Matches reports whether labels satisfy the selector; an empty (or nil) selector
// matches everything. An unknown operator, or In/NotIn without values, is an error,
// as apimachinery's LabelSelectorAsSelector refuses them.
func (s *LabelSelector) Matches(labels map[string]string) (bool, error) {
	if s == nil {
		return true, nil
	}
	for k, v := range s.MatchLabels {
		if have, ok := labels[k]; !ok || have != v {
			return false, nil
		}
	}
	for _, r := range s.MatchExpressions {
		have, ok := labels[r.Key]
		switch r.Operator {
		case "In", "NotIn":
			if len(r.Values) == 0 {
				return false, fmt.Errorf("selector %s %s needs values", r.Key, r.Operator)
			}
			in := false
			for _, v := range r.Values {
				in = in || (ok && have == v)
			}
			if in != (r.Operator == "In") {
				return false, nil
			}
		case "Exists":
			if !ok {
				return false, nil
			}
		case "DoesNotExist":
			if ok {
				return false, nil
			}
		default:
			return false, fmt.Errorf("selector %s: unknown operator %q (In, NotIn, Exists, DoesNotExist)", r.Key, r.Operator)
		}
	}
	return true, nil
}

// String renders the selector in Kubernetes' label-selector syntax (keys sorted).
func (s *LabelSelector) String() string {
	if s == nil {
		return ""
	}
	var parts []string
	keys := make([]string, 0, len(s.MatchLabels))
	for k := range s.MatchLabels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts = append(parts, k+"="+s.MatchLabels[k])
	}
	for _, r := range s.MatchExpressions {
		switch r.Operator {
		case "In", "NotIn":
			parts = append(parts, fmt.Sprintf("%s %s (%s)", r.Key, strings.ToLower(r.Operator), strings.Join(r.Values, ",")))
		case "Exists":
			parts = append(parts, r.Key)
		case "DoesNotExist":
			parts = append(parts, "!"+r.Key)
		}
	}
	return strings.Join(parts, ",")
}

// IntOrString is an intstr.IntOrString: a number, or a string such as "25%".
type IntOrString struct {
	IsString bool
	Int      int
	Str      string
}

// UnmarshalJSON reads a number or a string.
func (v *IntOrString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		v.IsString = true
		return json.Unmarshal(b, &v.Str)
	}
	v.IsString = false
	return json.Unmarshal(b, &v.Int)
}

// MarshalJSON writes the number or the string.
func (v IntOrString) MarshalJSON() ([]byte, error) {
	if v.IsString {
		return json.Marshal(v.Str)
	}
	return json.Marshal(v.Int)
}

// String is the value as written.
func (v IntOrString) String() string {
	if v.IsString {
		return v.Str
	}
	return strconv.Itoa(v.Int)
}

// ScaledValue is apimachinery's intstr.GetScaledValueFromIntOrPercent: a number as it
// is, "N%" of total rounded up or down. Any other string is an error.
func (v IntOrString) ScaledValue(total int, roundUp bool) (int, error) {
	if !v.IsString {
		return v.Int, nil
	}
	s, ok := strings.CutSuffix(v.Str, "%")
	if !ok {
		return 0, fmt.Errorf("invalid value for IntOrString: invalid type: string is not a percentage (%q)", v.Str)
	}
	p, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("invalid value %q: %v", v.Str, err)
	}
	x := float64(p) * float64(total) / 100
	if roundUp {
		return int(math.Ceil(x)), nil
	}
	return int(math.Floor(x)), nil
}

// ParseTime reads an RFC 3339 time as the API server writes it (metav1.Time, or
// MicroTime with fractions).
func ParseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("not an RFC 3339 time: %q", s)
	}
	return t, nil
}

// FormatTime writes t as metav1.Time does: UTC, whole seconds.
func FormatTime(t time.Time) string { return t.UTC().Truncate(time.Second).Format(time.RFC3339) }

// Now is the host's clock as a time.Time (what NowMs says).
func (c *Context) Now() time.Time { return time.UnixMilli(int64(hostNowMs())).UTC() }

// StatusPatch patches only the object's status subresource (a merge patch whose only
// key is "status").
func StatusPatch(target ObjectRef, status any) Command {
	return MergePatch(target, map[string]any{"status": status})
}
