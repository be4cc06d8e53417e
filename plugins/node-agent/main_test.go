package main

import (
	"fmt"
	"strings"
	"testing"

	bosun "github.com/bosun-dev/bosun/sdk-guest/go"
)

func agent(t *testing.T, config string) (*bosun.TestHost, bosun.TestAgent) {
	t.Helper()
	h := bosun.NewTestHost()
	h.Pod = bosun.PodInfo{Namespace: "bosun-system", Name: "node-agent-x", NodeName: "n1"}
	a := &nodeAgent{}
	if err := a.Init(config); err != nil {
		t.Fatal(err)
	}
	return h, h.Agent(a)
}

func TestRebootIsForwardedToTheAgentsAppForItsOwnNodeOnly(t *testing.T) {
	h, a := agent(t, `{"port": 9000, "path": "/admin/v1/node-reboot?seconds=5"}`)
	var got []string
	h.HTTP = func(method string, port uint16, path string, body []byte) (bosun.HTTPResponse, error) {
		got = append(got, fmt.Sprintf("%s :%d%s %s", method, port, path, body))
		return bosun.HTTPResponse{Status: 200}, nil
	}
	reply, err := a.OnCommand(`{"action": "reboot", "node": "n1"}`)
	if err != nil || !strings.HasPrefix(reply, "reboot of n1 asked") {
		t.Fatalf("%q %v", reply, err)
	}
	if len(got) != 1 || got[0] != `POST :9000/admin/v1/node-reboot?seconds=5&node=n1 {"node":"n1"}` {
		t.Fatalf("%v", got)
	}
	for payload, want := range map[string]string{
		`{"action": "reboot", "node": "n2"}`: `the command is for node "n2", this agent runs on "n1"`,
		`{"action": "halt", "node": "n1"}`:   `unknown action "halt"`,
		`reboot`:                             "invalid command payload",
	} {
		if _, err := a.OnCommand(payload); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", payload, err, want)
		}
	}
	if len(got) != 1 {
		t.Fatalf("nothing else reached the app: %v", got)
	}
}

func TestConfig(t *testing.T) {
	for config, want := range map[string]string{
		`{"port": 70000}`:   "port 70000",
		`{"path": "x"}`:     `path "x" must start with /`,
		`{"timeoutMs": -1}`: "timeoutMs must be positive",
		`{"prot": 1}`:       "invalid config",
	} {
		if err := (&nodeAgent{}).Init(config); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", config, err, want)
		}
	}
	_, a := agent(t, ``)
	if _, err := a.OnCommand(`{"action": "reboot", "node": "n1"}`); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Errorf("no port: %v", err)
	}
}
