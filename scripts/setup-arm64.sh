#!/usr/bin/env bash
# Prepare this x86-64 Debian machine for aarch64 guests (`vmtest --arch
# aarch64`), emulated by QEMU:
#   1. install qemu-system-arm (which has qemu-system-aarch64), the aarch64
#      cross linker and static libc (gcc-aarch64-linux-gnu,
#      libc6-dev-arm64-cross), and rustup's aarch64-unknown-linux-gnu
#      standard library, only what is missing;
#   2. fetch the newest Debian arm64 kernels of 6.1 and 6.12 (image and
#      modules) into kernels/arm64/debian-<series>, linked as
#      kernels/arm64/vmlinuz-<series>;
#   3. make a small arm64 root, kernels/arm64/root: Debian's arm64 libc6,
#      libgcc, bash, coreutils and their libraries, unpacked (nothing in it
#      is run on the host: no binfmt is needed);
#   4. build vmtest statically for aarch64, kernels/arm64/vmtest: aarch64
#      guests run it as their test server (VMTEST_GUEST_AARCH64 names it).
#
# Idempotent. Adds arm64 to dpkg's foreign architectures.
#
# Usage: scripts/setup-arm64.sh
#
# Then, for example:
#   export VMTEST_GUEST_AARCH64=$PWD/kernels/arm64/vmtest
#   vmtest --arch aarch64 -k kernels/arm64/vmlinuz-6.12 -r kernels/arm64/root uname -m
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd -P)
DEST=${VMTEST_KERNELS_DIR:-$REPO_ROOT/kernels}/arm64
SERIES="6.1 6.12"
# The arm64 root: enough for bash -c and coreutils, and for Rust test
# binaries (libc, libgcc_s).
ROOT_PACKAGES=(libc6 libgcc-s1 gcc-12-base bash libtinfo6 coreutils libacl1 libattr1
    libselinux1 libpcre2-8-0 libgmp10)

log()  { printf '==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die()  { printf 'setup-arm64.sh: error: %s\n' "$*" >&2; exit 1; }

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

[[ $(uname -m) == x86_64 ]] || die "this prepares x86_64 hosts for aarch64 guests; on an aarch64 host, guests are native: install qemu-system-arm and qemu-efi-aarch64, and give arm64 kernels"

CLEANUP=()
cleanup() { local p; for p in "${CLEANUP[@]}"; do rm -rf -- "$p"; done; }
trap cleanup EXIT

# ---------------------------------------------------------------------------
log "Host packages and the aarch64 Rust target"
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    as_root dpkg --add-architecture arm64
    UPDATED=0
fi
missing=()
command -v qemu-system-aarch64 >/dev/null 2>&1 || missing+=(qemu-system-arm)
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || missing+=(gcc-aarch64-linux-gnu)
[[ -e /usr/aarch64-linux-gnu/lib/libc.a ]] || missing+=(libc6-dev-arm64-cross)
if [[ ${#missing[@]} -gt 0 || ${UPDATED-1} -eq 0 ]]; then
    as_root apt-get update -qq
fi
if [[ ${#missing[@]} -gt 0 ]]; then
    info "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    info "qemu-system-arm, gcc-aarch64-linux-gnu, libc6-dev-arm64-cross: already installed"
fi
if ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
    rustup target add aarch64-unknown-linux-gnu
fi

mkdir -p -- "$DEST"
DEST=$(cd -- "$DEST" && pwd -P)

# apt_download PACKAGE DIR: downloads PACKAGE:arm64's candidate into DIR;
# prints the .deb's path.
apt_download() {
    local dir=$2
    # apt's download sandbox user must be able to write there.
    if [[ $(id -u) -eq 0 ]] && id _apt >/dev/null 2>&1; then chown _apt "$dir"; fi
    (cd "$dir" && apt-get download -q "$1:arm64" >/dev/null 2>&1) ||
        die "apt-get download $1:arm64 failed (is this Debian, with arm64 packages in its sources?)"
    find "$dir" -maxdepth 1 -name "${1}_*_arm64.deb" | head -n1
}

# ---------------------------------------------------------------------------
for series in $SERIES; do
    log "Debian arm64 kernel $series"
    pkg=$(apt-cache pkgnames linux-image- |
        grep -E "^linux-image-${series//./\\.}(\.0-[0-9]+|\.[0-9]+\+deb[0-9]+)-arm64\$" |
        sort -V | tail -n1 || true)
    [[ -n $pkg ]] || die "no arm64 linux-image package of series $series through apt"
    version=$(apt-cache policy "$pkg:arm64" | awk '/Candidate:/ {print $2}')
    release=${pkg#linux-image-}
    dest=$DEST/debian-$series
    if [[ -f $dest/.package && $(<"$dest/.package") == "$pkg $version" ]]; then
        info "$pkg $version: already extracted"
    else
        dl=$(mktemp -d "$DEST/.download.XXXXXX")
        CLEANUP+=("$dl")
        info "downloading $pkg=$version"
        deb=$(apt_download "$pkg" "$dl")
        tmp=$DEST/.debian-$series.tmp
        rm -rf -- "$tmp"
        CLEANUP+=("$tmp")
        dpkg-deb -x "$deb" "$tmp"
        [[ -f $tmp/boot/vmlinuz-$release ]] || die "$pkg has no boot/vmlinuz-$release"
        printf '%s\n' "$pkg $version" >"$tmp/.package"
        rm -rf -- "$dest"
        mv -- "$tmp" "$dest"
    fi
    ln -sfn -- "debian-$series/boot/vmlinuz-$release" "$DEST/vmlinuz-$series"
done

# ---------------------------------------------------------------------------
log "arm64 root (${ROOT_PACKAGES[*]})"
stamp=$(for p in "${ROOT_PACKAGES[@]}"; do
    printf '%s=%s ' "$p" "$(apt-cache policy "$p:arm64" | awk '/Candidate:/ {print $2}')"
done)
if [[ -f $DEST/root/.packages && $(<"$DEST/root/.packages") == "$stamp" ]]; then
    info "already made"
else
    dl=$(mktemp -d "$DEST/.download.XXXXXX")
    CLEANUP+=("$dl")
    tmp=$DEST/.root.tmp
    rm -rf -- "$tmp"
    CLEANUP+=("$tmp")
    mkdir -p -- "$tmp"
    for p in "${ROOT_PACKAGES[@]}"; do
        dpkg-deb -x "$(apt_download "$p" "$dl")" "$tmp"
    done
    # Mount points the guest init uses, and `sh` for `bash -c`'s children.
    mkdir -p -- "$tmp"/{proc,sys,dev,tmp,run,mnt,var/tmp}
    [[ -e $tmp/bin/sh || -L $tmp/bin/sh ]] || ln -s bash "$tmp/bin/sh"
    printf '%s\n' "$stamp" >"$tmp/.packages"
    rm -rf -- "$DEST/root"
    mv -- "$tmp" "$DEST/root"
fi

# ---------------------------------------------------------------------------
log "vmtest for aarch64, static (the aarch64 guests' server)"
target_dir=$REPO_ROOT/target/aarch64
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --quiet --manifest-path "$REPO_ROOT/Cargo.toml" -p vmtest-cli \
    --no-default-features --target aarch64-unknown-linux-gnu --target-dir "$target_dir"
built=$target_dir/aarch64-unknown-linux-gnu/debug/vmtest
install -m 0755 -- "$built" "$DEST/vmtest.tmp"
mv -f -- "$DEST/vmtest.tmp" "$DEST/vmtest"

log "Done"
info "kernels: $(cd "$DEST" && ls -d vmlinuz-* | tr '\n' ' ')"
info "root:    $DEST/root"
info "server:  $DEST/vmtest"
info "export VMTEST_GUEST_AARCH64=$DEST/vmtest"
