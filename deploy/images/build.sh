#!/usr/bin/env bash
# Builds the static (musl) binaries and the images bosun-runtime and bosun-sidecar.
#   deploy/images/build.sh [TARGET_DIR]      (default: $CARGO_TARGET_DIR, else target/)
# Environment: TAG (0.1.0), REGISTRY (ghcr.io/bosun-dev), JOBS (cargo -j), SIDECAR_COMPILER
# (1: a sidecar that can compile, see below),
# CA_BUNDLE (/etc/ssl/certs/ca-certificates.crt), BUILDAH_ARGS (e.g. --storage-driver vfs).
# Needs rustup or the x86_64-unknown-linux-musl target, musl-gcc (Debian: musl-tools; ring
# compiles C) and strip; buildah for the images; and what the built-in plugins build with
# (the wasm32-wasip2 target, Go 1.24+, node: see README.md).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
target_dir=$(realpath -m "${1:-${CARGO_TARGET_DIR:-$repo/target}}")
triple=x86_64-unknown-linux-musl
tag=${TAG:-0.1.0}
registry=${REGISTRY:-ghcr.io/bosun-dev}
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

fail() { echo "build.sh: $*" >&2; exit 1; }
command -v musl-gcc >/dev/null || fail "musl-gcc not found; install musl-tools (apt-get install musl-tools)"
command -v strip >/dev/null || fail "strip not found; install binutils"
[[ -r $ca_bundle ]] || fail "no CA bundle at $ca_bundle; install ca-certificates or set CA_BUNDLE"
if command -v rustup >/dev/null; then rustup target add "$triple"; fi

# One cargo run per binary: built together, the sidecar would get the runtime's features.
# The sidecar has no compiler (Cranelift): it runs the code the runtime of this same build
# compiles and ships. SIDECAR_COMPILER=1 keeps the compiler, for runtimes of other builds.
sidecar_features=--no-default-features
[[ ${SIDECAR_COMPILER:-} == 1 ]] && sidecar_features=
for pkg in bosun-sidecar bosun-cli; do
  features=
  [[ $pkg == bosun-sidecar ]] && features=$sidecar_features
  (cd "$repo" && cargo build --release --locked --target "$triple" -p "$pkg" ${JOBS:+-j "$JOBS"} \
    $features --target-dir "$target_dir")
done

# stage NAME BINARY: the build context $target_dir/images/NAME.
stage() {
  local ctx=$target_dir/images/$1
  rm -rf "$ctx" && mkdir -p "$ctx/rootfs/etc" "$ctx/rootfs/tmp"
  chmod 1777 "$ctx/rootfs/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin\n' \
    >"$ctx/rootfs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$ctx/rootfs/etc/group"
  strip -o "$ctx/$2" "$target_dir/$triple/release/$2"
}
stage runtime bosun
cp "$ca_bundle" "$target_dir/images/runtime/ca-certificates.crt"
# The built-in plugins, as the runtime's plugins folder (deploy/runtime/config.yaml
# `pluginsDir`): NAME.wasm, and an admission plugin's webhook settings beside it.
plugins=$target_dir/images/runtime/plugins
mkdir -p "$plugins"
for name in release sidecarset-injector sidecarset remediation app-probe node-agent; do
  wasm=$("$target_dir/$triple/release/bosun" plugin build "$repo/plugins/$name")
  cp "$wasm" "$plugins/$name.wasm"
  if [[ -f $repo/plugins/$name/admission.json ]]; then
    cp "$repo/plugins/$name/admission.json" "$plugins/$name.admission.json"
  fi
done
stage sidecar bosun-sidecar

if ! command -v buildah >/dev/null; then
  echo "build.sh: buildah not found (Debian: apt-get install buildah); binaries and contexts are ready:" >&2
  for name in runtime sidecar; do
    echo "  buildah bud -f $here/$name.Containerfile -t $registry/bosun-$name:$tag $target_dir/images/$name" >&2
  done
  exit 2
fi
read -ra bargs <<<"${BUILDAH_ARGS:-}"
for name in runtime sidecar; do
  buildah "${bargs[@]}" bud --build-arg "VERSION=$tag" -f "$here/$name.Containerfile" \
    -t "$registry/bosun-$name:$tag" "$target_dir/images/$name"
done
for name in runtime sidecar; do buildah "${bargs[@]}" images "$registry/bosun-$name:$tag"; done
