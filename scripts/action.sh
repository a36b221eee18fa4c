#!/usr/bin/env bash
# The steps of the GitHub Action (action.yml at the repository's root).
#
# The action's inputs arrive only as environment variables, never pasted
# into shell code, and each reaches the program it is for as whole
# arguments: no input is ever evaluated, expanded or globbed here.
#
# Usage: scripts/action.sh install|cache-key|build-key|build|run
#
#   install  installs QEMU and the guest agent where missing, and lets every
#            user open /dev/kvm where the runner has it
#   cache-key  writes the download cache's directory and a key for what the
#            inputs fetch to $GITHUB_OUTPUT
#   build-key  writes where the `vmtest` command is installed and a key for
#            the source it is built from to $GITHUB_OUTPUT, for the Actions
#            cache to keep it
#   build    installs the `vmtest` command (unless the cache gave it back),
#            from VMTEST_ACTION_VMTEST_PATH (a checkout), else
#            VMTEST_ACTION_VMTEST_VERSION (a git ref of this repository),
#            else the action's own source
#   run      runs, in the current directory:
#              with VMTEST_ACTION_COMMAND: vmtest [-k KERNEL | -i IMAGE]
#                [--uefi] [--kargs ARGS] -- COMMAND
#              with VMTEST_ACTION_CONFIG: vmtest -c CONFIG [-f FILTER]
#              with VMTEST_ACTION_PARTITION: cargo nextest run --partition
#                PARTITION CARGO_TEST_ARGS
#              else: cargo test CARGO_TEST_ARGS
#            cargo runs with VMTEST_KERNEL and VMTEST_KERNELS set to KERNEL,
#            and VMTEST_KERNEL_ARGS=ARGS
#
# Inputs (all optional): VMTEST_ACTION_KERNEL, VMTEST_ACTION_IMAGE,
# VMTEST_ACTION_UEFI (true/false), VMTEST_ACTION_KERNEL_ARGS,
# VMTEST_ACTION_COMMAND, VMTEST_ACTION_CONFIG, VMTEST_ACTION_FILTER,
# VMTEST_ACTION_CARGO_TEST_ARGS (split at whitespace, nothing else),
# VMTEST_ACTION_PARTITION (count:K/N or hash:K/N),
# VMTEST_ACTION_VMTEST_VERSION, VMTEST_ACTION_VMTEST_PATH.
set -euo pipefail
# No input may ever be globbed.
set -f

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
SOURCE_DIR=$(cd -- "$SCRIPT_DIR/.." && pwd -P)

die() { printf '::error::vmtest action: %s\n' "$*" >&2; exit 64; }
log() { printf 'vmtest action: %s\n' "$*" >&2; }

input() { local name=VMTEST_ACTION_$1; printf '%s' "${!name-}"; }

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

install() {
    local missing=()
    # The runner's own architecture: guests are native (KVM where it has it).
    case $(uname -m) in
        aarch64) command -v qemu-system-aarch64 >/dev/null || missing+=(qemu-system-arm) ;;
        *) command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86) ;;
    esac
    command -v qemu-ga >/dev/null || [[ -x /usr/sbin/qemu-ga ]] || missing+=(qemu-guest-agent)
    # UEFI firmware is only recommended by QEMU's package, which recommends
    # are not installed with. The `virt` board of aarch64 runners has no
    # BIOS: its images always boot through UEFI.
    case $(uname -m) in
        aarch64)
            if [[ -n $(input IMAGE) ]]; then
                [[ -e /usr/share/qemu-efi-aarch64/QEMU_EFI.fd || -e /usr/share/AAVMF/AAVMF_CODE.fd ]] ||
                    missing+=(qemu-efi-aarch64)
            fi ;;
        *)
            if [[ $(input UEFI) == true ]]; then
                [[ -e /usr/share/ovmf/OVMF.fd || -e /usr/share/OVMF/OVMF_CODE.fd ]] || missing+=(ovmf)
            fi ;;
    esac
    if [[ ${#missing[@]} -gt 0 ]]; then
        log "installing ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
    if [[ -e /dev/kvm ]]; then
        # As GitHub documents for its larger runners: any user may open
        # /dev/kvm, so QEMU run as the runner's user gets KVM.
        echo 'KERNEL=="kvm", GROUP="kvm", MODE="0666", OPTIONS+="static_node=kvm"' |
            as_root tee /etc/udev/rules.d/99-vmtest-kvm.rules >/dev/null
        as_root udevadm control --reload-rules
        as_root udevadm trigger --name-match=kvm
        log "KVM enabled: /dev/kvm is open to all"
    else
        log "no /dev/kvm on this runner: guests run under emulation (slower)"
    fi
}

cache_key() {
    local wanted
    # Kernels are what is downloaded and cached; images never are.
    wanted=$(input KERNEL | sha256sum | cut -c1-16)
    {
        printf 'cache-dir=%s\n' "${XDG_CACHE_HOME:-$HOME/.cache}/vmtest"
        printf 'cache-key=vmtest-kernels-%s-%s\n' "$(uname -m)" "$wanted"
    } >>"${GITHUB_OUTPUT:?GITHUB_OUTPUT is not set}"
}

# Where the `vmtest` command is installed: the same place in every job, so
# that the Actions cache can give it back.
build_root() {
    printf '%s' "${XDG_CACHE_HOME:-$HOME/.cache}/vmtest-action"
}

# A digest of the Rust sources and manifests under $1 (build output left out).
source_digest() {
    (
        cd -- "$1" &&
            find . \( -name target -o -name .git \) -prune -o -type f \
                \( -name '*.rs' -o -name Cargo.toml -o -name Cargo.lock \) -print0 |
            LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16
    )
}

# The name of the command's build: the runner's system and architecture,
# and the source it is built from.
build_name() {
    local path version source
    path=$(input VMTEST_PATH)
    version=$(input VMTEST_VERSION)
    if [[ -n $path ]]; then
        source=path-$(source_digest "$path")
    elif [[ -n $version ]]; then
        # A ref is taken as naming one source: a branch that moves keeps
        # the build of its first commit; give a tag or a commit.
        source=ref-$(printf '%s' "$version" | sha256sum | cut -c1-16)
    else
        source=action-$(source_digest "$SOURCE_DIR")
    fi
    printf 'vmtest-command-%s-%s-%s' "${ImageOS:-linux}" "$(uname -m)" "$source"
}

build_key() {
    {
        printf 'build-dir=%s\n' "$(build_root)"
        printf 'build-key=%s\n' "$(build_name)"
    } >>"${GITHUB_OUTPUT:?GITHUB_OUTPUT is not set}"
}

build() {
    local path version root
    root=$(build_root)
    path=$(input VMTEST_PATH)
    version=$(input VMTEST_VERSION)
    local from=(--path "$SOURCE_DIR/vmtest-cli")
    if [[ -n $path ]]; then
        from=(--path "$path/vmtest-cli")
    elif [[ -n $version ]]; then
        [[ -n ${GITHUB_ACTION_REPOSITORY-} ]] ||
            die "vmtest-version needs GITHUB_ACTION_REPOSITORY (set when the action runs from a repository)"
        from=(--git "https://github.com/$GITHUB_ACTION_REPOSITORY" --rev "$version" vmtest-cli)
    fi
    # The build directory outlives the job on a self-hosted runner, and a
    # later step may ask for another source: its build is used only if it
    # says it is of this one.
    local name
    name=$(build_name)
    if [[ -x $root/bin/vmtest && -f $root/build-name && $(<"$root/build-name") == "$name" ]]; then
        log "vmtest from the Actions cache (built from the same source)"
    else
        # Quoted: an input printed as it is could start a workflow command line.
        log "building vmtest (cargo install --locked ${from[*]@Q})"
        cargo install --locked --force --quiet --root "$root" "${from[@]}"
        printf '%s\n' "$name" >"$root/build-name"
    fi
    if [[ -n ${GITHUB_PATH-} ]]; then
        printf '%s\n' "$root/bin" >>"$GITHUB_PATH"
    fi
    "$root/bin/vmtest" --version >&2
}

run() {
    local kernel image uefi kargs command config filter partition
    kernel=$(input KERNEL)
    image=$(input IMAGE)
    uefi=$(input UEFI)
    kargs=$(input KERNEL_ARGS)
    command=$(input COMMAND)
    config=$(input CONFIG)
    filter=$(input FILTER)
    partition=$(input PARTITION)
    case $uefi in ''|false) uefi=false ;; true) ;; *) die "uefi must be true or false" ;; esac
    [[ -n $kernel && -n $image ]] && die "give kernel or image, not both"
    [[ -n $command && -n $config ]] && die "give command or config, not both"
    if [[ -n $partition ]]; then
        [[ -n $command || -n $config ]] &&
            die "partition splits cargo test's tests: drop command and config"
        check_partition "$partition"
    fi
    if [[ -n $command ]]; then
        local argv=(vmtest)
        [[ -n $kernel ]] && argv+=(-k "$kernel")
        [[ -n $image ]] && argv+=(-i "$image")
        [[ $uefi == true ]] && argv+=(--uefi)
        [[ -n $kargs ]] && argv+=(--kargs "$kargs")
        argv+=(-- "$command")
        exec "${argv[@]}"
    fi
    if [[ -n $config ]]; then
        [[ -n $kernel || -n $image || -n $kargs ]] &&
            die "with config, the kernels, images and kernel args are the file's: drop kernel, image and kernel-args"
        local argv=(vmtest -c "$config")
        [[ -n $filter ]] && argv+=(-f "$filter")
        exec "${argv[@]}"
    fi
    [[ -n $image ]] && die "an image runs a command: give command (cargo test runs on a kernel)"
    [[ -n $kernel ]] && export VMTEST_KERNEL=$kernel VMTEST_KERNELS=$kernel
    [[ -n $kargs ]] && export VMTEST_KERNEL_ARGS=$kargs
    local args=()
    # Split at whitespace only: globbing is off (set -f) and nothing is
    # evaluated.
    read -r -d '' -a args < <(printf '%s\0' "$(input CARGO_TEST_ARGS)") || true
    if [[ -n $partition ]]; then
        exec cargo nextest run --partition "$partition" "${args[@]}"
    fi
    exec cargo test "${args[@]}"
}

# Refuses a partition that is not count:K/N or hash:K/N with 1 <= K <= N.
check_partition() {
    local partition=$1 k n
    [[ $partition =~ ^(count|hash):([0-9]{1,6})/([0-9]{1,6})$ ]] ||
        die "partition must be count:K/N or hash:K/N (such as count:1/3), not ${partition@Q}"
    k=$((10#${BASH_REMATCH[2]}))
    n=$((10#${BASH_REMATCH[3]}))
    ((k >= 1 && k <= n)) || die "partition ${partition@Q}: K must be from 1 to N"
}

case ${1-} in
    install) install ;;
    cache-key) cache_key ;;
    build-key) build_key ;;
    build) build ;;
    run) run ;;
    *) die "usage: scripts/action.sh install|cache-key|build-key|build|run" ;;
esac
