#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian-like machine, then runs them.
#   bash tests/run.sh [pytest args...]
# It is idempotent: what is already installed is not installed again.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v redis-server >/dev/null || missing+=(redis-server)
# The TURN tests: coturn, network namespaces (ip) and a firewall in them (nft). They start
# coturn themselves, without a config file, on their own addresses and ports.
command -v turnserver >/dev/null || missing+=(coturn)
command -v nft >/dev/null || missing+=(nftables)
command -v ip >/dev/null || missing+=(iproute2)
command -v openssl >/dev/null || missing+=(openssl)  # an HMAC that is not Python's, for the TURN tests
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]} (Debian packages)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  if [[ " ${missing[*]} " == *" coturn "* && -d /run/systemd/system ]]; then
    # under systemd the package starts coturn with its default, unauthenticated config
    step "stopping and disabling the coturn service that the package started"
    as_root systemctl disable --now coturn >/dev/null 2>&1 || true
  fi
fi

if [ ! -x .venv/bin/python ]; then
  step "creating .venv"
  python3 -m venv .venv
fi
step "installing roomwire and its test dependencies into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'

for dir in web tests/interop; do
  if [ -f "$dir/package-lock.json" ]; then
    step "npm ci --prefix $dir"
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
  fi
done

step "running the tests"
exec .venv/bin/python -m pytest "$@"
