// app-probe: a pod-agent plugin for the Bosun sidecar, written in Go. It answers the
// pod's readiness, liveness and startup probes by asking the app over the pod's loopback
// (or, for startup, by waiting for a file the app writes), and takes three commands from
// controllers: "reload" (an HTTP POST to the app), "restart" (an HTTP POST that makes
// the app exit) and "write-config" (a file under the shared volume, optionally followed
// by a reload). See README.md.
package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	bosun "github.com/bosun-dev/bosun/sdk-guest/go"
)

// check is one probe: an HTTP GET to the app, or (startup only) a file's existence.
type check struct {
	// Port overrides the config's port.
	Port int `json:"port"`
	// Path is the HTTP path (with its query), starting with "/".
	Path string `json:"path"`
	// File is a path under the shared volume that must exist (startup only).
	File string `json:"file"`
	// ExpectStatus is the status that passes; by default any 200–399, like the kubelet.
	ExpectStatus int `json:"expectStatus"`
	// TimeoutMs bounds the request (default 1000).
	TimeoutMs int `json:"timeoutMs"`
}

type reload struct {
	Port        int    `json:"port"`
	Path        string `json:"path"`
	ContentType string `json:"contentType"`
	TimeoutMs   int    `json:"timeoutMs"`
}

type config struct {
	// Port is the app's port on the pod's loopback.
	Port      int     `json:"port"`
	Readiness *check  `json:"readiness"`
	Liveness  *check  `json:"liveness"`
	Startup   *check  `json:"startup"`
	Reload    *reload `json:"reload"`
	// Restart is the app's endpoint that makes it exit so the kubelet restarts its
	// container (the remediation plugin's restart-container action).
	Restart *reload `json:"restart"`
	// ConfigDir is the folder of the shared volume write-config writes into.
	ConfigDir string `json:"configDir"`
}

type appProbe struct {
	bosun.PodAgentDefaults
	c config
}

var plugin appProbe

func (*appProbe) Metadata() bosun.Metadata {
	return bosun.NewMetadata("app-probe", "0.1.0").
		Description("answers the pod's probes from the app's HTTP endpoints; reload and write-config commands")
}

func validPort(p int) bool { return p >= 1 && p <= 65535 }

// relPath checks a path under the shared volume: relative, no "..", no empty segment.
func relPath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") {
		return fmt.Errorf("%q must be a relative path under the shared volume", p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%q must be a relative path under the shared volume, without empty, . or .. segments", p)
		}
	}
	return nil
}

func (c *check) validate(name string, defaultPort int, fileAllowed bool) error {
	if c == nil {
		return nil
	}
	switch {
	case c.File != "" && c.Path != "":
		return fmt.Errorf("%s: give either path (HTTP) or file, not both", name)
	case c.File != "":
		if !fileAllowed {
			return fmt.Errorf("%s: file is only for the startup probe; give path", name)
		}
		if err := relPath(c.File); err != nil {
			return fmt.Errorf("%s.file: %v", name, err)
		}
		return nil
	case c.Path == "":
		return fmt.Errorf("%s: give path (HTTP GET on the app)", name)
	case !strings.HasPrefix(c.Path, "/"):
		return fmt.Errorf("%s.path %q must start with /", name, c.Path)
	}
	if c.Port == 0 {
		c.Port = defaultPort
	}
	if !validPort(c.Port) {
		return fmt.Errorf("%s: no port (set port, or %s.port) between 1 and 65535", name, name)
	}
	if c.ExpectStatus != 0 && (c.ExpectStatus < 100 || c.ExpectStatus > 599) {
		return fmt.Errorf("%s.expectStatus %d is not an HTTP status", name, c.ExpectStatus)
	}
	if c.TimeoutMs < 0 {
		return fmt.Errorf("%s.timeoutMs must not be negative", name)
	}
	return nil
}

func (p *appProbe) Init(text string) error {
	var c config
	if err := bosun.ParseConfig(text, &c); err != nil {
		return err
	}
	if c.Port != 0 && !validPort(c.Port) {
		return fmt.Errorf("invalid config: port %d is not between 1 and 65535", c.Port)
	}
	for _, x := range []struct {
		name string
		c    *check
		file bool
	}{{"readiness", c.Readiness, false}, {"liveness", c.Liveness, false}, {"startup", c.Startup, true}} {
		if err := x.c.validate(x.name, c.Port, x.file); err != nil {
			return fmt.Errorf("invalid config: %v", err)
		}
	}
	for _, x := range []struct {
		name string
		r    *reload
	}{{"reload", c.Reload}, {"restart", c.Restart}} {
		r := x.r
		if r == nil {
			continue
		}
		if !strings.HasPrefix(r.Path, "/") {
			return fmt.Errorf("invalid config: %s.path %q must start with /", x.name, r.Path)
		}
		if r.Port == 0 {
			r.Port = c.Port
		}
		if !validPort(r.Port) {
			return fmt.Errorf("invalid config: %s: no port (set port, or %s.port) between 1 and 65535", x.name, x.name)
		}
		if r.ContentType == "" {
			r.ContentType = "application/json"
		}
	}
	if c.ConfigDir == "" {
		c.ConfigDir = "config"
	}
	if err := relPath(c.ConfigDir); err != nil {
		return fmt.Errorf("invalid config: configDir: %v", err)
	}
	p.c = c
	return nil
}

func timeout(ms int) time.Duration {
	if ms == 0 {
		ms = 1000
	}
	return time.Duration(ms) * time.Millisecond
}

func (c *check) describe() string {
	if c == nil {
		return "-"
	}
	if c.File != "" {
		return "file " + c.File
	}
	return fmt.Sprintf("GET :%d%s", c.Port, c.Path)
}

func (p *appProbe) OnStart(pod *bosun.PodContext) error {
	info := pod.PodInfo()
	pod.Info(fmt.Sprintf("app-probe for %s/%s: readiness %s, liveness %s, startup %s",
		info.Namespace, info.Name, p.c.Readiness.describe(), p.c.Liveness.describe(), p.c.Startup.describe()))
	return nil
}

func (p *appProbe) Probe(pod *bosun.PodContext, kind bosun.ProbeKind) bosun.ProbeResult {
	var c *check
	switch kind {
	case bosun.Readiness:
		c = p.c.Readiness
	case bosun.Liveness:
		c = p.c.Liveness
	case bosun.Startup:
		c = p.c.Startup
	}
	if c == nil {
		return bosun.ProbeResult{Healthy: true, Message: kind.String() + " not configured"}
	}
	if c.File != "" {
		if _, err := pod.ReadFile(c.File); err != nil {
			return bosun.Unhealthy("waiting for " + c.File + ": " + err.Error())
		}
		return bosun.ProbeResult{Healthy: true, Message: c.File + " exists"}
	}
	r, err := pod.HTTPGet(uint16(c.Port), c.Path, timeout(c.TimeoutMs))
	if err != nil {
		return bosun.Unhealthy(err.Error())
	}
	ok := r.Status >= 200 && r.Status < 400
	want := "200-399"
	if c.ExpectStatus != 0 {
		ok = int(r.Status) == c.ExpectStatus
		want = fmt.Sprint(c.ExpectStatus)
	}
	msg := fmt.Sprintf("GET :%d%s: %d", c.Port, c.Path, r.Status)
	if !ok {
		return bosun.Unhealthy(fmt.Sprintf("%s (want %s)%s", msg, want, excerpt(r.Body)))
	}
	return bosun.ProbeResult{Healthy: true, Message: msg}
}

// excerpt is ": " and the start of a body, on one line, or "".
func excerpt(body []byte) string {
	s := strings.Join(strings.Fields(string(body)), " ")
	if s == "" {
		return ""
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return ": " + s
}

// command is a command's payload: {"action": "reload"} or {"action": "write-config",
// "path": ..., "contents": ..., "reload": bool}. A bare word is an action.
type command struct {
	Action   string `json:"action"`
	Path     string `json:"path"`
	Contents string `json:"contents"`
	Reload   bool   `json:"reload"`
	Body     string `json:"body"`
	// Containers: restart's containers (sent to the app as {"containers": [...]}).
	Containers []string `json:"containers"`
}

func parseCommand(payload string) (command, error) {
	var cmd command
	trimmed := strings.TrimSpace(payload)
	if !strings.HasPrefix(trimmed, "{") {
		cmd.Action = trimmed
		return cmd, nil
	}
	dec := json.NewDecoder(strings.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cmd); err != nil {
		return cmd, fmt.Errorf("invalid command payload: %v", err)
	}
	return cmd, nil
}

func (p *appProbe) reload(pod *bosun.PodContext, body string) (string, error) {
	r := p.c.Reload
	if r == nil {
		return "", fmt.Errorf("reload is not configured (set reload.path)")
	}
	resp, err := pod.HTTPPost(uint16(r.Port), r.Path, r.ContentType, []byte(body), timeout(r.TimeoutMs))
	if err != nil {
		return "", fmt.Errorf("reload: %v", err)
	}
	if resp.Status < 200 || resp.Status >= 300 {
		return "", fmt.Errorf("reload: POST :%d%s answered %d%s", r.Port, r.Path, resp.Status, excerpt(resp.Body))
	}
	return fmt.Sprintf("reloaded (POST :%d%s: %d)", r.Port, r.Path, resp.Status), nil
}

func (p *appProbe) OnCommand(pod *bosun.PodContext, payload string) (string, error) {
	cmd, err := parseCommand(payload)
	if err != nil {
		return "", err
	}
	switch cmd.Action {
	case "reload":
		reply, err := p.reload(pod, cmd.Body)
		if err == nil {
			pod.Info(reply)
		}
		return reply, err
	case "write-config":
		if err := relPath(cmd.Path); err != nil {
			return "", fmt.Errorf("write-config: path %v", err)
		}
		path := p.c.ConfigDir + "/" + cmd.Path
		if err := pod.WriteFile(path, []byte(cmd.Contents)); err != nil {
			return "", fmt.Errorf("write-config: %v", err)
		}
		reply := fmt.Sprintf("wrote %s (%d bytes)", path, len(cmd.Contents))
		pod.Info(reply)
		if cmd.Reload {
			r, err := p.reload(pod, "")
			if err != nil {
				return "", fmt.Errorf("%s, then %v", reply, err)
			}
			pod.Info(r)
			reply += "; " + r
		}
		return reply, nil
	case "restart":
		r := p.c.Restart
		if r == nil {
			return "", fmt.Errorf("restart is not configured (set restart.path: the app's endpoint that makes it exit)")
		}
		body, _ := json.Marshal(map[string]any{"containers": cmd.Containers})
		resp, err := pod.HTTPPost(uint16(r.Port), r.Path, r.ContentType, body, timeout(r.TimeoutMs))
		if err != nil {
			return "", fmt.Errorf("restart: %v", err)
		}
		if resp.Status < 200 || resp.Status >= 300 {
			return "", fmt.Errorf("restart: POST :%d%s answered %d%s", r.Port, r.Path, resp.Status, excerpt(resp.Body))
		}
		reply := fmt.Sprintf("restart: POST :%d%s answered %d", r.Port, r.Path, resp.Status)
		pod.Info(reply)
		return reply, nil
	case "":
		return "", fmt.Errorf("the command names no action: send {\"action\": \"reload\"}, {\"action\": \"restart\"} or {\"action\": \"write-config\", \"path\": ..., \"contents\": ...}")
	default:
		return "", fmt.Errorf("unknown action %q: app-probe takes reload, restart and write-config", cmd.Action)
	}
}

func init() { bosun.ExportPodAgent(&plugin) }

func main() {}
