// zone-labeler-go: plugins/zone-labeler written with the Go SDK. For each pod bound to a
// node, it copies the node's zone label (`topology.kubernetes.io/zone` unless configured
// otherwise) onto the pod with one merge patch when the pod's value differs. See
// README.md.
package main

import (
	"fmt"
	"time"

	bosun "github.com/bosun-dev/bosun/sdk-guest/go"
)

// defaultLabel is the label copied when the configuration names none.
const defaultLabel = "topology.kubernetes.io/zone"

// nodeMissingRetry is how long to wait for a node the cache does not know yet.
const nodeMissingRetry = 30 * time.Second

// config is `{"label": "topology.kubernetes.io/zone"}`.
type config struct {
	Label string `json:"label"`
}

type zoneLabeler struct{ label string }

var plugin = &zoneLabeler{label: defaultLabel}

func (*zoneLabeler) Metadata() bosun.Metadata {
	return bosun.NewMetadata("zone-labeler-go", "0.1.0").
		Description("copies the node's zone label onto the pods bound to it").
		Subscribe("v1", "Pod").
		Permit("v1", "Pod", bosun.Read, bosun.Patch, bosun.RecordEvent).
		Permit("v1", "Node", bosun.Read)
}

func (p *zoneLabeler) Init(text string) error {
	c := config{Label: defaultLabel}
	if err := bosun.ParseConfig(text, &c); err != nil {
		return err
	}
	if c.Label == "" {
		return fmt.Errorf("invalid config: `label` is empty")
	}
	p.label = c.Label
	return nil
}

func (p *zoneLabeler) Reconcile(ctx *bosun.Context, req *bosun.Request) (bosun.Outcome, error) {
	if req.IsDeleted() {
		return bosun.Done(), nil
	}
	// The SDK's slim views decode only the fields they declare, not the whole object.
	pod, err := ctx.GetPod(req.Target)
	if err != nil || pod == nil {
		return bosun.Done(), err
	}
	// Unbound pods are reconciled again when the scheduler binds them.
	nodeName := pod.Spec.NodeName
	if nodeName == "" {
		return bosun.Done(), nil
	}
	node, err := ctx.GetNode(nodeName)
	if err != nil {
		return bosun.Done(), err
	}
	if node == nil {
		ctx.Warn(fmt.Sprintf("%s: node %s is not in the cache yet, retrying in %ds",
			req.Target, nodeName, int(nodeMissingRetry/time.Second)))
		return bosun.RequeueAfter(nodeMissingRetry), nil
	}
	zone, ok := node.Metadata.Labels[p.label]
	if !ok {
		return bosun.Done(), nil
	}
	if have, ok := pod.Metadata.Labels[p.label]; ok && have == zone {
		return bosun.Done(), nil
	}
	patch := map[string]any{"metadata": map[string]any{"labels": map[string]string{p.label: zone}}}
	id, err := ctx.Submit(bosun.MergePatch(req.Target, patch))
	if err != nil {
		return bosun.Done(), err
	}
	ctx.Info(fmt.Sprintf("%s: labelled %s=%s from node %s (command %s)", req.Target, p.label, zone, nodeName, id))
	return bosun.Done(), nil
}

func init() { bosun.ExportController(plugin) }

func main() {}
