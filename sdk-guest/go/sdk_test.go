//go:build !wasip1

package bosun

import (
	"errors"
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
