#!/bin/sh
# Installs those of the named Debian packages that are missing (as root, or with sudo).
set -eu
missing=$(for p in "$@"; do dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || echo "$p"; done)
[ -z "$missing" ] && exit 0
echo "Installing Debian packages:" $missing
sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
$sudo apt-get update -q
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q $missing
