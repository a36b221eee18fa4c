#!/usr/bin/env bash
# Build a Debian 12 disk image that runs qemu-guest-agent, for vmtest's
# disk-image targets (`image = "..."` in a vmtest.toml) and their tests. No
# loop mounts and no mounting of any kind.
#
# amd64 (the default; boots with BIOS or UEFI):
#   1. mmdebstrap installs a minimal system (systemd, the generic kernel and
#      its initramfs, qemu-guest-agent) into a directory;
#   2. mkfs.ext4 -d makes the root file system from that directory;
#   3. a FAT partition gets the kernel and initramfs twice over: with
#      syslinux (installed through mtools) for BIOS, and as a unified kernel
#      image at EFI/BOOT/BOOTX64.EFI (systemd's EFI stub) for UEFI;
#   4. sfdisk lays out an MBR disk; dd places syslinux's MBR code and both
#      file systems; qemu-img makes it qcow2.
#
# arm64 (--arch arm64; boots with UEFI, e.g. qemu-system-aarch64 -M virt with
# qemu-efi-aarch64's QEMU_EFI.fd). Built on any host without running a single
# arm64 program (no binfmt, no qemu-user, no chroot):
#   1. apt resolves the root's arm64 packages (qemu-guest-agent, bash, dash,
#      coreutils, util-linux, kmod, busybox-static, ...) and everything they
#      depend on, against an empty package status; they are downloaded with
#      `apt-get download` and unpacked with `dpkg-deb -x`, with the newest
#      linux-image-6.1.*-arm64; no maintainer script runs, so the script
#      writes what they would have (/etc/passwd, /var/run, modules.dep by the
#      host's depmod) and checks with readelf that every program's libraries
#      are there;
#   2. the root's /sbin/init is a bash script of ours (no systemd): it mounts
#      /proc, /sys, /dev (devtmpfs), /run, /tmp, loads virtio_console and 9p,
#      links /dev/virtio-ports/<name> (what udev would do) and keeps qemu-ga
#      running on org.qemu.guest_agent.0;
#   3. Debian's arm64 kernel has virtio_pci, virtio_blk and ext4 as modules:
#      a small initramfs (busybox-static, those modules in the order the
#      host's `modprobe --show-depends` gives) mounts /dev/vda2 and
#      switch_roots to it;
#   4. the FAT partition has only the unified kernel image (systemd's arm64
#      EFI stub, sections added by aarch64-linux-gnu-objcopy) at
#      EFI/BOOT/BOOTAA64.EFI; the disk is laid out as for amd64, without
#      syslinux.
#
# Usage: scripts/build-image.sh [--arch amd64|arm64] [OUTPUT.qcow2]
#   default output: kernels/debian-12.qcow2 (amd64),
#                   kernels/arm64/debian-12.qcow2 (arm64),
#                   under $VMTEST_KERNELS_DIR rather than kernels/ if set
# Needs root (mmdebstrap installs the packages as root; the unpacked arm64
# root must be owned by root) and, installed where missing:
#   both:  mtools dosfstools e2fsprogs fdisk qemu-utils
#   amd64: mmdebstrap syslinux syslinux-common systemd-boot-efi binutils ovmf
#   arm64: binutils-aarch64-linux-gnu kmod cpio qemu-efi-aarch64, and arm64
#          as a dpkg foreign architecture (added, as scripts/setup-arm64.sh
#          does)
# Takes a few minutes (arm64: under a minute); a second run with the same
# output reuses it (OUTPUT.recipe records the recipe it was built with).
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
# Where scripts/setup.sh puts the kernels, and the tests look.
KERNELS_DIR=${VMTEST_KERNELS_DIR:-$SCRIPT_DIR/../kernels}
SUITE=bookworm
ESP_MIB=96

log() { printf '==> %s\n' "$*"; }
die() { printf 'build-image.sh: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n 's/^# \{0,1\}//; /^Usage:/,/^ *under/p' "${BASH_SOURCE[0]}"; }

ARCH=amd64
OUTPUT=
while [[ $# -gt 0 ]]; do
    case $1 in
        --arch) [[ $# -ge 2 ]] || die "--arch needs a value: amd64 or arm64"; ARCH=$2; shift 2 ;;
        --arch=*) ARCH=${1#--arch=}; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; [[ $# -le 1 ]] || die "one output at most"; OUTPUT=${1-}; shift $# ;;
        -*) die "unknown option $1 (usage: scripts/build-image.sh [--arch amd64|arm64] [OUTPUT.qcow2])" ;;
        *) [[ -z $OUTPUT ]] || die "one output at most"; OUTPUT=$1; shift ;;
    esac
done

case $ARCH in
    amd64|x86_64)
        ARCH=amd64
        OUTPUT=${OUTPUT:-$KERNELS_DIR/debian-12.qcow2}
        # Bump when the recipe changes the image.
        RECIPE=1
        PACKAGES=systemd,systemd-sysv,udev,linux-image-amd64,initramfs-tools,qemu-guest-agent,kmod,procps
        EFI_NAME=BOOTX64.EFI
        ;;
    arm64|aarch64)
        ARCH=arm64
        OUTPUT=${OUTPUT:-$KERNELS_DIR/arm64/debian-12.qcow2}
        # Bump the number when the recipe changes the image.
        RECIPE=arm64-1
        # The root's packages; apt adds what they depend on. usr-is-merged
        # stands for usrmerge (which would bring perl) in init-system-helpers'
        # "usrmerge | usr-is-merged"; the root is unmerged, like the packages.
        ROOT_PACKAGES=(base-files base-passwd usr-is-merged bash dash coreutils diffutils
            findutils grep gzip sed tar mawk hostname libc-bin procps util-linux mount
            kmod busybox-static qemu-guest-agent)
        # The kernel: the newest Debian 12 (6.1) generic arm64 one.
        KERNEL_SERIES=6.1
        # The modules the initramfs loads to mount the root (with what they
        # depend on), and those the root's init loads for the agent and 9p.
        INITRAMFS_MODULES=(virtio_pci virtio_blk ext4)
        ROOT_MODULES=(virtio_console 9p 9pnet_virtio)
        EFI_NAME=BOOTAA64.EFI
        ;;
    *) die "unknown architecture $ARCH: amd64 or arm64" ;;
esac

[[ $(id -u) -eq 0 ]] || die "run as root: the root file system's files must be owned by root (amd64: mmdebstrap installs the packages as root)"
if [[ -f $OUTPUT && -f $OUTPUT.recipe && $(<"$OUTPUT.recipe") == "$RECIPE" ]]; then
    log "$OUTPUT is up to date"
    exit 0
fi

# ensure_installed WHAT:PACKAGE...: installs each PACKAGE whose WHAT (a
# command, or an absolute path) is missing.
ensure_installed() {
    local item what need=()
    for item; do
        what=${item%%:*}
        if [[ $what == /* ]]; then
            [[ -e $what ]] || need+=("${item#*:}")
        else
            command -v "$what" >/dev/null 2>&1 || need+=("${item#*:}")
        fi
    done
    if [[ ${#need[@]} -gt 0 ]]; then
        log "Installing: ${need[*]}"
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
            || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; } \
            || die "cannot install ${need[*]}"
    fi
}

tools=(mcopy:mtools mkfs.vfat:dosfstools mkfs.ext4:e2fsprogs sfdisk:fdisk qemu-img:qemu-utils)
if [[ $ARCH == amd64 ]]; then
    OBJCOPY=objcopy
    tools+=(mmdebstrap:mmdebstrap syslinux:syslinux objcopy:binutils
        /usr/lib/syslinux/mbr/mbr.bin:syslinux-common
        /usr/lib/systemd/boot/efi/linuxx64.efi.stub:systemd-boot-efi
        /usr/share/ovmf/OVMF.fd:ovmf)
else
    OBJCOPY=aarch64-linux-gnu-objcopy
    tools+=(aarch64-linux-gnu-objcopy:binutils-aarch64-linux-gnu depmod:kmod cpio:cpio
        /usr/share/qemu-efi-aarch64/QEMU_EFI.fd:qemu-efi-aarch64)
    if [[ $(dpkg --print-architecture) != arm64 ]] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
        log "Adding arm64 to dpkg's foreign architectures"
        dpkg --add-architecture arm64
        apt-get update -qq || die "apt-get update failed"
    fi
fi
ensure_installed "${tools[@]}"

work=$(mktemp -d "${TMPDIR:-/tmp}/vmtest-image.XXXXXX")
trap 'rm -rf -- "$work"' EXIT
root=$work/root

# ---------------------------------------------------------------------------
# amd64: mmdebstrap, and the kernel and initramfs Debian made.

build_root_amd64() {
    log "Installing Debian $SUITE into $root"
    mmdebstrap --variant=minbase --include="$PACKAGES" \
        --customize-hook='echo vmtest-image > "$1/etc/hostname"' \
        --customize-hook='printf "/dev/vda2 / ext4 errors=remount-ro 0 1\n" > "$1/etc/fstab"' \
        --customize-hook='chroot "$1" passwd -d root' \
        "$SUITE" "$root" >"$work/mmdebstrap.log" 2>&1 \
        || { tail -n 30 "$work/mmdebstrap.log" >&2; die "mmdebstrap failed"; }

    kernel=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -n1)
    initrd=$(ls "$root"/boot/initrd.img-* | sort -V | tail -n1)
    [[ -f $kernel && -f $initrd ]] || die "the image has no kernel or initramfs in /boot"
    stub=/usr/lib/systemd/boot/efi/linuxx64.efi.stub
    cmdline="root=/dev/vda2 ro console=ttyS0 panic=-1"
}

# ---------------------------------------------------------------------------
# arm64: unpacked packages, and an init and initramfs of ours.

# apt, for arm64 packages only (whatever the host's architecture), with the
# package cache built in memory rather than over the host's.
APT_ARM64=(-o APT::Architecture=arm64 -o APT::Architectures::=arm64
    -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=)

# fetch_arm64: resolves and downloads the root's packages, the kernel and
# systemd-boot-efi into $work/debs; sets kernel_pkg. Returns 1 on failure
# (stale package lists, say), having said why.
fetch_arm64() {
    kernel_pkg=$(apt-cache "${APT_ARM64[@]}" pkgnames linux-image- |
        grep -E "^linux-image-${KERNEL_SERIES//./\\.}(\.0-[0-9]+|\.[0-9]+\+deb[0-9]+)-arm64\$" |
        sort -V | tail -n1) || true
    if [[ -z $kernel_pkg ]]; then
        echo "no arm64 linux-image-$KERNEL_SERIES.* package through apt" >&2
        return 1
    fi
    # What installing the root's packages on an empty arm64 system would
    # install: the packages and their dependencies, with their versions.
    : >"$work/status"
    if ! apt-get -s -q "${APT_ARM64[@]}" -o Dir::State::status="$work/status" \
            -o APT::Install-Recommends=false -o APT::Install-Suggests=false \
            install "${ROOT_PACKAGES[@]}" >"$work/resolve.log" 2>&1; then
        tail -n 20 "$work/resolve.log" >&2
        return 1
    fi
    awk '$1 == "Inst" { sub(/^\(/, "", $3); print $2 "=" $3 }' "$work/resolve.log" >"$work/packages"
    [[ -s $work/packages ]] || { echo "apt resolved no packages" >&2; return 1; }
    rm -rf -- "$work/debs"
    mkdir -p -- "$work/debs"
    # The root's packages at the versions resolved; the kernel and the EFI
    # stub without their dependencies. As root, unsandboxed: the work
    # directory is private.
    if ! (cd "$work/debs" && apt-get download -q "${APT_ARM64[@]}" -o APT::Sandbox::User=root \
            $(<"$work/packages") "$kernel_pkg" systemd-boot-efi) >"$work/download.log" 2>&1; then
        tail -n 20 "$work/download.log" >&2
        return 1
    fi
}

# check_libraries DIR: every ELF program and library of DIR's usual places
# finds the libraries it needs (readelf -d's NEEDED) where the dynamic
# loader looks without an ld.so.cache (none is made: ldconfig is an arm64
# program).
check_libraries() {
    local dir=$1 file lib d found missing=()
    local libdirs=(lib/aarch64-linux-gnu usr/lib/aarch64-linux-gnu lib usr/lib)
    while IFS= read -r -d '' file; do
        [[ $(head -c4 -- "$file" 2>/dev/null) == $'\x7fELF' ]] || continue
        while IFS= read -r lib; do
            found=
            for d in "${libdirs[@]}"; do
                [[ -e $dir/$d/$lib ]] && { found=1; break; }
            done
            [[ -n $found ]] || missing+=("${file#"$dir"/} needs $lib")
        done < <(aarch64-linux-gnu-readelf -d -- "$file" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p')
    done < <(find "$dir"/{bin,sbin,usr/bin,usr/sbin,usr/libexec} "$dir"/{lib,usr/lib}/aarch64-linux-gnu \
                -maxdepth 1 -type f -print0 2>/dev/null)
    [[ ${#missing[@]} -eq 0 ]] || die "unmet library dependencies in the root: ${missing[*]}"
}

build_root_arm64() {
    log "Downloading the arm64 packages (${ROOT_PACKAGES[*]} and their dependencies; the kernel; systemd-boot-efi)"
    if ! fetch_arm64; then
        log "Updating apt's package lists and trying again"
        apt-get update -qq || die "apt-get update failed"
        fetch_arm64 || die "cannot download the arm64 packages (is arm64 in apt's sources?)"
    fi
    release=${kernel_pkg#linux-image-}
    log "Unpacking $(wc -l <"$work/packages") packages and $kernel_pkg into $root"
    mkdir -p -- "$root" "$work/stub"
    local deb
    for deb in "$work"/debs/*.deb; do
        case ${deb##*/} in
            systemd-boot-efi_*) dpkg-deb -x "$deb" "$work/stub" ;;
            *) dpkg-deb -x "$deb" "$root" ;;
        esac
    done
    stub=$work/stub/usr/lib/systemd/boot/efi/linuxaa64.efi.stub
    [[ -f $stub ]] || die "systemd-boot-efi:arm64 has no linuxaa64.efi.stub"
    [[ -f $root/boot/vmlinuz-$release ]] || die "$kernel_pkg has no boot/vmlinuz-$release"
    # The arm64 Image, uncompressed (Debian's is; some are gzip'ed), is a PE
    # program itself (the kernel's EFI stub), which systemd's stub loads.
    kernel=$work/Image
    if [[ $(head -c2 -- "$root/boot/vmlinuz-$release" | od -An -tx1 | tr -d ' ') == 1f8b ]]; then
        gzip -dc -- "$root/boot/vmlinuz-$release" >"$kernel"
    else
        cp -- "$root/boot/vmlinuz-$release" "$kernel"
    fi
    [[ $(head -c2 -- "$kernel") == MZ && $(dd if="$kernel" bs=1 skip=56 count=4 status=none) == $'ARM\x64' ]] \
        || die "boot/vmlinuz-$release is not an arm64 Image with an EFI stub"

    log "Configuring the root (what maintainer scripts would have done)"
    (
        cd -- "$root"
        mkdir -p proc sys dev run tmp mnt root var/tmp
        chmod 1777 tmp var/tmp
        chmod 0700 root
        # base-files' postinst makes these links; /run is a tmpfs.
        rm -rf var/run var/lock
        ln -s /run var/run
        ln -s /run/lock var/lock
        ln -sfn ../proc/self/mounts etc/mtab
        # base-passwd's postinst copies these.
        [[ -e etc/passwd ]] || cp usr/share/base-passwd/passwd.master etc/passwd
        [[ -e etc/group ]] || cp usr/share/base-passwd/group.master etc/group
        # No password for root, as in the amd64 image (there is no login).
        printf 'root::19000:0:99999:7:::\n' >etc/shadow
        chmod 0640 etc/shadow
        echo vmtest-image >etc/hostname
        printf '/dev/vda2 / ext4 errors=remount-ro 0 1\n' >etc/fstab
        [[ -e bin/sh || -L bin/sh ]] || ln -s dash bin/sh
        # The programs' links update-alternatives makes in the postinsts of
        # mawk, debianutils, util-linux and tar.
        local alt
        for alt in usr/bin/awk:/usr/bin/mawk usr/bin/nawk:/usr/bin/mawk \
                   usr/bin/which:/usr/bin/which.debianutils usr/bin/pager:/bin/more \
                   usr/sbin/rmt:/usr/sbin/rmt-tar; do
            if [[ -e .${alt#*:} && ! -e ${alt%%:*} ]]; then ln -s "${alt#*:}" "${alt%%:*}"; fi
        done
    )
    [[ -x $root/usr/sbin/qemu-ga && -e $root/bin/bash && -e $root/bin/mount && -e $root/sbin/modprobe ]] \
        || die "the root lacks qemu-ga, bash, mount or modprobe"
    check_libraries "$root"

    cat >"$root/sbin/init" <<'EOF'
#!/bin/bash
# PID 1 of vmtest's arm64 Debian image (scripts/build-image.sh). The image's
# packages were unpacked, not installed: no systemd, no udev. This mounts
# the API file systems, loads the modules the agent and 9p need, names the
# virtio-serial ports as udev would, and keeps qemu-guest-agent running.
# Waiting for it, bash reaps whatever else ends up a child of PID 1.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
# Few programs: under emulation, each one started costs a tenth of a second.
say() { echo "vmtest-init: $*"; }
[[ -e /proc/self/mounts ]] || mount -t proc -o nosuid,nodev,noexec proc /proc
mounts=$(</proc/self/mounts)
mnt() {
    [[ -d $2 ]] || mkdir -p "$2"
    [[ $mounts == *" $2 $1 "* ]] || mount -t "$1" -o "$3" "$1" "$2" || say "cannot mount $1 on $2"
}
mnt sysfs /sys nosuid,nodev,noexec
mnt devtmpfs /dev nosuid,mode=0755
mnt devpts /dev/pts nosuid,noexec,gid=5,mode=0620,ptmxmode=0666
mnt tmpfs /dev/shm nosuid,nodev,mode=1777
mnt tmpfs /run nosuid,nodev,mode=0755
mnt tmpfs /tmp nosuid,nodev,mode=1777
mkdir -p /run/lock
ln -sfn /proc/self/fd /dev/fd
ln -sfn /proc/self/fd/0 /dev/stdin
ln -sfn /proc/self/fd/1 /dev/stdout
ln -sfn /proc/self/fd/2 /dev/stderr
[[ $mounts == *" / ext4 rw"[,\ ]* ]] || mount -o remount,rw /
read -r hostname </etc/hostname && echo "$hostname" >/proc/sys/kernel/hostname
modprobe -a @ROOT_MODULES@ || say "cannot load some of @ROOT_MODULES@"

# /dev/virtio-ports/NAME -> ../vportNpM, for each named port.
link_ports() {
    local port name
    [[ -d /dev/virtio-ports ]] || mkdir -p /dev/virtio-ports
    for port in /sys/class/virtio-ports/*; do
        read -r name 2>/dev/null <"$port/name" || continue
        [[ -n $name && $name != */* && -e /dev/${port##*/} ]] || continue
        [[ -L /dev/virtio-ports/$name ]] || ln -sfn "../${port##*/}" "/dev/virtio-ports/$name"
    done
}
agent=/dev/virtio-ports/org.qemu.guest_agent.0
for (( i = 0; i < 100; i++ )); do
    link_ports
    [[ -e $agent ]] && break
    sleep 0.1
done
say "starting qemu-ga on $agent"
while :; do
    link_ports
    if [[ -e $agent ]]; then
        qemu-ga -m virtio-serial -p "$agent"
        say "qemu-ga exited with status $?; starting it again"
    fi
    sleep 1
done
EOF
    sed -i "s/@ROOT_MODULES@/${ROOT_MODULES[*]}/g" "$root/sbin/init"
    chmod 0755 "$root/sbin/init"

    log "Indexing the modules of $release (depmod)"
    depmod -b "$root" "$release"

    log "Making the initramfs (busybox-static; ${INITRAMFS_MODULES[*]} and what they need)"
    local ird=$work/initramfs module name
    mkdir -p -- "$ird"/{bin,dev,proc,sys,newroot,lib/modules}
    cp -- "$root/bin/busybox" "$ird/bin/busybox"
    mknod -m 0600 "$ird/dev/console" c 5 1
    # The modules in load order, dependencies and soft dependencies first
    # (the host's modprobe reads the arm64 modules' index; loads nothing).
    modprobe -d "$root" -S "$release" --show-depends -a "${INITRAMFS_MODULES[@]}" >"$work/initramfs.modules" \
        || die "modprobe --show-depends ${INITRAMFS_MODULES[*]} failed for $release"
    : >"$ird/modules"
    while read -r module; do
        name=${module##*/}
        case $name in
            *.ko) cp -- "$module" "$ird/lib/modules/$name" ;;
            *.ko.xz) name=${name%.xz}; xz -dc -- "$module" >"$ird/lib/modules/$name" ;;
            *.ko.zst) name=${name%.zst}; zstd -qdc -- "$module" >"$ird/lib/modules/$name" ;;
            *.ko.gz) name=${name%.gz}; gzip -dc -- "$module" >"$ird/lib/modules/$name" ;;
            *) die "unknown module file $module" ;;
        esac
        printf '%s\n' "$name" >>"$ird/modules"
    done < <(awk '$1 == "insmod" && !seen[$2]++ { print $2 }' "$work/initramfs.modules")
    cat >"$ird/init" <<'EOF'
#!/bin/busybox sh
# The initramfs of vmtest's arm64 Debian image (scripts/build-image.sh): loads
# the modules the root file system needs, mounts it, switches to it. On
# failure this init ends: the kernel panics (and panic=-1 reboots).
/bin/busybox mkdir -p /proc /sys /dev /newroot
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
export PATH=/bin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() { echo "initramfs: $*"; exit 1; }
while read -r module; do
    insmod "/lib/modules/$module" || echo "initramfs: cannot load $module"
done </modules
root=/dev/vda2 fstype=ext4 mode=rw
for arg in $(cat /proc/cmdline); do
    case $arg in
        root=*) root=${arg#root=} ;;
        rootfstype=*) fstype=${arg#rootfstype=} ;;
        ro|rw) mode=$arg ;;
    esac
done
i=0
while [ ! -b "$root" ]; do
    i=$((i + 1))
    [ $i -le 300 ] || fail "no $root after 30 s"
    usleep 100000
done
mount -t "$fstype" -o "$mode" "$root" /newroot || fail "cannot mount $root"
[ -x /newroot/sbin/init ] || fail "$root has no /sbin/init"
mount --move /dev /newroot/dev
mount --move /sys /newroot/sys
mount --move /proc /newroot/proc
exec switch_root /newroot /sbin/init
EOF
    chmod 0755 "$ird/init"
    initrd=$work/initrd.img
    (cd -- "$ird" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet) |
        gzip -9n >"$initrd"
    cmdline="root=/dev/vda2 rw console=ttyAMA0 panic=-1"
}

# ---------------------------------------------------------------------------
# Shared: the UKI, the file systems, the disk.

# make_uki OUT: a unified kernel image: $stub with the os-release, $cmdline,
# $kernel and $initrd as sections, placed past the stub's own sections (the
# initramfs on the next 16 MiB boundary past the kernel).
make_uki() {
    local out=$1 idx name size vma rest end stub_end=0
    while read -r idx name size vma rest; do
        [[ $idx =~ ^[0-9]+$ ]] || continue
        end=$(( 0x$vma + 0x$size ))
        if (( end > stub_end )); then stub_end=$end; fi
    done < <("${OBJCOPY%objcopy}objdump" -h "$stub")
    (( stub_end > 0 && stub_end <= 0x20000 )) \
        || die "$stub's sections end at $(printf '%#x' "$stub_end"), past where the UKI's begin (0x20000)"
    local linux_vma=$(( 0x2000000 ))
    local initrd_vma=$(( (linux_vma + $(stat -c %s -- "$kernel") + 0xffffff) & ~0xffffff ))
    printf '%s\n' "$cmdline" > "$work/cmdline"
    "$OBJCOPY" \
        --add-section .osrel="$root/usr/lib/os-release" --change-section-vma .osrel=0x20000 \
        --add-section .cmdline="$work/cmdline" --change-section-vma .cmdline=0x30000 \
        --add-section .linux="$kernel" --change-section-vma .linux="$(printf '%#x' "$linux_vma")" \
        --add-section .initrd="$initrd" --change-section-vma .initrd="$(printf '%#x' "$initrd_vma")" \
        "$stub" "$out"
}

"build_root_$ARCH"

log "Making the root file system"
root_mib=$(( $(du -sm "$root" | cut -f1) + 400 ))
mkfs.ext4 -q -L root -d "$root" "$work/root.img" "${root_mib}M" >/dev/null

if [[ $ARCH == amd64 ]]; then
    log "Making the boot partition (syslinux for BIOS, a unified kernel image for UEFI)"
else
    log "Making the boot partition (a unified kernel image for UEFI)"
fi
# 2048 hidden sectors: where the partition starts, which syslinux's boot
# sector needs to find itself.
mkfs.vfat -C -h 2048 -n BOOT "$work/esp.img" $(( ESP_MIB * 1024 )) >/dev/null
make_uki "$work/$EFI_NAME"
export MTOOLS_SKIP_CHECK=1
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT
mcopy -i "$work/esp.img" "$work/$EFI_NAME" "::/EFI/BOOT/$EFI_NAME"
if [[ $ARCH == amd64 ]]; then
    cat > "$work/syslinux.cfg" <<EOF
DEFAULT debian
TIMEOUT 0
PROMPT 0
LABEL debian
    LINUX /vmlinuz
    INITRD /initrd.img
    APPEND $cmdline
EOF
    mcopy -i "$work/esp.img" "$kernel" ::/vmlinuz
    mcopy -i "$work/esp.img" "$initrd" ::/initrd.img
    mcopy -i "$work/esp.img" "$work/syslinux.cfg" ::/syslinux.cfg
    syslinux --install "$work/esp.img"
fi

log "Assembling the disk"
disk=$work/disk.raw
esp_start=2048
root_start=$(( esp_start + ESP_MIB * 2048 ))
truncate -s $(( (root_start / 2048 + root_mib + 1) ))M "$disk"
sfdisk -q "$disk" <<EOF
label: dos
start=$esp_start, size=$(( ESP_MIB * 2048 )), type=ef, bootable
start=$root_start, type=83
EOF
if [[ $ARCH == amd64 ]]; then
    dd if=/usr/lib/syslinux/mbr/mbr.bin of="$disk" bs=440 count=1 conv=notrunc status=none
fi
dd if="$work/esp.img" of="$disk" bs=512 seek=$esp_start conv=notrunc,sparse status=none
dd if="$work/root.img" of="$disk" bs=512 seek=$root_start conv=notrunc,sparse status=none

mkdir -p -- "$(dirname -- "$OUTPUT")"
qemu-img convert -O qcow2 "$disk" "$OUTPUT.tmp"
mv -- "$OUTPUT.tmp" "$OUTPUT"
printf '%s\n' "$RECIPE" > "$OUTPUT.recipe"
if [[ $ARCH == amd64 ]]; then
    log "Built $OUTPUT ($(du -h "$OUTPUT" | cut -f1)) from $(basename "$kernel")"
else
    log "Built $OUTPUT ($(du -h "$OUTPUT" | cut -f1)) from $kernel_pkg"
fi
