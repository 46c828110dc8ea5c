// Reads PyTorch-saved state_dicts (torch.save of a dict of tensors) without Python, in both
// containers: the zip archive of PyTorch >= 1.6 ("PREFIX/data.pkl" + "PREFIX/data/KEY" storages)
// and the legacy stream of `_use_new_zipfile_serialization=False` (magic number, protocol
// version, sys info, the pickled object, the storage keys, then each storage's raw bytes).
// Tensors sharing a storage share it here too, and views keep their sizes, strides and offset.
// Writes the zip container, so that Python's torch.load reads halsal's output.
#pragma once
#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "halsal/core/error.hpp"
#include "halsal/io/bytes.hpp"
#include "halsal/io/pickle.hpp"
#include "halsal/io/tensor_dict.hpp"
#include "halsal/io/zip.hpp"

namespace halsal::io {

/// Which torch.save container a file uses.
enum class PthContainer { Zip, Legacy };

/// What a reader found out about a .pth file besides its tensors.
struct PthInfo {
  PthContainer container = PthContainer::Zip;
  std::string prefix;       ///< zip: the archive's folder ("archive/"), legacy: empty
  bool big_endian = false;  ///< storages were written big-endian (swapped on read)
};

/// The first bytes of a legacy torch.save stream: PROTO 2, LONG1 of 10 bytes, the magic number.
inline bool looks_like_legacy_pth(ByteSpan b) {
  static const std::uint8_t head[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c,
                                      0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
  return b.size >= sizeof(head) && std::memcmp(b.data, head, sizeof(head)) == 0;
}

namespace detail {

inline void byteswap_elements(torch::Tensor& t) {
  const std::size_t w = static_cast<std::size_t>(t.element_size());
  if (w < 2) return;
  auto* p = static_cast<std::uint8_t*>(t.data_ptr());
  for (std::int64_t i = 0; i < t.numel(); ++i, p += w) std::reverse(p, p + w);
}

/// Turns the unpickled object into tensors; `load_storage(key, etype, numel)` returns the
/// storage's bytes (already bounds-checked) or throws.
class PthBuilder {
 public:
  using Loader = std::function<ByteSpan(const std::string& key, pickle::ElementType, std::int64_t)>;

  PthBuilder(const pickle::Unpickler& u, std::string origin, Loader loader, bool big_endian)
      : u_(u), origin_(std::move(origin)), loader_(std::move(loader)), big_endian_(big_endian) {}

  TensorDict build(std::uint32_t root) {
    TensorDict out;
    const auto& v = u_.at(root);
    if (v.kind != pickle::Kind::Dict)
      throw Error(origin_ + ": holds a " + pickle::kind_name(v.kind) +
                  ", not a state_dict (a dict of tensors)");
    collect(root, "", 0, out);
    return out;
  }

 private:
  Error error(const std::string& what) const { return Error(origin_ + ": " + what); }

  // Nested dicts (e.g. {"state_dict": {...}, "epoch": 3}) become "state_dict.NAME"; entries that
  // are neither tensors nor dicts (epochs, strings, lists) are skipped.
  void collect(std::uint32_t dict, const std::string& prefix, int depth, TensorDict& out) {
    if (depth > 16) throw error("dicts nested more than 16 deep (or a dict containing itself)");
    const auto& items = u_.at(dict).items;
    for (std::size_t k = 0; k + 1 < items.size(); k += 2) {
      const auto& key = u_.at(items[k]);
      const auto& value = u_.at(items[k + 1]);
      if (value.kind != pickle::Kind::Tensor && value.kind != pickle::Kind::Dict) continue;
      // Integer keys appear in optimizer state ({0: {"momentum_buffer": ...}}); others are skipped.
      std::string part;
      if (key.kind == pickle::Kind::String) {
        part = key.s;
      } else if (key.kind == pickle::Kind::Int) {
        part = std::to_string(key.i);
      } else {
        continue;
      }
      const std::string name = prefix.empty() ? part : prefix + "." + part;
      if (value.kind == pickle::Kind::Tensor) {
        set_tensor(out, name, tensor(items[k + 1], name));
      } else {
        collect(items[k + 1], name, depth + 1, out);
      }
    }
  }

  torch::Tensor storage(const pickle::Value& s) {
    auto it = storages_.find(s.s);
    if (it == storages_.end()) {
      const std::size_t w = pickle::element_size(s.etype);
      const ByteSpan bytes = loader_(s.s, s.etype, s.i);
      if (static_cast<std::uint64_t>(s.i) > bytes.size / w)
        throw error("storage '" + s.s + "' holds " + std::to_string(bytes.size) +
                    " bytes, fewer than its " + std::to_string(s.i) + " elements need");
      auto t = torch::empty({s.i}, torch::TensorOptions().dtype(to_torch_dtype(s.etype)));
      if (s.i > 0) std::memcpy(t.data_ptr(), bytes.data, static_cast<std::size_t>(s.i) * w);
      if (big_endian_) byteswap_elements(t);
      it = storages_.emplace(s.s, Storage{t, s.etype}).first;
    } else if (it->second.etype != s.etype) {
      throw error("storage '" + s.s + "' is used as both " +
                  pickle::storage_class_name(it->second.etype) + " and " +
                  pickle::storage_class_name(s.etype));
    } else if (s.i > it->second.data.numel()) {
      throw error("storage '" + s.s + "' is referenced with different sizes");
    }
    torch::Tensor t = it->second.data;
    if (s.flag) {  // legacy view into the root storage
      const std::int64_t off = s.ints[0], n = s.ints[1];
      if (off < 0 || n < 0 || off > t.numel() || n > t.numel() - off)
        throw error("storage view of '" + s.s + "' lies outside its storage");
      t = t.narrow(0, off, n);
    }
    return t;
  }

  torch::Tensor tensor(std::uint32_t index, const std::string& name) {
    const auto& v = u_.at(index);
    torch::Tensor base = storage(u_.at(v.items.at(0)));
    const std::size_t rank = v.ints.size() / 2;
    std::vector<std::int64_t> sizes(v.ints.begin(),
                                    v.ints.begin() + static_cast<std::ptrdiff_t>(rank));
    std::vector<std::int64_t> strides(v.ints.begin() + static_cast<std::ptrdiff_t>(rank),
                                      v.ints.end());
    const std::int64_t offset = v.i;
    const auto bad = [&](const std::string& what) {
      return error("tensor '" + name + "': " + what);
    };
    if (offset < 0) throw bad("negative storage offset");
    // The highest element the view touches must lie inside the storage (overflow-checked).
    bool empty = false;
    std::int64_t last = offset;
    for (std::size_t d = 0; d < rank; ++d) {
      if (sizes[d] < 0 || strides[d] < 0) throw bad("negative size or stride");
      if (sizes[d] == 0) empty = true;
    }
    if (!empty) {
      for (std::size_t d = 0; d < rank; ++d) {
        std::int64_t span = 0;
        if (__builtin_mul_overflow(sizes[d] - 1, strides[d], &span) ||
            __builtin_add_overflow(last, span, &last))
          throw bad("size/stride overflow");
      }
      if (last >= base.numel())
        throw bad("view (offset " + std::to_string(offset) + ", size " + shape_string(sizes) +
                  ", stride " + shape_string(strides) + ") reaches past its storage of " +
                  std::to_string(base.numel()) + " elements");
    } else if (offset > base.numel()) {
      throw bad("storage offset past the end of its storage");
    }
    return base.as_strided(sizes, strides, offset);
  }

  struct Storage {
    torch::Tensor data;
    pickle::ElementType etype;
  };
  const pickle::Unpickler& u_;
  std::string origin_;
  Loader loader_;
  bool big_endian_;
  std::unordered_map<std::string, Storage> storages_;
};

inline TensorDict read_pth_zip(ByteSpan bytes, const std::string& origin, PthInfo* info) {
  ZipReader zip(bytes, origin);
  // The pickle is PREFIX/data.pkl for any folder PREFIX (torch uses the file's stem or
  // "archive"); pick the shortest such name.
  const ZipEntry* pkl = nullptr;
  for (const auto& e : zip.entries()) {
    const std::string& n = e.name;
    const bool match =
        n == "data.pkl" || (n.size() > 9 && n.compare(n.size() - 9, 9, "/data.pkl") == 0);
    if (match && (!pkl || n.size() < pkl->name.size())) pkl = &e;
  }
  if (!pkl) throw Error(origin + ": zip archive without a data.pkl: not a torch.save file");
  const std::string prefix = pkl->name.substr(0, pkl->name.size() - 8);
  if (zip.find(prefix + "constants.pkl"))
    throw Error(origin + ": a TorchScript archive (torch.jit.save), not a torch.save state_dict");
  bool big = false;
  if (const ZipEntry* bo = zip.find(prefix + "byteorder")) {
    const auto order = zip.data(*bo).view();
    if (order == "big") {
      big = true;
    } else if (order != "little") {
      throw Error(origin + ": unknown byteorder '" + std::string(order.substr(0, 16)) + "'");
    }
  }
  if (info) *info = {PthContainer::Zip, prefix, big};

  pickle::Unpickler u(zip.data(*pkl), origin + " (" + pkl->name + ")");
  const std::uint32_t root = u.load(0);
  auto loader = [&](const std::string& key, pickle::ElementType, std::int64_t) {
    const ZipEntry* e = zip.find(prefix + "data/" + key);
    if (!e) throw Error(origin + ": storage '" + key + "' is missing from the archive");
    return zip.data(*e);
  };
  return PthBuilder(u, origin, loader, big).build(root);
}

inline TensorDict read_pth_legacy(ByteSpan bytes, const std::string& origin, PthInfo* info) {
  pickle::Unpickler u(bytes, origin);
  const auto& magic = u.at(u.load(0));
  static const char kMagic[] =
      "\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";  // 0x1950a86a20f9469cfc6c
  if (magic.kind != pickle::Kind::BigInt || magic.s != std::string(kMagic, 10))
    throw Error(origin + ": not a PyTorch file (bad magic number)");
  const auto& version = u.at(u.load(u.end()));
  if (version.kind != pickle::Kind::Int || version.i != 1001)
    throw Error(origin + ": unsupported legacy protocol version (expected 1001)");
  const std::uint32_t sys = u.load(u.end());
  bool big = false;
  if (u.at(sys).kind != pickle::Kind::Dict) throw Error(origin + ": bad legacy sys_info record");
  const auto& sys_items = u.at(sys).items;
  for (std::size_t k = 0; k + 1 < sys_items.size(); k += 2)
    if (u.at(sys_items[k]).kind == pickle::Kind::String && u.at(sys_items[k]).s == "little_endian")
      big = !u.at(sys_items[k + 1]).flag;
  const std::size_t first_object_value = u.values().size();
  const std::uint32_t root = u.load(u.end());
  const std::size_t last_object_value = u.values().size();
  const std::uint32_t keys = u.load(u.end());
  if (u.at(keys).kind != pickle::Kind::List) throw Error(origin + ": bad legacy storage key list");

  // Element sizes come from the storage types the object's pickle referenced.
  std::unordered_map<std::string, pickle::ElementType> etypes;
  for (std::size_t i = first_object_value; i < last_object_value; ++i) {
    const auto& v = u.values()[i];
    if (v.kind == pickle::Kind::Storage) etypes.emplace(v.s, v.etype);
  }
  std::unordered_map<std::string, ByteSpan> raw;
  std::uint64_t at = u.end();
  for (std::uint32_t k : u.at(keys).items) {
    const auto& key = u.at(k);
    if (key.kind != pickle::Kind::String) throw Error(origin + ": a storage key is not a str");
    auto et = etypes.find(key.s);
    if (et == etypes.end()) throw Error(origin + ": storage '" + key.s + "' is never used");
    if (!bytes.contains(at, 8))
      throw Error(origin + ": truncated: storage '" + key.s + "' header runs past the end of file");
    std::uint64_t n = big ? 0 : halsal::io::detail::load_le<std::uint64_t>(bytes.data + at);
    if (big)
      for (int b = 0; b < 8; ++b) n = (n << 8) | bytes.data[at + static_cast<std::uint64_t>(b)];
    at += 8;
    const std::size_t w = pickle::element_size(et->second);
    if (n > (bytes.size - at) / w)
      throw Error(origin + ": truncated: storage '" + key.s + "' declares " + std::to_string(n) +
                  " elements but only " + std::to_string(bytes.size - at) + " bytes are left");
    raw[key.s] = bytes.sub(at, n * w);
    at += n * w;
  }
  if (info) *info = {PthContainer::Legacy, "", big};
  auto loader = [&](const std::string& key, pickle::ElementType, std::int64_t) {
    auto it = raw.find(key);
    if (it == raw.end()) throw Error(origin + ": storage '" + key + "' has no data in the file");
    return it->second;
  };
  return PthBuilder(u, origin, loader, big).build(root);
}

// --- writing -------------------------------------------------------------------------------

/// Emits the protocol-2 pickle torch.save writes for an OrderedDict of tensors, each tensor
/// with its own storage "0", "1", ... (contiguous, offset 0).
class PickleWriter {
 public:
  std::vector<std::uint8_t> out;

  void op(std::uint8_t c) { out.push_back(c); }
  void global(const char* module, const char* name) {
    op('c');
    out.insert(out.end(), module, module + std::strlen(module));
    op('\n');
    out.insert(out.end(), name, name + std::strlen(name));
    op('\n');
  }
  void str(const std::string& s) {
    if (s.size() > 0xFFFFFFFFu) throw Error("pickle string too long");
    op('X');
    append_le<std::uint32_t>(out, static_cast<std::uint32_t>(s.size()));
    out.insert(out.end(), s.begin(), s.end());
  }
  void integer(std::int64_t v) {
    if (v >= 0 && v < 256) {
      op('K');
      op(static_cast<std::uint8_t>(v));
    } else if (v >= 0 && v < 65536) {
      op('M');
      append_le<std::uint16_t>(out, static_cast<std::uint16_t>(v));
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      op('J');
      append_le<std::uint32_t>(out, static_cast<std::uint32_t>(static_cast<std::int32_t>(v)));
    } else {
      op(0x8a);
      op(8);
      append_le<std::uint64_t>(out, static_cast<std::uint64_t>(v));
    }
  }
  void int_tuple(torch::IntArrayRef xs) {
    if (xs.empty()) return op(')');
    op('(');
    for (auto x : xs) integer(x);
    op('t');
  }
};

}  // namespace detail

/// Reads a .pth held in memory (either container); `origin` names it in errors.
inline TensorDict read_pth(ByteSpan bytes, const std::string& origin, PthInfo* info = nullptr) {
  if (bytes.size == 0) throw Error(origin + ": file is empty (0 bytes)");
  if (looks_like_zip(bytes)) return detail::read_pth_zip(bytes, origin, info);
  if (looks_like_legacy_pth(bytes)) return detail::read_pth_legacy(bytes, origin, info);
  if (bytes.size > 262 && std::memcmp(bytes.data + 257, "ustar", 5) == 0)
    throw Error(origin + ": a tar-format checkpoint (PyTorch <= 0.3), not supported");
  throw Error(origin +
              ": not a PyTorch .pth file (neither a zip archive nor a legacy torch.save stream)");
}

/// Reads a .pth file (either container) into tensors by name, in file order.
inline TensorDict read_pth(const std::filesystem::path& file, PthInfo* info = nullptr) {
  MappedFile map(file);
  return read_pth(map.bytes(), file.string(), info);
}

/// Writes `tensors` as torch.save does (zip container, archive folder `archive_name`) into
/// `sink`. Each tensor gets its own contiguous storage; Python's torch.load reads the result.
inline void write_pth(ByteSink& sink, const TensorDict& tensors, const std::string& origin,
                      const std::string& archive_name = "archive") {
  detail::PickleWriter p;
  p.op(0x80);
  p.op(2);
  p.global("collections", "OrderedDict");
  p.op(')');
  p.op('R');
  p.op('(');
  std::vector<torch::Tensor> data;
  data.reserve(tensors.size());
  for (const auto& item : tensors) {
    torch::Tensor t = item.value().detach().to(torch::kCPU).contiguous();
    pickle::ElementType et;
    if (!from_torch_dtype(t.scalar_type(), &et))
      throw Error(origin + ": tensor '" + item.key() + "' has dtype " +
                  dtype_name(t.scalar_type()) + ", which .pth writing does not support");
    const std::string key = std::to_string(data.size());
    p.str(item.key());
    p.global("torch._utils", "_rebuild_tensor_v2");
    p.op('(');
    p.op('(');
    p.str("storage");
    p.global("torch", pickle::storage_class_name(et));
    p.str(key);
    p.str("cpu");
    p.integer(t.numel());
    p.op('t');
    p.op('Q');  // BINPERSID
    p.integer(0);
    p.int_tuple(t.sizes());
    p.int_tuple(t.strides());
    p.op(0x89);  // requires_grad=False
    p.global("collections", "OrderedDict");
    p.op(')');
    p.op('R');
    p.op('t');
    p.op('R');
    data.push_back(std::move(t));
  }
  p.op('u');  // SETITEMS
  p.op('.');

  ZipWriter zip(sink, origin);
  const std::string prefix = archive_name + "/";
  zip.add(prefix + "data.pkl", p.out.data(), p.out.size());
  zip.add(prefix + "byteorder", "little", 6);
  for (std::size_t i = 0; i < data.size(); ++i)
    zip.add(prefix + "data/" + std::to_string(i), data[i].data_ptr(),
            static_cast<std::size_t>(data[i].numel() * data[i].element_size()));
  zip.add(prefix + "version", "3\n", 2);
  zip.finish();
}

/// Writes `tensors` to a .pth file (zip container), atomically.
inline void write_pth(const std::filesystem::path& file, const TensorDict& tensors) {
  AtomicFile out(file);
  auto stem = file.stem().string();
  if (stem.empty()) stem = "archive";
  write_pth(out, tensors, file.string(), stem);
  out.commit();
}

}  // namespace halsal::io
