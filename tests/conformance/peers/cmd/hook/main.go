// hook: the zone-labeler decision as a shell-operator-style hook, one process per event.
// It reads one binding `{"object": POD, "node": NODE}` from stdin, writes the pod's merge
// patch and a newline to stdout (nothing when there is nothing to do) and exits 0; bad
// input exits 1 with one line on stderr. See ../../README.md.
package main

import (
	"fmt"
	"io"
	"os"

	"bosun.dev/peers"
)

func main() {
	input, err := io.ReadAll(io.LimitReader(os.Stdin, peers.MaxBinding+1))
	if err == nil && len(input) > peers.MaxBinding {
		err = fmt.Errorf("larger than %d bytes", peers.MaxBinding)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "hook: reading the binding from stdin: %v\n", err)
		os.Exit(1)
	}
	d, err := peers.Decide(input)
	if err != nil {
		fmt.Fprintf(os.Stderr, "hook: %v\n", err)
		os.Exit(1)
	}
	if d.Requeue {
		fmt.Fprintln(os.Stderr, "hook: the pod's node is unknown; no patch (the plugin requeues after 30s)")
	}
	if d.Patch != nil {
		os.Stdout.Write(append(d.Patch, '\n'))
	}
}
