#!/usr/bin/env bash
# Tests of the JavaScript client package (clients/js): installs its devDependencies
# (typescript, ws) with `npm ci` when missing, checks that the modules the server
# embeds (src/dashboard/client/) are the build of clients/js/src, builds the package
# (ES modules and .d.ts in clients/js/dist), builds the server, and runs
# `node --test` against it. Its Chromium test is tests/browser/client.test.mjs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
pkg="$root/clients/js"

die() {
  echo "tests/js/run.sh: $*" >&2
  exit 1
}

command -v node >/dev/null || die "node is missing"
command -v npm >/dev/null || die "npm is missing"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' || die "Node >= 20 is needed (have $(node --version))"
if [ ! -x "$pkg/node_modules/.bin/tsc" ] || [ ! -d "$pkg/node_modules/ws" ]; then
  (cd "$pkg" && timeout 300 npm ci --no-audit --no-fund)
fi

(cd "$pkg" && npm run --silent check-embedded && npm run --silent build)

(cd "$root" && cargo build --quiet --bin tickcast)
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
export TICKCAST_BIN="$target/debug/tickcast"
[ -x "$TICKCAST_BIN" ] || die "server binary missing after the build: $TICKCAST_BIN"

cd "$pkg"
timeout 600 node --experimental-websocket --test --test-concurrency=1 test/*.test.mjs
