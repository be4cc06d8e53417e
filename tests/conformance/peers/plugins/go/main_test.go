package main

import (
	"os"
	"strings"
	"testing"

	bosun "github.com/bosun-dev/bosun/sdk-guest/go"
)

var target = bosun.NewRef("v1", "Pod", "web-7d9c6b8f5-x2k4p").InNamespace("shop")

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// reconcile runs the plugin (configured with config) once against a host holding objects.
func reconcile(t *testing.T, config string, objects ...string) (*bosun.TestHost, bosun.Outcome) {
	t.Helper()
	p := &zoneLabeler{}
	if err := p.Init(config); err != nil {
		t.Fatalf("init: %v", err)
	}
	h := bosun.NewTestHost()
	for _, o := range objects {
		h.WithObject(o)
	}
	out, err := h.Reconcile(p, &bosun.Request{Target: target})
	if err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	return h, out
}

func commands(h *bosun.TestHost) []string {
	var out []string
	for _, c := range h.Commands {
		out = append(out, c.String())
	}
	return out
}

func TestLabelsABoundPodWithItsNodesZone(t *testing.T) {
	h, out := reconcile(t, "", read(t, "testdata/pod.json"), read(t, "testdata/cache/node-1.json"))
	want := `merge-patch v1/Pod shop/web-7d9c6b8f5-x2k4p {"metadata":{"labels":{"topology.kubernetes.io/zone":"eu-west-1b"}}}`
	if got := commands(h); out != bosun.Done() || len(got) != 1 || got[0] != want {
		t.Fatalf("got %v %q", out, got)
	}
}

func TestLeavesAPodThatAlreadyHasTheZone(t *testing.T) {
	pod := strings.Replace(read(t, "testdata/pod.json"), `"tier": "frontend"`, `"tier": "frontend", "topology.kubernetes.io/zone": "eu-west-1b"`, 1)
	h, _ := reconcile(t, "", pod, read(t, "testdata/cache/node-1.json"))
	if len(h.Commands) != 0 {
		t.Fatalf("commands: %q", commands(h))
	}
}

func TestRequeuesWhileTheNodeIsMissing(t *testing.T) {
	h, out := reconcile(t, "", read(t, "testdata/pod.json"))
	if ms, ok := out.RequeueAfterMs(); !ok || ms != 30_000 || len(h.Commands) != 0 {
		t.Fatalf("got %v %v %q", ms, ok, commands(h))
	}
}

func TestCopiesTheConfiguredLabel(t *testing.T) {
	h, _ := reconcile(t, `{"label": "topology.kubernetes.io/region"}`, read(t, "testdata/pod.json"), read(t, "testdata/cache/node-1.json"))
	if got := commands(h); len(got) != 1 || !strings.HasSuffix(got[0], `{"metadata":{"labels":{"topology.kubernetes.io/region":"eu-west-1"}}}`) {
		t.Fatalf("commands: %q", got)
	}
}

func TestInvalidConfigNamesTheProblem(t *testing.T) {
	if err := (&zoneLabeler{}).Init(`{"label": ""}`); err == nil || err.Error() != "invalid config: `label` is empty" {
		t.Fatalf("empty label: %v", err)
	}
	if err := (&zoneLabeler{}).Init(`{"lable": "x"}`); err == nil || !strings.Contains(err.Error(), `unknown field "lable"`) {
		t.Fatalf("unknown field: %v", err)
	}
}
