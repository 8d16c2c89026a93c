#!/usr/bin/env bash
# System packages besides Python, only for the targets that need them:
#   java      Java 17, for TorchServe (make serve, make demo, make test)
#   chromium  Debian's chromium, for the browser tests (make test)
# Installs what is missing with apt-get when run as root; otherwise says what to install.
# Usage: tools/install_system_deps.sh [java] [chromium]   (no argument: both)
set -euo pipefail
wanted=("$@")
[ ${#wanted[@]} -eq 0 ] && wanted=(java chromium)
missing=()
for name in "${wanted[@]}"; do
  case "$name" in
    java) command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless) ;;
    chromium) [ -x /usr/bin/chromium ] || missing+=(chromium) ;;
    *) echo "install_system_deps.sh: unknown package '$name' (java or chromium)" >&2; exit 2 ;;
  esac
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "Please install these Debian packages (as root): apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "Installing ${missing[*]} with apt-get"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
