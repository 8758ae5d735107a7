#!/usr/bin/env bash
# Test fixture for rehearse::tests (not used by the rehearsal itself): a `docker` that runs no
# container and answers each `cargo xtask` command matrix.yml runs through .ci/in-debian in a
# second, as the real command would shape its outputs, so that act can run the real workflow file
# with its stand-in actions in seconds: the plan (an x86-64 leg, an arm64 one (on the arm64
# runner's label, `ci::runner_for`'s; act maps it to this machine), the leg that fails, and a build, and a refresh that rewrites
# every lock), the legs' results (the no-such-kernel leg fails before writing any), the runner's
# kernel, compile (which fails unless every lock reached it re-pinned), the binary cache's
# entries per leg and gathered beside the report, diff, the report.
set -euo pipefail
[ "${1:-}" = run ] || exit 0
while [ $# -gt 0 ] && [ "$1" != /work/.ci/debian-env ]; do shift; done
shift
locks=(images/kernels.lock images/toolchain.lock images/go.lock images/criu.lock)
case "$*" in
  "cargo xtask ci plan --refresh")
    for l in "${locks[@]}"; do echo "# re-pinned by the fake refresh" >> "$l"; done
    echo '{"include":[{"kernel":"k1","pin":"p1","arch":"x86_64","runner":"ubuntu-latest"},{"kernel":"k2","pin":"p2","arch":"arm64","runner":"ubuntu-24.04-arm"},{"kernel":"rehearsal-no-such-kernel","pin":"none","runner":"ubuntu-latest"}]}' ;;
  "cargo xtask ci plan --builds")
    echo '{"include":[{"build":"b1","key":"key1"}]}' ;;
  "cargo xtask matrix --kernel rehearsal-no-such-kernel "*)
    echo "unknown kernel id \"rehearsal-no-such-kernel\"" >&2; exit 1 ;;
  "cargo xtask matrix --kernel "*)
    mkdir -p "$7/results" "target/uffdc/runs/$5"
    printf 'kernel = "%s"\n' "$5" > "$7/results/$5.toml"
    echo "console of $5" > "target/uffdc/runs/$5/console.log" ;;
  "cargo run --quiet --locked --package suite -- "*)
    out="${!#}"
    printf 'source = "host"\n' > "$out" ;;
  "cargo xtask ci compile ci-artifacts")
    for l in "${locks[@]}"; do
      grep -q "re-pinned" "$l" || { echo "fake compile: $l was not carried here re-pinned" >&2; exit 1; }
    done
    mapfile -t found < <(find ci-artifacts -path '*/results/*.toml' -printf '%f\n' | sort)
    mkdir -p target/report matrix
    echo "# compiled from ${found[*]}" >> matrix/compat.toml
    echo "<html>${found[*]}</html>" > target/report/index.html ;;
  "cargo xtask ci binaries --kernel "*" --out "*)
    mkdir -p "$8"
    echo "built of $6" > "$8/kernels-$6.tar"
    printf '[[entries]]\nid = "%s"\nfile = "kernels-%s.tar"\n' "$6" "$6" > "$8/index.toml" ;;
  "cargo xtask ci binaries --out target/report/binaries ci-artifacts")
    mkdir -p target/report/binaries
    find ci-artifacts -path '*/binaries/*.tar' -exec cp {} target/report/binaries/ \;
    find ci-artifacts -path '*/binaries/index.toml' -exec cat {} + > target/report/binaries/index.toml ;;
  "cargo xtask diff ci-old/compat.toml matrix/compat.toml")
    if cmp -s ci-old/compat.toml matrix/compat.toml; then echo "no cell changed"; exit 0; fi
    echo "kernel k1: release 1 -> 2"; echo "1 change(s)"; exit 1 ;;
  *)
    echo "fake docker: no answer for: $*" >&2; exit 2 ;;
esac
