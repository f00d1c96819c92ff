#!/usr/bin/env bash
# Builds the real test stack from the Go module proxy, installs Debian's packages (Redis, NATS,
# containerd, runc, CNI plugins, debootstrap, ...) and builds the real node's container images
# (tools/stack/images.py). Everything is cached outside the work tree, one folder per component
# and version (images by recipe hash), so a second run is a no-op.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

CACHE=${THE0_STACK_CACHE:-$HOME/.cache/the0-k8s-stack}
export GOMODCACHE=$CACHE/gomod GOCACHE=$CACHE/gobuild GOFLAGS=-buildvcs=false
export CGO_ENABLED=0 GOTOOLCHAIN=local GOPROXY=${GOPROXY:-https://proxy.golang.org,direct}
mkdir -p "$CACHE/bin" "$CACHE/src" "$CACHE/logs"

say() { printf '[stack-build %(%H:%M:%S)T] %s\n' -1 "$*"; }

# Runs "$@" with its output in a log file, printing a progress line every minute.
run_logged() {
  local name=$1; shift
  local log=$CACHE/logs/$name.log started=$SECONDS
  "$@" >"$log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 5
    if (( (SECONDS - started) % 60 < 5 )) && kill -0 "$pid" 2>/dev/null; then
      say "  $name: still building ($((SECONDS - started)) s, $(wc -l <"$log") log lines)"
    fi
  done
  if ! wait "$pid"; then
    say "FAILED: $name — last lines of $log:"; tail -n 40 "$log" >&2; exit 1
  fi
  say "  $name: done in $((SECONDS - started)) s"
}

# A wrapper module, so `replace`/version-file traps of the upstream main module do not apply.
new_wrapper() {
  local dir=$CACHE/src/$1
  rm -rf "$dir"; mkdir -p "$dir"
  printf 'module the0stack/%s\n\ngo 1.24.0\n\ngodebug default=go1.24\n' "$1" >"$dir/go.mod"
  echo "$dir"
}

ensure_debian_packages() {
  local missing=() pkg
  # shellcheck disable=SC2086  # a space-separated list by design
  for pkg in $DEBIAN_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  # npm fetches Node's binary for the node image; any npm will do (Debian's if none is here).
  command -v npm >/dev/null || missing+=(npm)
  ((${#missing[@]})) || return 0
  say "apt-get install ${missing[*]}"
  local sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build_kubernetes() {
  local out=$CACHE/bin/kubernetes-$KUBERNETES_VERSION
  # All must print the pin. The kubelet and kube-proxy came later: with the rest cached,
  # rebuilding the whole set on the warm GOCACHE only compiles their extra packages (~1-2 min).
  local have=1 binary
  for binary in kube-apiserver kubelet kube-proxy; do
    [ -x "$out/$binary" ] && "$out/$binary" --version 2>/dev/null | grep -qx "Kubernetes $KUBERNETES_VERSION" || have=0
  done
  ((have)) && return 0
  say "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kubelet, kube-proxy $KUBERNETES_VERSION (first time: ~10 min)"
  local dir; dir=$(new_wrapper kubernetes)
  local staging=v0.${KUBERNETES_VERSION#v1.}
  local upstream_mod
  upstream_mod=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  # Every staging module (`k8s.io/x => ./staging/src/k8s.io/x`) is pinned to its published tag
  # BEFORE `go get`, otherwise Go tries to resolve their v0.0.0 requirements and fails.
  {
    echo 'replace ('
    grep -E '^\s*k8s\.io/[^ ]+ => \./staging/src/' "$upstream_mod" | awk -v v="$staging" '{print "\t" $1 " => " $1 " " v}'
    echo ')'
  } >>"$dir/go.mod"
  local pkgs=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
              k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
              k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
  (cd "$dir" && run_logged kubernetes-get go get "${pkgs[@]/%/@$KUBERNETES_VERSION}")
  local minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
  local ld="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitCommit=0000000000000000000000000000000000000000 -X $pkg.gitTreeState=clean"
    ld+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  mkdir -p "$out.tmp"
  (cd "$dir" && run_logged kubernetes-build go build -trimpath -ldflags "$ld" -o "$out.tmp/" "${pkgs[@]}")
  rm -rf "$out"; mv "$out.tmp" "$out"
}

# build_go NAME VERSION MODULE PACKAGE BINARY — one binary from a wrapper module.
build_go() {
  local name=$1 version=$2 module=$3 pkg=$4 binary=$5
  local out=$CACHE/bin/$name-$version
  [ -x "$out/$binary" ] && return 0
  say "building $name $version"
  local dir; dir=$(new_wrapper "$name")
  (cd "$dir" && run_logged "$name-get" go get "$pkg@$version")
  # Main packages of the dependency are built with the dependency's own version strings.
  mkdir -p "$out.tmp"
  (cd "$dir" && run_logged "$name-build" go build -trimpath -ldflags "-s -w" -o "$out.tmp/$binary" "$pkg")
  rm -rf "$out"; mv "$out.tmp" "$out"
  : "$module"
}

# FerretDB panics at start when its main module is FerretDB and build/version/version.txt is
# absent (the file is generated by their release tooling, not published in the module). Build it
# from a writable copy of the module with that file written and its patch applied
# (patches/ferretdb-test-stack.py), wired in with a `replace`. The binary's folder
# carries the patch's name (FERRETDB_PATCH), so a changed patch builds anew.
build_ferretdb() {
  local out=$CACHE/bin/ferretdb-$FERRETDB_VERSION-$FERRETDB_PATCH
  [ -x "$out/ferretdb" ] && "$out/ferretdb" --version >/dev/null 2>&1 && return 0
  say "building ferretdb $FERRETDB_VERSION ($FERRETDB_PATCH)"
  local dir; dir=$(new_wrapper ferretdb)
  local pkg=github.com/FerretDB/FerretDB/cmd/ferretdb
  (cd "$dir" && run_logged ferretdb-get go get "$pkg@$FERRETDB_VERSION")
  local src
  src=$(cd "$dir" && go list -m -f '{{.Dir}}' github.com/FerretDB/FerretDB)
  cp -r "$src" "$dir/ferretdb-src"; chmod -R u+w "$dir/ferretdb-src"
  echo "$FERRETDB_VERSION" >"$dir/ferretdb-src/build/version/version.txt"
  python3 "$here/patches/$FERRETDB_PATCH.py" "$dir/ferretdb-src"
  printf '\nreplace github.com/FerretDB/FerretDB => ./ferretdb-src\n' >>"$dir/go.mod"
  mkdir -p "$out.tmp"
  (cd "$dir" && run_logged ferretdb-build go build -trimpath -ldflags "-s -w" -o "$out.tmp/ferretdb" "$pkg")
  rm -rf "$out"; mv "$out.tmp" "$out"
}

# kwok, built from a patched copy of its module (patches/kwok-delete-uid-precondition.py): it
# deletes a pod only while it is still the same pod, as a kubelet does. The binary's folder
# carries the patch's name (KWOK_PATCH), so a changed patch builds anew.
build_kwok() {
  local out=$CACHE/bin/kwok-$KWOK_VERSION-$KWOK_PATCH
  [ -x "$out/kwok" ] && return 0
  say "building kwok $KWOK_VERSION ($KWOK_PATCH)"
  local dir; dir=$(new_wrapper kwok)
  local pkg=sigs.k8s.io/kwok/cmd/kwok
  (cd "$dir" && run_logged kwok-get go get "$pkg@$KWOK_VERSION")
  local src
  src=$(cd "$dir" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  cp -r "$src" "$dir/kwok-src"; chmod -R u+w "$dir/kwok-src"
  python3 "$here/patches/$KWOK_PATCH.py" "$dir/kwok-src"
  printf '\nreplace sigs.k8s.io/kwok => ./kwok-src\n' >>"$dir/go.mod"
  mkdir -p "$out.tmp"
  (cd "$dir" && run_logged kwok-build go build -trimpath -ldflags "-s -w" -o "$out.tmp/kwok" "$pkg")
  rm -rf "$out"; mv "$out.tmp" "$out"
}

# kwok ships its stage definitions and CRDs (Logs, ClusterLogs) as YAML in its module; the supervisor needs them at runtime.
copy_kwok_stages() {
  local out=$CACHE/bin/kwok-$KWOK_VERSION-$KWOK_PATCH
  [ -d "$out/stages" ] && [ -d "$out/crds" ] && return 0
  local src="$GOMODCACHE/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize"
  [ -d "$src" ] || (cd "$CACHE/src/kwok" && go mod download "sigs.k8s.io/kwok@$KWOK_VERSION")
  rm -rf "$out/stages" "$out/crds"
  mkdir -p "$out/stages.tmp" "$out/crds.tmp"
  cp -r "$src/stage/." "$out/stages.tmp/"
  cp -r "$src/crd/bases/." "$out/crds.tmp/"
  chmod -R u+w "$out/stages.tmp" "$out/crds.tmp"
  mv "$out/stages.tmp" "$out/stages"; mv "$out/crds.tmp" "$out/crds"
}

# build_tool NAME SOURCE... — a small Go program of this repo (tools/NAME), keyed by the hash of
# its sources in that order (tools/stack/paths.py computes the same key):
# - compose-config: `docker compose config`'s loader (compose-go) as a small binary, so tests
#   validate compose.yaml where the docker CLI has no compose plugin (its go.mod pins compose-go);
# - gojson-oracle: json.Marshal of configs decoded as the0's Go runtime decodes them, which the
#   tests hold BOT_CONFIG to (standard library only).
build_tool() {
  local name=$1; shift
  local src=$here/../$name
  local key; key=$(cd "$src" && cat "$@" | sha256sum | cut -c1-12)
  local out=$CACHE/bin/$name-$key
  [ -x "$out/$name" ] && return 0
  say "building $name ($key)"
  mkdir -p "$out.tmp"
  (cd "$src" && run_logged "$name" go build -trimpath -ldflags "-s -w" -o "$out.tmp/$name" .)
  rm -rf "$out"; mv "$out.tmp" "$out"
}

# The real node's images (pause, python, node, gcc, the0): layers keyed by recipe, built only
# when missing. Stdlib Python, run from the repo root with the system python3.
build_images() {
  (cd "$here/../.." && python3 -m tools.stack.images build)
}

# `build.sh` builds everything; `build.sh ferretdb kwok` only the named parts. Debian's packages
# come first (the images need debootstrap); the rest runs side by side: module downloads are
# network-bound and links single-threaded, so overlapping them with other parts' compiles keeps
# both cores busy. Cold, on 2 cores: 862 s side by side (2026-12-01; 711 s before kube-proxy
# and Helm, 904 s one after the other then); the
# compiles are then CPU-bound (~1,350 CPU-seconds), kube-apiserver & co. the largest part.
build_part() {
  case $1 in
    debian) ensure_debian_packages ;;
    etcd) build_go etcd "$ETCD_VERSION" go.etcd.io/etcd/server/v3 go.etcd.io/etcd/server/v3 etcd ;;
    kwok) build_kwok; copy_kwok_stages ;;
    ferretdb) build_ferretdb ;;
    helm) build_go helm "$HELM_VERSION" helm.sh/helm/v3 helm.sh/helm/v3/cmd/helm helm ;;
    versitygw) build_go versitygw "$VERSITYGW_VERSION" github.com/versity/versitygw github.com/versity/versitygw/cmd/versitygw versitygw ;;
    kubernetes) build_kubernetes ;;
    compose-config) build_tool compose-config go.mod go.sum main.go ;;
    gojson-oracle) build_tool gojson-oracle go.mod main.go ;;
    images) build_images ;;
    *) echo "unknown part: $1" >&2; exit 2 ;;
  esac
}

started=$SECONDS
parts=("$@")
((${#parts[@]})) || parts=(debian kubernetes kwok etcd ferretdb versitygw helm compose-config gojson-oracle images)
pids=() names=()
for part in "${parts[@]}"; do
  if [ "$part" = debian ]; then build_part debian; continue; fi
  build_part "$part" & pids+=($!); names+=("$part")
done
failed=()
for i in "${!pids[@]}"; do wait "${pids[$i]}" || failed+=("${names[$i]}"); done
if ((${#failed[@]})); then
  say "FAILED: ${failed[*]} (each failure's log tail is printed above)"; exit 1
fi
say "stack binaries ready in $CACHE/bin ($((SECONDS - started)) s)"
