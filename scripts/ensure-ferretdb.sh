#!/usr/bin/env bash
# Builds FerretDB 1.x (SQLite backend) from the Go module proxy into a cache folder, once.
# Prints the binary's path. Used by .ci/run and, on first start, by the embedded database helper.
set -euo pipefail

version="${FERRETDB_VERSION:-v1.24.2}"
cache="${CHATGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/chatgate}"
bin="$cache/ferretdb-$version/ferretdb"

if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then echo "$bin"; exit 0; fi
command -v go >/dev/null || { echo "ensure-ferretdb: Go 1.24 or newer is needed to build FerretDB $version (or set MONGODB_URI or FERRETDB_BIN)" >&2; exit 1; }
# FerretDB v1.24.2's go.mod says `go 1.24`; GOTOOLCHAIN=local below keeps Go from fetching a newer toolchain.
go_version="$(go env GOVERSION)"
go_minor="$(echo "$go_version" | sed -n 's/^go1\.\([0-9]*\).*/\1/p')"
if [ -n "$go_minor" ] && [ "$go_minor" -lt 24 ]; then
  echo "ensure-ferretdb: FerretDB $version needs Go 1.24 or newer, this is $go_version (or set MONGODB_URI or FERRETDB_BIN)" >&2; exit 1
fi
started=$SECONDS

work="$(mktemp -d)"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
export GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local GOPATH="${GOPATH:-$(go env GOPATH)}"

# `go install …@version` stops here because the proxy refuses the module's version list (its deprecation
# check), and FerretDB refuses to run without a version stamp that only its own release build writes.
# So: download the exact module, stamp build/version/version.txt, and build it as the main module.
echo "ensure-ferretdb: building FerretDB $version into $cache with $go_version (about two minutes, once)" >&2
echo "ensure-ferretdb: downloading github.com/FerretDB/FerretDB@$version" >&2
dir="$(cd "$work" && go mod download -json "github.com/FerretDB/FerretDB@$version" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')"
[ -n "$dir" ] || { echo "ensure-ferretdb: could not download github.com/FerretDB/FerretDB@$version" >&2; exit 1; }
cp -r "$dir" "$work/src" && chmod -R u+w "$work/src"
echo "$version" > "$work/src/build/version/version.txt"
mkdir -p "$(dirname "$bin")"
echo "ensure-ferretdb: fetching its dependencies and compiling (Go prints nothing until it is done)" >&2
(cd "$work/src" && go build -trimpath -o "$bin.tmp" ./cmd/ferretdb) >&2
mv "$bin.tmp" "$bin"
echo "ensure-ferretdb: built $bin in $((SECONDS - started)) s" >&2
echo "$bin"
