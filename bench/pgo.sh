#!/usr/bin/env bash
# A profile-guided (PGO) release build of waypost and its modules, in
# target/pgo/HOST/release: an instrumented build runs the training load of
# bench/pgo_train.py (proxying with keep-alive, limit_req, static files,
# gzip, TLS and HTTP/2), then the release build is made again with the
# profile it wrote. The code is the same; the compiler lays out and
# inlines the paths that load takes (bench/README.md has the figures).
#
# `--bolt` then lays the binary out again with LLVM's post-link optimizer
# (BOLT): an instrumented copy of the PGO build runs the same training
# load, and BOLT orders its functions and blocks by what it counted
# (code of the standard library, tokio and mimalloc included, which the
# compiler's profile reaches only as far as LTO inlined it).
#
# `--cpu LEVEL` builds for that CPU (`-Ctarget-cpu`), e.g. `x86-64-v3`
# (AVX2, BMI2, FMA: x86 servers since 2013): the binary then runs only on
# such CPUs. bench/README.md has what it gained.
#
# Needs rustup's llvm-tools (added here if missing), nginx, wrk, curl,
# openssl and python3, and for `--bolt` Debian's bolt-19:
#     apt-get install -y nginx wrk curl openssl python3 && bench/pgo.sh
#     apt-get install -y bolt-19 && bench/pgo.sh --bolt [--cpu x86-64-v3]
set -euo pipefail
cd "$(dirname "$0")/.."

bolt=""
cpu=""
while [ $# -gt 0 ]; do
    case "$1" in
        --bolt)
            # Debian's llvm-bolt-19 link looks for its runtime beside
            # /usr/bin; the binary in LLVM's own directory finds it.
            bolt=$(command -v llvm-bolt || ls /usr/lib/llvm-*/bin/llvm-bolt 2>/dev/null | tail -n1 || true)
            [ -n "$bolt" ] || { echo "--bolt needs llvm-bolt: apt-get install -y bolt-19" >&2; exit 1; }
            shift ;;
        --cpu)
            [ -n "${2:-}" ] || { echo "--cpu needs a level, e.g. --cpu x86-64-v3" >&2; exit 1; }
            cpu="-Ctarget-cpu=$2"
            shift 2 ;;
        *)
            echo "usage: bench/pgo.sh [--bolt] [--cpu LEVEL]" >&2; exit 1 ;;
    esac
done

host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$profdata" ]; then
    rustup component add llvm-tools
fi

data="$PWD/target/pgo-data"
rm -rf "$data"
mkdir -p "$data"
# (With --target, RUSTFLAGS leaves build scripts and proc macros alone.)
RUSTFLAGS="-Cprofile-generate=$data $cpu" \
    cargo build --release --workspace --target "$host" --target-dir target/pgo-gen
python3 bench/pgo_train.py "target/pgo-gen/$host/release"
"$profdata" merge -o "$data/merged.profdata" "$data"/*.profraw
# BOLT moves functions only in a binary that kept its relocations.
relocs=${bolt:+-Clink-arg=-Wl,--emit-relocs}
out="target/pgo/$host/release"
# A BOLT binary a run before left there: cargo links the build's again.
rm -f "$out/waypost"
RUSTFLAGS="-Cprofile-use=$data/merged.profdata $relocs $cpu" \
    cargo build --release --workspace --target "$host" --target-dir target/pgo
if [ -n "$bolt" ]; then
    inst="target/pgo-bolt"
    rm -rf "$inst"
    mkdir -p "$inst"
    "$bolt" "$out/waypost" -instrument -instrumentation-file="$data/bolt.fdata" \
        -o "$inst/waypost"
    ln -s "$PWD/$out"/lib*.so "$inst/"
    python3 bench/pgo_train.py "$inst"
    cp "$out/waypost" "$out/waypost.pgo"
    # Written beside it, then moved: `waypost` is a hard link to cargo's
    # own copy, which BOLT would overwrite in place.
    "$bolt" "$out/waypost.pgo" -o "$out/waypost.bolt" -data="$data/bolt.fdata" \
        -reorder-blocks=ext-tsp -reorder-functions=cdsort -split-functions \
        -split-all-cold -icf=1 -dyno-stats
    mv "$out/waypost.bolt" "$out/waypost"
    echo "laid out by BOLT: $out/waypost (the PGO build before it: $out/waypost.pgo)"
fi
echo "built: $out/waypost (modules beside it)"
