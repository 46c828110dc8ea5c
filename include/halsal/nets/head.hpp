// The classifier head's two kinds: the paper's linear layer (Xavier start) and a cosine
// classifier with a learnable scale, the natural home of imprinted class means (Qi et al. 2018).
#pragma once
#include <torch/nn/functional/normalization.h>
#include <torch/nn/modules/linear.h>

#include <string>

#include "halsal/core/error.hpp"

namespace halsal {

/// How the head turns the pooled features into logits.
enum class HeadKind {
  Linear,  ///< W·f + b (the paper's head)
  Cosine   ///< scale · cos(f, W_c): bias unused, `scale` a learnable scalar
};

/// "linear" or "cosine".
inline std::string to_string(HeadKind kind) { return kind == HeadKind::Cosine ? "cosine" : "linear"; }

/// Parses "linear" or "cosine"; throws on anything else.
inline HeadKind parse_head_kind(const std::string& text) {
  if (text == "linear") return HeadKind::Linear;
  if (text == "cosine") return HeadKind::Cosine;
  throw Error("unknown head kind '" + text + "' (expected linear or cosine)");
}

/// scale · cos(embedding_i, weight_c): N×D features, C×D weights → N×C logits.
inline torch::Tensor cosine_logits(const torch::Tensor& embedding, const torch::Tensor& weight,
                                   const torch::Tensor& scale) {
  namespace F = torch::nn::functional;
  const auto unit = F::NormalizeFuncOptions().dim(1).eps(1e-12);
  return F::normalize(embedding, unit).matmul(F::normalize(weight, unit).t()) * scale;
}

namespace detail {
/// The head's logits for pooled features, as `kind` says (`scale` only read for Cosine).
inline torch::Tensor head_logits(HeadKind kind, torch::nn::Linear& head, const torch::Tensor& embedding,
                                 const torch::Tensor& scale) {
  if (kind == HeadKind::Cosine) return cosine_logits(embedding, head->weight, scale);
  return head->forward(embedding);
}
}  // namespace detail

}  // namespace halsal
