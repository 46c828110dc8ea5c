// A readable summary of a composed network: its parts, parameter counts and one forward pass's
// shapes (what `make demo` prints for the paper's networks).
#pragma once
#include <torch/types.h>

#include <iomanip>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "halsal/nets/net_base.hpp"

namespace halsal {

/// Parameter counts by part and the shapes of one forward pass.
struct NetSummary {
  std::string name;
  int64_t saliency_parameters = 0, backbone_parameters = 0, head_parameters = 0;
  std::vector<int64_t> input, saliency, features, logits;
  int64_t total() const { return saliency_parameters + backbone_parameters + head_parameters; }
};

namespace detail {
inline std::string shape_text(const std::vector<int64_t>& s) {
  if (s.empty()) return "-";
  std::string t;
  for (size_t i = 0; i < s.size(); ++i) t += (i ? "×" : "") + std::to_string(s[i]);
  return t;
}
inline std::vector<int64_t> sizes_of(const torch::Tensor& t) {
  return t.defined() ? t.sizes().vec() : std::vector<int64_t>{};
}
}  // namespace detail

/// Counts parameters by part and runs one eval-mode forward pass on zeros of `input` shape.
template <class Net>
NetSummary summarize(Net& net, std::vector<int64_t> input) {
  using Impl = typename Net::ContainedType;
  NetSummary s;
  s.name = Impl::name();
  s.input = input;
  const std::string head = Impl::head_name();
  for (const auto& p : net->named_parameters()) {
    const auto part = detail::part_of(p.key(), head);
    (part == NetPart::Saliency ? s.saliency_parameters
     : part == NetPart::Head   ? s.head_parameters
                               : s.backbone_parameters) += p.value().numel();
  }
  const bool was_training = net->is_training();
  net->eval();
  torch::NoGradGuard no_grad;
  const auto x = torch::zeros(input);
  NetOutput out;
  if constexpr (Impl::reads_saliency_map) {
    out = net->forward_full(x, torch::zeros({input[0], 1, input[2], input[3]}));
  } else {
    out = net->forward_full(x);
  }
  s.saliency = detail::sizes_of(out.saliency);
  s.features = detail::sizes_of(out.features);
  s.logits = detail::sizes_of(out.logits);
  net->train(was_training);
  return s;
}

/// Prints the summary as a few aligned lines.
inline std::ostream& operator<<(std::ostream& os, const NetSummary& s) {
  auto millions = [](int64_t n) {
    std::ostringstream t;
    t << std::fixed << std::setprecision(2) << static_cast<double>(n) / 1e6 << " M";
    return t.str();
  };
  os << s.name << "\n"
     << "  parameters: " << millions(s.total()) << " (backbone " << millions(s.backbone_parameters)
     << ", saliency branch " << millions(s.saliency_parameters) << ", head "
     << millions(s.head_parameters) << ")\n"
     << "  input " << detail::shape_text(s.input) << " -> saliency map "
     << detail::shape_text(s.saliency) << ", fusion features " << detail::shape_text(s.features)
     << " -> logits " << detail::shape_text(s.logits) << "\n";
  return os;
}

}  // namespace halsal
