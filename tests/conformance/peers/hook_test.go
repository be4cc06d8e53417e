package peers

import (
	"os"
	"testing"
)

// Every binding under testdata/bindings against the decision plugins/zone-labeler takes.
func TestDecideMatchesZoneLabeler(t *testing.T) {
	const patch = `{"metadata":{"labels":{"topology.kubernetes.io/zone":"zone-a"}}}`
	for file, want := range map[string]Decision{
		"pod_4k.json":          {Patch: []byte(patch)},
		"other_zone.json":      {Patch: []byte(patch)},
		"labelled.json":        {},
		"unbound.json":         {},
		"node_unlabelled.json": {},
		"node_unknown.json":    {Requeue: true},
	} {
		input, err := os.ReadFile("testdata/bindings/" + file)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decide(input)
		if err != nil || string(got.Patch) != string(want.Patch) || got.Requeue != want.Requeue {
			t.Errorf("%s: got %q requeue=%v (%v), want %q requeue=%v", file, got.Patch, got.Requeue, err, want.Patch, want.Requeue)
		}
	}
	if _, err := Decide([]byte(`[1`)); err == nil {
		t.Error("a binding that is not JSON is an error")
	}
}
