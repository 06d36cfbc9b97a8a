#!/usr/bin/env bash
# System packages the tests need that no Python wheel ships: coturn (a real TURN server for the
# WebRTC call tests, tests/support/coturn.py). Called by `make deps`.
#
# Idempotent: does nothing when `turnserver` is already on PATH. Otherwise installs Debian's
# coturn with apt (needs root, or sudo without a password). The package must not start a
# system-wide TURN server: the tests start their own on loopback, so for the duration of the
# install a policy-rc.d that refuses service starts is put in place (unless one exists already),
# and the unit is disabled afterwards where systemd runs.
set -euo pipefail

if command -v turnserver >/dev/null 2>&1 || [ -x /usr/bin/turnserver ]; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: turnserver (coturn) is missing and apt-get is not available;" >&2
  echo "install coturn with your package manager (the WebRTC call tests need it)" >&2
  exit 1
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    echo "install-system-deps: installing coturn needs root (or passwordless sudo)" >&2
    exit 1
  fi
fi

POLICY=/usr/sbin/policy-rc.d
added_policy=0
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\n# temporary (deploy/scripts/install-system-deps.sh): no service starts\nexit 101\n' \
    | "${SUDO[@]}" tee "$POLICY" >/dev/null
  "${SUDO[@]}" chmod 755 "$POLICY"
  added_policy=1
fi
cleanup() {
  if [ "$added_policy" -eq 1 ]; then
    "${SUDO[@]}" rm -f "$POLICY"
  fi
}
trap cleanup EXIT

echo "install-system-deps: installing coturn (apt)" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends coturn >/dev/null

# Where systemd manages services, keep the packaged TURN server off (it would hold port 3478).
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  "${SUDO[@]}" systemctl disable --now coturn >/dev/null 2>&1 || true
fi

command -v turnserver >/dev/null 2>&1 || [ -x /usr/bin/turnserver ] || {
  echo "install-system-deps: coturn installed but turnserver is not on PATH" >&2
  exit 1
}
