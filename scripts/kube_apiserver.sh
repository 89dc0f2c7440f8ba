#!/usr/bin/env bash
# Builds a kube-apiserver for the Kubernetes backend's tests and prints its path.
#
# Debian bookworm ships etcd but no kube-apiserver binary, so this builds one offline from
# Debian's `kubernetes` source package (1.20.2) with Debian's Go 1.19. The binary is cached
# outside the work tree, keyed by version, in
#   ${SCALEGROUP_CACHE:-~/.cache/scalegroup}/kube-apiserver-<version>/
# and is built only when missing. As root, installs the Debian packages it needs when they are
# missing. The source comes through a private deb-src list: the system's apt configuration is
# left alone. Progress goes to stderr; the binary's path is the only line on stdout.
set -euo pipefail

DEB_VERSION=1.20.5+really1.20.2-1.1+deb12u1
KUBE_VERSION=1.20.2
PACKAGES=(etcd-server golang-1.19-go golang-github-modern-go-reflect2-dev dpkg-dev)
GO=/usr/lib/go-1.19/bin/go
REFLECT2_SRC=/usr/share/gocode/src/github.com/modern-go/reflect2

CACHE_ROOT=${SCALEGROUP_CACHE:-$HOME/.cache/scalegroup}
CACHE=$CACHE_ROOT/kube-apiserver-$KUBE_VERSION
BINARY=$CACHE/kube-apiserver

say() { echo "kube_apiserver.sh: $*" >&2; }
die() {
  say "error: $*"
  exit 1
}

# Runs a command with its output in $CACHE/$1.log, saying every 30 s that it still runs; on
# failure shows the end of the log and stops.
logged() {
  local name=$1 log started=$SECONDS ticker status=0
  shift
  log=$CACHE/$name.log
  (while sleep 30; do say "... $name: $((SECONDS - started)) s so far"; done) &
  ticker=$!
  "$@" >"$log" 2>&1 || status=$?
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$log" >&2
    die "$name failed (command: $*); the whole log is in $log"
  fi
}

# Installs the Debian packages that are missing (as root; otherwise says what to install).
install_missing_packages() {
  local package missing=()
  for package in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$package")
    fi
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    die "the Kubernetes tests need the Debian packages ${missing[*]}; install them" \
      "(sudo apt-get install ${missing[*]}) or run this script as root"
  fi
  say "as root: apt-get update && apt-get install ${missing[*]} (Debian's packages)"
  mkdir -p "$CACHE"
  logged apt-install sh -c 'apt-get update && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "$@"' apt-install "${missing[@]}"
}

# All of the work is in main, so that bash has read the whole script before running any of it:
# a script edited (or checked out anew) while it builds would otherwise run a garbled tail.
main() {
  # The fast path, taken by every test session after the first: nothing to install or build.
  if [ -x "$BINARY" ] && command -v etcd >/dev/null; then
    echo "$BINARY"
    exit 0
  fi

  mkdir -p "$CACHE"
  # One build at a time: a second caller waits here and then finds the binary.
  exec 9>"$CACHE/.lock"
  flock 9
  install_missing_packages
  if [ -x "$BINARY" ]; then
    echo "$BINARY"
    exit 0
  fi
  [ -x "$GO" ] || die "golang-1.19-go is installed but $GO is missing"
  [ -d "$REFLECT2_SRC" ] || die "golang-github-modern-go-reflect2-dev is installed but" \
    "$REFLECT2_SRC is missing"

  # A private apt setup that knows only the deb-src lines: its own source list, package lists
  # and archive cache under $CACHE/apt, so the system's lists stay as they are.
  apt_dir=$CACHE/apt
  rm -rf "$apt_dir"
  mkdir -p "$apt_dir/parts" "$apt_dir/lists/partial" "$apt_dir/archives/partial"
  cat >"$apt_dir/sources.list" <<'EOF'
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-updates main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main
EOF
  apt_options=(
    -o "Dir::Etc::SourceList=$apt_dir/sources.list"
    -o "Dir::Etc::SourceParts=$apt_dir/parts"
    -o "Dir::State::Lists=$apt_dir/lists"
    -o "Dir::Cache::Archives=$apt_dir/archives"
    -o "Dir::Cache::pkgcache="
    -o "Dir::Cache::srcpkgcache="
    -o "APT::Sandbox::User=root"
  )
  say "fetching the source lists for Debian's kubernetes source package"
  logged apt-update apt-get "${apt_options[@]}" update

  build=$CACHE/build
  rm -rf "$build"
  mkdir -p "$build"
  say "fetching and unpacking kubernetes $DEB_VERSION (source, about 30 MB)"
  (cd "$build" && logged apt-source apt-get "${apt_options[@]}" source "kubernetes=$DEB_VERSION")
  unpacked=$(find "$build" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -n 1)
  [ -n "$unpacked" ] && [ -d "$unpacked/cmd/kube-apiserver" ] ||
    die "apt-get source unpacked no kubernetes-*/cmd/kube-apiserver under $build"
  # Kubernetes 1.20 builds in GOPATH mode from its vendor directory, as its own Makefile does
  # (module mode with -mod=vendor stops at "updates to go.mod needed" under Go 1.19).
  gopath=$build/gopath
  src=$gopath/src/k8s.io/kubernetes
  mkdir -p "$(dirname "$src")"
  mv "$unpacked" "$src"

  # The vendored reflect2 v1.0.1 crashes ("fatal error: fault") under Go 1.18+ on the first
  # custom-object request; Debian's golang-github-modern-go-reflect2-dev is 1.0.2, which works.
  say "replacing the vendored github.com/modern-go/reflect2 v1.0.1 with Debian's 1.0.2"
  vendored=$src/vendor/github.com/modern-go/reflect2
  [ -d "$vendored" ] || die "no vendored reflect2 at $vendored"
  rm -rf "$vendored"
  mkdir -p "$vendored"
  find "$REFLECT2_SRC" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' -o -name LICENSE \) \
    ! -name '*_test.go' -exec cp {} "$vendored/" \;

  go_env=(env GO111MODULE=off GOPATH="$gopath" GOFLAGS= GOPROXY=off CGO_ENABLED=0
    GOCACHE="$CACHE/gocache")
  start=$SECONDS

  # pkg/generated/openapi is generated, not shipped: make it as the Makefile's gen_openapi does,
  # from every package (staging ones under their vendor/ name) tagged +k8s:openapi-gen.
  say "generating pkg/generated/openapi with the vendored openapi-gen"
  cd "$src"
  logged openapi-gen-build "${go_env[@]}" "$GO" build -o "$build/openapi-gen" \
    ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
  openapi_inputs=$(
    find -H . \( -path './_*' -o -path './.*' -o -path ./vendor \) -prune -o \
      -type f -name '*.go' -print0 |
      { xargs -0 grep -l -e '^// *+k8s:openapi-gen=' || true; } |
      sed -e 's#^\./##' -e 's#^staging/src/#vendor/#' -e 's#/[^/]*$##' |
      grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/' |
      LC_ALL=C sort -u | sed 's#^#k8s.io/kubernetes/#' | paste -sd, -
  )
  [ -n "$openapi_inputs" ] || die "found no package tagged +k8s:openapi-gen under $src"
  logged openapi-gen "${go_env[@]}" "$build/openapi-gen" --logtostderr -i "$openapi_inputs" \
    -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
    -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt -r "$build/openapi-violations.report"

  say "building cmd/kube-apiserver with Go 1.19 (several minutes)"
  ldflags="-s -w"
  # The version the server reports (/version comes from client-go's package, --version from
  # component-base's), under the vendored paths that GOPATH mode gives them.
  for version_pkg in client-go/pkg/version component-base/version; do
    version_pkg=k8s.io/kubernetes/vendor/k8s.io/$version_pkg
    ldflags+=" -X $version_pkg.gitMajor=1 -X $version_pkg.gitMinor=20"
    ldflags+=" -X $version_pkg.gitVersion=v$KUBE_VERSION -X $version_pkg.gitTreeState=clean"
  done
  logged go-build "${go_env[@]}" "$GO" build -trimpath -ldflags "$ldflags" \
    -o "$build/kube-apiserver" ./cmd/kube-apiserver
  cd "$CACHE"
  mv "$build/kube-apiserver" "$BINARY"
  # Nothing rebuilds into this version's directory again, so the compiled packages can go.
  rm -rf "$build" "$apt_dir" "$CACHE/gocache"
  say "built $BINARY in $((SECONDS - start)) s"
  echo "$BINARY"
}

main "$@"
