// node-agent: a pod-agent plugin for the sidecar of a node-level agent pod (one per
// node, labelled remediation.bosun.dev/node-agent=true), written in Go. It takes the
// remediation plugin's "reboot" command for the node its pod runs on and asks the
// agent's app — a privileged container of the same pod that can reboot the machine —
// to do it, over the pod's loopback. In `bosun up` and the tests, the "app" is the
// embedded cluster's simulated reboot (its admin endpoint). See README.md.
package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	bosun "github.com/bosun-dev/bosun/sdk-guest/go"
)

type config struct {
	// Port and Path: where the agent's app takes a reboot (POST); the node's name is
	// added as the query parameter `node` and the body is {"node": NAME}.
	Port int    `json:"port"`
	Path string `json:"path"`
	// TimeoutMs bounds the request (default 5000).
	TimeoutMs int `json:"timeoutMs"`
}

type command struct {
	Action string `json:"action"`
	Node   string `json:"node"`
}

type nodeAgent struct {
	bosun.PodAgentDefaults
	c config
}

var plugin nodeAgent

func (*nodeAgent) Metadata() bosun.Metadata {
	return bosun.NewMetadata("node-agent", "0.1.0").
		Description("reboots the node its pod runs on when the remediation plugin asks").
		Subscription(bosun.Subscription{APIVersion: "v1", Kind: "Pod", LabelSelector: "remediation.bosun.dev/node-agent=true"})
}

func (p *nodeAgent) Init(text string) error {
	c := config{Path: "/reboot", TimeoutMs: 5000}
	if err := bosun.ParseConfig(text, &c); err != nil {
		return err
	}
	if c.Port != 0 && (c.Port < 1 || c.Port > 65535) {
		return fmt.Errorf("invalid config: port %d is not between 1 and 65535", c.Port)
	}
	if !strings.HasPrefix(c.Path, "/") {
		return fmt.Errorf("invalid config: path %q must start with /", c.Path)
	}
	if c.TimeoutMs <= 0 {
		return fmt.Errorf("invalid config: timeoutMs must be positive")
	}
	p.c = c
	return nil
}

func (p *nodeAgent) OnCommand(pod *bosun.PodContext, payload string) (string, error) {
	var cmd command
	dec := json.NewDecoder(strings.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cmd); err != nil {
		return "", fmt.Errorf("invalid command payload (want {\"action\": \"reboot\", \"node\": NAME}): %v", err)
	}
	if cmd.Action != "reboot" {
		return "", fmt.Errorf("unknown action %q: node-agent takes reboot", cmd.Action)
	}
	node := pod.PodInfo().NodeName
	if cmd.Node == "" || cmd.Node != node {
		// A reboot is for the node this agent runs on, never another one.
		return "", fmt.Errorf("refused: the command is for node %q, this agent runs on %q", cmd.Node, node)
	}
	if p.c.Port == 0 {
		return "", fmt.Errorf("reboot is not configured (set port: the agent app's port on the pod's loopback)")
	}
	sep := "?"
	if strings.Contains(p.c.Path, "?") {
		sep = "&"
	}
	path := p.c.Path + sep + "node=" + url.QueryEscape(node)
	body, _ := json.Marshal(map[string]string{"node": node})
	r, err := pod.HTTPPost(uint16(p.c.Port), path, "application/json", body, time.Duration(p.c.TimeoutMs)*time.Millisecond)
	if err != nil {
		return "", fmt.Errorf("reboot of %s: %v", node, err)
	}
	if r.Status < 200 || r.Status >= 300 {
		return "", fmt.Errorf("reboot of %s: POST :%d%s answered %d", node, p.c.Port, path, r.Status)
	}
	reply := fmt.Sprintf("reboot of %s asked: POST :%d%s answered %d", node, p.c.Port, path, r.Status)
	pod.Warn(reply)
	return reply, nil
}

func init() { bosun.ExportPodAgent(&plugin) }

func main() {}
