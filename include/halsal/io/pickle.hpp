// A restricted pickle interpreter for what torch.save writes: protocol 2 (and the later opcodes a
// protocol-4/5 pickle of the same objects uses), OrderedDict/dict containers, persistent-id
// storages and torch._utils._rebuild_tensor_v2 / _rebuild_parameter. It never runs code: the
// only globals it knows are data constructors, anything else is a halsal::Error. Values live in
// one arena and refer to each other by index, so self-referencing or deeply nested input cannot
// leak memory or overflow the stack. LibTorch-free; pth.hpp turns the result into tensors.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "halsal/core/error.hpp"
#include "halsal/io/bytes.hpp"

namespace halsal::io::pickle {

/// Element types of the torch storages halsal reads (torch.FloatStorage, torch.HalfStorage, ...).
enum class ElementType : std::uint8_t {
  Float32,
  Float16,
  BFloat16,
  Float64,
  Int64,
  Int32,
  Int16,
  UInt8,
  Int8,
  Bool
};

/// Bytes per element.
inline std::size_t element_size(ElementType t) {
  switch (t) {
    case ElementType::Float64:
    case ElementType::Int64:
      return 8;
    case ElementType::Float32:
    case ElementType::Int32:
      return 4;
    case ElementType::Float16:
    case ElementType::BFloat16:
    case ElementType::Int16:
      return 2;
    default:
      return 1;
  }
}

/// The storage class name torch pickles for an element type ("FloatStorage", ...).
inline const char* storage_class_name(ElementType t) {
  switch (t) {
    case ElementType::Float32:
      return "FloatStorage";
    case ElementType::Float16:
      return "HalfStorage";
    case ElementType::BFloat16:
      return "BFloat16Storage";
    case ElementType::Float64:
      return "DoubleStorage";
    case ElementType::Int64:
      return "LongStorage";
    case ElementType::Int32:
      return "IntStorage";
    case ElementType::Int16:
      return "ShortStorage";
    case ElementType::UInt8:
      return "ByteStorage";
    case ElementType::Int8:
      return "CharStorage";
    case ElementType::Bool:
      return "BoolStorage";
  }
  return "?";
}

/// Parses a storage class name; false when it is not one halsal reads.
inline bool element_type_from_storage_class(std::string_view name, ElementType* out) {
  for (int i = 0; i <= static_cast<int>(ElementType::Bool); ++i) {
    const auto t = static_cast<ElementType>(i);
    if (name == storage_class_name(t)) {
      *out = t;
      return true;
    }
  }
  return false;
}

/// What a pickled value is.
enum class Kind : std::uint8_t {
  None,
  Bool,
  Int,
  BigInt,  ///< an integer wider than 64 bits (legacy magic number): raw little-endian bytes in `s`
  Float,
  String,
  Bytes,
  Tuple,
  List,
  Dict,     ///< dict or OrderedDict: `items` = key0, value0, key1, value1, ... in insertion order
  Global,   ///< a known constructor; `global` says which
  Storage,  ///< a persistent-id storage: `s` key, `i` numel, `etype`; `view` with `ints` = {offset,
            ///< numel}
  Tensor    ///< _rebuild_tensor_v2: `items[0]` storage, `i` offset, `ints` = sizes then strides
};

/// The globals the interpreter accepts.
enum class GlobalId : std::uint8_t {
  OrderedDict,
  RebuildTensor,  ///< torch._utils._rebuild_tensor (PyTorch 0.3 files): no requires_grad, hooks
  RebuildTensorV2,
  RebuildParameter,
  RebuildParameterWithState,
  TorchSize,
  StorageType
};

/// One value in the arena.
struct Value {
  Kind kind = Kind::None;
  GlobalId global = GlobalId::OrderedDict;
  ElementType etype = ElementType::Float32;
  bool flag = false;  ///< Bool value; Tensor: requires_grad; Storage: is a legacy view
  std::int64_t i = 0;
  double f = 0;
  std::string s;
  std::vector<std::uint32_t> items;
  std::vector<std::int64_t> ints;
};

/// Short human name of a kind, for error messages.
inline const char* kind_name(Kind k) {
  static const char* names[] = {"None",  "bool", "int",  "big int", "float",   "str",   "bytes",
                                "tuple", "list", "dict", "global",  "storage", "tensor"};
  return names[static_cast<int>(k)];
}

/// Interprets one or more consecutive pickles in a byte buffer into a shared value arena.
class Unpickler {
 public:
  /// `data` is the buffer, `origin` (file and entry name) starts every error message.
  Unpickler(ByteSpan data, std::string origin) : data_(data), origin_(std::move(origin)) {}

  /// Runs the pickle starting at byte `offset` up to its STOP; returns its value's index.
  std::uint32_t load(std::size_t offset = 0) {
    pos_ = offset;
    stack_.clear();
    marks_.clear();
    memo_.clear();
    for (;;) {
      const std::size_t at = pos_;
      const std::uint8_t op = byte();
      if (op == '.') {  // STOP
        if (stack_.empty() || !marks_.empty()) fail(at, "STOP with an empty stack or an open MARK");
        return stack_.back();
      }
      step(op, at);
    }
  }

  /// Offset just past the last STOP read.
  std::size_t end() const { return pos_; }
  /// The value at `index`.
  const Value& at(std::uint32_t index) const { return values_.at(index); }
  /// Every value created so far.
  const std::vector<Value>& values() const { return values_; }
  /// The origin given at construction.
  const std::string& origin() const { return origin_; }

 private:
  [[noreturn]] void fail(std::size_t at, const std::string& what) const {
    throw Error(origin_ + ": bad pickle at byte " + std::to_string(at) + ": " + what);
  }

  // --- reading the opcode stream (every read is bounds-checked) -----------------------------
  void need(std::uint64_t n) const {
    if (!data_.contains(pos_, n))
      fail(pos_, "truncated (needs " + std::to_string(n) + " more bytes, " +
                     std::to_string(data_.size - std::min<std::size_t>(pos_, data_.size)) +
                     " left)");
  }
  std::uint8_t byte() {
    need(1);
    return data_.data[pos_++];
  }
  template <typename T>
  T le() {
    need(sizeof(T));
    T v = detail::load_le<T>(data_.data + pos_);
    pos_ += sizeof(T);
    return v;
  }
  std::string bytes(std::uint64_t n) {
    need(n);
    std::string s(reinterpret_cast<const char*>(data_.data + pos_), static_cast<std::size_t>(n));
    pos_ += static_cast<std::size_t>(n);
    return s;
  }
  std::string line() {
    const std::size_t start = pos_;
    const std::size_t limit = std::min<std::size_t>(data_.size, start + 256);
    for (std::size_t p = start; p < limit; ++p) {
      if (data_.data[p] == '\n') {
        pos_ = p + 1;
        return std::string(reinterpret_cast<const char*>(data_.data + start), p - start);
      }
    }
    fail(start, limit == data_.size ? "truncated (GLOBAL name runs past the end)"
                                    : "overlong GLOBAL name");
  }

  // --- the value stack ----------------------------------------------------------------------
  std::uint32_t make(Value v) {
    if (values_.size() >= 0xFFFFFFF0u) fail(pos_, "too many values");
    values_.push_back(std::move(v));
    return static_cast<std::uint32_t>(values_.size() - 1);
  }
  std::uint32_t make(Kind k) {
    Value v;
    v.kind = k;
    return make(std::move(v));
  }
  void push(std::uint32_t v) { stack_.push_back(v); }
  std::size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  std::uint32_t pop(std::size_t at) {
    if (stack_.size() <= floor()) fail(at, "stack underflow");
    const std::uint32_t v = stack_.back();
    stack_.pop_back();
    return v;
  }
  std::uint32_t top(std::size_t at) const {
    if (stack_.size() <= floor()) fail(at, "stack underflow");
    return stack_.back();
  }
  std::vector<std::uint32_t> pop_mark(std::size_t at) {
    if (marks_.empty()) fail(at, "no MARK to pop to");
    const std::size_t m = marks_.back();
    marks_.pop_back();
    std::vector<std::uint32_t> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  Value& val(std::uint32_t i) { return values_[i]; }
  void expect(std::uint32_t i, Kind k, std::size_t at, const char* what) const {
    if (values_[i].kind != k)
      fail(at, std::string(what) + " must be a " + kind_name(k) + ", not a " +
                   kind_name(values_[i].kind));
  }

  std::uint32_t make_int(std::int64_t x) {
    Value v;
    v.kind = Kind::Int;
    v.i = x;
    return make(std::move(v));
  }
  std::uint32_t make_str(Kind k, std::string s) {
    Value v;
    v.kind = k;
    v.s = std::move(s);
    return make(std::move(v));
  }
  std::uint32_t make_long(std::string raw) {  // two's complement, little-endian
    if (raw.size() <= 8) {
      std::uint64_t u = 0;
      for (std::size_t k = 0; k < raw.size(); ++k)
        u |= static_cast<std::uint64_t>(static_cast<std::uint8_t>(raw[k])) << (8 * k);
      if (!raw.empty() && raw.size() < 8 && (static_cast<std::uint8_t>(raw.back()) & 0x80))
        u |= ~std::uint64_t{0} << (8 * raw.size());
      return make_int(static_cast<std::int64_t>(u));
    }
    return make_str(Kind::BigInt, std::move(raw));
  }

  std::uint32_t resolve_global(const std::string& module, const std::string& name, std::size_t at) {
    Value v;
    v.kind = Kind::Global;
    v.s = module + "." + name;
    if (module == "collections" && name == "OrderedDict") {
      v.global = GlobalId::OrderedDict;
    } else if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
      v.global = GlobalId::RebuildTensorV2;
    } else if (module == "torch._utils" && name == "_rebuild_tensor") {
      v.global = GlobalId::RebuildTensor;
    } else if (module == "torch._utils" && name == "_rebuild_parameter") {
      v.global = GlobalId::RebuildParameter;
    } else if (module == "torch._utils" && name == "_rebuild_parameter_with_state") {
      v.global = GlobalId::RebuildParameterWithState;
    } else if (module == "torch" && name == "Size") {
      v.global = GlobalId::TorchSize;
    } else if (module == "torch" && element_type_from_storage_class(name, &v.etype)) {
      v.global = GlobalId::StorageType;
    } else {
      fail(at, "unsupported global '" + module + "." + name +
                   "' (halsal reads state_dicts: dicts of tensors, no other Python objects)");
    }
    return make(std::move(v));
  }

  std::uint32_t reduce(std::uint32_t callable, std::uint32_t args, std::size_t at) {
    if (val(callable).kind != Kind::Global) fail(at, "REDUCE on a non-callable");
    expect(args, Kind::Tuple, at, "REDUCE arguments");
    // Every known callable takes at most 7 arguments; checking first keeps the copy below small.
    if (val(args).items.size() > 7) fail(at, "too many arguments for '" + val(callable).s + "'");
    const std::vector<std::uint32_t> a = val(args).items;  // copy: make() may reallocate
    switch (val(callable).global) {
      case GlobalId::OrderedDict: {  // OrderedDict(): items follow with SETITEMS
        if (!a.empty()) fail(at, "unsupported OrderedDict arguments");
        return make(Kind::Dict);
      }
      case GlobalId::RebuildTensor:
      case GlobalId::RebuildTensorV2: {
        // (storage, storage_offset, size, stride[, requires_grad, backward_hooks[, metadata]])
        const bool v2 = val(callable).global == GlobalId::RebuildTensorV2;
        if (v2 ? (a.size() != 6 && a.size() != 7) : a.size() != 4)
          fail(at, v2 ? "_rebuild_tensor_v2 takes 6 or 7 arguments"
                      : "_rebuild_tensor takes 4 arguments");
        expect(a[0], Kind::Storage, at, "tensor storage");
        expect(a[1], Kind::Int, at, "storage offset");
        expect(a[2], Kind::Tuple, at, "tensor size");
        expect(a[3], Kind::Tuple, at, "tensor stride");
        if (v2) expect(a[4], Kind::Bool, at, "requires_grad");
        const auto& size = val(a[2]).items;
        const auto& stride = val(a[3]).items;
        if (size.size() != stride.size()) fail(at, "tensor size and stride differ in length");
        if (size.size() > 64) fail(at, "tensor has more than 64 dimensions");
        Value t;
        t.kind = Kind::Tensor;
        t.items = {a[0]};
        t.i = val(a[1]).i;
        t.flag = v2 && val(a[4]).flag;
        for (auto list : {&size, &stride})
          for (std::uint32_t d : *list) {
            expect(d, Kind::Int, at, "tensor size/stride entries");
            t.ints.push_back(val(d).i);
          }
        return make(std::move(t));
      }
      case GlobalId::RebuildParameter:
      case GlobalId::RebuildParameterWithState:
        // (data, requires_grad, backward_hooks[, state]): the Parameter is its data.
        if (a.size() < 3) fail(at, "_rebuild_parameter takes 3 or 4 arguments");
        expect(a[0], Kind::Tensor, at, "parameter data");
        return a[0];
      case GlobalId::TorchSize:
        if (a.size() != 1) fail(at, "torch.Size takes one argument");
        expect(a[0], Kind::Tuple, at, "torch.Size argument");
        return a[0];
      case GlobalId::StorageType:
        break;
    }
    fail(at, "cannot call '" + val(callable).s + "'");
  }

  std::uint32_t persistent_load(std::uint32_t pid, std::size_t at) {
    // ('storage', storage_type, key, location, numel[, view_metadata])
    expect(pid, Kind::Tuple, at, "persistent id");
    if (val(pid).items.size() != 5 && val(pid).items.size() != 6)
      fail(at, "persistent id must have 5 or 6 fields");
    const std::vector<std::uint32_t> p = val(pid).items;
    expect(p[0], Kind::String, at, "persistent id type");
    if (val(p[0]).s != "storage") fail(at, "unsupported persistent id type '" + val(p[0]).s + "'");
    if (val(p[1]).kind != Kind::Global || val(p[1]).global != GlobalId::StorageType)
      fail(at, "persistent id must name a storage type");
    expect(p[2], Kind::String, at, "storage key");
    expect(p[4], Kind::Int, at, "storage size");
    Value s;
    s.kind = Kind::Storage;
    s.etype = val(p[1]).etype;
    s.s = val(p[2]).s;
    s.i = val(p[4]).i;
    if (s.i < 0) fail(at, "negative storage size");
    if (p.size() == 6 && val(p[5]).kind != Kind::None) {
      // Pre-1.0 legacy files: (view_key, offset, size) into the root storage.
      expect(p[5], Kind::Tuple, at, "storage view");
      const auto& v = val(p[5]).items;
      if (v.size() != 3) fail(at, "storage view must have 3 fields");
      expect(v[1], Kind::Int, at, "view offset");
      expect(v[2], Kind::Int, at, "view size");
      s.flag = true;
      s.ints = {val(v[1]).i, val(v[2]).i};
    }
    return make(std::move(s));
  }

  void step(std::uint8_t op, std::size_t at) {
    switch (op) {
      case 0x80: {  // PROTO
        const std::uint8_t proto = byte();
        if (proto < 2 || proto > 5)
          fail(at, "unsupported pickle protocol " + std::to_string(proto));
        return;
      }
      case 0x95:  // FRAME: a length hint only
        le<std::uint64_t>();
        return;
      case '(':  // MARK
        marks_.push_back(stack_.size());
        return;
      case 'N':
        return push(make(Kind::None));
      case 0x88:
      case 0x89: {  // NEWTRUE, NEWFALSE
        Value v;
        v.kind = Kind::Bool;
        v.flag = (op == 0x88);
        v.i = v.flag;
        return push(make(std::move(v)));
      }
      case 'J':
        return push(make_int(static_cast<std::int32_t>(le<std::uint32_t>())));
      case 'K':
        return push(make_int(byte()));
      case 'M':
        return push(make_int(le<std::uint16_t>()));
      case 0x8a: {  // LONG1
        const std::uint8_t n = byte();
        return push(make_long(bytes(n)));
      }
      case 0x8b: {  // LONG4
        const std::int32_t n = static_cast<std::int32_t>(le<std::uint32_t>());
        if (n < 0) fail(at, "negative LONG4 length");
        return push(make_long(bytes(static_cast<std::uint64_t>(n))));
      }
      case 'G': {  // BINFLOAT: big-endian IEEE double
        need(8);
        std::uint64_t u = 0;
        for (int k = 0; k < 8; ++k) u = (u << 8) | data_.data[pos_ + k];
        pos_ += 8;
        Value v;
        v.kind = Kind::Float;
        std::memcpy(&v.f, &u, 8);
        return push(make(std::move(v)));
      }
      case 'X':  // BINUNICODE
        return push(make_str(Kind::String, bytes(le<std::uint32_t>())));
      case 0x8c:  // SHORT_BINUNICODE
        return push(make_str(Kind::String, bytes(byte())));
      case 0x8d:  // BINUNICODE8
        return push(make_str(Kind::String, bytes(le<std::uint64_t>())));
      case 'T': {  // BINSTRING (Python 2 str)
        const std::int32_t n = static_cast<std::int32_t>(le<std::uint32_t>());
        if (n < 0) fail(at, "negative BINSTRING length");
        return push(make_str(Kind::String, bytes(static_cast<std::uint64_t>(n))));
      }
      case 'U':  // SHORT_BINSTRING
        return push(make_str(Kind::String, bytes(byte())));
      case 'B':  // BINBYTES
        return push(make_str(Kind::Bytes, bytes(le<std::uint32_t>())));
      case 'C':  // SHORT_BINBYTES
        return push(make_str(Kind::Bytes, bytes(byte())));
      case 0x8e:  // BINBYTES8
        return push(make_str(Kind::Bytes, bytes(le<std::uint64_t>())));
      case ')':
        return push(make(Kind::Tuple));
      case ']':
        return push(make(Kind::List));
      case '}':
        return push(make(Kind::Dict));
      case 't': {
        Value v;
        v.kind = Kind::Tuple;
        v.items = pop_mark(at);
        return push(make(std::move(v)));
      }
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1..3
        const int n = op - 0x84;
        Value v;
        v.kind = Kind::Tuple;
        v.items.resize(static_cast<std::size_t>(n));
        for (int k = n - 1; k >= 0; --k) v.items[static_cast<std::size_t>(k)] = pop(at);
        return push(make(std::move(v)));
      }
      case 'l': {  // LIST
        Value v;
        v.kind = Kind::List;
        v.items = pop_mark(at);
        return push(make(std::move(v)));
      }
      case 'd': {  // DICT
        Value v;
        v.kind = Kind::Dict;
        v.items = pop_mark(at);
        if (v.items.size() % 2) fail(at, "DICT with an odd number of items");
        return push(make(std::move(v)));
      }
      case 'a': {  // APPEND
        const std::uint32_t x = pop(at);
        const std::uint32_t list = top(at);
        expect(list, Kind::List, at, "APPEND target");
        val(list).items.push_back(x);
        return;
      }
      case 'e': {  // APPENDS
        auto xs = pop_mark(at);
        const std::uint32_t list = top(at);
        expect(list, Kind::List, at, "APPENDS target");
        auto& items = val(list).items;
        items.insert(items.end(), xs.begin(), xs.end());
        return;
      }
      case 's': {  // SETITEM
        const std::uint32_t v = pop(at), k = pop(at);
        const std::uint32_t d = top(at);
        expect(d, Kind::Dict, at, "SETITEM target");
        val(d).items.push_back(k);
        val(d).items.push_back(v);
        return;
      }
      case 'u': {  // SETITEMS
        auto kv = pop_mark(at);
        if (kv.size() % 2) fail(at, "SETITEMS with an odd number of items");
        const std::uint32_t d = top(at);
        expect(d, Kind::Dict, at, "SETITEMS target");
        auto& items = val(d).items;
        items.insert(items.end(), kv.begin(), kv.end());
        return;
      }
      case '0':  // POP
        pop(at);
        return;
      case '1':  // POP_MARK
        pop_mark(at);
        return;
      case '2':  // DUP
        return push(top(at));
      case 'q':  // BINPUT
        memo_[byte()] = top(at);
        return;
      case 'r':  // LONG_BINPUT
        memo_[le<std::uint32_t>()] = top(at);
        return;
      case 0x94:  // MEMOIZE
        memo_[static_cast<std::uint32_t>(memo_.size())] = top(at);
        return;
      case 'h':
      case 'j': {  // BINGET, LONG_BINGET
        const std::uint32_t key = op == 'h' ? byte() : le<std::uint32_t>();
        auto it = memo_.find(key);
        if (it == memo_.end()) fail(at, "memo key " + std::to_string(key) + " was never stored");
        return push(it->second);
      }
      case 'c': {  // GLOBAL
        std::string module = line();
        std::string name = line();
        return push(resolve_global(module, name, at));
      }
      case 0x93: {  // STACK_GLOBAL
        const std::uint32_t name = pop(at), module = pop(at);
        expect(name, Kind::String, at, "STACK_GLOBAL name");
        expect(module, Kind::String, at, "STACK_GLOBAL module");
        return push(resolve_global(val(module).s, val(name).s, at));
      }
      case 'R': {  // REDUCE
        const std::uint32_t args = pop(at), callable = pop(at);
        return push(reduce(callable, args, at));
      }
      case 'b': {  // BUILD: object state (OrderedDict._metadata, tensor hooks) is not needed
        pop(at);
        const std::uint32_t target = top(at);
        const Kind k = val(target).kind;
        if (k != Kind::Dict && k != Kind::Tensor)
          fail(at, std::string("BUILD on a ") + kind_name(k));
        return;
      }
      case 'Q':  // BINPERSID
        return push(persistent_load(pop(at), at));
      default: {
        static const char* hex = "0123456789abcdef";
        std::string code = "0x";
        code += hex[op >> 4];
        code += hex[op & 15];
        fail(at, "unsupported pickle opcode " + code);
      }
    }
  }

  ByteSpan data_;
  std::string origin_;
  std::size_t pos_ = 0;
  std::vector<Value> values_;
  std::vector<std::uint32_t> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint32_t, std::uint32_t> memo_;
};

/// Walks a pickle's opcodes without running them and checks that every argument -- above all
/// every length-prefixed string or bytes -- lies inside `bytes`, up to STOP. For pickles that are
/// handed to another reader (LibTorch's unpickler sizes its buffers by these lengths before it
/// reads them): a length larger than the rest of the pickle is refused here, naming `origin`.
inline void check_opcode_lengths(ByteSpan bytes, const std::string& origin) {
  std::size_t pos = 0;
  auto fail = [&](const std::string& what) -> void {
    throw Error(origin + ": damaged pickle at byte " + std::to_string(pos) + ": " + what);
  };
  auto need = [&](std::uint64_t n, const char* what) {
    if (n > bytes.size - pos) fail(std::string(what) + " of " + std::to_string(n) + " bytes where " +
                                   std::to_string(bytes.size - pos) + " remain");
  };
  auto uint_le = [&](int width) {
    need(static_cast<std::uint64_t>(width), "an argument");
    std::uint64_t v = 0;
    for (int i = 0; i < width; ++i) v |= static_cast<std::uint64_t>(bytes.data[pos + i]) << (8 * i);
    pos += static_cast<std::size_t>(width);
    return v;
  };
  auto line = [&] {
    const void* nl = std::memchr(bytes.data + pos, '\n', bytes.size - pos);
    if (!nl) fail("a text argument without its newline");
    pos = static_cast<std::size_t>(static_cast<const std::uint8_t*>(nl) - bytes.data) + 1;
  };
  auto counted = [&](int width, const char* what) {
    const std::uint64_t n = uint_le(width);
    need(n, what);
    pos += static_cast<std::size_t>(n);
  };
  while (pos < bytes.size) {
    const std::uint8_t op = bytes.data[pos++];
    switch (op) {
      case '.': return;  // STOP
      case '(': case '0': case '1': case '2': case 'N': case 'Q': case 'R': case ']': case 'a':
      case 'b': case 'd': case '}': case 'e': case 'l': case ')': case 's': case 't': case 'u':
      case 'o': case 0x81: case 0x85: case 0x86: case 0x87: case 0x88: case 0x89: case 0x8f:
      case 0x90: case 0x91: case 0x92: case 0x93: case 0x94: case 0x97: case 0x98:
        break;  // no argument
      case 'K': case 'h': case 'q': case 0x80: case 0x82: uint_le(1); break;
      case 'M': case 0x83: uint_le(2); break;
      case 'J': case 'j': case 'r': case 0x84: uint_le(4); break;
      case 'G': uint_le(8); break;
      case 'I': case 'L': case 'F': case 'S': case 'V': case 'P': case 'g': case 'p': line(); break;
      case 'c': case 'i': line(); line(); break;
      case 'U': case 'C': case 0x8a: case 0x8c: counted(1, "a string"); break;
      case 'T': case 'X': case 'B': case 0x8b: counted(4, "a string"); break;
      case 0x8d: case 0x8e: case 0x96: counted(8, "a string"); break;
      case 0x95: need(uint_le(8), "a frame"); break;  // FRAME: its opcodes follow inline
      default: --pos; fail("unknown opcode 0x" + std::string(1, "0123456789abcdef"[op >> 4]) + "0123456789abcdef"[op & 15]);
    }
  }
  fail("no STOP opcode before the end");
}

}  // namespace halsal::io::pickle
