//go:build !wasip1

package bosun

import (
	"errors"
	"strings"
	"testing"
	"time"
)

type labeler struct{}

func (labeler) Metadata() Metadata {
	return NewMetadata("labeler", "0.1.0").Subscribe("v1", "Pod").Permit("v1", "Pod", Read, Patch)
}

func (labeler) Init(config string) error {
	var c struct{ Label string }
	return ParseConfig(config, &c)
}

func (labeler) Reconcile(ctx *Context, req *Request) (Outcome, error) {
	pod, ok := ctx.Get(req.Target)
	if !ok {
		return RequeueAfter(30 * time.Second), nil
	}
	if _, err := ctx.Submit(MergePatch(req.Target, map[string]any{"metadata": map[string]any{"labels": map[string]any{"a": "b"}}})); err != nil {
		return Done(), err
	}
	ctx.Info("patched " + pod["metadata"].(map[string]any)["name"].(string))
	return Done(), nil
}

const pod = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-0","namespace":"default"}}`

func TestReconcileAgainstTheTestHost(t *testing.T) {
	h := NewTestHost().WithObject(pod)
	target := NewRef("v1", "Pod", "web-0").InNamespace("default")
	out, err := h.Reconcile(labeler{}, &Request{Target: target})
	if err != nil || out != Done() {
		t.Fatalf("reconcile: %v %v", out, err)
	}
	if len(h.Commands) != 1 || h.Commands[0].kind != cmdMergePatch || h.Commands[0].text != `{"metadata":{"labels":{"a":"b"}}}` {
		t.Fatalf("commands: %+v", h.Commands)
	}
	if len(h.Logs) != 1 || h.Logs[0].Message != "patched web-0" {
		t.Fatalf("logs: %+v", h.Logs)
	}
	out, _ = NewTestHost().Reconcile(labeler{}, &Request{Target: target})
	if ms, ok := out.RequeueAfterMs(); !ok || ms != 30000 {
		t.Fatalf("a missing pod requeues after 30 s, got %v %v", ms, ok)
	}
}

func TestSlimViews(t *testing.T) {
	NewTestHost().
		WithObject(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-0","namespace":"default","labels":{"app":"web"}},"spec":{"nodeName":"n1","containers":[{"name":"app","image":"web:1","env":[{"name":"A"}]}]}}`).
		WithObject(`{"apiVersion":"v1","kind":"Node","metadata":{"name":"n1"},"spec":{"unschedulable":true}}`)
	ctx := &Context{}
	pod, err := ctx.GetPod(NewRef("v1", "Pod", "web-0").InNamespace("default"))
	if err != nil || pod == nil || pod.Spec.NodeName != "n1" || pod.Spec.Containers[0].Image != "web:1" {
		t.Fatalf("pod: %+v %v", pod, err)
	}
	node, err := ctx.GetNode("n1")
	if err != nil || node == nil || !node.Spec.Unschedulable || node.Ready() != "Unknown" {
		t.Fatalf("node: %+v %v", node, err)
	}
	meta, err := ctx.GetMeta(NewRef("v1", "Pod", "web-0").InNamespace("default"))
	if err != nil || meta == nil || meta.Labels["app"] != "web" {
		t.Fatalf("meta: %+v %v", meta, err)
	}
	if gone, err := ctx.GetNode("n2"); gone != nil || err != nil {
		t.Fatalf("a missing node is nil without an error: %+v %v", gone, err)
	}
	var cut map[string]any
	if _, err := ctx.GetFields(NewRef("v1", "Node", "n1"), []string{"spec..x"}, &cut); err == nil || !strings.Contains(err.Error(), "dotted path") {
		t.Fatalf("an empty segment is refused: %v", err)
	}
	var containers struct {
		Spec struct{ Containers []map[string]any }
	}
	if _, err := ctx.GetFields(NewRef("v1", "Pod", "web-0").InNamespace("default"), []string{"spec.containers.image"}, &containers); err != nil ||
		len(containers.Spec.Containers) != 1 || len(containers.Spec.Containers[0]) != 1 {
		t.Fatalf("a path through an array keeps only that field of each element: %+v %v", containers, err)
	}
}

func TestRefsAndConfig(t *testing.T) {
	if s := NewRef("v1", "Pod", "web-0").InNamespace("default").String(); s != "v1/Pod default/web-0" {
		t.Fatal(s)
	}
	if s := NewRef("v1", "Node", "n1").String(); s != "v1/Node n1" {
		t.Fatal(s)
	}
	if err := (labeler{}).Init(`{"lable": 1}`); err == nil || err.Error()[:15] != "invalid config:" {
		t.Fatalf("unknown field: %v", err)
	}
	var r *Refused
	c := ApplyObject(func() {})
	if _, err := (&Context{}).Submit(c); !errors.As(err, &r) {
		t.Fatalf("an unmarshalable object is refused: %v", err)
	}
}
