#!/usr/bin/env bash
# Installs what halsal needs to build and test, and writes a CMake initial-cache file that points
# CMake at the chosen LibTorch. Idempotent: whatever is already there is skipped.
#
#   scripts/install-deps.sh FLAVOUR [CACHE_FILE]
#     FLAVOUR   wheel  - LibTorch from the PyTorch wheel in a venv under $HALSAL_CACHE (default)
#               debian - Debian's libtorch-dev (CPU only, the compatibility floor)
#               prefix - an existing LibTorch: set HALSAL_TORCH_PREFIX to its CMake prefix
#     CACHE_FILE  where to write the `cmake -C` file (default: build/torch-init.cmake)
set -euo pipefail

flavour=${1:-${HALSAL_TORCH:-wheel}}
cache_file=${2:-build/torch-init.cmake}
cache_root=${HALSAL_CACHE:-$HOME/.cache/halsal}
venv=$cache_root/venv
torch_version=${HALSAL_TORCH_VERSION:-2.14.1}
torchvision_version=${HALSAL_TORCHVISION_VERSION:-0.29.1}

say() { printf 'install-deps: %s\n' "$*"; }

# --- Debian packages -------------------------------------------------------------------------
packages=(cmake ninja-build g++ make ccache libeigen3-dev libstb-dev libboost-test-dev libmatio-dev zlib1g-dev libgloo-dev
          nlohmann-json3-dev libcli11-dev)
[ "$flavour" = debian ] && packages+=(libtorch-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
  say "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$(dirname "$cache_file")"
tmp_cache=$(mktemp "$cache_file.XXXXXX")
trap 'rm -f "$tmp_cache"' EXIT

case "$flavour" in
  debian)
    cat >"$tmp_cache" <<CMAKE
# written by scripts/install-deps.sh: Debian's libtorch-dev
set(Torch_DIR "/usr/lib/x86_64-linux-gnu/cmake/Torch" CACHE PATH "")
CMAKE
    ;;
  prefix)
    : "${HALSAL_TORCH_PREFIX:?set HALSAL_TORCH_PREFIX to the LibTorch CMake prefix}"
    cat >"$tmp_cache" <<CMAKE
# written by scripts/install-deps.sh: user-supplied LibTorch
list(APPEND CMAKE_PREFIX_PATH "$HALSAL_TORCH_PREFIX")
set(CMAKE_PREFIX_PATH "\${CMAKE_PREFIX_PATH}" CACHE STRING "")
CMAKE
    ;;
  wheel)
    py=${HALSAL_PYTHON:-python3}
    if ! "$venv/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$torch_version')" 2>/dev/null; then
      say "creating $venv with torch==$torch_version (from the local wheel store)"
      [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
      if ! "$venv/bin/pip" install -q "torch==$torch_version" "torchvision==$torchvision_version" numpy safetensors; then
        say "torch==$torch_version unavailable; falling back to the CPU build torch==2.13.0"
        "$venv/bin/pip" install -q "torch==2.13.0" numpy safetensors
      fi
    fi
    torch_prefix=$("$venv/bin/python" -c 'import torch;print(torch.utils.cmake_prefix_path)')
    torch_lib=$(dirname "$torch_prefix")/../lib
    torch_lib=$(cd "$torch_lib" && pwd)
    cuda=$("$venv/bin/python" -c 'import torch;print(torch.version.cuda or "")')
    {
      echo "# written by scripts/install-deps.sh: LibTorch of the PyTorch wheel in $venv"
      echo "set(CMAKE_PREFIX_PATH \"$torch_prefix\" CACHE STRING \"\")"
      # Pin the wheel's libraries: a Debian libtorch in /usr/lib would otherwise win find_library.
      echo "set(TORCH_LIBRARY \"$torch_lib/libtorch.so\" CACHE FILEPATH \"\")"
      echo "set(c10_LIBRARY \"$torch_lib/libc10.so\" CACHE FILEPATH \"\")"
    } >"$tmp_cache"
    if [ -n "$cuda" ]; then
      # A CUDA-enabled wheel: TorchConfig needs a CUDA toolkit (nvcc, headers, cudart) to configure.
      # NVIDIA's pip packages provide one; pin nvcc to the runtime's minor version.
      major=${cuda%%.*}
      site=$("$venv/bin/python" -c 'import site;print(site.getsitepackages()[0])')
      cuda_root=$site/nvidia/cu$major
      if [ ! -x "$cuda_root/bin/nvcc" ]; then
        rt=$("$venv/bin/pip" show nvidia-cuda-runtime 2>/dev/null | awk '/^Version:/{print $2}')
        minor=$(echo "$rt" | cut -d. -f1-2)
        say "installing the CUDA $minor compiler packages into the venv (compile and link only)"
        "$venv/bin/pip" install -q "nvidia-cuda-nvcc~=$minor.0" "nvidia-cuda-crt~=$minor.0" \
          "nvidia-nvvm~=$minor.0" "nvidia-cuda-cccl~=$minor.0"
      fi
      # The pip layout lacks the lib64 folder and unversioned .so names that nvcc and FindCUDA expect.
      [ -e "$cuda_root/lib64" ] || ln -s lib "$cuda_root/lib64"
      for f in "$cuda_root"/lib/lib*.so.*; do
        base=${f%%.so.*}.so
        [ -e "$base" ] || ln -s "$(basename "$f")" "$base"
      done
      {
        echo "set(CUDA_TOOLKIT_ROOT_DIR \"$cuda_root\" CACHE PATH \"\")"
        echo "set(CUDAToolkit_ROOT \"$cuda_root\" CACHE PATH \"\")"
        echo "set(CMAKE_CUDA_COMPILER \"$cuda_root/bin/nvcc\" CACHE FILEPATH \"\")"
        echo "set(TORCH_CUDA_ARCH_LIST \"8.0;9.0\" CACHE STRING \"\")"
      } >>"$tmp_cache"
    fi
    echo "set(HALSAL_PYTHON \"$venv/bin/python\" CACHE FILEPATH \"\")" >>"$tmp_cache"
    ;;
  *) say "unknown flavour '$flavour' (use wheel, debian or prefix)"; exit 2 ;;
esac

# Replace the cache file only when it changed, so CMake does not reconfigure for nothing.
if cmp -s "$tmp_cache" "$cache_file"; then rm -f "$tmp_cache"; else mv "$tmp_cache" "$cache_file"; fi
trap - EXIT
say "LibTorch: $flavour ($cache_file)"
