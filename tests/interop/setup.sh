#!/usr/bin/env bash
# Installs what the interop tests need on a Debian machine: Chromium (from
# Debian) and the node packages pinned in node/package-lock.json. Safe to run
# again; prints nothing when everything is already in place.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		echo "setup.sh: need root (or sudo) to run: $*" >&2
		exit 1
	fi
}

apt_updated=
apt_install() {
	if [ -z "$apt_updated" ]; then
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
		apt_updated=1
	fi
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	echo "setup.sh: installing nodejs and npm" >&2
	apt_install nodejs npm
fi

if [ ! -x /usr/bin/chromium ]; then
	echo "setup.sh: installing chromium" >&2
	apt_install chromium
fi

# npm ci wipes and reinstalls node_modules, so run it only when the lock file
# changed since the last install. Never let any package fetch a browser of its
# own: the tests use Debian's.
lock="$here/node/package-lock.json"
stamp="$here/node/node_modules/.installed-lock"
if [ ! -f "$stamp" ] || ! cmp -s "$lock" "$stamp"; then
	(
		cd "$here/node"
		PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null
	)
	cp "$lock" "$stamp"
fi
