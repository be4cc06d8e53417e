// The pod-agent conformance plugin in Go: an interpreter of the pod step scripts
// described in tests/conformance/README.md, identical in behaviour to the Rust and
// JavaScript ones.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	bosun "github.com/bosun-dev/bosun/sdk-guest/go"
)

type podConformance struct {
	config map[string]any
}

func str(v any, key string) string {
	m, _ := v.(map[string]any)
	s, _ := m[key].(string)
	return s
}

func port(v any) uint16 {
	m, _ := v.(map[string]any)
	f, ok := m["port"].(float64)
	if !ok || f < 0 || f > 65535 || f != float64(uint16(f)) {
		return 0
	}
	return uint16(f)
}

func timeout(v any) time.Duration {
	m, _ := v.(map[string]any)
	if f, ok := m["timeoutMs"].(float64); ok && f >= 0 {
		return time.Duration(f) * time.Millisecond
	}
	return time.Second
}

func responseLine(method string, port uint16, path string, r bosun.HTTPResponse) string {
	headers := make([]string, len(r.Headers))
	for i, h := range r.Headers {
		headers[i] = h[0] + "=" + h[1]
	}
	return fmt.Sprintf("%s :%d%s -> %d [%s] %s", method, port, path, r.Status, strings.Join(headers, ";"), r.Body)
}

func run(pod *bosun.PodContext, script any) (string, error) {
	steps, ok := script.([]any)
	if !ok {
		return "", errors.New("a script is a JSON list of steps")
	}
	reply := ""
	var lastStatus uint16
	hasStatus := false
	for _, step := range steps {
		m, ok := step.(map[string]any)
		if !ok || len(m) == 0 {
			return "", errors.New("a step is a one-key object")
		}
		var name string
		var a any
		for k, v := range m {
			name, a = k, v
		}
		switch name {
		case "info":
			info := pod.PodInfo()
			pod.Info(fmt.Sprintf("info %s/%s uid=%s node=%s labels=%s", info.Namespace, info.Name, info.UID, info.NodeName, info.SortedLabels()))
		case "get", "post":
			p, path := port(a), str(a, "path")
			var r bosun.HTTPResponse
			var err error
			method := "GET"
			if name == "get" {
				r, err = pod.HTTPGet(p, path, timeout(a))
			} else {
				method = "POST"
				r, err = pod.HTTPPost(p, path, str(a, "contentType"), []byte(str(a, "body")), timeout(a))
			}
			if err != nil {
				pod.Warn(err.Error())
				hasStatus = false
				continue
			}
			pod.Info(responseLine(method, p, path, r))
			lastStatus, hasStatus = r.Status, true
		case "read":
			path, _ := a.(string)
			b, err := pod.ReadFile(path)
			if err != nil {
				pod.Warn(err.Error())
				continue
			}
			pod.Info(fmt.Sprintf("read %s: %s", path, b))
		case "write":
			path, contents := str(a, "path"), str(a, "contents")
			if err := pod.WriteFile(path, []byte(contents)); err != nil {
				pod.Warn(err.Error())
				continue
			}
			pod.Info(fmt.Sprintf("wrote %s (%d bytes)", path, len(contents)))
		case "log":
			level := bosun.LevelInfo
			switch str(a, "level") {
			case "trace":
				level = bosun.LevelTrace
			case "debug":
				level = bosun.LevelDebug
			case "warn":
				level = bosun.LevelWarn
			case "error":
				level = bosun.LevelError
			}
			bosun.Log(level, str(a, "message"))
		case "clock":
			pod.Info(fmt.Sprintf("clock %d %s", pod.NowMs(), pod.NowRFC3339()))
		case "expectStatus":
			f, _ := a.(float64)
			want := uint64(f)
			if !hasStatus || uint64(lastStatus) != want {
				got := "none"
				if hasStatus {
					got = fmt.Sprint(lastStatus)
				}
				return "", fmt.Errorf("status %s, expected %d", got, want)
			}
		case "reply":
			reply, _ = a.(string)
		case "fail":
			msg, _ := a.(string)
			return "", errors.New(msg)
		default:
			return "", fmt.Errorf("unknown step %s", name)
		}
	}
	return reply, nil
}

func (podConformance) Metadata() bosun.Metadata {
	return bosun.NewMetadata("pod-conformance", "0.1.0").Description("the pod-agent conformance plugin")
}

var plugin podConformance

func (p *podConformance) Init(config string) error {
	if err := json.Unmarshal([]byte(config), &p.config); err != nil {
		return errors.New("config is not JSON")
	}
	if msg, ok := p.config["failInit"].(string); ok {
		return errors.New(msg)
	}
	return nil
}

func (p *podConformance) hook(pod *bosun.PodContext, name string) error {
	script, ok := p.config[name]
	if !ok {
		return nil
	}
	_, err := run(pod, script)
	return err
}

func (p *podConformance) OnStart(pod *bosun.PodContext) error { return p.hook(pod, "onStart") }

func (p *podConformance) OnStop(pod *bosun.PodContext) error { return p.hook(pod, "onStop") }

func (p *podConformance) Probe(pod *bosun.PodContext, kind bosun.ProbeKind) bosun.ProbeResult {
	probes, _ := p.config["probes"].(map[string]any)
	script, ok := probes[kind.String()]
	if !ok {
		return bosun.ProbeResult{Healthy: true, Message: "no " + kind.String() + " probe"}
	}
	reply, err := run(pod, script)
	if err != nil {
		return bosun.Unhealthy(err.Error())
	}
	return bosun.ProbeResult{Healthy: true, Message: reply}
}

func (p *podConformance) OnCommand(pod *bosun.PodContext, payload string) (string, error) {
	var script any
	if err := json.Unmarshal([]byte(payload), &script); err != nil {
		return "", errors.New("payload is not a JSON list of steps")
	}
	return run(pod, script)
}

func init() { bosun.ExportPodAgent(&plugin) }

func main() {}
