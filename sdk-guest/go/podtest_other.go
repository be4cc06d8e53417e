//go:build !wasip1

package bosun

import (
	"encoding/json"
	"fmt"
)

// Outside a WebAssembly host the pod imports go to TestHost too: a pod, an app answering
// HTTP through TestHost.HTTP, and files in TestHost.Files.

// HTTPHandler answers the app's HTTP under TestHost: method is "GET" or "POST".
type HTTPHandler func(method string, port uint16, path string, body []byte) (HTTPResponse, error)

func hostPodInfo() (PodInfo, string) {
	labels, err := json.Marshal(testHost.Pod.Labels)
	if err != nil || testHost.Pod.Labels == nil {
		labels = []byte("{}")
	}
	return testHost.Pod, string(labels)
}

func testHTTP(method string, port uint16, path string, body []byte) (HTTPResponse, string) {
	if testHost.HTTP == nil {
		return HTTPResponse{}, "connection refused"
	}
	r, err := testHost.HTTP(method, port, path, body)
	if err != nil {
		return HTTPResponse{}, err.Error()
	}
	return r, ""
}

func hostHTTPGet(port uint16, path string, _ uint32) (HTTPResponse, string) {
	return testHTTP("GET", port, path, nil)
}

func hostHTTPPost(port uint16, path, _ string, body []byte, _ uint32) (HTTPResponse, string) {
	return testHTTP("POST", port, path, body)
}

func hostReadFile(path string) ([]byte, string) {
	b, ok := testHost.Files[path]
	if !ok {
		return nil, fmt.Sprintf("%s: no such file", path)
	}
	return append([]byte(nil), b...), ""
}

func hostWriteFile(path string, contents []byte) string {
	if testHost.Files == nil {
		testHost.Files = map[string][]byte{}
	}
	testHost.Files[path] = append([]byte(nil), contents...)
	return ""
}

// Agent runs the pod-agent hooks against this host.
func (h *TestHost) Agent(a PodAgent) TestAgent {
	testHost = h
	return TestAgent{a}
}

// TestAgent calls a PodAgent's hooks the way the sidecar does, under a TestHost.
type TestAgent struct{ a PodAgent }

// OnStart calls the hook.
func (t TestAgent) OnStart() error { return t.a.OnStart(&PodContext{}) }

// Probe calls the hook.
func (t TestAgent) Probe(kind ProbeKind) ProbeResult { return t.a.Probe(&PodContext{}, kind) }

// OnCommand calls the hook.
func (t TestAgent) OnCommand(payload string) (string, error) {
	return t.a.OnCommand(&PodContext{}, payload)
}

// OnStop calls the hook.
func (t TestAgent) OnStop() error { return t.a.OnStop(&PodContext{}) }
