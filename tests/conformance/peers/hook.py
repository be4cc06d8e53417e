#!/usr/bin/env python3
"""The zone-labeler decision as a shell-operator hook in Python, as its users write them.

Reads one binding {"object": POD, "node": NODE} from stdin, writes the pod's JSON merge
patch and a newline to stdout (nothing when there is nothing to do) and exits 0; bad
input exits 1 with one line on stderr. Standard library only. See README.md.
"""
import json
import sys

ZONE_LABEL = "topology.kubernetes.io/zone"


def label(obj, key):
    value = ((obj.get("metadata") or {}).get("labels") or {}).get(key)
    return value if isinstance(value, str) else None


def main():
    try:
        binding = json.load(sys.stdin)
        if not isinstance(binding, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        sys.stderr.write(f'hook.py: binding is not {{"object": POD, "node": NODE}}: {e}\n')
        return 1
    pod = binding.get("object")
    node = binding.get("node")
    # No pod, or an unbound one (it is seen again when the scheduler binds it).
    if not pod or not (pod.get("spec") or {}).get("nodeName"):
        return 0
    if node is None:
        sys.stderr.write("hook.py: the pod's node is unknown; no patch (the plugin requeues after 30s)\n")
        return 0
    zone = label(node, ZONE_LABEL)
    if zone is None or label(pod, ZONE_LABEL) == zone:
        return 0
    patch = {"metadata": {"labels": {ZONE_LABEL: zone}}}
    sys.stdout.write(json.dumps(patch, separators=(",", ":")) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
