#!/bin/sh
# Builds the root file system of the real-server test image from Debian's archive alone:
# Debian bookworm with apache2 and nginx as Debian packages them, and the tools the tests use
# inside the containers (curl for the client request, procps, libcap2-bin).
# Usage: debian-servers.sh OUT.tar        (needs mmdebstrap; `cargo xtask setup` installs it)
# The tests cache OUT.tar by a hash of this file and debian-servers-customize.sh.
set -eu
out=${1:?usage: debian-servers.sh OUT.tar}
here=$(cd "$(dirname "$0")" && pwd)
# --skip=cleanup/run keeps the /run directories the customize hook makes (mmdebstrap empties
# /run otherwise); documentation, manuals and translations are not installed.
exec mmdebstrap --variant=apt --format=tar --quiet \
    --include=apache2,nginx,curl,procps,libcap2-bin \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook="sh '$here/debian-servers-customize.sh' \"\$1\"" \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    --skip=cleanup/run \
    bookworm "$out" \
    "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main"
