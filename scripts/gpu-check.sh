#!/usr/bin/env bash
# The GPU check in one command: builds the CUDA tests (tests/unit/test_cuda.cpp) and bench_models
# against the machine's own PyTorch, runs `ctest -R '^unit[.]test_cuda[.]'` and
# `bench_models --device cuda` in fp32 and bf16, and prints a summary (docs/building.md, "GPU check").
#
#   scripts/gpu-check.sh --bundle [DIR]   here (Debian 12, apt): download the Debian packages the GPU
#                                         machine lacks (Eigen, Boost.Test, matio, zlib, nlohmann-json,
#                                         CLI11, stb: headers and static libraries) as .deb files into
#                                         DIR (default gpu-debs/, ~12 MiB)
#   scripts/gpu-check.sh [OPTIONS]        on the GPU machine: unpack gpu-debs/ into a prefix, configure,
#                                         build, test, bench (no network, no package manager needed)
#   scripts/gpu-check.sh --dry-run [...]  the same on a machine without a GPU: the CPU half of the tests
#                                         (their CUDA half skips) and bench_models on the CPU, tiny sizes
# Options:
#   --build-dir DIR  build folder (default build-gpu/, build-gpu-dry/ with --dry-run); a folder that
#                    another configuration made (no .gpu-check marker) is reused as it is, unconfigured
#   --debs DIR       where the .deb files are (default gpu-debs/; absent or empty: the system's packages)
#   --jobs N         build jobs (default: the cores, at most one per 3 GiB of memory)
#   --python PY      the Python whose torch to build against (default $HALSAL_PYTHON, else python3; with
#                    --dry-run the venv of scripts/install-deps.sh when it exists)
# Environment: OUT (logs, bench JSON and summary; default BUILD_DIR/out), GPU_CHECK_BENCH_ARGS (replaces
# the bench sizes: default "--size 224 --batch 32 --steps 10", with --dry-run a tiny CPU run).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
caller=$PWD

mode=gpu
build_dir=
debs_dir=gpu-debs
jobs=
py=${HALSAL_PYTHON:-}
bundle_dir=

say() { printf 'gpu-check: %s\n' "$*"; }
die() { printf 'gpu-check: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

while (($#)); do
  case "$1" in
    --bundle) mode=bundle; if [ $# -gt 1 ] && [ "${2#-}" = "$2" ]; then bundle_dir=$2; shift; fi ;;
    --dry-run) mode=dry ;;
    --build-dir) build_dir=${2:?--build-dir needs a folder}; shift ;;
    --debs) debs_dir=${2:?--debs needs a folder}; shift ;;
    --jobs) jobs=${2:?--jobs needs a number}; shift ;;
    --python) py=${2:?--python needs an interpreter}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
  shift
done
# Folders given relative to where the script was called from; the defaults live in the checkout.
absolute() { case "$1" in /*) printf '%s' "$1" ;; *) printf '%s' "$caller/$1" ;; esac; }
[ -z "$build_dir" ] || build_dir=$(absolute "$build_dir")
[ -z "$bundle_dir" ] || bundle_dir=$(absolute "$bundle_dir")
[ "$debs_dir" = gpu-debs ] || debs_dir=$(absolute "$debs_dir")
[ -z "${OUT:-}" ] || OUT=$(absolute "$OUT")
cd "$root"

# --- --bundle: the .deb files, downloaded here ---------------------------------------------------
if [ "$mode" = bundle ]; then
  dir=${bundle_dir:-$debs_dir}
  command -v apt-get >/dev/null || die "--bundle needs apt-get (run it on the Debian machine)"
  # Boost.Test's versioned -dev package behind the unversioned name (1.74 on Debian 12).
  boost_test_dev=$(apt-cache depends libboost-test-dev 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^libboost-test[0-9.]+-dev$/ {print $2; exit}')
  [ -n "$boost_test_dev" ] || die "apt-cache knows no libboost-test-dev (run apt-get update)"
  boost_version=${boost_test_dev#libboost-test}
  boost_version=${boost_version%-dev}
  # Headers, CMake configs and static archives only, so that nothing built against Debian's glibc
  # and libstdc++ has to load on the GPU machine: Boost.Test, stb, matio and zlib are linked from
  # their .a files (the targets the check builds call no matio function: no HDF5 is needed).
  packages=(libeigen3-dev "libboost$boost_version-dev" "$boost_test_dev" libmatio-dev zlib1g-dev
            nlohmann-json3-dev libcli11-dev libstb-dev)
  mkdir -p "$dir"
  rm -f "$dir"/*.deb
  say "downloading ${#packages[@]} packages into $dir/: ${packages[*]}"
  (cd "$dir" && apt-get download -q "${packages[@]}" 2>&1 | grep -v -e '^Get:' -e 'unsandboxed' || true)
  for f in "$dir"/*%3a*.deb; do [ ! -e "$f" ] || mv "$f" "${f//%3a/_}"; done  # an epoch's ':' (zlib1g-dev)
  n=$(find "$dir" -maxdepth 1 -name '*.deb' | wc -l)
  [ "$n" -eq "${#packages[@]}" ] || die "got $n of ${#packages[@]} .deb files in $dir (apt-get update?)"
  ls -l "$dir"/*.deb | awk '{printf "  %8.1f KiB  %s\n", $5 / 1024, $NF}'
  total=$(cat "$dir"/*.deb | wc -c)
  say "$n packages, $(awk -v b="$total" 'BEGIN {printf "%.1f MiB", b / 1048576}') in $dir/"
  say "carry $dir/ with the working tree (it is git-ignored) and run scripts/gpu-check.sh on the GPU machine"
  exit 0
fi

# --- the check -------------------------------------------------------------------------------------
[ -n "$build_dir" ] || { [ "$mode" = dry ] && build_dir=build-gpu-dry || build_dir=build-gpu; }
mkdir -p "$build_dir"
build_dir=$(cd "$build_dir" && pwd)
out=${OUT:-$build_dir/out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
t_start=$SECONDS
phases=()
phase_start=$SECONDS
begin() { phase_start=$SECONDS; say "== $1"; }
end() { phases+=("$1|$((SECONDS - phase_start))"); }

if [ -z "$py" ]; then
  py=python3
  if [ "$mode" = dry ] && [ -x "${HALSAL_CACHE:-$HOME/.cache/halsal}/venv/bin/python" ]; then
    py=${HALSAL_CACHE:-$HOME/.cache/halsal}/venv/bin/python
  fi
fi

# PyTorch: version, CMake prefix, libraries, CUDA runtime, the GPU.
begin "PyTorch ($py)"
torch_info=$("$py" - <<'PY'
import os, site, torch
cuda = torch.version.cuda or ""
gpu = torch.cuda.is_available() if cuda else False
print(torch.__version__)
print(torch.utils.cmake_prefix_path)
print(os.path.join(os.path.dirname(torch.__file__), "lib"))
print(cuda)
print(int(gpu))
print(torch.cuda.get_device_name(0) if gpu else "")
print("%d.%d" % torch.cuda.get_device_capability(0) if gpu else "")
print(os.path.dirname(os.path.dirname(torch.__file__)))
PY
) || die "$py cannot import torch (set --python or HALSAL_PYTHON)"
mapfile -t t <<<"$torch_info"
torch_version=${t[0]} torch_prefix=${t[1]} torch_lib=${t[2]} cuda=${t[3]} gpu=${t[4]} gpu_name=${t[5]} gpu_cc=${t[6]} site_dir=${t[7]}
say "torch $torch_version, CUDA runtime ${cuda:-none}, GPU: ${gpu_name:-none visible}"
if [ "$gpu" != 1 ] && [ "$mode" != dry ]; then
  die "no CUDA GPU visible to torch $torch_version (CUDA ${cuda:-none}); on a machine without one run --dry-run"
fi
end torch

# The dependencies: the bundled .debs unpacked into a prefix, or the system's.
begin "dependencies"
prefix=
reuse=0
if [ -f "$build_dir/CMakeCache.txt" ] && [ ! -f "$build_dir/.gpu-check" ]; then
  reuse=1
  say "reusing $build_dir as it is configured (made by another configuration: not reconfigured)"
elif compgen -G "$debs_dir/*.deb" >/dev/null; then
  prefix=$build_dir/deps
  stamp=$(cd "$debs_dir" && ls -l -- *.deb | awk '{print $5, $NF}' | md5sum | cut -c1-32)
  if [ "$(cat "$prefix/.stamp" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$prefix"
    mkdir -p "$prefix"
    for deb in "$debs_dir"/*.deb; do
      if command -v dpkg-deb >/dev/null; then
        dpkg-deb -x "$deb" "$prefix"
      else  # not a Debian system: a .deb is an ar archive holding data.tar.*
        "$py" - "$deb" "$prefix" <<'PY'
import io, sys, tarfile
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"!<arch>\n", sys.argv[1] + ": not a .deb"
pos = 8
while pos < len(data):
    name = data[pos:pos + 16].decode().strip().rstrip("/")
    size = int(data[pos + 48:pos + 58].decode().strip())
    if name.startswith("data.tar"):
        trusted = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
        tarfile.open(fileobj=io.BytesIO(data[pos + 60:pos + 60 + size])).extractall(sys.argv[2], **trusted)
    pos += 60 + size + (size & 1)
PY
      fi
    done
    echo "$stamp" >"$prefix/.stamp"
  fi
  say "$(ls "$debs_dir"/*.deb | wc -l) packages from $debs_dir/ unpacked in $prefix"
else
  [ -f /usr/include/boost/test/unit_test.hpp ] ||
    die "no .deb files in $debs_dir/ and no Boost.Test here: run scripts/gpu-check.sh --bundle on the Debian machine and carry $debs_dir/ along"
  say "no .deb files in $debs_dir/: the system's packages"
fi
end dependencies

# The CUDA toolkit that TorchConfig needs to configure: $CUDA_HOME, the wheel's pip toolkit
# (nvidia/cuNN, as scripts/install-deps.sh sets it up), else the nvcc on PATH.
cuda_root=
if [ -n "$cuda" ] && [ "$reuse" = 0 ]; then
  major=${cuda%%.*}
  if [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/nvcc" ]; then
    cuda_root=$CUDA_HOME
  elif [ -x "$site_dir/nvidia/cu$major/bin/nvcc" ]; then
    cuda_root=$site_dir/nvidia/cu$major
  else
    nvcc=$(command -v nvcc || true)
    [ -n "$nvcc" ] || [ ! -x /usr/local/cuda/bin/nvcc ] || nvcc=/usr/local/cuda/bin/nvcc
    [ -n "$nvcc" ] || die "torch $torch_version needs a CUDA toolkit to configure against, and no nvcc was found (set CUDA_HOME)"
    # nvcc may be a wrapper script: ask it where its toolkit is.
    top=$("$nvcc" -v --dryrun -x cu -c /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -1)
    cuda_root=$(cd "${top:-$(dirname "$nvcc")/..}" && pwd -P)
  fi
  nvcc_version=$("$cuda_root/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p')
  say "CUDA toolkit $cuda_root (nvcc $nvcc_version)"
  [ "${nvcc_version%%.*}" = "$major" ] || say "warning: nvcc $nvcc_version, but torch was built with CUDA $cuda"
fi

# --- configure ---------------------------------------------------------------------------------
begin "configure ($build_dir)"
if [ "$reuse" = 0 ]; then
  init=$build_dir/gpu-check-init.cmake
  {
    echo "# written by scripts/gpu-check.sh"
    echo "set(TORCH_LIBRARY \"$torch_lib/libtorch.so\" CACHE FILEPATH \"\")"
    echo "set(c10_LIBRARY \"$torch_lib/libc10.so\" CACHE FILEPATH \"\")"
    echo "set(HALSAL_PYTHON \"$(command -v "$py")\" CACHE FILEPATH \"\")"
    if [ -n "$cuda_root" ]; then
      arch=${gpu_cc:-8.0;9.0}
      echo "set(CUDA_TOOLKIT_ROOT_DIR \"$cuda_root\" CACHE PATH \"\")"
      echo "set(CUDAToolkit_ROOT \"$cuda_root\" CACHE PATH \"\")"
      echo "set(CMAKE_CUDA_COMPILER \"$cuda_root/bin/nvcc\" CACHE FILEPATH \"\")"
      echo "set(TORCH_CUDA_ARCH_LIST \"$arch\" CACHE STRING \"\")"
    fi
    # Boost.Test, matio and stb from their static archives: nothing Debian compiled is loaded at
    # run time. (tests/CMakeLists.txt asks for the shared Boost.Test with BOOST_TEST_DYN_LINK; the
    # -U in CMAKE_CXX_FLAGS, which comes after the target's definitions, takes that back.)
    lib=${prefix:-}/usr/lib/x86_64-linux-gnu
    cxx_flags="-UBOOST_TEST_DYN_LINK"
    echo "set(Boost_USE_STATIC_LIBS ON CACHE BOOL \"\")"
    search="$torch_prefix"
    if [ -n "$prefix" ]; then
      search="$search;$prefix/usr"
      echo "set(Boost_DIR \"$(ls -d "$lib"/cmake/Boost-* | head -1)\" CACHE PATH \"\")"
      echo "set(Eigen3_DIR \"$prefix/usr/share/eigen3/cmake\" CACHE PATH \"\")"
      echo "set(nlohmann_json_DIR \"$prefix/usr/share/cmake/nlohmann_json\" CACHE PATH \"\")"
      echo "set(HALSAL_STB_INCLUDE_DIR \"$prefix/usr/include/stb\" CACHE PATH \"\")"
      echo "set(HALSAL_MATIO_INCLUDE_DIR \"$prefix/usr/include\" CACHE PATH \"\")"
      echo "set(ZLIB_INCLUDE_DIR \"$prefix/usr/include\" CACHE PATH \"\")"
      echo "set(ZLIB_LIBRARY \"$lib/libz.a\" CACHE FILEPATH \"\")"
      # CLI11 and the rest: headers in the prefix's include folder, seen by every target.
      cxx_flags="$cxx_flags -isystem $prefix/usr/include"
    fi
    [ ! -e "$lib/libstb.a" ] || echo "set(HALSAL_STB_LIBRARY \"$lib/libstb.a\" CACHE FILEPATH \"\")"
    [ ! -e "$lib/libmatio.a" ] || echo "set(HALSAL_MATIO_LIBRARY \"$lib/libmatio.a\" CACHE FILEPATH \"\")"
    echo "set(CMAKE_CXX_FLAGS \"$cxx_flags\" CACHE STRING \"\")"
    echo "set(CMAKE_PREFIX_PATH \"$search\" CACHE STRING \"\")"
  } >"$init"
  generator=Ninja
  command -v ninja >/dev/null || generator="Unix Makefiles"
  touch "$build_dir/.gpu-check"
  cmake -S "$root" -B "$build_dir" -G "$generator" -C "$init" -DCMAKE_BUILD_TYPE=Release \
    -DHALSAL_BUILD_TESTS=ON -DHALSAL_BUILD_BENCH=ON -DHALSAL_BUILD_EXAMPLES=OFF -DHALSAL_INSTALL=OFF \
    -DHALSAL_BUILD_FUZZERS=OFF -DHALSAL_TEST_GLOB=test_cuda.cpp -DHALSAL_WERROR=OFF -DHALSAL_DISTRIBUTED=OFF \
    >"$out/configure.log" 2>&1 || { tail -40 "$out/configure.log" >&2; die "configure failed (log: $out/configure.log)"; }
  grep -E '^-- (halsal|Found Boost|Found ZLIB|Caffe2: CUDA|Found CUDA)' "$out/configure.log" | sed 's/^/  /' || true
fi
end configure

# --- build: the test executable (test_cuda.cpp only) and bench_models ------------------------------
begin "build"
if [ -z "$jobs" ]; then
  cores=$(nproc)
  mem_gib=$(awk '/MemAvailable/ {print int($2 / 1048576)}' /proc/meminfo)
  jobs=$((mem_gib / 3 < cores ? mem_gib / 3 : cores))
  ((jobs >= 1)) || jobs=1
fi
targets=(halsal_tests)
bench=0
if grep -q '^HALSAL_BUILD_BENCH:BOOL=ON' "$build_dir/CMakeCache.txt"; then
  targets+=(bench_models)
  bench=1
else
  say "warning: $build_dir is configured without HALSAL_BUILD_BENCH: no bench_models"
fi
cmake --build "$build_dir" -j "$jobs" --target "${targets[@]}" >"$out/build.log" 2>&1 ||
  { grep -E -A5 'error|Error' "$out/build.log" | head -60 >&2; die "build failed (log: $out/build.log)"; }
say "built ${targets[*]} with $jobs jobs"
end build

# --- the CUDA-marked tests -----------------------------------------------------------------------------
begin "tests"
tests_rc=0
(cd "$build_dir" && ctest -R '^unit[.]test_cuda[.]' -V --timeout 900) >"$out/ctest.log" 2>&1 || tests_rc=$?
tests_line=$(grep -E 'tests passed|No tests were found' "$out/ctest.log" | tail -1 || true)
grep -E '^ *[0-9]+/[0-9]+ Test +#' "$out/ctest.log" | sed 's/^ */  /' || true
if [ "$tests_rc" != 0 ]; then
  grep -E 'error: in|fatal error|failed' "$out/ctest.log" | head -20 >&2 || true
  say "TESTS FAILED (log: $out/ctest.log)"
fi
# ctest -V prefixes each line with the test's number: the cases that said they skipped their CUDA half.
skipped=$({ grep 'skipped: no CUDA GPU visible' "$out/ctest.log" || true; } | cut -d: -f1 | sort -u | wc -l)
end tests

# --- bench_models in fp32 and bf16 ---------------------------------------------------------------------
bench_rc=0
if [ "$bench" = 1 ]; then
  if [ "$gpu" = 1 ]; then
    device=cuda
    read -r -a bench_args <<<"${GPU_CHECK_BENCH_ARGS:---size 224 --batch 32 --steps 10}"
  else
    device=cpu
    read -r -a bench_args <<<"${GPU_CHECK_BENCH_ARGS:---size 64 --batch 2 --steps 1 --only alexnet,resnet18,halsal_mobilenet_v2}"
  fi
  for precision in fp32 bf16; do
    begin "bench_models --device $device --precision $precision ${bench_args[*]}"
    if OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} "$build_dir/bench/bench_models" --device "$device" \
         --precision "$precision" "${bench_args[@]}" --json "$out/bench-$device-$precision.json" \
         >"$out/bench-$device-$precision.md" 2>&1; then
      cat "$out/bench-$device-$precision.md"
    else
      bench_rc=1
      cat "$out/bench-$device-$precision.md" >&2
      say "bench_models failed in $precision"
    fi
    end "bench $precision"
  done
fi

# --- summary -----------------------------------------------------------------------------------------
total=$((SECONDS - t_start))
{
  echo "# gpu-check: $(date -u +%Y-%m-%dT%H:%MZ), $(hostname)"
  echo
  echo "torch $torch_version, CUDA ${cuda:-none}${cuda_root:+ (toolkit $cuda_root)}, GPU: ${gpu_name:-none}, build: $build_dir"
  echo
  echo "| phase | seconds |"
  echo "|---|---:|"
  for p in "${phases[@]}"; do echo "| ${p%%|*} | ${p##*|} |"; done
  echo "| **total** | **$total** |"
  echo
  echo "tests (\`ctest -R '^unit[.]test_cuda[.]'\`): ${tests_line:-no result} (exit $tests_rc); $skipped case(s) skipped their CUDA half"
  if [ "$bench" = 1 ]; then
    echo
    "$py" - "$out" "$device" <<'PY' || true
import json, os, sys
out, device = sys.argv[1], sys.argv[2]
runs = {}
for p in ("fp32", "bf16"):
    f = os.path.join(out, "bench-%s-%s.json" % (device, p))
    if os.path.exists(f):
        runs[p] = json.load(open(f))
if runs:
    first = next(iter(runs.values()))
    print("bench_models on %s, batch %s, %s px, %s steps (images/s):" % (device, first["batch"], first["size"], first["steps"]))
    print()
    print("| network | " + " | ".join("%s eval | %s train" % (p, p) for p in runs) + " |")
    print("|---|" + "---:|---:|" * len(runs))
    keys = [r["network"] for r in first["rows"]]
    for k in keys:
        cells = []
        for p, j in runs.items():
            row = next((r for r in j["rows"] if r["network"] == k), None)
            cells += ["%.1f" % row["eval_ips"], "%.1f" % row["train_ips"]] if row else ["", ""]
        print("| %s | %s |" % (k, " | ".join(cells)))
PY
  fi
} >"$out/summary.md"
echo
cat "$out/summary.md"
echo
say "logs, bench JSON and this summary: $out/"
if [ "$gpu" != 1 ]; then
  say "no CUDA GPU found: ran the CPU half only"
fi
if [ "$tests_rc" != 0 ] || [ "$bench_rc" != 0 ]; then
  say "FAILED (tests exit $tests_rc, bench exit $bench_rc)"
  exit 1
fi
say "passed in $total s"
