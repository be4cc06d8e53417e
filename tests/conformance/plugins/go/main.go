// The conformance plugin in Go: an interpreter of the step scripts described in
// tests/conformance/README.md, identical in behaviour to the Rust and JS ones.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	bosun "github.com/bosun-dev/bosun/sdk-guest/go"
)

type plugin struct{ script []map[string]any }

func str(v any, key string) string {
	m, _ := v.(map[string]any)
	s, _ := m[key].(string)
	return s
}

func objRef(v any) bosun.ObjectRef {
	return bosun.ObjectRef{APIVersion: str(v, "apiVersion"), Kind: str(v, "kind"), Namespace: str(v, "namespace"), Name: str(v, "name")}
}

func effect(name string) bosun.TaintEffect {
	switch name {
	case "NoExecute":
		return bosun.NoExecute
	case "PreferNoSchedule":
		return bosun.PreferNoSchedule
	}
	return bosun.NoSchedule
}

func command(name string, a any) bosun.Command {
	m, _ := a.(map[string]any)
	switch name {
	case "apply":
		return bosun.ApplyObject(a)
	case "merge-patch":
		return bosun.MergePatch(objRef(m["target"]), m["patch"])
	case "json-patch":
		return bosun.JSONPatch(objRef(m["target"]), m["patch"])
	case "delete":
		return bosun.DeleteObject(objRef(a))
	case "evict":
		return bosun.EvictPod(objRef(a))
	case "cordon":
		s, _ := a.(string)
		return bosun.CordonNode(s)
	case "uncordon":
		s, _ := a.(string)
		return bosun.UncordonNode(s)
	case "taint":
		return bosun.TaintNode(str(a, "node"), bosun.Taint{Key: str(a, "key"), Value: str(a, "value"), Effect: effect(str(a, "effect"))})
	case "untaint":
		if e, ok := m["effect"].(string); ok {
			return bosun.UntaintNodeEffect(str(a, "node"), str(a, "key"), effect(e))
		}
		return bosun.UntaintNode(str(a, "node"), str(a, "key"))
	case "event":
		t := bosun.Normal
		if str(a, "type") == "Warning" {
			t = bosun.Warning
		}
		return bosun.Event(objRef(m["regarding"]), t, str(a, "reason"), str(a, "message"))
	}
	return bosun.Pod(str(a, "namespace"), str(a, "pod"), str(a, "plugin"), str(a, "payload"))
}

var eventNames = []string{"added", "modified", "deleted", "resync", "requeued"}
var verdictNames = []string{"pending", "executed", "dry-run", "refused", "failed"}

func (*plugin) Metadata() bosun.Metadata {
	return bosun.NewMetadata("conformance", "0.1.0").
		Description("the conformance plugin").
		Subscribe("v1", "Pod").
		Subscription(bosun.Subscription{APIVersion: "v1", Kind: "ConfigMap", Namespace: "conf", LabelSelector: "app=conf"}).
		Permit("v1", "Pod", bosun.Read, bosun.Patch, bosun.Delete, bosun.Evict, bosun.RecordEvent, bosun.PodCommand).
		Permit("v1", "Node", bosun.Read, bosun.Cordon).
		Permit("v1", "ConfigMap", bosun.Read, bosun.Apply)
}

func (p *plugin) Init(config string) error {
	var c map[string]any
	if err := json.Unmarshal([]byte(config), &c); err != nil {
		return errors.New("invalid config: not JSON")
	}
	if msg, ok := c["failInit"].(string); ok {
		return errors.New(msg)
	}
	p.script = nil
	steps, _ := c["script"].([]any)
	for _, s := range steps {
		if m, ok := s.(map[string]any); ok {
			p.script = append(p.script, m)
		}
	}
	return nil
}

// only returns the single key of a one-key object.
func only(m map[string]any) (string, any, bool) {
	for k, v := range m {
		return k, v, true
	}
	return "", nil, false
}

func (p *plugin) Reconcile(ctx *bosun.Context, req *bosun.Request) (bosun.Outcome, error) {
	outcome := bosun.Done()
	for _, st := range p.script {
		op, arg, ok := only(st)
		if !ok {
			continue
		}
		switch op {
		case "get":
			r := objRef(arg)
			o, ok := ctx.Get(r)
			if !ok {
				ctx.Info(fmt.Sprintf("get %s: absent", r))
				continue
			}
			rv := str(o["metadata"], "resourceVersion")
			if rv == "" {
				rv = "-"
			}
			ctx.Info(fmt.Sprintf("get %s: present rv=%s", r, rv))
		case "list":
			av, kind := str(arg, "apiVersion"), str(arg, "kind")
			items, err := ctx.List(av, kind, str(arg, "namespace"), str(arg, "selector"))
			if err != nil {
				ctx.Warn(fmt.Sprintf("list %s/%s: error: %s", av, kind, err))
				continue
			}
			names := make([]string, 0, len(items))
			for _, o := range items {
				names = append(names, str(o["metadata"], "name"))
			}
			sort.Strings(names)
			ctx.Info(fmt.Sprintf("list %s/%s: %d [%s]", av, kind, len(names), strings.Join(names, ",")))
		case "submit":
			m, _ := arg.(map[string]any)
			name, a, ok := only(m)
			if !ok {
				continue
			}
			id, err := ctx.Submit(command(name, a))
			if err != nil {
				ctx.Warn(fmt.Sprintf("submit %s: %s", name, err))
				continue
			}
			ctx.Info(fmt.Sprintf("submit %s: accepted %s", name, id))
		case "state-set":
			key := str(arg, "key")
			if err := ctx.StateSet(key, []byte(str(arg, "value"))); err != nil {
				ctx.Warn(fmt.Sprintf("state-set %s: %s", key, err))
				continue
			}
			ctx.Info("state-set " + key)
		case "state-get":
			key, _ := arg.(string)
			if v, ok := ctx.StateGet(key); ok {
				ctx.Info(fmt.Sprintf("state-get %s: %s", key, v))
			} else {
				ctx.Info(fmt.Sprintf("state-get %s: absent", key))
			}
		case "state-delete":
			key, _ := arg.(string)
			ctx.StateDelete(key)
			ctx.Info("state-delete " + key)
		case "log":
			msg := str(arg, "message")
			switch str(arg, "level") {
			case "trace":
				ctx.Trace(msg)
			case "debug":
				ctx.Debug(msg)
			case "warn":
				ctx.Warn(msg)
			case "error":
				ctx.Error(msg)
			default:
				ctx.Info(msg)
			}
		case "clock":
			ctx.Info(fmt.Sprintf("clock %d %s", ctx.NowMs(), ctx.NowRFC3339()))
		case "request":
			events := make([]string, 0, len(req.Events))
			for _, e := range req.Events {
				events = append(events, eventNames[e])
			}
			outcomes := make([]string, 0, len(req.Outcomes))
			for _, o := range req.Outcomes {
				outcomes = append(outcomes, fmt.Sprintf("%d:%s:%s", o.ID, verdictNames[o.Verdict], o.Message))
			}
			ctx.Info(fmt.Sprintf("request %s events=%s attempt=%d outcomes=%s", req.Target, strings.Join(events, ","), req.Attempt, strings.Join(outcomes, ";")))
		case "requeue":
			ms, _ := arg.(float64)
			outcome = bosun.RequeueAfter(time.Duration(ms) * time.Millisecond)
		case "fail":
			msg, _ := arg.(string)
			return bosun.Done(), errors.New(msg)
		default:
			ctx.Error("unknown step " + op)
		}
	}
	return outcome, nil
}

func init() { bosun.ExportController(&plugin{}) }

func main() {}
