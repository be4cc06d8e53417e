package bosun

import (
	"encoding/json"
	"fmt"
)

type commandKind uint8

// Discriminants of the WIT variant `command`, in declaration order.
const (
	cmdApply commandKind = iota
	cmdMergePatch
	cmdJSONPatch
	cmdDelete
	cmdEvict
	cmdCordon
	cmdUncordon
	cmdTaint
	cmdUntaint
	cmdRecordEvent
	cmdPodCommand
)

// TaintEffect is the effect of a node taint.
type TaintEffect uint8

const (
	// NoSchedule: pods that do not tolerate the taint are not scheduled.
	NoSchedule TaintEffect = iota
	// PreferNoSchedule: the scheduler tries to avoid the node.
	PreferNoSchedule
	// NoExecute: pods that do not tolerate the taint are evicted.
	NoExecute
)

// Taint is a node taint; an empty Value means none.
type Taint struct {
	Key    string
	Value  string
	Effect TaintEffect
}

// EventType is the type of a Kubernetes Event.
type EventType uint8

const (
	// Normal: something expected happened.
	Normal EventType = iota
	// Warning: something a human may want to look at.
	Warning
)

// Command is an action a plugin asks for. Build one with the functions below
// (MergePatch, Evict, ...) and submit it with Context.Submit.
type Command struct {
	kind      commandKind
	target    ObjectRef
	text      string // apply: object; patches: patch; cordon/uncordon/taint/untaint: node; event: reason
	text2     string // event: message; untaint: key; taint: key
	text3     string // taint: value
	hasEffect bool
	effect    TaintEffect
	eventType EventType
	pod       [4]string // namespace, pod, plugin, payload
	err       error
}

func marshal(v any) (string, error) {
	if s, ok := v.(string); ok {
		return s, nil
	}
	b, err := json.Marshal(v)
	return string(b), err
}

// ApplyObject is a server-side apply of object (JSON text, or a value marshalled to JSON).
func ApplyObject(object any) Command {
	s, err := marshal(object)
	return Command{kind: cmdApply, text: s, err: err}
}

// MergePatch is a JSON merge patch (RFC 7386) of target; patch is JSON text or a value.
func MergePatch(target ObjectRef, patch any) Command {
	s, err := marshal(patch)
	return Command{kind: cmdMergePatch, target: target, text: s, err: err}
}

// JSONPatch is a JSON patch (RFC 6902, an array of operations) of target.
func JSONPatch(target ObjectRef, patch any) Command {
	s, err := marshal(patch)
	return Command{kind: cmdJSONPatch, target: target, text: s, err: err}
}

// DeleteObject deletes target.
func DeleteObject(target ObjectRef) Command { return Command{kind: cmdDelete, target: target} }

// EvictPod evicts a pod through the Eviction API.
func EvictPod(pod ObjectRef) Command { return Command{kind: cmdEvict, target: pod} }

// CordonNode marks a node unschedulable.
func CordonNode(node string) Command { return Command{kind: cmdCordon, text: node} }

// UncordonNode marks a node schedulable again.
func UncordonNode(node string) Command { return Command{kind: cmdUncordon, text: node} }

// TaintNode adds (or replaces) a taint on a node.
func TaintNode(node string, t Taint) Command {
	return Command{kind: cmdTaint, text: node, text2: t.Key, text3: t.Value, effect: t.Effect}
}

// UntaintNode removes the taint key from a node, with every effect.
func UntaintNode(node, key string) Command {
	return Command{kind: cmdUntaint, text: node, text2: key}
}

// UntaintNodeEffect removes the taint key with one effect from a node.
func UntaintNodeEffect(node, key string, effect TaintEffect) Command {
	return Command{kind: cmdUntaint, text: node, text2: key, hasEffect: true, effect: effect}
}

// Event records a Kubernetes Event about regarding.
func Event(regarding ObjectRef, t EventType, reason, message string) Command {
	return Command{kind: cmdRecordEvent, target: regarding, eventType: t, text: reason, text2: message}
}

// Pod sends payload to the pod-agent plugin in the sidecar of one pod.
func Pod(namespace, pod, plugin, payload string) Command {
	return Command{kind: cmdPodCommand, pod: [4]string{namespace, pod, plugin, payload}}
}

// CommandID is the id the host gave a submitted command.
type CommandID uint64

func (id CommandID) String() string { return fmt.Sprintf("#%d", uint64(id)) }

// Refused means the host refused a command at once.
type Refused struct{ Reason string }

func (r *Refused) Error() string { return "command refused: " + r.Reason }

func (e TaintEffect) String() string {
	switch e {
	case NoSchedule:
		return "NoSchedule"
	case PreferNoSchedule:
		return "PreferNoSchedule"
	default:
		return "NoExecute"
	}
}

// String describes the command in one line, for logs and for plugin unit tests that
// check what a reconcile submitted: "cordon n1", "evict v1/Pod ns/p", "taint n1
// key=value:NoExecute", "untaint n1 key:NoExecute", "delete v1/Pod ns/p", "event
// Warning Reason v1/Node n1: message", "pod ns/p plugin payload", "merge-patch REF
// PATCH", "json-patch REF PATCH", "apply OBJECT".
func (c Command) String() string {
	switch c.kind {
	case cmdApply:
		return "apply " + c.text
	case cmdMergePatch:
		return fmt.Sprintf("merge-patch %s %s", c.target, c.text)
	case cmdJSONPatch:
		return fmt.Sprintf("json-patch %s %s", c.target, c.text)
	case cmdDelete:
		return fmt.Sprintf("delete %s", c.target)
	case cmdEvict:
		return fmt.Sprintf("evict %s", c.target)
	case cmdCordon:
		return "cordon " + c.text
	case cmdUncordon:
		return "uncordon " + c.text
	case cmdTaint:
		return fmt.Sprintf("taint %s %s=%s:%s", c.text, c.text2, c.text3, c.effect)
	case cmdUntaint:
		if c.hasEffect {
			return fmt.Sprintf("untaint %s %s:%s", c.text, c.text2, c.effect)
		}
		return fmt.Sprintf("untaint %s %s", c.text, c.text2)
	case cmdRecordEvent:
		t := "Normal"
		if c.eventType == Warning {
			t = "Warning"
		}
		return fmt.Sprintf("event %s %s %s: %s", t, c.text, c.target, c.text2)
	case cmdPodCommand:
		return fmt.Sprintf("pod %s/%s %s %s", c.pod[0], c.pod[1], c.pod[2], c.pod[3])
	}
	return "unknown command"
}
