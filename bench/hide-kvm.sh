#!/bin/sh
# Runs a command in a private mount namespace whose /dev lacks /dev/kvm.
# danobi/vmtest uses KVM whenever /dev/kvm exists; on a host where KVM
# cannot run a guest (bench/run.py's machines), it hangs. Needs root.
# Usage: bench/hide-kvm.sh COMMAND [ARGS...]
exec unshare -m sh -c '
    dev=$(mktemp -d)
    mount -t tmpfs -o mode=0755 tmpfs "$dev"
    for node in null zero full random urandom tty ptmx; do
        touch "$dev/$node" && mount --bind "/dev/$node" "$dev/$node"
    done
    for dir in pts shm; do mkdir "$dev/$dir" && mount --bind "/dev/$dir" "$dev/$dir"; done
    ln -s /proc/self/fd "$dev/fd"
    ln -s fd/0 "$dev/stdin"; ln -s fd/1 "$dev/stdout"; ln -s fd/2 "$dev/stderr"
    mount --move "$dev" /dev
    rmdir "$dev"
    exec "$@"' sh "$@"
