#!/bin/sh
# Builds the busybox image the container tests and the demo use, without a registry:
# a busybox-static root with a user, a group, and a file only `nobody` may read.
# Usage: build.sh IMAGE_NAME       build and import it into podman
#        build.sh --rootfs OUT.tar write the root file system as a tarball (for `docker import`)
set -eu
image=${1:?usage: build.sh IMAGE_NAME | --rootfs OUT.tar}
busybox=$(command -v busybox || true)
[ -n "$busybox" ] || { echo "busybox-static is not installed (run cargo xtask setup)" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
root=$dir/root
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/proc" "$root/sys" "$root/dev" "$root/root"
cp "$busybox" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
printf 'top secret\n' > "$root/secret"
chmod 600 "$root/secret"
chown 65534:65534 "$root/secret"
chmod 1777 "$root/tmp"
if [ "$image" = --rootfs ]; then
    out=${2:?usage: build.sh --rootfs OUT.tar}
    tar -C "$root" -cf "$out" .
    exit 0
fi
tar -C "$root" -cf "$dir/root.tar" .
podman import --change ENV=PATH=/bin "$dir/root.tar" "$image" > /dev/null
