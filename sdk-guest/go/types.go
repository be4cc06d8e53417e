package bosun

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

func stringReader(s string) io.Reader { return strings.NewReader(s) }

// ObjectRef names one Kubernetes object the way the API names it.
type ObjectRef struct {
	APIVersion string
	Kind       string
	// Namespace is empty for cluster-scoped kinds (Node, Namespace, ...).
	Namespace string
	Name      string
}

// NewRef is a reference to a cluster-scoped object, or a namespaced one with InNamespace.
func NewRef(apiVersion, kind, name string) ObjectRef {
	return ObjectRef{APIVersion: apiVersion, Kind: kind, Name: name}
}

// InNamespace returns the reference in namespace ns.
func (r ObjectRef) InNamespace(ns string) ObjectRef { r.Namespace = ns; return r }

// RefOf reads apiVersion, kind, metadata.namespace and metadata.name of an object.
func RefOf(object map[string]any) (ObjectRef, error) {
	meta, _ := object["metadata"].(map[string]any)
	r := ObjectRef{}
	r.APIVersion, _ = object["apiVersion"].(string)
	r.Kind, _ = object["kind"].(string)
	if meta != nil {
		r.Name, _ = meta["name"].(string)
		r.Namespace, _ = meta["namespace"].(string)
	}
	if r.APIVersion == "" || r.Kind == "" || r.Name == "" {
		return r, fmt.Errorf("an object needs apiVersion, kind and metadata.name")
	}
	return r, nil
}

// String is `v1/Pod default/web-0`, or `v1/Node node-1` for a cluster-scoped object
// (as in the Rust SDK).
func (r ObjectRef) String() string {
	s := r.APIVersion + "/" + r.Kind + " "
	if r.Namespace != "" {
		s += r.Namespace + "/"
	}
	return s + r.Name
}

// EventKind is what happened to an object since the plugin last reconciled it.
type EventKind uint8

const (
	// Added: the object appeared.
	Added EventKind = iota
	// Modified: the object changed.
	Modified
	// Deleted: the object is gone; Context.Get returns its last known state.
	Deleted
	// Resync: periodic re-check, nothing changed.
	Resync
	// Requeued: the plugin asked for this call (requeue-after, or a retry).
	Requeued
)

// Verdict is what became of a submitted command.
type Verdict uint8

const (
	// Pending: accepted, not executed yet.
	Pending Verdict = iota
	// Executed: applied to the cluster.
	Executed
	// DryRun: passed the guardrails, not executed.
	DryRun
	// RefusedVerdict: stopped by a guardrail.
	RefusedVerdict
	// Failed: executed and failed.
	Failed
)

// CommandOutcome is the outcome of a command submitted earlier for the same key.
type CommandOutcome struct {
	ID      uint64
	Verdict Verdict
	Message string
}

// Request is one call of Reconcile.
type Request struct {
	Target ObjectRef
	// Events coalesced since the last call for this key, oldest first.
	Events []EventKind
	// Outcomes of earlier commands not yet reported, oldest first.
	Outcomes []CommandOutcome
	// Attempt is 0 on a first call, n after n consecutive failed calls.
	Attempt uint32
}

// IsDeleted reports whether the object is gone (the last event is Deleted).
func (r *Request) IsDeleted() bool {
	return len(r.Events) > 0 && r.Events[len(r.Events)-1] == Deleted
}

// Outcome is what Reconcile asks of the host for this key.
type Outcome struct {
	requeue   bool
	requeueMs uint64
}

// Done: nothing more to do until the next event.
func Done() Outcome { return Outcome{} }

// RequeueAfter asks for another call after d, even without events.
func RequeueAfter(d time.Duration) Outcome {
	return Outcome{requeue: true, requeueMs: uint64(d / time.Millisecond)}
}

// RequeueAfterMs is the requeue delay in milliseconds, if any.
func (o Outcome) RequeueAfterMs() (uint64, bool) { return o.requeueMs, o.requeue }

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
