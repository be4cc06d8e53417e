package bosun

import (
	"encoding/base64"
	"encoding/json"
)

func answer(review map[string]any, response map[string]any) map[string]any {
	uid := ""
	if req, ok := review["request"].(map[string]any); ok {
		uid, _ = req["uid"].(string)
	}
	response["uid"] = uid
	return map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
}

// Allow is the answer that admits the object unchanged.
func Allow(review map[string]any) map[string]any {
	return answer(review, map[string]any{"allowed": true})
}

// Deny is the answer that rejects the object with message (HTTP 403 in the status).
func Deny(review map[string]any, message string) map[string]any {
	return answer(review, map[string]any{"allowed": false, "status": map[string]any{"code": 403, "message": message}})
}

// PatchResponse is the answer that admits the object with a JSON patch (RFC 6902).
func PatchResponse(review map[string]any, jsonPatch any) (map[string]any, error) {
	b, err := json.Marshal(jsonPatch)
	if err != nil {
		return nil, err
	}
	return answer(review, map[string]any{
		"allowed": true, "patchType": "JSONPatch", "patch": base64.StdEncoding.EncodeToString(b),
	}), nil
}
