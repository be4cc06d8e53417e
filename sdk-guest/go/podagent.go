package bosun

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// PodAgent is a pod-level plugin, run by the Bosun sidecar inside one pod. Embed
// PodAgentDefaults for the hooks a plugin does not need; reach the pod through the
// *PodContext each hook gets.
//
// The host calls Metadata once when it loads a revision, then Init once per instance,
// then OnStart when the app starts, Probe for the pod's readiness/liveness/startup
// endpoints, OnCommand for each pod-command a controller sends (through the command pipe and the sidecar link), and OnStop
// last. The package is built with the tag bosun_podagent (`bosun plugin build` sets it
// when the plugin calls ExportPodAgent).
type PodAgent interface {
	// Metadata gives the name and version.
	Metadata() Metadata
	// Init configures the instance from the JSON configuration ("{}" when none).
	Init(config string) error
	// OnStart: the app container started (or the sidecar started beside a running app).
	OnStart(pod *PodContext) error
	// Probe answers the pod's readiness/liveness/startup endpoint.
	Probe(pod *PodContext, kind ProbeKind) ProbeResult
	// OnCommand handles a command from a controller plugin (Command Pod); the string is
	// the reply.
	OnCommand(pod *PodContext, payload string) (string, error)
	// OnStop: the pod is terminating; the last call this instance gets.
	OnStop(pod *PodContext) error
}

// PodAgentDefaults gives a PodAgent the default hooks: OnStart and OnStop do nothing,
// every probe is healthy, and every command is refused.
type PodAgentDefaults struct{}

// OnStart does nothing.
func (PodAgentDefaults) OnStart(*PodContext) error { return nil }

// Probe is healthy.
func (PodAgentDefaults) Probe(*PodContext, ProbeKind) ProbeResult { return Healthy() }

// OnCommand refuses the command.
func (PodAgentDefaults) OnCommand(*PodContext, string) (string, error) {
	return "", fmt.Errorf("this plugin takes no commands")
}

// OnStop does nothing.
func (PodAgentDefaults) OnStop(*PodContext) error { return nil }

var podAgent PodAgent

// ExportPodAgent makes a the component's pod-agent plugin (from an init function).
func ExportPodAgent(a PodAgent) {
	podAgent = a
	metadataOf = a.Metadata
	initOf = a.Init
}

// ProbeKind is which probe the kubelet is asking for.
type ProbeKind uint8

const (
	// Readiness: may the pod receive traffic?
	Readiness ProbeKind = iota
	// Liveness: is the app alive (or should it be restarted)?
	Liveness
	// Startup: has the app finished starting?
	Startup
)

// String is `readiness`, `liveness` or `startup`.
func (k ProbeKind) String() string {
	switch k {
	case Readiness:
		return "readiness"
	case Liveness:
		return "liveness"
	case Startup:
		return "startup"
	}
	return fmt.Sprintf("probe-kind(%d)", uint8(k))
}

// ProbeResult is a probe's answer.
type ProbeResult struct {
	Healthy bool
	// Message says why, for humans.
	Message string
}

// Healthy is a passing probe.
func Healthy() ProbeResult { return ProbeResult{Healthy: true} }

// Unhealthy is a failing probe, with the reason.
func Unhealthy(message string) ProbeResult { return ProbeResult{Message: message} }

// PodInfo is the pod the sidecar runs in.
type PodInfo struct {
	Namespace string
	Name      string
	UID       string
	NodeName  string
	// Labels of the pod; empty when the host's JSON is not an object of strings.
	Labels map[string]string
}

// HTTPResponse is an HTTP response from the app.
type HTTPResponse struct {
	Status uint16
	// Headers with lowercase names, in the order the app sent them.
	Headers [][2]string
	Body    []byte
}

// Header is the first value of header name (lowercase), or "".
func (r *HTTPResponse) Header(name string) string {
	name = strings.ToLower(name)
	for _, h := range r.Headers {
		if h[0] == name {
			return h[1]
		}
	}
	return ""
}

// PodContext is what a pod-agent plugin may touch in its own pod: HTTP on the pod's loopback
// and files under the shared directory it declared. Nothing else. It also logs and reads
// the clock, like Context.
type PodContext struct{}

// PodInfo is the pod this sidecar runs in.
func (p *PodContext) PodInfo() PodInfo {
	info, labels := hostPodInfo()
	info.Labels = map[string]string{}
	if err := jsonUnmarshal(labels, &info.Labels); err != nil {
		info.Labels = map[string]string{}
	}
	return info
}

func timeoutMs(d time.Duration) uint32 {
	ms := d / time.Millisecond
	if ms < 0 {
		return 0
	}
	if ms > 0xffffffff {
		return 0xffffffff
	}
	return uint32(ms)
}

// HTTPGet sends GET http://127.0.0.1:{port}{path}. Errors read "GET :{port}{path}: ...".
func (p *PodContext) HTTPGet(port uint16, path string, timeout time.Duration) (HTTPResponse, error) {
	r, err := hostHTTPGet(port, path, timeoutMs(timeout))
	if err != "" {
		return HTTPResponse{}, fmt.Errorf("GET :%d%s: %s", port, path, err)
	}
	return r, nil
}

// HTTPPost sends POST http://127.0.0.1:{port}{path}. Errors read "POST :{port}{path}: ...".
func (p *PodContext) HTTPPost(port uint16, path, contentType string, body []byte, timeout time.Duration) (HTTPResponse, error) {
	r, err := hostHTTPPost(port, path, contentType, body, timeoutMs(timeout))
	if err != "" {
		return HTTPResponse{}, fmt.Errorf("POST :%d%s: %s", port, path, err)
	}
	return r, nil
}

// ReadFile reads a file; path is relative to the shared directory and may not leave it.
// Errors read "reading {path}: ...".
func (p *PodContext) ReadFile(path string) ([]byte, error) {
	b, err := hostReadFile(path)
	if err != "" {
		return nil, fmt.Errorf("reading %s: %s", path, err)
	}
	return b, nil
}

// WriteFile writes (creates or replaces) a file under the shared directory. Errors read
// "writing {path}: ...".
func (p *PodContext) WriteFile(path string, contents []byte) error {
	if err := hostWriteFile(path, contents); err != "" {
		return fmt.Errorf("writing %s: %s", path, err)
	}
	return nil
}

// Trace logs at trace level.
func (p *PodContext) Trace(msg string) { Log(LevelTrace, msg) }

// Debug logs at debug level.
func (p *PodContext) Debug(msg string) { Log(LevelDebug, msg) }

// Info logs at info level.
func (p *PodContext) Info(msg string) { Log(LevelInfo, msg) }

// Warn logs at warn level.
func (p *PodContext) Warn(msg string) { Log(LevelWarn, msg) }

// Error logs at error level.
func (p *PodContext) Error(msg string) { Log(LevelError, msg) }

// NowMs is wall-clock time in milliseconds since the Unix epoch (the host's clock).
func (p *PodContext) NowMs() uint64 { return hostNowMs() }

// NowRFC3339 is the current time as RFC 3339 with seconds precision.
func (p *PodContext) NowRFC3339() string { return hostNowRFC3339() }

// SortedLabels is "k=v,k2=v2" in key order ("" when there are none).
func (i PodInfo) SortedLabels() string {
	keys := make([]string, 0, len(i.Labels))
	for k := range i.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for n, k := range keys {
		parts[n] = k + "=" + i.Labels[k]
	}
	return strings.Join(parts, ",")
}

var errNoPodAgent = fmt.Errorf("the plugin did not call bosun.ExportPodAgent in an init function")

func guard(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("panic: %v", r)
	}
}

func onStartExport() (err error) {
	if podAgent == nil {
		return errNoPodAgent
	}
	defer guard(&err)
	return podAgent.OnStart(&PodContext{})
}

func onStopExport() (err error) {
	if podAgent == nil {
		return errNoPodAgent
	}
	defer guard(&err)
	return podAgent.OnStop(&PodContext{})
}

func onCommandExport(payload string) (reply string, err error) {
	if podAgent == nil {
		return "", errNoPodAgent
	}
	defer guard(&err)
	return podAgent.OnCommand(&PodContext{}, payload)
}

func probeExport(kind ProbeKind) (result ProbeResult) {
	if podAgent == nil {
		return Unhealthy(errNoPodAgent.Error())
	}
	defer func() {
		if r := recover(); r != nil {
			result = Unhealthy(fmt.Sprintf("panic: %v", r))
		}
	}()
	return podAgent.Probe(&PodContext{}, kind)
}
