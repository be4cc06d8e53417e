package bosun

import (
	"encoding/json"
	"fmt"
)

// Context is the plugin's view of the runtime during one call: the cache, its state,
// the command pipe, the log and the clock.
type Context struct{}

// Get returns the object as decoded JSON, or false when it is not in the cache (or not
// readable). A cache entry that is not JSON is logged and reads as absent.
func (c *Context) Get(target ObjectRef) (map[string]any, bool) {
	text, ok := c.GetRaw(target)
	if !ok {
		return nil, false
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(text), &v); err != nil {
		Error(fmt.Sprintf("cache entry for %s is not JSON: %v", target, err))
		return nil, false
	}
	return v, true
}

// GetRaw returns the object's JSON text as the cache keeps it.
func (c *Context) GetRaw(target ObjectRef) (string, bool) { return hostGet(target) }

// GetAs decodes the object into v; false when it is not in the cache.
func (c *Context) GetAs(target ObjectRef, v any) (bool, error) {
	text, ok := c.GetRaw(target)
	if !ok {
		return false, nil
	}
	if err := json.Unmarshal([]byte(text), v); err != nil {
		return true, fmt.Errorf("reading %s: %w", target, err)
	}
	return true, nil
}

// GetFields returns the object reduced to the named fields, decoded into v; false when it
// is not in the cache. A field is a dotted path from the root ("metadata.labels",
// "spec.nodeName"); one through an array applies to each element
// ("spec.containers.image"). The host skips the rest of the object, so encoding/json
// decodes a few hundred bytes instead of the whole object. An empty list, more than 64
// fields or an empty path segment is an error.
func (c *Context) GetFields(target ObjectRef, fields []string, v any) (bool, error) {
	text, found, err := hostGetFields(target, fields)
	if err != nil {
		return false, fmt.Errorf("reading fields of %s: %w", target, err)
	}
	if !found {
		return false, nil
	}
	if err := json.Unmarshal([]byte(text), v); err != nil {
		return true, fmt.Errorf("reading %s: %w", target, err)
	}
	return true, nil
}

// The fields of the slim views, the same as the Rust and JavaScript SDKs'.
var (
	metaFields = []string{"metadata.name", "metadata.namespace", "metadata.uid", "metadata.generation",
		"metadata.resourceVersion", "metadata.labels", "metadata.annotations", "metadata.creationTimestamp",
		"metadata.deletionTimestamp", "metadata.ownerReferences"}
	podFields = append(append([]string{}, metaFields...), "spec.nodeName", "spec.containers.name",
		"spec.containers.image", "status.phase", "status.conditions", "status.containerStatuses")
	nodeFields = append(append([]string{}, metaFields...), "spec.unschedulable", "spec.taints",
		"status.conditions", "status.nodeInfo.bootID")
)

// GetPod reads the pod as the SDK's slim view (PodObject): the host cuts it down to the
// view's fields, so this is much cheaper than Get on a large pod. nil when it is not in
// the cache.
func (c *Context) GetPod(target ObjectRef) (*PodObject, error) {
	var pod PodObject
	if found, err := c.GetFields(target, podFields, &pod); err != nil || !found {
		return nil, err
	}
	return &pod, nil
}

// GetNode reads the node named name as the SDK's slim view (NodeObject). nil when it is
// not in the cache.
func (c *Context) GetNode(name string) (*NodeObject, error) {
	var node NodeObject
	if found, err := c.GetFields(NewRef("v1", "Node", name), nodeFields, &node); err != nil || !found {
		return nil, err
	}
	return &node, nil
}

// GetMeta reads any object's metadata and nothing else of it. nil when it is not in the
// cache.
func (c *Context) GetMeta(target ObjectRef) (*ObjectMeta, error) {
	var obj struct {
		Metadata ObjectMeta `json:"metadata"`
	}
	if found, err := c.GetFields(target, metaFields, &obj); err != nil || !found {
		return nil, err
	}
	return &obj.Metadata, nil
}

// ListRaw lists objects of one kind as JSON text. An empty namespace lists all
// namespaces; selector is a Kubernetes label selector (empty for none).
func (c *Context) ListRaw(apiVersion, kind, namespace, selector string) ([]string, error) {
	items, err := hostList(apiVersion, kind, namespace, selector)
	if err != nil {
		return nil, fmt.Errorf("listing %s/%s: %s", apiVersion, kind, err)
	}
	return items, nil
}

// List lists objects of one kind, decoded.
func (c *Context) List(apiVersion, kind, namespace, selector string) ([]map[string]any, error) {
	items, err := c.ListRaw(apiVersion, kind, namespace, selector)
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(items))
	for _, text := range items {
		var v map[string]any
		if err := json.Unmarshal([]byte(text), &v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// StateGet returns plugin-local state under key.
func (c *Context) StateGet(key string) ([]byte, bool) { return hostStateGet(key) }

// StateSet sets plugin-local state; it fails when the key or value exceeds the caps.
func (c *Context) StateSet(key string, value []byte) error {
	if err := hostStateSet(key, value); err != "" {
		return fmt.Errorf("setting state %q: %s", key, err)
	}
	return nil
}

// StateDelete deletes plugin-local state under key.
func (c *Context) StateDelete(key string) { hostStateDelete(key) }

// Submit sends a command to the command pipe. The id names its outcome in a later
// Request.Outcomes; a *Refused error means the host refused it at once.
func (c *Context) Submit(cmd Command) (CommandID, error) {
	if cmd.err != nil {
		return 0, &Refused{Reason: "invalid command: " + cmd.err.Error()}
	}
	id, reason, ok := hostSubmit(&cmd)
	if !ok {
		return 0, &Refused{Reason: reason}
	}
	return CommandID(id), nil
}

// Trace logs at trace level.
func (c *Context) Trace(msg string) { Log(LevelTrace, msg) }

// Debug logs at debug level.
func (c *Context) Debug(msg string) { Log(LevelDebug, msg) }

// Info logs at info level.
func (c *Context) Info(msg string) { Log(LevelInfo, msg) }

// Warn logs at warn level.
func (c *Context) Warn(msg string) { Log(LevelWarn, msg) }

// Error logs at error level.
func (c *Context) Error(msg string) { Log(LevelError, msg) }

// NowMs is wall-clock time in milliseconds since the Unix epoch (the host's clock).
func (c *Context) NowMs() uint64 { return hostNowMs() }

// NowRFC3339 is the current time as RFC 3339 with seconds precision.
func (c *Context) NowRFC3339() string { return hostNowRFC3339() }

// Level is a log level.
type Level uint8

const (
	// LevelTrace is the most verbose.
	LevelTrace Level = iota
	// LevelDebug is for developers.
	LevelDebug
	// LevelInfo is the default.
	LevelInfo
	// LevelWarn is for something odd.
	LevelWarn
	// LevelError is for a failure.
	LevelError
)

// Log writes one line into the host's log, tagged with plugin, revision and key.
func Log(level Level, msg string) { hostLog(level, msg) }

// Error logs at error level outside a Context.
func Error(msg string) { Log(LevelError, msg) }
