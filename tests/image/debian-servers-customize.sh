#!/bin/sh
# mmdebstrap customize hook for the real-server test image: what a booted Debian would have
# made before the servers start (there is no systemd in a container).  Usage: ROOT
set -eu
root=${1:?usage: debian-servers-customize.sh ROOT}
# systemd-tmpfiles' directories (its 'd' and 'D' lines).
cat "$root"/usr/lib/tmpfiles.d/*.conf | while read -r type path mode user group _; do
    case "$type" in d | D) ;; *) continue ;; esac
    chroot "$root" sh -c "mkdir -p '$path' && chmod '$mode' '$path' && chown '$user:$group' '$path'"
done
# What apache2ctl would create at start (it runs as root; the image's servers start directly).
chroot "$root" sh -c '
    set -eu
    mkdir -p /run/apache2/socks /run/lock/apache2
    chown www-data /run/apache2/socks /run/lock/apache2
    mkdir -p /var/www/html
    echo "cap-trace test page" > /var/www/html/index.html
'
