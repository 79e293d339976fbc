#!/usr/bin/env bash
# A profile-guided (PGO) release build of waypost and its modules, in
# target/pgo/HOST/release: an instrumented build runs the training load of
# bench/pgo_train.py (proxying with keep-alive, limit_req, static files,
# gzip, TLS and HTTP/2), then the release build is made again with the
# profile it wrote. The code is the same; the compiler lays out and
# inlines the paths that load takes (bench/README.md has the figures).
#
# Needs rustup's llvm-tools (added here if missing), nginx, wrk, curl,
# openssl and python3:
#     apt-get install -y nginx wrk curl openssl python3 && bench/pgo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$profdata" ]; then
    rustup component add llvm-tools
fi

data="$PWD/target/pgo-data"
rm -rf "$data"
mkdir -p "$data"
# (With --target, RUSTFLAGS leaves build scripts and proc macros alone.)
RUSTFLAGS="-Cprofile-generate=$data" \
    cargo build --release --workspace --target "$host" --target-dir target/pgo-gen
python3 bench/pgo_train.py "target/pgo-gen/$host/release"
"$profdata" merge -o "$data/merged.profdata" "$data"/*.profraw
RUSTFLAGS="-Cprofile-use=$data/merged.profdata" \
    cargo build --release --workspace --target "$host" --target-dir target/pgo
echo "built: target/pgo/$host/release/waypost (modules beside it)"
