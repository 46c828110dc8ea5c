// LibTorch version guards: halsal builds against Debian's 1.13 and current PyTorch wheels.
#pragma once
#include <torch/version.h>

/// True when the LibTorch being compiled against is at least MAJOR.MINOR.
#define HALSAL_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))
