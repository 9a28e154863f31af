#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian 12 machine (as root):
# libpcap, the real AoE/NBD peers used by the tests and benchmarks, the pinned
# Deno from the npm registry, and an `aoe` command on the PATH.
# Idempotent: a second run installs nothing.
set -euo pipefail
here=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
cd "$here"

packages=(libpcap0.8 vblade aoetools tshark tcpdump libnbd-bin python3-libnbd qemu-utils nbdkit fio nftables iproute2 bsdutils util-linux e2fsprogs)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x node_modules/.bin/deno ] || ! node_modules/.bin/deno --version >/dev/null 2>&1 ||
  [ ! -f node_modules/smol-toml/package.json ]; then
  if ! command -v npm >/dev/null; then
    echo "setup: npm is needed to install the pinned Deno" >&2
    exit 1
  fi
  echo "setup: installing Deno and the npm packages from the npm registry (package-lock.json)" >&2
  # `npm ci` is the strict form; npm 11.19 rejects its own lock file for an
  # optional dependency recorded only for this platform (@deno/linux-x64-glibc),
  # so fall back to `npm install`, which installs the same pinned versions.
  if ! npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>&1; then
    npm install --no-audit --no-fund --loglevel=error >/dev/null
  fi
  if ! node_modules/.bin/deno --version >/dev/null 2>&1; then
    echo "setup: the pinned Deno did not install (node_modules/.bin/deno)" >&2
    exit 1
  fi
fi

# The `aoe` command: the compiled single binary where `deno compile` can fetch
# its runtime, otherwise the launcher that runs this checkout.
mkdir -p dist
# The single-file form every machine can build: dist/aoe.js (deno task bundle).
DENO_NO_UPDATE_CHECK=1 node_modules/.bin/deno bundle --quiet -o dist/aoe.js mod.ts >/dev/null 2>&1 || true
if [ ! -x dist/aoe ]; then
  DENO_NO_UPDATE_CHECK=1 timeout 120 node_modules/.bin/deno compile -A --quiet -o dist/aoe mod.ts >/dev/null 2>&1 || rm -f dist/aoe
fi
if [ -x dist/aoe ]; then
  ln -sf "$here/dist/aoe" /usr/local/bin/aoe
else
  ln -sf "$here/scripts/aoe" /usr/local/bin/aoe
fi
echo "setup: ready ($(node_modules/.bin/deno --version | head -1); aoe -> $(readlink /usr/local/bin/aoe))" >&2
