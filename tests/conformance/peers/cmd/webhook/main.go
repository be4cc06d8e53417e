// webhook: the zone-labeler decision as a Metacontroller-style HTTP hook. `webhook ADDR`
// listens on ADDR (e.g. 127.0.0.1:0), prints the bound address as its first stdout line
// and answers `POST /sync` with body `{"object": POD, "node": NODE}` by
// `{"patch": PATCH_OR_NULL}` (plus `"resyncAfterSeconds": 30` when the node is unknown).
// Connections are kept alive. See ../../README.md.
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"

	"bosun.dev/peers"
)

func sync(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST a binding {\"object\": POD, \"node\": NODE} to /sync", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, peers.MaxBinding))
	if err != nil {
		http.Error(w, "reading the binding: "+err.Error(), http.StatusBadRequest)
		return
	}
	d, err := peers.Decide(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	out := make([]byte, 0, 128)
	out = append(out, `{"patch":`...)
	if d.Patch != nil {
		out = append(out, d.Patch...)
	} else {
		out = append(out, "null"...)
	}
	if d.Requeue {
		out = append(out, `,"resyncAfterSeconds":30`...)
	}
	out = append(out, "}\n"...)
	w.Header().Set("Content-Type", "application/json")
	w.Write(out)
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: webhook ADDR (e.g. 127.0.0.1:0); the bound address is printed first")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		fmt.Fprintf(os.Stderr, "webhook: listening on %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().String())
	mux := http.NewServeMux()
	mux.HandleFunc("/sync", sync)
	// http.Server keeps connections alive by default.
	if err := (&http.Server{Handler: mux}).Serve(ln); err != nil {
		fmt.Fprintf(os.Stderr, "webhook: %v\n", err)
		os.Exit(1)
	}
}
