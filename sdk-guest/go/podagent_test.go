//go:build !wasip1

package bosun

import (
	"errors"
	"strings"
	"testing"
	"time"
)

type pinger struct{ PodAgentDefaults }

func (pinger) Metadata() Metadata       { return NewMetadata("pinger", "0.1.0") }
func (pinger) Init(config string) error { return nil }

func (pinger) Probe(pod *PodContext, kind ProbeKind) ProbeResult {
	r, err := pod.HTTPGet(8080, "/"+kind.String(), time.Second)
	if err != nil {
		return Unhealthy(err.Error())
	}
	if r.Status != 200 {
		return Unhealthy(string(r.Body))
	}
	return Healthy()
}

func (pinger) OnCommand(pod *PodContext, payload string) (string, error) {
	if err := pod.WriteFile("last", []byte(payload)); err != nil {
		return "", err
	}
	b, err := pod.ReadFile("last")
	info := pod.PodInfo()
	pod.Info("command for " + info.Namespace + "/" + info.Name + " " + info.SortedLabels())
	return string(b), err
}

func TestPodAgentAgainstTheTestHost(t *testing.T) {
	h := NewTestHost()
	h.Pod = PodInfo{Namespace: "shop", Name: "web-0", Labels: map[string]string{"b": "2", "a": "1"}}
	agent := h.Agent(pinger{})
	if r := agent.Probe(Readiness); r.Healthy || r.Message != "GET :8080/readiness: connection refused" {
		t.Fatalf("no app: %+v", r)
	}
	h.HTTP = func(method string, port uint16, path string, body []byte) (HTTPResponse, error) {
		if path == "/liveness" {
			return HTTPResponse{Status: 500, Body: []byte("stuck")}, nil
		}
		if path == "/startup" {
			return HTTPResponse{}, errors.New("timed out")
		}
		return HTTPResponse{Status: 200, Headers: [][2]string{{"content-type", "text/plain"}}}, nil
	}
	if r := agent.Probe(Readiness); !r.Healthy {
		t.Fatalf("readiness: %+v", r)
	}
	if r := agent.Probe(Liveness); r.Healthy || r.Message != "stuck" {
		t.Fatalf("liveness: %+v", r)
	}
	if r := agent.Probe(Startup); r.Healthy || !strings.HasSuffix(r.Message, "timed out") {
		t.Fatalf("startup: %+v", r)
	}
	reply, err := agent.OnCommand("reload")
	if err != nil || reply != "reload" || string(h.Files["last"]) != "reload" {
		t.Fatalf("command: %q %v %q", reply, err, h.Files["last"])
	}
	if len(h.Logs) != 1 || h.Logs[0].Message != "command for shop/web-0 a=1,b=2" {
		t.Fatalf("logs: %+v", h.Logs)
	}
	if err := agent.OnStart(); err != nil {
		t.Fatal(err)
	}
	if _, err := (TestAgent{PodAgentDefaults{}.asAgent()}).OnCommand("x"); err == nil {
		t.Fatal("the default OnCommand refuses")
	}
}

type defaultsOnly struct{ PodAgentDefaults }

func (defaultsOnly) Metadata() Metadata       { return NewMetadata("d", "0.1.0") }
func (defaultsOnly) Init(config string) error { return nil }

func (PodAgentDefaults) asAgent() PodAgent { return defaultsOnly{} }

func TestHTTPResponseHeader(t *testing.T) {
	r := HTTPResponse{Headers: [][2]string{{"content-type", "a"}, {"content-type", "b"}}}
	if r.Header("Content-Type") != "a" || r.Header("x") != "" {
		t.Fatal(r.Header("Content-Type"))
	}
}
