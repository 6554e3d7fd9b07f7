#!/usr/bin/env bash
# Fetches mongo-java-server (H2 backend) with Maven and compiles our small launcher, once, into a cache folder.
# Prints the folder (classes/ and lib/ inside). Used by .ci/run and, on first start, by the embedded database helper.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
src="$here/mongo-java-server"
cache="${CHATGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/chatgate}"
version="$(sed -n 's:.*<artifactId>mongo-java-server</artifactId><version>\([^<]*\)</version>.*:\1:p' "$src/pom.xml")"
# A changed pom or launcher is built into a folder of its own: checkouts with different launchers (branches, an
# upgrade) sharing one cache do not rebuild over each other.
stamp="$(cat "$src/pom.xml" "$src/ChatgateMongoServer.java" | sha256sum | cut -c1-16)"
dir="$cache/mongo-java-server-$version-${stamp:0:8}"

if [ -f "$dir/classes/ChatgateMongoServer.class" ] && [ "$(cat "$dir/stamp" 2>/dev/null)" = "$stamp" ]; then echo "$dir"; exit 0; fi
for tool in java javac mvn; do
  command -v "$tool" >/dev/null || { echo "ensure-mongo-java-server: $tool is needed (Java 17 or newer and Maven; on Debian: apt-get install openjdk-17-jdk-headless maven), or set MONGODB_URI or EMBEDDED_DB_ENGINE=ferretdb" >&2; exit 1; }
done
started=$SECONDS
echo "ensure-mongo-java-server: fetching mongo-java-server $version and its H2 backend with Maven into $dir (once)" >&2
rm -rf "$dir.tmp" && mkdir -p "$dir.tmp/classes"
# Maven's quiet mode still writes colour resets; they are stripped so that the gateway's log stays readable.
mvn -B -q -Dstyle.color=never -f "$src/pom.xml" dependency:copy-dependencies -DoutputDirectory="$dir.tmp/lib" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' | grep -v '^$' >&2 || [ "${PIPESTATUS[0]}" -eq 0 ]
echo "ensure-mongo-java-server: compiling the launcher" >&2
javac -nowarn -cp "$dir.tmp/lib/*" -d "$dir.tmp/classes" "$src/ChatgateMongoServer.java" >&2
echo "$stamp" > "$dir.tmp/stamp"
rm -rf "$dir" && mv "$dir.tmp" "$dir"
echo "ensure-mongo-java-server: ready in $dir in $((SECONDS - started)) s" >&2
echo "$dir"
