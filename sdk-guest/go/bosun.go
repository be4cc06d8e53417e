// Package bosun is the Go guest SDK for Bosun operator plugins.
//
// A Bosun plugin is a WebAssembly component implementing one world of the
// bosun:operator@0.1.0 WIT package. This package hides the canonical-ABI glue behind the
// same shape as the Rust SDK: implement Controller and export it from an init function.
//
//	type hello struct{}
//
//	func (hello) Metadata() bosun.Metadata {
//		return bosun.NewMetadata("hello", "0.1.0").
//			Subscribe("v1", "Pod").
//			Permit("v1", "Pod", bosun.Read)
//	}
//	func (hello) Init(config string) error { return nil }
//	func (hello) Reconcile(ctx *bosun.Context, req *bosun.Request) (bosun.Outcome, error) {
//		ctx.Info("hello, " + req.Target.String())
//		return bosun.Done(), nil
//	}
//
//	func init() { bosun.ExportController(hello{}) }
//	func main() {}
//
// Build with `bosun plugin build` (GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared
// -ldflags=-checklinkname=0, then the WIT is embedded and the module adapted into a
// component). Standard library only; no TinyGo.
package bosun

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Controller is a cluster-wide operator plugin, run by the central runtime.
//
// The host calls Metadata once when it loads a revision, then Init once per instance,
// then Reconcile for each key of the subscribed kinds. Calls for one key never overlap.
type Controller interface {
	// Metadata gives the name, version, subscriptions and permissions.
	Metadata() Metadata
	// Init configures the instance from the JSON configuration ("{}" when none is
	// given); see ParseConfig. An error stops the revision from loading.
	Init(config string) error
	// Reconcile brings the cluster closer to what the plugin wants for req.Target by
	// submitting commands through ctx. An error requeues the key with backoff.
	Reconcile(ctx *Context, req *Request) (Outcome, error)
}

var (
	controller Controller
	admission  Admission
	metadataOf func() Metadata
	initOf     func(string) error
)

// ExportController makes c the component's controller. Call it from an init function of
// package main: the host calls the exports before main would run.
func ExportController(c Controller) {
	controller = c
	metadataOf = c.Metadata
	initOf = c.Init
}

// Admission is a plugin behind the runtime's mutating/validating admission webhook.
// Its package is built with the tag bosun_admission (`bosun plugin build` sets it when
// the plugin calls ExportAdmission).
type Admission interface {
	// Metadata gives the name, version, subscriptions and permissions.
	Metadata() Metadata
	// Init configures the instance from the JSON configuration.
	Init(config string) error
	// Review answers an AdmissionReview (with request set) with the AdmissionReview
	// carrying response; see Allow, Deny and PatchResponse. An error fails the call.
	Review(ctx *Context, review map[string]any) (map[string]any, error)
}

// ExportAdmission makes a the component's admission plugin (from an init function).
func ExportAdmission(a Admission) {
	admission = a
	metadataOf = a.Metadata
	initOf = a.Init
}

// ParseConfig decodes the JSON configuration into v, rejecting unknown fields; an empty
// string leaves v as it is. Errors read "invalid config: ...".
func ParseConfig(config string, v any) error {
	if config == "" {
		return nil
	}
	dec := json.NewDecoder(stringReader(config))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("invalid config: %w", err)
	}
	return nil
}

var errNoController = errors.New("the plugin did not call bosun.ExportController (or ExportAdmission) in an init function")

func reconcileExport(req *Request) (out Outcome, err error) {
	if controller == nil {
		return Outcome{}, errNoController
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return controller.Reconcile(&Context{}, req)
}

func reviewExport(request string) (response string, err error) {
	if admission == nil {
		return "", errors.New("the plugin did not call bosun.ExportAdmission in an init function")
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	var review map[string]any
	if err := json.Unmarshal([]byte(request), &review); err != nil {
		return "", fmt.Errorf("invalid AdmissionReview JSON: %w", err)
	}
	answer, err := admission.Review(&Context{}, review)
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(answer)
	return string(b), err
}

func initExport(config string) (err error) {
	if initOf == nil {
		return errNoController
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return initOf(config)
}
