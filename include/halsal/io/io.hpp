// halsal::io in one include: .pth and safetensors readers/writers, state_dict loading,
// checkpoints.
#pragma once
#include "halsal/io/bytes.hpp"
#include "halsal/io/checkpoint.hpp"
#include "halsal/io/pickle.hpp"
#include "halsal/io/pth.hpp"
#include "halsal/io/safetensors.hpp"
#include "halsal/io/state_dict.hpp"
#include "halsal/io/tensor_dict.hpp"
#include "halsal/io/weights.hpp"
#include "halsal/io/zip.hpp"
