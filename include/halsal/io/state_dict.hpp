// Moving weights between tensors-by-name and a torch::nn::Module: state_dict() collects a
// module's parameters and buffers under PyTorch's names, load_state_dict() copies tensors in
// (strict by default, with a report of what did not match), load_weights() does it from a file.
#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <sstream>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "halsal/core/error.hpp"
#include "halsal/core/text.hpp"
#include "halsal/io/tensor_dict.hpp"
#include "halsal/io/weights.hpp"

namespace halsal::io {

namespace detail {
inline void collect_state(const torch::nn::Module& m, const std::string& prefix, TensorDict& out) {
  // PyTorch's order: a module's own parameters, then its own buffers, then each child's.
  for (const auto& p : m.named_parameters(/*recurse=*/false))
    if (p.value().defined()) out.insert(prefix + p.key(), p.value());
  for (const auto& b : m.named_buffers(/*recurse=*/false))
    if (b.value().defined()) out.insert(prefix + b.key(), b.value());
  for (const auto& c : m.named_children()) collect_state(*c.value(), prefix + c.key() + ".", out);
}
}  // namespace detail

/// A module's parameters and buffers by name ("features.0.0.weight", "...running_mean"), in
/// PyTorch's state_dict order. The tensors are the module's own (not copies).
inline TensorDict state_dict(const torch::nn::Module& module) {
  TensorDict out;
  detail::collect_state(module, "", out);
  return out;
}

/// How load_state_dict matches file tensors to module entries.
struct LoadOptions {
  /// Fail (and load nothing) on any missing or unexpected key. Shape mismatches always fail.
  bool strict = true;
  /// Renames file keys: the first rule whose `first` begins a file key replaces that part with
  /// `second` ({"features.", "backbone.features."}; {"", "rgb."} prefixes every key).
  std::vector<std::pair<std::string, std::string>> rename_prefixes;
  /// Keys to leave alone, e.g. {"classifier."} to keep a new head: a file key is skipped when it
  /// begins with one of these before or after renaming, and module entries that begin with one
  /// are not reported missing.
  std::vector<std::string> skip_prefixes;
};

/// A file-vs-module shape disagreement.
struct ShapeMismatch {
  std::string key;  ///< module key
  std::vector<std::int64_t> file_shape, module_shape;
};

/// What load_state_dict did.
struct LoadReport {
  std::vector<std::string> loaded;      ///< module keys that received a tensor
  std::vector<std::string> missing;     ///< module keys no file tensor maps to
  std::vector<std::string> unexpected;  ///< file keys (after renaming) the module lacks
  std::vector<std::string> skipped;     ///< file keys left out by skip_prefixes
  std::vector<ShapeMismatch> mismatched;

  /// True when everything matched (nothing missing, unexpected or mismatched).
  bool ok() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }

  /// A readable summary listing every problem key.
  std::string to_string() const {
    std::ostringstream s;
    s << loaded.size() << " loaded, " << skipped.size() << " skipped";
    const auto list = [&](const char* what, const std::vector<std::string>& keys) {
      if (keys.empty()) return;
      s << "; " << keys.size() << " " << what << ":";
      for (const auto& k : keys) s << " " << k;
    };
    list("missing", missing);
    list("unexpected", unexpected);
    if (!mismatched.empty()) {
      s << "; " << mismatched.size() << " shape-mismatched:";
      for (const auto& m : mismatched)
        s << " " << m.key << " (file " << shape_string(m.file_shape) << " vs module "
          << shape_string(m.module_shape) << ")";
    }
    return s.str();
  }
};

/// Copies `tensors` into `module`'s parameters and buffers (converting dtype and device as
/// needed). Strict by default: any missing, unexpected or shape-mismatched key is a
/// halsal::Error listing them all, and nothing is copied. Returns what was done.
inline LoadReport load_state_dict(torch::nn::Module& module, const TensorDict& tensors,
                                  const LoadOptions& options = {}) {
  const auto skipped_name = [&](const std::string& key) {
    for (const auto& p : options.skip_prefixes)
      if (starts_with(key, p)) return true;
    return false;
  };
  const auto rename = [&](const std::string& key) {
    for (const auto& [from, to] : options.rename_prefixes)
      if (starts_with(key, from)) return to + key.substr(from.size());
    return key;
  };

  const TensorDict target = state_dict(module);
  std::unordered_map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < target.size(); ++i) index.emplace(target[i].key(), i);
  enum State : char { kUntouched, kCopied, kMismatched };
  std::vector<State> state(target.size(), kUntouched);
  LoadReport report;
  for (const auto& kv : tensors) {
    const std::string name = rename(kv.key());
    if (skipped_name(kv.key()) || skipped_name(name)) {
      report.skipped.push_back(kv.key());
      continue;
    }
    const auto it = index.find(name);
    if (it == index.end()) {
      report.unexpected.push_back(name);
      continue;
    }
    const torch::Tensor& dst = target[it->second].value();
    if (dst.sizes() != kv.value().sizes()) {
      report.mismatched.push_back({name, kv.value().sizes().vec(), dst.sizes().vec()});
      state[it->second] = kMismatched;
    } else {
      state[it->second] = kCopied;
    }
  }
  for (std::size_t i = 0; i < target.size(); ++i)
    if (state[i] == kUntouched && !skipped_name(target[i].key()))
      report.missing.push_back(target[i].key());

  if (!report.mismatched.empty() ||
      (options.strict && (!report.missing.empty() || !report.unexpected.empty())))
    throw Error("load_state_dict: " + report.to_string());
  torch::NoGradGuard no_grad;
  for (const auto& kv : tensors) {
    const std::string name = rename(kv.key());
    if (skipped_name(kv.key()) || skipped_name(name)) continue;
    const auto it = index.find(name);
    if (it == index.end() || state[it->second] != kCopied) continue;
    torch::Tensor dst = target[it->second].value();
    dst.copy_(kv.value());
  }
  for (std::size_t i = 0; i < target.size(); ++i)
    if (state[i] == kCopied) report.loaded.push_back(target[i].key());
  return report;
}

/// Loads a .pth (either container) or .safetensors file into `module` (see load_state_dict);
/// errors name the file.
inline LoadReport load_weights(torch::nn::Module& module, const std::filesystem::path& file,
                               const LoadOptions& options = {}) {
  TensorDict tensors = read_weights(file);
  try {
    return load_state_dict(module, tensors, options);
  } catch (const Error& e) {
    throw file_error(file, e.what());
  }
}

/// Writes `module`'s state_dict to a .safetensors or .pth file (by extension), atomically.
inline void save_weights(const torch::nn::Module& module, const std::filesystem::path& file) {
  write_weights(file, state_dict(module));
}

}  // namespace halsal::io
