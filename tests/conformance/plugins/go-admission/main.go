// An admission plugin in Go: denies pods without an `app` label, labels the others
// `admitted-by=bosun` with a JSON patch, and logs what the cache knows of the namespace.
package main

import (
	"fmt"

	bosun "github.com/bosun-dev/bosun/sdk-guest/go"
)

type webhook struct{}

func (webhook) Metadata() bosun.Metadata {
	return bosun.NewMetadata("go-admission", "0.1.0").
		Subscribe("v1", "Pod").
		Permit("v1", "Namespace", bosun.Read)
}

func (webhook) Init(config string) error { return nil }

func (webhook) Review(ctx *bosun.Context, review map[string]any) (map[string]any, error) {
	req, _ := review["request"].(map[string]any)
	pod, _ := req["object"].(map[string]any)
	meta, _ := pod["metadata"].(map[string]any)
	ns, _ := req["namespace"].(string)
	_, known := ctx.Get(bosun.NewRef("v1", "Namespace", ns))
	ctx.Info(fmt.Sprintf("review %v in %s (namespace cached: %v)", meta["name"], ns, known))
	labels, _ := meta["labels"].(map[string]any)
	if _, ok := labels["app"]; !ok {
		return bosun.Deny(review, "pods need an app label"), nil
	}
	return bosun.PatchResponse(review, []any{
		map[string]any{"op": "add", "path": "/metadata/labels/admitted-by", "value": "bosun"},
	})
}

func init() { bosun.ExportAdmission(webhook{}) }

func main() {}
