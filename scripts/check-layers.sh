#!/usr/bin/env bash
# Checks that no crate of the workspace has an import cycle: neither between
# its modules nor between its top-level modules (the engine's layers), tests
# included. Prints the order of each crate's top-level modules, the bottom first.
#
# cargo-modules draws each crate's module graph ("uses" edges folded onto the
# modules that hold the items); tsort, which refuses a graph with a loop and
# names it, checks it. (cargo-modules' own --acyclic looks at items, where a
# type and its own methods already make a loop.) cargo-modules sees `use`
# declarations and signatures, not paths inside function bodies: the
# workspace's clippy lint `absolute_paths` makes a crate's own items come in
# through `use`.
#
#   scripts/check-layers.sh          # every crate
#   scripts/check-layers.sh --install  # first installs cargo-modules
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_MODULES_VERSION=0.27.0

if [[ ${1:-} == --install ]] && ! cargo modules --version 2>/dev/null | grep -q "$CARGO_MODULES_VERSION"; then
    cargo install --locked --quiet "cargo-modules@$CARGO_MODULES_VERSION"
fi
if ! cargo modules --version >/dev/null 2>&1; then
    echo "error: cargo-modules is not installed: run $0 --install" >&2
    exit 1
fi

# package and target (--lib, or --bin NAME) of every crate to check
TARGETS=(
    "vmtest-contract --lib"
    "vmtest-guest --lib"
    "vmtest-engine --lib"
    "vmtest-frontdoor --lib"
    "vmtest-macros --lib"
    "vmtest-harness --lib"
    "vmtest-cli --bin vmtest"
)

# Prints "user used" for each "uses" edge of the graph on stdin, its modules
# cut to the first `depth` path segments after the crate's name (0: whole).
edges() {
    local depth=$1
    sed -nE 's/^ *"([^"]+)" -> "([^"]+)" \[label="uses".*/\1 \2/p' |
        awk -v depth="$depth" '
            function cut(path,   parts, n, i, out) {
                if (depth == 0) return path
                n = split(path, parts, "::")
                out = parts[1]
                for (i = 2; i <= n && i <= depth + 1; i++) out = out "::" parts[i]
                return out
            }
            { from = cut($1); to = cut($2); if (from != to) print from, to }' |
        sort -u
}

failed=0
for target in "${TARGETS[@]}"; do
    read -r package kind name <<<"$target"
    # shellcheck disable=SC2086 # kind and name are two words on purpose
    graph=$(cargo modules dependencies --package "$package" $kind ${name:-} \
        --cfg-test --no-externs --no-sysroot --no-fns --no-traits --no-types --no-owns \
        --layout dot 2>/dev/null) || {
        echo "error: cargo-modules cannot read $package" >&2
        failed=1
        continue
    }
    clean=true
    for depth in 0 1; do
        what=$([[ $depth == 0 ]] && echo modules || echo "top-level modules")
        if ! loop=$(edges "$depth" <<<"$graph" | tsort 2>&1 >/dev/null); then
            echo "$package: its $what import each other in a loop:" >&2
            grep -v "input contains a loop" <<<"$loop" | sed 's/^tsort: /  /' | awk '!seen[$0]++' >&2
            clean=false
            failed=1
        fi
    done
    if $clean; then
        # tsort lists users before what they use: reversed, the bottom first
        order=$(edges 1 <<<"$graph" | tsort | tac | sed -e '/::/!d' -e 's/^[a-z_]*:://' | paste -sd' ')
        echo "$package: no import cycle${order:+ (top-level modules that import, from the bottom: $order)}"
    fi
done
exit "$failed"
