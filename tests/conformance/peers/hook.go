// Package peers is the zone-labeler decision (plugins/zone-labeler) as the peers of the
// peer comparison run it outside Bosun: a fork-per-event hook in the style of
// shell-operator (cmd/hook) and an HTTP webhook in the style of Metacontroller
// (cmd/webhook). Both read the same binding, `{"object": POD, "node": NODE}`, and decide
// here; see README.md for the contracts.
package peers

import (
	"encoding/json"
	"fmt"
)

// ZoneLabel is the label copied from the node to its pods.
const ZoneLabel = "topology.kubernetes.io/zone"

// MaxBinding caps the binding a peer reads (a Pod and a Node are far smaller).
const MaxBinding = 16 << 20

// Object is the part of a Pod or a Node the decision reads; encoding/json skips the
// rest, which is the fastest natural way to read an object in Go.
type Object struct {
	Metadata struct {
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		NodeName string `json:"nodeName"`
	} `json:"spec"`
}

// Binding is one event: the pod, and the node it is bound to (null or absent when the
// caller does not know that node).
type Binding struct {
	Object *Object `json:"object"`
	Node   *Object `json:"node"`
}

// Decision is what the event asks for.
type Decision struct {
	// Patch is the JSON merge patch for the pod, nil for none.
	Patch []byte
	// Requeue: the pod is bound to a node the caller did not supply; try again later
	// (the plugin requeues after 30 s).
	Requeue bool
}

// Decide reads a binding's JSON and applies zone-labeler's decision: a bound pod whose
// node carries the zone label, with another value (or none) on the pod, gets
// `{"metadata":{"labels":{"topology.kubernetes.io/zone":ZONE}}}`.
func Decide(binding []byte) (Decision, error) {
	var b Binding
	if err := json.Unmarshal(binding, &b); err != nil {
		return Decision{}, fmt.Errorf("binding is not {\"object\": POD, \"node\": NODE}: %w", err)
	}
	pod := b.Object
	// No pod, or an unbound one (it is seen again when the scheduler binds it).
	if pod == nil || pod.Spec.NodeName == "" {
		return Decision{}, nil
	}
	if b.Node == nil {
		return Decision{Requeue: true}, nil
	}
	zone, ok := b.Node.Metadata.Labels[ZoneLabel]
	if !ok {
		return Decision{}, nil
	}
	if have, ok := pod.Metadata.Labels[ZoneLabel]; ok && have == zone {
		return Decision{}, nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{ZoneLabel: zone}}})
	if err != nil {
		return Decision{}, err
	}
	return Decision{Patch: patch}, nil
}
