//go:build !wasip1

package bosun

import (
	"encoding/json"
	"testing"
	"time"
)

func TestLabelSelectors(t *testing.T) {
	var s LabelSelector
	if err := json.Unmarshal([]byte(`{"matchLabels":{"app":"web"},"matchExpressions":[
		{"key":"tier","operator":"In","values":["a","b"]},{"key":"canary","operator":"DoesNotExist"},
		{"key":"zone","operator":"Exists"},{"key":"env","operator":"NotIn","values":["dev"]}]}`), &s); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		labels map[string]string
		want   bool
	}{
		{map[string]string{"app": "web", "tier": "a", "zone": "z"}, true},
		{map[string]string{"app": "web", "tier": "c", "zone": "z"}, false},
		{map[string]string{"app": "web", "tier": "a", "zone": "z", "canary": "1"}, false},
		{map[string]string{"app": "web", "tier": "a"}, false},
		{map[string]string{"app": "web", "tier": "b", "zone": "z", "env": "dev"}, false},
		{map[string]string{"app": "db", "tier": "a", "zone": "z"}, false},
	} {
		if got, err := s.Matches(c.labels); err != nil || got != c.want {
			t.Errorf("%v: got %v %v, want %v", c.labels, got, err, c.want)
		}
	}
	if got := s.String(); got != "app=web,tier in (a,b),!canary,zone,env notin (dev)" {
		t.Errorf("String: %s", got)
	}
	if ok, err := (*LabelSelector)(nil).Matches(nil); !ok || err != nil {
		t.Error("a nil selector matches everything")
	}
	bad := LabelSelector{MatchExpressions: []LabelSelectorRequirement{{Key: "a", Operator: "Gt"}}}
	if _, err := bad.Matches(nil); err == nil {
		t.Error("an unknown operator is an error")
	}
}

func TestIntOrPercentScalesLikeApimachinery(t *testing.T) {
	var v IntOrString
	for _, c := range []struct {
		json        string
		total       int
		up, down    int
		errExpected bool
	}{
		{`"25%"`, 10, 3, 2, false},
		{`"80%"`, 20, 16, 16, false},
		{`"51%"`, 10, 6, 5, false},
		{`"0%"`, 10, 0, 0, false},
		{`7`, 10, 7, 7, false},
		{`"7"`, 10, 0, 0, true},
	} {
		if err := json.Unmarshal([]byte(c.json), &v); err != nil {
			t.Fatal(err)
		}
		up, err := v.ScaledValue(c.total, true)
		if (err != nil) != c.errExpected {
			t.Fatalf("%s: %v", c.json, err)
		}
		down, _ := v.ScaledValue(c.total, false)
		if !c.errExpected && (up != c.up || down != c.down) {
			t.Errorf("%s of %d: up %d down %d, want %d %d", c.json, c.total, up, down, c.up, c.down)
		}
		if b, _ := json.Marshal(v); string(b) != c.json {
			t.Errorf("round trip %s -> %s", c.json, b)
		}
	}
}

func TestTimesAndTypedObjects(t *testing.T) {
	at, err := ParseTime("2026-12-06T10:00:00.123456Z")
	if err != nil || at.Nanosecond() != 123456000 {
		t.Fatal(at, err)
	}
	if FormatTime(at) != "2026-12-06T10:00:00Z" {
		t.Error(FormatTime(at))
	}
	if _, err := ParseTime("yesterday"); err == nil {
		t.Error("not a time")
	}
	h := NewTestHost().WithObject(`{"apiVersion":"v1","kind":"Node","metadata":{"name":"n1"},
		"spec":{"taints":[{"key":"k","effect":"NoExecute"}]},"status":{"conditions":[{"type":"Ready","status":"False"}]}}`)
	h.NowMs = 1_000
	ctx := &Context{}
	nodes, err := ListAs[NodeObject](ctx, "v1", "Node", "", "")
	if err != nil || len(nodes) != 1 || nodes[0].Ready() != "False" || !nodes[0].HasTaint("k", "NoExecute") {
		t.Fatalf("%+v %v", nodes, err)
	}
	if !ctx.Now().Equal(time.UnixMilli(1000)) {
		t.Error(ctx.Now())
	}
}
