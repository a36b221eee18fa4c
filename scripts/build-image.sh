#!/usr/bin/env bash
# Build a Debian 12 disk image that boots with BIOS or UEFI and runs
# qemu-guest-agent, for vmtest's disk-image targets (`image = "..."` in a
# vmtest.toml) and their tests. No loop mounts and no mounting of any kind:
#
#   1. mmdebstrap installs a minimal system (systemd, the generic kernel and
#      its initramfs, qemu-guest-agent) into a directory;
#   2. mkfs.ext4 -d makes the root file system from that directory;
#   3. a FAT partition gets the kernel and initramfs twice over: with
#      syslinux (installed through mtools) for BIOS, and as a unified kernel
#      image at EFI/BOOT/BOOTX64.EFI (systemd's EFI stub) for UEFI;
#   4. sfdisk lays out an MBR disk; dd places syslinux's MBR code and both
#      file systems; qemu-img makes it qcow2.
#
# Usage: scripts/build-image.sh [OUTPUT.qcow2]   (default: kernels/debian-12.qcow2)
# Needs root (mmdebstrap installs packages as root) and, installed where
# missing: mmdebstrap syslinux syslinux-common mtools dosfstools
# systemd-boot-efi binutils e2fsprogs fdisk qemu-utils ovmf.
# Takes a few minutes; a second run with the same output reuses it.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
OUTPUT=${1:-$SCRIPT_DIR/../kernels/debian-12.qcow2}
SUITE=bookworm
# Bump when the recipe changes the image.
RECIPE=1
PACKAGES=systemd,systemd-sysv,udev,linux-image-amd64,initramfs-tools,qemu-guest-agent,kmod,procps
ESP_MIB=96

log() { printf '==> %s\n' "$*"; }
die() { printf 'build-image.sh: error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root: mmdebstrap installs the packages as root"
if [[ -f $OUTPUT && -f $OUTPUT.recipe && $(<"$OUTPUT.recipe") == "$RECIPE" ]]; then
    log "$OUTPUT is up to date"
    exit 0
fi

need=()
for tool in mmdebstrap:mmdebstrap syslinux:syslinux mcopy:mtools mkfs.vfat:dosfstools \
            objcopy:binutils mkfs.ext4:e2fsprogs sfdisk:fdisk qemu-img:qemu-utils; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool#*:}")
done
[[ -f /usr/lib/syslinux/mbr/mbr.bin ]] || need+=(syslinux-common)
[[ -f /usr/lib/systemd/boot/efi/linuxx64.efi.stub ]] || need+=(systemd-boot-efi)
[[ -f /usr/share/ovmf/OVMF.fd ]] || need+=(ovmf)
if [[ ${#need[@]} -gt 0 ]]; then
    log "Installing: ${need[*]}"
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; } \
        || die "cannot install ${need[*]}"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/vmtest-image.XXXXXX")
trap 'rm -rf -- "$work"' EXIT
root=$work/root

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
cmdline="root=/dev/vda2 ro console=ttyS0 panic=-1"

log "Making the root file system"
root_mib=$(( $(du -sm "$root" | cut -f1) + 400 ))
mkfs.ext4 -q -L root -d "$root" "$work/root.img" "${root_mib}M" >/dev/null

log "Making the boot partition (syslinux for BIOS, a unified kernel image for UEFI)"
# 2048 hidden sectors: where the partition starts, which syslinux's boot
# sector needs to find itself.
mkfs.vfat -C -h 2048 -n BOOT "$work/esp.img" $(( ESP_MIB * 1024 )) >/dev/null
printf '%s\n' "$cmdline" > "$work/cmdline"
objcopy \
    --add-section .osrel="$root/usr/lib/os-release" --change-section-vma .osrel=0x20000 \
    --add-section .cmdline="$work/cmdline" --change-section-vma .cmdline=0x30000 \
    --add-section .linux="$kernel" --change-section-vma .linux=0x2000000 \
    --add-section .initrd="$initrd" --change-section-vma .initrd=0x3000000 \
    /usr/lib/systemd/boot/efi/linuxx64.efi.stub "$work/BOOTX64.EFI"
cat > "$work/syslinux.cfg" <<EOF
DEFAULT debian
TIMEOUT 0
PROMPT 0
LABEL debian
    LINUX /vmlinuz
    INITRD /initrd.img
    APPEND $cmdline
EOF
export MTOOLS_SKIP_CHECK=1
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT
mcopy -i "$work/esp.img" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$work/esp.img" "$kernel" ::/vmlinuz
mcopy -i "$work/esp.img" "$initrd" ::/initrd.img
mcopy -i "$work/esp.img" "$work/syslinux.cfg" ::/syslinux.cfg
syslinux --install "$work/esp.img"

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
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$disk" bs=440 count=1 conv=notrunc status=none
dd if="$work/esp.img" of="$disk" bs=512 seek=$esp_start conv=notrunc,sparse status=none
dd if="$work/root.img" of="$disk" bs=512 seek=$root_start conv=notrunc,sparse status=none

mkdir -p -- "$(dirname -- "$OUTPUT")"
qemu-img convert -O qcow2 "$disk" "$OUTPUT.tmp"
mv -- "$OUTPUT.tmp" "$OUTPUT"
printf '%s\n' "$RECIPE" > "$OUTPUT.recipe"
log "Built $OUTPUT ($(du -h "$OUTPUT" | cut -f1)) from $(basename "$kernel")"
