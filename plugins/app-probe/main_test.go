package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	bosun "github.com/bosun-dev/bosun/sdk-guest/go"
)

func agent(t *testing.T, config string) (*bosun.TestHost, bosun.TestAgent) {
	t.Helper()
	p := &appProbe{}
	if err := p.Init(config); err != nil {
		t.Fatalf("init: %v", err)
	}
	h := bosun.NewTestHost()
	return h, h.Agent(p)
}

func TestReadinessFollowsTheApp(t *testing.T) {
	h, a := agent(t, `{"port": 8080, "readiness": {"path": "/ready"}}`)
	if r := a.Probe(bosun.Readiness); r.Healthy || r.Message != "GET :8080/ready: connection refused" {
		t.Fatalf("no app: %+v", r)
	}
	status := uint16(204)
	h.HTTP = func(method string, port uint16, path string, body []byte) (bosun.HTTPResponse, error) {
		if method != "GET" || port != 8080 || path != "/ready" {
			return bosun.HTTPResponse{}, errors.New("unexpected " + method + " " + path)
		}
		return bosun.HTTPResponse{Status: status, Body: []byte("  warming\n up ")}, nil
	}
	if r := a.Probe(bosun.Readiness); !r.Healthy || r.Message != "GET :8080/ready: 204" {
		t.Fatalf("ready: %+v", r)
	}
	status = 503
	if r := a.Probe(bosun.Readiness); r.Healthy || r.Message != "GET :8080/ready: 503 (want 200-399): warming up" {
		t.Fatalf("not ready: %+v", r)
	}
	if r := a.Probe(bosun.Liveness); !r.Healthy || r.Message != "liveness not configured" {
		t.Fatalf("liveness: %+v", r)
	}
}

func TestStartupWaitsForAFile(t *testing.T) {
	h, a := agent(t, `{"startup": {"file": "run/started"}}`)
	if r := a.Probe(bosun.Startup); r.Healthy || !strings.HasPrefix(r.Message, "waiting for run/started: reading run/started:") {
		t.Fatalf("before: %+v", r)
	}
	h.Files["run/started"] = []byte{}
	if r := a.Probe(bosun.Startup); !r.Healthy {
		t.Fatalf("after: %+v", r)
	}
}

func TestWriteConfigThenReload(t *testing.T) {
	h, a := agent(t, `{"port": 9000, "reload": {"path": "/-/reload"}, "configDir": "etc"}`)
	var posts []string
	h.HTTP = func(method string, port uint16, path string, body []byte) (bosun.HTTPResponse, error) {
		posts = append(posts, method+" "+path)
		return bosun.HTTPResponse{Status: 200}, nil
	}
	reply, err := a.OnCommand(`{"action": "write-config", "path": "app.yaml", "contents": "level: debug\n", "reload": true}`)
	if err != nil || reply != "wrote etc/app.yaml (13 bytes); reloaded (POST :9000/-/reload: 200)" {
		t.Fatalf("%q %v", reply, err)
	}
	if string(h.Files["etc/app.yaml"]) != "level: debug\n" || len(posts) != 1 || posts[0] != "POST /-/reload" {
		t.Fatalf("files %q posts %v", h.Files, posts)
	}
	if _, err := a.OnCommand(`{"action": "write-config", "path": "../../etc/passwd"}`); err == nil {
		t.Fatal("a path leaving the config folder is refused")
	}
	if _, err := a.OnCommand("reboot"); err == nil || !strings.Contains(err.Error(), `unknown action "reboot"`) {
		t.Fatalf("unknown action: %v", err)
	}
	if _, err := a.OnCommand(`{"action": "restart", "containers": ["app"]}`); err == nil || !strings.Contains(err.Error(), "restart is not configured") {
		t.Fatalf("restart without an endpoint: %v", err)
	}
}

func TestBadConfigIsNamed(t *testing.T) {
	for config, want := range map[string]string{
		`{"readiness": {"path": "ready"}}`:                              `readiness.path "ready" must start with /`,
		`{"readiness": {"path": "/ready"}}`:                             "readiness: no port",
		`{"port": 70000}`:                                               "port 70000 is not between 1 and 65535",
		`{"liveness": {"file": "x"}}`:                                   "file is only for the startup probe",
		`{"startup": {"file": "../x"}}`:                                 "startup.file",
		`{"port": 1, "readiness": {"path": "/", "expectStatus": 1000}}`: "readiness.expectStatus 1000 is not an HTTP status",
		`{"prot": 8080}`:                                                `unknown field "prot"`,
	} {
		err := (&appProbe{}).Init(config)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "invalid config: ") {
			t.Errorf("%s: got %v, want %q", config, err, want)
		}
	}
}

func TestRestartAsksTheAppToExit(t *testing.T) {
	h, a := agent(t, `{"port": 9000, "restart": {"path": "/-/quit"}}`)
	var got []string
	h.HTTP = func(method string, port uint16, path string, body []byte) (bosun.HTTPResponse, error) {
		got = append(got, fmt.Sprintf("%s :%d%s %s", method, port, path, body))
		return bosun.HTTPResponse{Status: 202}, nil
	}
	reply, err := a.OnCommand(`{"action": "restart", "containers": ["app"]}`)
	if err != nil || reply != "restart: POST :9000/-/quit answered 202" {
		t.Fatalf("%q %v", reply, err)
	}
	if len(got) != 1 || got[0] != `POST :9000/-/quit {"containers":["app"]}` {
		t.Fatalf("%v", got)
	}
}
