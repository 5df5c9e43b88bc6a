#!/usr/bin/env bash
# Browser tests: installs what is missing (Chromium from Debian, playwright-core from
# npm), builds the server, and runs tests/browser/dashboard.test.mjs (the dashboard)
# and tests/browser/client.test.mjs (the JavaScript client package in the page).
# The screenshot lands in artifacts/dashboard.png at the repository root.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

die() {
  echo "tests/browser/run.sh: $*" >&2
  exit 1
}

if [ ! -x /usr/bin/chromium ]; then
  command -v apt-get >/dev/null || die "/usr/bin/chromium is missing and apt-get is not available"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "/usr/bin/chromium is missing; installing it needs root"
    sudo="sudo"
  fi
  echo "installing chromium (apt-get)"
  timeout 600 $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive timeout 900 $sudo apt-get install -y chromium
  [ -x /usr/bin/chromium ] || die "chromium installed but /usr/bin/chromium is missing"
fi

command -v node >/dev/null || die "node is missing"
command -v npm >/dev/null || die "npm is missing"
if [ ! -d "$here/node_modules/playwright-core" ]; then
  (cd "$here" && timeout 300 npm ci --no-audit --no-fund)
fi

(cd "$root" && cargo build --bin tickcast)
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
export TICKCAST_BIN="$target/debug/tickcast"
[ -x "$TICKCAST_BIN" ] || die "server binary missing after the build: $TICKCAST_BIN"

cd "$here"
timeout 900 node --test --test-concurrency=1 dashboard.test.mjs client.test.mjs
echo "screenshots: $root/artifacts/dashboard.png, $root/artifacts/dashboard-200.png"
