//go:build !wasip1

package bosun

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Outside a WebAssembly host (go vet, go test on the build machine) the imports go to
// TestHost, an in-memory host.

func hostGet(target ObjectRef) (string, bool) {
	s, ok := testHost.objects[target]
	return s, ok
}

// hostGetFields cuts the object as the runtime's host does (see cache.get-fields).
func hostGetFields(target ObjectRef, fields []string) (string, bool, error) {
	t, err := parseFields(fields)
	if err != nil {
		return "", false, err
	}
	s, ok := testHost.objects[target]
	if !ok {
		return "", false, nil
	}
	var v map[string]any
	if err := jsonUnmarshal(s, &v); err != nil {
		return "", false, fmt.Errorf("the cached object is not a JSON object: %w", err)
	}
	cut, _ := t.cut(v)
	b, err := json.Marshal(cut)
	return string(b), true, err
}

type fieldTree struct {
	whole    bool
	children map[string]*fieldTree
}

func parseFields(fields []string) (*fieldTree, error) {
	if len(fields) == 0 || len(fields) > 64 {
		return nil, fmt.Errorf("name between 1 and 64 fields, not %d", len(fields))
	}
	root := &fieldTree{children: map[string]*fieldTree{}}
	for _, f := range fields {
		if len(f) > 256 || strings.Contains(f, ",") {
			return nil, fmt.Errorf("invalid field %q: at most 256 bytes, no commas", f)
		}
		node := root
		for _, name := range strings.Split(f, ".") {
			if name == "" {
				return nil, fmt.Errorf("invalid field %q: a field is a dotted path of names such as \"spec.nodeName\"", f)
			}
			next, ok := node.children[name]
			if !ok {
				next = &fieldTree{children: map[string]*fieldTree{}}
				node.children[name] = next
			}
			node = next
		}
		node.whole = true
	}
	return root, nil
}

func (t *fieldTree) cut(v any) (any, bool) {
	if t.whole {
		return v, true
	}
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for name, child := range t.children {
			if x, ok := v[name]; ok {
				if c, ok := child.cut(x); ok {
					out[name] = c
				}
			}
		}
		return out, true
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i], _ = t.cut(x)
		}
		return out, true
	}
	return nil, false
}

func hostList(apiVersion, kind, namespace, selector string) ([]string, error) {
	var out []string
	for r, s := range testHost.objects {
		if r.APIVersion == apiVersion && r.Kind == kind && (namespace == "" || r.Namespace == namespace) {
			out = append(out, s)
		}
	}
	return out, nil
}

func hostStateGet(key string) ([]byte, bool) {
	v, ok := testHost.state[key]
	return v, ok
}

func hostStateSet(key string, value []byte) string {
	testHost.state[key] = append([]byte(nil), value...)
	return ""
}

func hostStateDelete(key string) { delete(testHost.state, key) }

func hostSubmit(c *Command) (uint64, string, bool) {
	testHost.Commands = append(testHost.Commands, *c)
	return uint64(len(testHost.Commands)), "", true
}

func hostLog(level Level, msg string) {
	testHost.Logs = append(testHost.Logs, LogLine{Level: level, Message: msg})
}

func hostNowMs() uint64 { return testHost.NowMs }

func hostNowRFC3339() string { return "1970-01-01T00:00:00Z" }

// LogLine is a line a plugin logged under TestHost.
type LogLine struct {
	Level   Level
	Message string
}

// TestHost is the in-memory host of native builds, for plugin unit tests.
type TestHost struct {
	objects  map[ObjectRef]string
	state    map[string][]byte
	Commands []Command
	Logs     []LogLine
	NowMs    uint64
	// Pod is the pod a pod-agent plugin runs in.
	Pod PodInfo
	// HTTP answers the app's HTTP; nil refuses every connection.
	HTTP HTTPHandler
	// Files is the shared directory, by relative path.
	Files map[string][]byte
}

var testHost *TestHost

func init() { NewTestHost() }

// NewTestHost makes an empty host and makes it the current one.
func NewTestHost() *TestHost {
	h := &TestHost{objects: map[ObjectRef]string{}, state: map[string][]byte{}, Files: map[string][]byte{}}
	testHost = h
	return h
}

// WithObject adds an object (JSON text) to the cache.
func (h *TestHost) WithObject(json string) *TestHost {
	var v map[string]any
	if err := jsonUnmarshal(json, &v); err == nil {
		if r, err := RefOf(v); err == nil {
			h.objects[r] = json
		}
	}
	return h
}

// Reconcile runs c once for req against this host.
func (h *TestHost) Reconcile(c Controller, req *Request) (Outcome, error) {
	testHost = h
	return c.Reconcile(&Context{}, req)
}
