#!/usr/bin/env bash
# Installs the system packages umd builds and runs with (Debian/Ubuntu).
# Idempotent: does nothing when every package is already installed.
set -euo pipefail
packages=(libopenmpi-dev openmpi-bin libopenblas-dev libdnnl-dev libzstd-dev libpng-dev libjpeg62-turbo-dev pkg-config)
# --test-tools: also what some tests use when present (headless chromium opens eval's HTML
# report); CI passes it, a user's machine does not need it.
if [ "${1:-}" = "--test-tools" ]; then packages+=(chromium); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all system packages present (${packages[*]})"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
if ! command -v apt-get >/dev/null; then
  echo "install-deps: apt-get not found; install these packages with your system's package manager: ${missing[*]}" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
