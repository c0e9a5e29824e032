// SPDX-License-Identifier: MIT
// io/torch_pth.hpp: state_dicts saved by torch.save(model.state_dict(), "x.pth") (the ZIP format
// PyTorch writes by default since 1.6), read without Python. The archive (io/zip.hpp) holds
// <archive>/data.pkl, a pickle of an OrderedDict of tensors; <archive>/data/<key>, one record per
// storage (raw little-endian elements); and <archive>/version, byteorder, .data/... which only
// byteorder matters for. data.pkl runs on a pickle machine that knows only the opcodes a state_dict
// needs and an allow-list of globals, the equivalent of torch.load(weights_only=True): nothing is
// called, no object is built but dicts, lists, tuples, numbers, strings, storages and tensors.
// Tensors may be views of a shared storage (offset, any non-negative strides: gathered on read);
// elements convert to T as SafetensorsFile::tensor<T> does. A state_dict nested as {"state_dict": sd},
// {"model": sd} or {"model_state_dict": sd} (a training checkpoint) is found too.
// Errors: IoError "pth: <file>: <fault>", one line.
// Deliberately not here: the legacy (pre-1.6, non-zip) format, TorchScript archives (torch.jit.save),
// big-endian files, complex/quantized/sparse tensors, tensor subclasses, expanded (self-overlapping)
// views with more elements than their storage, mmap/lazy loading, writing .pth files.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"
#include "medimg/io/safetensors.hpp"
#include "medimg/io/utf8.hpp"
#include "medimg/io/zip.hpp"

namespace medimg::io {

/// True when the bytes start like a file torch.save writes: a ZIP archive ("PK\3\4", or "PK\5\6"
/// for an empty one), or a pickle stream (0x80, the PROTO opcode: the legacy format, which
/// TorchStateDict refuses with a message saying so).
inline bool looks_like_torch_file(const std::uint8_t* p, std::size_t n) {
    if (n >= 4 && p[0] == 'P' && p[1] == 'K' && ((p[2] == 3 && p[3] == 4) || (p[2] == 5 && p[3] == 6))) return true;
    // The legacy format starts with PROTO 2 and LONG1 of 10 bytes: torch.serialization's MAGIC_NUMBER.
    static const std::uint8_t legacy[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
    return n >= sizeof legacy && std::memcmp(p, legacy, sizeof legacy) == 0;
}

/// PyTorch's name of a dtype ("float32", "bfloat16", "int64", "bool", ...), for messages.
inline const char* torch_dtype_name(DType d) {
    switch (d) {
        case DType::F64: return "float64";
        case DType::F32: return "float32";
        case DType::F16: return "float16";
        case DType::BF16: return "bfloat16";
        case DType::I64: return "int64";
        case DType::I32: return "int32";
        case DType::I16: return "int16";
        case DType::I8: return "int8";
        case DType::U8: return "uint8";
        case DType::BOOL: return "bool";
    }
    return "?";
}

namespace detail {

/// The restricted unpickler. Objects live in arenas and refer to each other by index, so a hostile
/// pickle that puts a list inside itself makes no reference cycle and nothing is ever walked
/// recursively. The opcodes are those of protocols 2 (what torch.save uses) and 4 (FRAME,
/// SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL, for pickle_protocol=4); their meaning is the one in
/// CPython's Lib/pickletools.py. Every other opcode is refused by name, before it does anything.
class WeightsUnpickler {
public:
    enum class Kind : std::uint8_t { none, boolean, integer, floating, string, tuple, list, dict, function,
                                     storage_type, storage, tensor };
    enum class Fn : std::uint8_t { ordered_dict, rebuild_tensor_v2, rebuild_parameter };

    struct Obj {
        Kind kind = Kind::none;
        std::int64_t i = 0;     // boolean, integer; Fn; DType of a storage type; storage or tensor index
        double f = 0;           // floating
        std::uint32_t ref = 0;  // string, tuple/list, dict: index into their arena
    };
    struct Dict {
        std::vector<std::pair<std::uint32_t, std::uint32_t>> items;  // (key, value) in insertion order
        std::unordered_map<std::string, std::size_t> by_string;      // string keys -> position in items
    };
    /// A persistent id ('storage', torch.<T>Storage, key, location, numel).
    struct StorageRef {
        std::string key;
        DType dtype;
        std::uint64_t numel;
    };
    /// A _rebuild_tensor_v2 call: the view of a storage it describes (checked later against it).
    struct TensorRef {
        std::uint32_t storage;
        std::int64_t offset;
        std::vector<std::int64_t> size, stride;
        std::uint64_t at;  // the byte of its REDUCE, for messages
    };

    /// A state_dict's pickle is ~100 bytes and ~10 objects per tensor; this leaves room for 10^5
    /// tensors. It caps the objects, and separately the memo entries and the stack (+ marks).
    static constexpr std::uint64_t max_objects = 4'000'000;

    WeightsUnpickler(const std::uint8_t* data, std::uint64_t size, std::string prefix)
        : p_(data), n_(size), prefix_(std::move(prefix)) {}

    /// Runs the pickle to its STOP; returns the object it leaves.
    std::uint32_t run() {
        for (;;) {
            const std::uint64_t at = pos_;
            MEDIMG_CHECK(pos_ < n_, IoError, prefix_, "data.pkl ends at byte ", n_,
                         " without a STOP opcode (truncated or corrupt)");
            const std::uint8_t op = p_[pos_++];
            switch (op) {
                case 0x80: {  // PROTO
                    const std::uint8_t v = u8_(at, op);
                    MEDIMG_CHECK(v <= 5, IoError, prefix_, "pickle protocol ", int(v), " at byte ", at,
                                 " is newer than any Python writes (5)");
                    break;
                }
                case 0x95: {  // FRAME: a length prefix for buffering; the content is ordinary opcodes
                    const std::uint64_t len = le_(at, op, 8);
                    MEDIMG_CHECK(len <= n_ - pos_, IoError, prefix_, "FRAME at byte ", at, " of ", len,
                                 " bytes runs past the end of data.pkl (", n_ - pos_, " left)");
                    break;
                }
                case '(':  // MARK
                    check_depth_(at);
                    marks_.push_back(stack_.size());
                    break;
                case '}': push_(new_dict_()); break;                // EMPTY_DICT
                case ']': push_(new_seq_(Kind::list, {})); break;  // EMPTY_LIST
                case ')': push_(new_seq_(Kind::tuple, {})); break; // EMPTY_TUPLE
                case 't': push_(new_seq_(Kind::tuple, pop_mark_(at, op))); break;  // TUPLE
                case 0x85:
                case 0x86:
                case 0x87: {  // TUPLE1, TUPLE2, TUPLE3
                    const std::size_t k = op - 0x84u;
                    need_stack_(k, at, op);
                    std::vector<std::uint32_t> items(stack_.end() - static_cast<std::ptrdiff_t>(k), stack_.end());
                    stack_.resize(stack_.size() - k);
                    push_(new_seq_(Kind::tuple, std::move(items)));
                    break;
                }
                case 'q': memo_put_(u8_(at, op), at, op); break;                                 // BINPUT
                case 'r': memo_put_(static_cast<std::uint32_t>(le_(at, op, 4)), at, op); break;  // LONG_BINPUT
                case 0x94: memo_put_(static_cast<std::uint32_t>(memo_.size()), at, op); break;   // MEMOIZE
                case 'h': memo_get_(u8_(at, op), at); break;                                     // BINGET
                case 'j': memo_get_(static_cast<std::uint32_t>(le_(at, op, 4)), at); break;      // LONG_BINGET
                case 'J':  // BININT: 4-byte signed
                    push_(new_int_(static_cast<std::int32_t>(static_cast<std::uint32_t>(le_(at, op, 4)))));
                    break;
                case 'K': push_(new_int_(u8_(at, op))); break;                                // BININT1
                case 'M': push_(new_int_(static_cast<std::int64_t>(le_(at, op, 2)))); break;  // BININT2
                case 0x8a: {  // LONG1: n bytes, little-endian two's complement
                    const std::uint8_t len = u8_(at, op);
                    MEDIMG_CHECK(len <= 8, IoError, prefix_, "integer of ", int(len), " bytes at byte ", at,
                                 " does not fit 64 bits");
                    std::uint64_t v = len ? le_(at, op, len) : 0;
                    if (len && len < 8 && (v >> (8 * len - 1)) & 1u) v |= ~std::uint64_t{0} << (8 * len);  // sign
                    push_(new_int_(static_cast<std::int64_t>(v)));
                    break;
                }
                case 'G': {  // BINFLOAT: 8-byte big-endian IEEE double
                    need_(8, at, op);
                    std::uint64_t b = 0;
                    for (int k = 0; k < 8; ++k) b = (b << 8) | p_[pos_ + static_cast<std::uint64_t>(k)];
                    pos_ += 8;
                    Obj o{Kind::floating};
                    std::memcpy(&o.f, &b, sizeof b);
                    push_(new_obj_(o));
                    break;
                }
                case 0x88:
                case 0x89: {  // NEWTRUE, NEWFALSE
                    Obj o{Kind::boolean};
                    o.i = op == 0x88;
                    push_(new_obj_(o));
                    break;
                }
                case 'N': push_(new_obj_(Obj{})); break;  // NONE
                case 'X': push_(new_string_(static_cast<std::uint64_t>(le_(at, op, 4)), at, op)); break;  // BINUNICODE
                case 0x8c: push_(new_string_(u8_(at, op), at, op)); break;  // SHORT_BINUNICODE
                case 'c': {  // GLOBAL: "module\nname\n"
                    const std::string module = line_(at);
                    const std::string name = line_(at);
                    push_(global_(module, name, at));
                    break;
                }
                case 0x93: {  // STACK_GLOBAL: module and name from the stack
                    const std::uint32_t name = pop_(at, op), module = pop_(at, op);
                    MEDIMG_CHECK(is_(module, Kind::string) && is_(name, Kind::string), IoError, prefix_,
                                 "STACK_GLOBAL at byte ", at, " takes two strings");
                    push_(global_(strings_[objs_[module].ref], strings_[objs_[name].ref], at));
                    break;
                }
                case 'Q': push_(persistent_load_(pop_(at, op), at)); break;  // BINPERSID
                case 'R': {                                                  // REDUCE: callable(*args)
                    const std::uint32_t args = pop_(at, op), fn = pop_(at, op);
                    push_(reduce_(fn, args, at));
                    break;
                }
                case 's': {  // SETITEM
                    const std::uint32_t v = pop_(at, op), k = pop_(at, op);
                    dict_set_(target_(Kind::dict, at, op), k, v);
                    break;
                }
                case 'u': {  // SETITEMS
                    const auto items = pop_mark_(at, op);
                    MEDIMG_CHECK(items.size() % 2 == 0, IoError, prefix_, "SETITEMS at byte ", at, " has an odd number (",
                                 items.size(), ") of keys and values");
                    const std::uint32_t d = target_(Kind::dict, at, op);
                    for (std::size_t k = 0; k < items.size(); k += 2) dict_set_(d, items[k], items[k + 1]);
                    break;
                }
                case 'a': {  // APPEND
                    const std::uint32_t v = pop_(at, op);
                    seqs_[objs_[target_(Kind::list, at, op)].ref].push_back(v);
                    break;
                }
                case 'e': {  // APPENDS
                    const auto items = pop_mark_(at, op);
                    auto& seq = seqs_[objs_[target_(Kind::list, at, op)].ref];
                    seq.insert(seq.end(), items.begin(), items.end());
                    break;
                }
                case 'b': {  // BUILD: only an OrderedDict's attribute dict (state_dict()._metadata), ignored
                    const std::uint32_t state = pop_(at, op);
                    need_stack_(1, at, op);
                    MEDIMG_CHECK(is_(stack_.back(), Kind::dict) && is_(state, Kind::dict), IoError, prefix_,
                                 "BUILD at byte ", at, " sets the state of ", a_(stack_.back()), " from ", a_(state),
                                 "; only an OrderedDict's _metadata dict is allowed");
                    break;
                }
                case '.': {  // STOP
                    MEDIMG_CHECK(stack_.size() == 1 && marks_.empty(), IoError, prefix_, "STOP at byte ", at, " leaves ",
                                 stack_.size(), " objects and ", marks_.size(), " marks; expected exactly one object");
                    return stack_.back();
                }
                default: {
                    static const char* hex = "0123456789abcdef";
                    const std::string code = std::string("0x") + hex[op >> 4] + hex[op & 15];
                    if (const char* name = opcode_name(op))
                        throw IoError(::medimg::detail::concat(prefix_, "pickle opcode ", code, " ('", name,
                                                               "') at byte ", at, " is not allowed in a weights file"));
                    throw IoError(::medimg::detail::concat(prefix_, "byte ", code, " at byte ", at,
                                                           " of data.pkl is not a pickle opcode"));
                }
            }
        }
    }

    const Obj& obj(std::uint32_t i) const { return objs_[i]; }
    const std::string& string(std::uint32_t i) const { return strings_[objs_[i].ref]; }
    const Dict& dict(std::uint32_t i) const { return dicts_[objs_[i].ref]; }
    const std::vector<StorageRef>& storages() const { return storages_; }
    const std::vector<TensorRef>& tensors() const { return tensors_; }
    bool is_(std::uint32_t i, Kind k) const { return objs_[i].kind == k; }

    /// "an int", "a tensor", ... for messages.
    std::string a_(std::uint32_t i) const {
        switch (objs_[i].kind) {
            case Kind::none: return "None";
            case Kind::boolean: return "a bool";
            case Kind::integer: return "an int";
            case Kind::floating: return "a float";
            case Kind::string: return "a str";
            case Kind::tuple: return "a tuple";
            case Kind::list: return "a list";
            case Kind::dict: return "a dict";
            case Kind::function: return "a function";
            case Kind::storage_type: return "a storage type";
            case Kind::storage: return "a storage";
            case Kind::tensor: return "a tensor";
        }
        return "?";
    }

    /// Pickle's name of an opcode ("GLOBAL", "REDUCE", ...; from Lib/pickletools.py), or nullptr.
    static const char* opcode_name(std::uint8_t op) {
        switch (op) {
            case '(': return "MARK";            case '.': return "STOP";           case '0': return "POP";
            case '1': return "POP_MARK";        case '2': return "DUP";            case 'F': return "FLOAT";
            case 'I': return "INT";             case 'J': return "BININT";         case 'K': return "BININT1";
            case 'L': return "LONG";            case 'M': return "BININT2";        case 'N': return "NONE";
            case 'P': return "PERSID";          case 'Q': return "BINPERSID";      case 'R': return "REDUCE";
            case 'S': return "STRING";          case 'T': return "BINSTRING";      case 'U': return "SHORT_BINSTRING";
            case 'V': return "UNICODE";         case 'X': return "BINUNICODE";     case 'a': return "APPEND";
            case 'b': return "BUILD";           case 'c': return "GLOBAL";         case 'd': return "DICT";
            case '}': return "EMPTY_DICT";      case 'e': return "APPENDS";        case 'g': return "GET";
            case 'h': return "BINGET";          case 'i': return "INST";           case 'j': return "LONG_BINGET";
            case 'l': return "LIST";            case ']': return "EMPTY_LIST";     case 'o': return "OBJ";
            case 'p': return "PUT";             case 'q': return "BINPUT";         case 'r': return "LONG_BINPUT";
            case 's': return "SETITEM";         case 't': return "TUPLE";          case ')': return "EMPTY_TUPLE";
            case 'u': return "SETITEMS";        case 'G': return "BINFLOAT";       case 0x80: return "PROTO";
            case 0x81: return "NEWOBJ";         case 0x82: return "EXT1";          case 0x83: return "EXT2";
            case 0x84: return "EXT4";           case 0x85: return "TUPLE1";        case 0x86: return "TUPLE2";
            case 0x87: return "TUPLE3";         case 0x88: return "NEWTRUE";       case 0x89: return "NEWFALSE";
            case 0x8a: return "LONG1";          case 0x8b: return "LONG4";         case 'B': return "BINBYTES";
            case 'C': return "SHORT_BINBYTES";  case 0x8c: return "SHORT_BINUNICODE";
            case 0x8d: return "BINUNICODE8";    case 0x8e: return "BINBYTES8";     case 0x8f: return "EMPTY_SET";
            case 0x90: return "ADDITEMS";       case 0x91: return "FROZENSET";     case 0x92: return "NEWOBJ_EX";
            case 0x93: return "STACK_GLOBAL";   case 0x94: return "MEMOIZE";       case 0x95: return "FRAME";
            case 0x96: return "BYTEARRAY8";     case 0x97: return "NEXT_BUFFER";   case 0x98: return "READONLY_BUFFER";
            default: return nullptr;
        }
    }

private:
    // ---- reading the byte stream ----
    std::string op_(std::uint8_t op) const {
        const char* name = opcode_name(op);
        return name ? name : "?";
    }
    void need_(std::uint64_t k, std::uint64_t at, std::uint8_t op) const {
        MEDIMG_CHECK(k <= n_ - pos_, IoError, prefix_, "data.pkl ends inside opcode ", op_(op), " at byte ", at,
                     " (truncated or corrupt)");
    }
    std::uint8_t u8_(std::uint64_t at, std::uint8_t op) {
        need_(1, at, op);
        return p_[pos_++];
    }
    std::uint64_t le_(std::uint64_t at, std::uint8_t op, unsigned bytes) {
        need_(bytes, at, op);
        std::uint64_t v = 0;
        for (unsigned k = 0; k < bytes; ++k) v |= static_cast<std::uint64_t>(p_[pos_ + k]) << (8 * k);
        pos_ += bytes;
        return v;
    }
    // A GLOBAL operand: text up to "\n" (module and class names are short; 200 bytes is plenty).
    std::string line_(std::uint64_t at) {
        const std::uint64_t limit = std::min<std::uint64_t>(n_ - pos_, 200);
        const auto* begin = p_ + pos_;
        const auto* nl = static_cast<const std::uint8_t*>(std::memchr(begin, '\n', static_cast<std::size_t>(limit)));
        MEDIMG_CHECK(nl, IoError, prefix_, "GLOBAL at byte ", at, " has no newline-terminated name within ", limit,
                     " bytes");
        std::string s(reinterpret_cast<const char*>(begin), static_cast<std::size_t>(nl - begin));
        pos_ += static_cast<std::uint64_t>(nl - begin) + 1;
        return s;
    }

    // ---- the stack, marks and memo ----
    void push_(std::uint32_t i) {
        check_depth_(pos_);
        stack_.push_back(i);
    }
    void check_depth_(std::uint64_t at) const {
        MEDIMG_CHECK(stack_.size() + marks_.size() < max_objects, IoError, prefix_, "the pickle stack passes ",
                     max_objects, " entries near byte ", at, "; a state_dict needs a few dozen");
    }
    void need_stack_(std::size_t k, std::uint64_t at, std::uint8_t op) const {
        const std::size_t floor = marks_.empty() ? 0 : marks_.back();
        MEDIMG_CHECK(stack_.size() >= floor + k, IoError, prefix_, op_(op), " at byte ", at, " needs ", k,
                     k == 1 ? " object" : " objects", " on the pickle stack above the last MARK (corrupt data.pkl)");
    }
    std::uint32_t pop_(std::uint64_t at, std::uint8_t op) {
        need_stack_(1, at, op);
        const std::uint32_t v = stack_.back();
        stack_.pop_back();
        return v;
    }
    std::vector<std::uint32_t> pop_mark_(std::uint64_t at, std::uint8_t op) {
        MEDIMG_CHECK(!marks_.empty(), IoError, prefix_, op_(op), " at byte ", at, " has no MARK before it");
        const std::size_t m = marks_.back();
        marks_.pop_back();
        std::vector<std::uint32_t> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
        stack_.resize(m);
        return items;
    }
    // The object below the last MARK (SETITEMS, APPENDS) or on top of the stack (SETITEM, APPEND),
    // which must be of kind k.
    std::uint32_t target_(Kind k, std::uint64_t at, std::uint8_t op) {
        need_stack_(1, at, op);
        const std::uint32_t t = stack_.back();
        MEDIMG_CHECK(is_(t, k), IoError, prefix_, op_(op), " at byte ", at, " adds to ", a_(t), ", not to ",
                     k == Kind::dict ? "a dict" : "a list");
        return t;
    }
    void memo_put_(std::uint32_t slot, std::uint64_t at, std::uint8_t op) {
        need_stack_(1, at, op);
        MEDIMG_CHECK(memo_.size() < max_objects || memo_.count(slot), IoError, prefix_, op_(op), " at byte ", at,
                     " passes ", max_objects, " memo entries; a state_dict needs about 5 per tensor");
        memo_[slot] = stack_.back();
    }
    void memo_get_(std::uint32_t slot, std::uint64_t at) {
        const auto it = memo_.find(slot);
        MEDIMG_CHECK(it != memo_.end(), IoError, prefix_, "BINGET at byte ", at, " reads memo slot ", slot,
                     ", which was never stored");
        push_(it->second);
    }

    // ---- objects ----
    std::uint32_t new_obj_(const Obj& o) {
        MEDIMG_CHECK(objs_.size() < max_objects, IoError, prefix_, "data.pkl creates more than ", max_objects,
                     " objects; a state_dict needs about 10 per tensor");
        objs_.push_back(o);
        return static_cast<std::uint32_t>(objs_.size() - 1);
    }
    std::uint32_t new_int_(std::int64_t v) {
        Obj o{Kind::integer};
        o.i = v;
        return new_obj_(o);
    }
    std::uint32_t new_seq_(Kind k, std::vector<std::uint32_t> items) {
        Obj o{k};
        o.ref = static_cast<std::uint32_t>(seqs_.size());
        const std::uint32_t id = new_obj_(o);
        seqs_.push_back(std::move(items));
        return id;
    }
    std::uint32_t new_dict_() {
        Obj o{Kind::dict};
        o.ref = static_cast<std::uint32_t>(dicts_.size());
        const std::uint32_t id = new_obj_(o);
        dicts_.emplace_back();
        return id;
    }
    std::uint32_t new_string_(std::uint64_t len, std::uint64_t at, std::uint8_t op) {
        need_(len, at, op);
        std::string s(reinterpret_cast<const char*>(p_ + pos_), static_cast<std::size_t>(len));
        pos_ += len;
        MEDIMG_CHECK(valid_utf8(s), IoError, prefix_, "string at byte ", at, " is not valid UTF-8 ('", printable(s),
                     "')");
        Obj o{Kind::string};
        o.ref = static_cast<std::uint32_t>(strings_.size());
        const std::uint32_t id = new_obj_(o);
        strings_.push_back(std::move(s));
        return id;
    }
    void dict_set_(std::uint32_t d, std::uint32_t k, std::uint32_t v) {
        Dict& dict = dicts_[objs_[d].ref];
        if (is_(k, Kind::string)) {  // a repeated key keeps its place and takes the new value, as in Python
            const auto [it, added] = dict.by_string.emplace(strings_[objs_[k].ref], dict.items.size());
            if (!added) {
                dict.items[it->second].second = v;
                return;
            }
        }
        dict.items.emplace_back(k, v);
    }

    // ---- the allow-list ----
    std::uint32_t global_(const std::string& module, const std::string& name, std::uint64_t at) {
        const std::string full = printable(module, 60) + "." + printable(name, 60);
        Obj o{Kind::function};
        if (module == "collections" && name == "OrderedDict")
            o.i = static_cast<std::int64_t>(Fn::ordered_dict);
        else if (module == "torch._utils" && name == "_rebuild_tensor_v2")
            o.i = static_cast<std::int64_t>(Fn::rebuild_tensor_v2);
        else if (module == "torch._utils" && name == "_rebuild_parameter")
            o.i = static_cast<std::int64_t>(Fn::rebuild_parameter);
        else if (module == "torch" && name.size() > 7 && name.compare(name.size() - 7, 7, "Storage") == 0) {
            const auto dt = storage_dtype(name);
            MEDIMG_CHECK(dt.has_value(), IoError, prefix_, "storage type '", full,
                         "' is not supported (medimg reads Double, Float, Half, BFloat16, Long, Int, Short, Char, "
                         "Byte and Bool storages)");
            o.kind = Kind::storage_type;
            o.i = static_cast<std::int64_t>(*dt);
        } else {
            throw IoError(::medimg::detail::concat(prefix_, "global '", full, "' at byte ", at,
                                                   " is not on the allow-list (only OrderedDict, tensors and storages)"));
        }
        return new_obj_(o);
    }

public:
    /// The dtype of torch.<name> ("FloatStorage" -> F32, ...), or nullopt.
    static std::optional<DType> storage_dtype(std::string_view name) {
        static const std::pair<const char*, DType> table[] = {
            {"DoubleStorage", DType::F64}, {"FloatStorage", DType::F32}, {"HalfStorage", DType::F16},
            {"BFloat16Storage", DType::BF16}, {"LongStorage", DType::I64}, {"IntStorage", DType::I32},
            {"ShortStorage", DType::I16}, {"CharStorage", DType::I8}, {"ByteStorage", DType::U8},
            {"BoolStorage", DType::BOOL}};
        for (const auto& [n, d] : table)
            if (name == n) return d;
        return std::nullopt;
    }

private:
    std::uint32_t persistent_load_(std::uint32_t pid, std::uint64_t at) {
        const auto bad = [&](const char* what) {
            return IoError(::medimg::detail::concat(prefix_, "persistent id at byte ", at, " is not ('storage', ",
                                                    "torch.<T>Storage, key, location, numel): ", what));
        };
        if (!is_(pid, Kind::tuple)) throw bad("not a tuple");
        const auto& t = seqs_[objs_[pid].ref];
        if (t.size() != 5) throw bad("not 5 items");
        if (!is_(t[0], Kind::string) || strings_[objs_[t[0]].ref] != "storage") throw bad("the first item is not 'storage'");
        if (!is_(t[1], Kind::storage_type)) throw bad("the second item is not a storage type");
        if (!is_(t[2], Kind::string)) throw bad("the key is not a str");
        if (!is_(t[3], Kind::string)) throw bad("the location is not a str");
        if (!is_(t[4], Kind::integer) || objs_[t[4]].i < 0) throw bad("numel is not a non-negative int");
        const std::string& key = strings_[objs_[t[2]].ref];
        MEDIMG_CHECK(!key.empty() && key.size() <= 64 && key.find('/') == std::string::npos, IoError, prefix_,
                     "storage key '", printable(key), "' at byte ", at, " is not a plain record name");
        const auto dtype = static_cast<DType>(objs_[t[1]].i);
        const auto numel = static_cast<std::uint64_t>(objs_[t[4]].i);
        std::size_t index = storages_.size();
        const auto found = storage_index_.find(key);
        if (found != storage_index_.end()) {  // a second view of the same storage
            index = found->second;
            const StorageRef& s = storages_[index];
            MEDIMG_CHECK(s.dtype == dtype && s.numel == numel, IoError, prefix_, "storage '", printable(key),
                         "' is ", s.numel, " elements of ", torch_dtype_name(s.dtype), " at first and ", numel, " of ",
                         torch_dtype_name(dtype), " at byte ", at);
        } else {
            storage_index_.emplace(key, index);
            storages_.push_back({key, dtype, numel});
        }
        Obj o{Kind::storage};
        o.i = static_cast<std::int64_t>(index);
        return new_obj_(o);
    }

    // The three callables of the allow-list; each checks its arguments' types.
    std::uint32_t reduce_(std::uint32_t fn, std::uint32_t args, std::uint64_t at) {
        MEDIMG_CHECK(is_(fn, Kind::function), IoError, prefix_, "REDUCE at byte ", at, " calls ", a_(fn),
                     "; only OrderedDict, _rebuild_tensor_v2 and _rebuild_parameter may be called");
        MEDIMG_CHECK(is_(args, Kind::tuple), IoError, prefix_, "REDUCE at byte ", at, " takes its arguments from ",
                     a_(args), ", not a tuple");
        const std::vector<std::uint32_t> a = seqs_[objs_[args].ref];
        switch (static_cast<Fn>(objs_[fn].i)) {
            case Fn::ordered_dict:
                MEDIMG_CHECK(a.empty(), IoError, prefix_, "OrderedDict at byte ", at, " is called with ", a.size(),
                             a.size() == 1 ? " argument" : " arguments", "; only OrderedDict() is allowed");
                return new_dict_();
            case Fn::rebuild_parameter:  // (data, requires_grad, backward_hooks) -> data
                MEDIMG_CHECK(a.size() == 3 && is_(a[0], Kind::tensor) && is_(a[1], Kind::boolean) &&
                                 is_(a[2], Kind::dict) && dicts_[objs_[a[2]].ref].items.empty(),
                             IoError, prefix_, "_rebuild_parameter at byte ", at,
                             " takes (tensor, bool, empty OrderedDict)");
                return a[0];
            case Fn::rebuild_tensor_v2: break;
        }
        // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
        const std::string p = prefix_ + "_rebuild_tensor_v2 at byte " + std::to_string(at) + ": ";
        MEDIMG_CHECK(a.size() == 6 || a.size() == 7, IoError, p, "takes 6 or 7 arguments, got ", a.size());
        MEDIMG_CHECK(is_(a[0], Kind::storage), IoError, p, "the storage is ", a_(a[0]));
        MEDIMG_CHECK(is_(a[1], Kind::integer) && objs_[a[1]].i >= 0, IoError, p,
                     "the storage offset is not a non-negative int");
        TensorRef t;
        t.storage = static_cast<std::uint32_t>(objs_[a[0]].i);
        t.offset = objs_[a[1]].i;
        t.at = at;
        for (int k = 0; k < 2; ++k) {
            const std::uint32_t s = a[2 + k];
            const char* what = k == 0 ? "size" : "stride";
            MEDIMG_CHECK(is_(s, Kind::tuple), IoError, p, "the ", what, " is ", a_(s), ", not a tuple");
            auto& out = k == 0 ? t.size : t.stride;
            for (std::uint32_t d : seqs_[objs_[s].ref]) {
                MEDIMG_CHECK(is_(d, Kind::integer) && objs_[d].i >= 0, IoError, p, "the ", what,
                             " holds ", a_(d), (is_(d, Kind::integer) ? " below 0" : ""),
                             "; expected non-negative ints");
                out.push_back(objs_[d].i);
            }
        }
        MEDIMG_CHECK(t.size.size() == t.stride.size(), IoError, p, "size has ", t.size.size(), " dimensions but stride ",
                     t.stride.size());
        MEDIMG_CHECK(is_(a[4], Kind::boolean), IoError, p, "requires_grad is ", a_(a[4]), ", not a bool");
        MEDIMG_CHECK(is_(a[5], Kind::dict) && dicts_[objs_[a[5]].ref].items.empty(), IoError, p,
                     "backward_hooks must be an empty OrderedDict (hooks are code)");
        if (a.size() == 7) {  // metadata: {"conj": bool, "neg": bool} for complex views; all false here
            bool plain = is_(a[6], Kind::dict);
            if (plain)
                for (const auto& kv : dicts_[objs_[a[6]].ref].items)
                    plain = plain && is_(kv.second, Kind::boolean) && objs_[kv.second].i == 0;
            MEDIMG_CHECK(plain, IoError, p, "tensor metadata with a set conj/neg bit (complex views) is not supported");
        }
        Obj o{Kind::tensor};
        o.i = static_cast<std::int64_t>(tensors_.size());
        tensors_.push_back(std::move(t));
        return new_obj_(o);
    }

    const std::uint8_t* p_;
    std::uint64_t n_, pos_ = 0;
    std::string prefix_;
    std::vector<Obj> objs_;
    std::vector<std::string> strings_;
    std::vector<std::vector<std::uint32_t>> seqs_;
    std::vector<Dict> dicts_;
    std::vector<StorageRef> storages_;
    std::unordered_map<std::string, std::size_t> storage_index_;
    std::vector<TensorRef> tensors_;
    std::vector<std::uint32_t> stack_;
    std::vector<std::size_t> marks_;
    std::unordered_map<std::uint32_t, std::uint32_t> memo_;
};

}  // namespace detail

/// A validated torch.save state_dict held in memory. Every structural problem (archive, pickle,
/// storages, tensor geometry) is reported by load*(), never later; tensor<T>() can only fail for a
/// missing key or a value that does not fit an integral T. API as SafetensorsFile's where it applies.
class TorchStateDict {
public:
    /// data.pkl of a state_dict is ~100 bytes per tensor; a larger one is refused before it is read.
    static constexpr std::uint64_t max_pickle_bytes = std::uint64_t{16} << 20;
    /// The keys a state_dict may be nested under in a training checkpoint ({"model": sd, "epoch": 3}).
    static constexpr const char* nesting_keys[] = {"state_dict", "model", "model_state_dict"};

    /// Largest file load() reads (16 GiB), checked from the file's size before anything is read:
    /// the archive's storages are used in place, so the whole file is held in memory.
    static constexpr std::uint64_t max_file_bytes = std::uint64_t{16} << 30;

    /// Validates the file and reads it once. Structure first: its first bytes (the format), then the
    /// archive's end records, central directory and local headers (ZipArchive::check_layout, which
    /// also requires them to account for every byte of the file) are read and checked before the
    /// data is, so a large file that is not a sound archive costs a few small reads, not its size
    /// in memory. Throws IoError ("pth: <path>: ...").
    static TorchStateDict load(const std::string& path, const ZipLimits& limits = {}) {
        TorchStateDict f;
        f.name_ = path;
        detail::InputFile in(path, "pth");
        in.check_size(max_file_bytes, "TorchStateDict::max_file_bytes");
        in.read_at(f.bytes_, 0, std::min<std::uint64_t>(in.size(), 16));
        f.check_format_(f.bytes_.data(), f.bytes_.size());
        ZipArchive::check_layout(
            in.size(), [&in](std::uint64_t off, std::uint64_t n, std::vector<std::uint8_t>& out) { in.read_at(out, off, n); },
            path, "pth", limits);
        f.bytes_.clear();
        in.read_at(f.bytes_, 0, in.size());
        f.parse_(limits);
        return f;
    }
    /// Validates a file image already in memory; `name` stands for the file in messages.
    static TorchStateDict load_from_memory(std::vector<std::uint8_t> bytes, std::string name = "<memory>",
                                           const ZipLimits& limits = {}) {
        TorchStateDict f;
        f.name_ = std::move(name);
        f.bytes_ = std::move(bytes);
        f.parse_(limits);
        return f;
    }
    static TorchStateDict load_from_memory(const void* data, std::size_t size, std::string name = "<memory>",
                                           const ZipLimits& limits = {}) {
        const auto* p = static_cast<const std::uint8_t*>(data);
        return load_from_memory(std::vector<std::uint8_t>(p, p + size), std::move(name), limits);
    }

    /// The path (or the name given to load_from_memory) used in messages.
    const std::string& name() const { return name_; }
    /// Tensor names in the state_dict's order (the order of model.state_dict()).
    std::vector<std::string> keys() const {
        std::vector<std::string> k;
        k.reserve(entries_.size());
        for (const Entry& e : entries_) k.push_back(e.key);
        return k;
    }
    std::size_t size() const { return entries_.size(); }
    bool contains(const std::string& key) const { return index_.count(key) != 0; }
    DType dtype(const std::string& key) const { return entry_(key).dtype; }
    Shape shape(const std::string& key) const { return entry_(key).shape; }
    /// Strides and storage offset in elements, as torch.Tensor.stride() / storage_offset() give them.
    std::vector<std::int64_t> stride(const std::string& key) const { return entry_(key).stride; }
    std::int64_t storage_offset(const std::string& key) const { return entry_(key).offset; }
    /// The key of the checkpoint dict the state_dict was found under ("state_dict", "model",
    /// "model_state_dict"), or "" when the file is the state_dict itself.
    const std::string& nested_under() const { return nested_under_; }

    /// A new contiguous tensor holding `key` converted to T, with the rules of
    /// SafetensorsFile::tensor<T> (IoError when a value does not fit an integral T). A view with
    /// other strides is gathered element by element.
    template <class T>
    Tensor<T, Cpu> tensor(const std::string& key) const {
        static_assert(has_dtype_v<T>,
                      "medimg::io: TorchStateDict::tensor<T> needs float, double, int64_t, int32_t, "
                      "int16_t, int8_t, uint8_t or bool");
        const Entry& e = entry_(key);
        auto t = Tensor<T, Cpu>::empty(e.shape);  // e.g. (C_out, C_in, kH, kW) for a conv weight
        const Storage& s = storages_[e.storage];
        const std::uint8_t* base = s.bytes.data(bytes_.data());
        const auto w = static_cast<std::int64_t>(dtype_size(e.dtype));
        std::int64_t at = 0;  // the element being written, for the message
        const auto fail = [&](std::int64_t i, auto value) {
            throw IoError(::medimg::detail::concat(prefix_(), "tensor '", detail::printable(e.key), "': element ",
                                                   at + i, " (value ", value, ") of ", torch_dtype_name(e.dtype),
                                                   " does not fit the requested ", torch_dtype_name(dtype_of<T>())));
        };
        if (t.numel() == 0) return t;
        if (e.contiguous) {
            detail::decode_elements(base + e.offset * w, e.dtype, t.numel(), t.data(), fail);
            return t;
        }
        // Gather, row-major: each run along the last dimension is one strided walk of the storage.
        const int r = e.shape.rank();  // >= 1: a scalar is contiguous
        const std::int64_t inner = e.shape[r - 1], inner_stride = e.stride[static_cast<std::size_t>(r - 1)];
        std::vector<std::int64_t> idx(static_cast<std::size_t>(r), 0);
        for (const std::int64_t n = t.numel(); at < n;) {
            std::int64_t off = e.offset;
            for (int d = 0; d + 1 < r; ++d) off += idx[static_cast<std::size_t>(d)] * e.stride[static_cast<std::size_t>(d)];
            for (std::int64_t j = 0; j < inner; ++j, ++at)
                detail::decode_elements(base + (off + j * inner_stride) * w, e.dtype, 1, t.data() + at, fail);
            for (int d = r - 2; d >= 0; --d) {
                auto& i = idx[static_cast<std::size_t>(d)];
                if (++i < e.shape[d]) break;
                i = 0;
            }
        }
        return t;
    }

private:
    struct Storage {
        std::string record;  // "<archive>/data/<key>"
        DType dtype;
        std::uint64_t numel;
        ZipData bytes;       // a view of bytes_ (stored) or the inflated bytes
    };
    struct Entry {
        std::string key;
        std::size_t storage;
        DType dtype;
        Shape shape;
        std::vector<std::int64_t> stride;
        std::int64_t offset;
        bool contiguous;
    };
    using Unpickler = detail::WeightsUnpickler;

    TorchStateDict() = default;

    std::string prefix_() const { return "pth: " + name_ + ": "; }

    const Entry& entry_(const std::string& key) const {
        const auto it = index_.find(key);
        if (it != index_.end()) return entries_[it->second];
        throw IoError(detail::missing_key_message(prefix_(), key, keys()));
    }

    // What the first bytes say: empty, the legacy format, a bare pickle, or not a ZIP archive at all.
    void check_format_(const std::uint8_t* b, std::size_t n) const {
        const std::string p = prefix_();
        MEDIMG_CHECK(n > 0, IoError, p, "file is empty (0 bytes)");
        MEDIMG_CHECK(!(b[0] == 0x80 && looks_like_torch_file(b, n)), IoError, p,
                     "legacy torch.save format (PyTorch < 1.6, or _use_new_zipfile_serialization=False) is not "
                     "supported; load it in Python and save it again with torch.save(state_dict, path)");
        MEDIMG_CHECK(b[0] != 0x80, IoError, p,
                     "a bare pickle stream, not a torch.save ZIP archive; save the state_dict with torch.save");
        MEDIMG_CHECK(n >= 4 && b[0] == 'P' && b[1] == 'K', IoError, p, "not a torch.save file (no ZIP signature \"PK\" "
                     "at the start; got ", detail::printable(std::string_view(reinterpret_cast<const char*>(b), std::min<std::size_t>(n, 4))), ")");
    }

    void parse_(const ZipLimits& limits) {
        const std::string p = prefix_();
        const std::uint8_t* b = bytes_.data();
        const std::size_t n = bytes_.size();
        check_format_(b, n);
        ZipArchive zip(b, n, name_, "pth", limits);
        MEDIMG_CHECK(!zip.entries().empty(), IoError, p, "the ZIP archive is empty");

        // Every record is under one folder, named after the file torch.save wrote ("archive/" lately).
        const std::string& first = zip.entries().front().name;
        const auto slash = first.find('/');
        MEDIMG_CHECK(slash != std::string::npos && slash > 0, IoError, p, "record '", detail::printable(first),
                     "' is not inside a folder; torch.save writes '<archive>/data.pkl', '<archive>/data/0', ...");
        const std::string folder = first.substr(0, slash + 1);
        MEDIMG_CHECK(!zip.find(folder + "constants.pkl"), IoError, p,
                     "a TorchScript archive (torch.jit.save), not a torch.save state_dict; save "
                     "model.state_dict() with torch.save");
        const ZipEntry* pkl = zip.find(folder + "data.pkl");
        MEDIMG_CHECK(pkl, IoError, p, "no '", detail::printable(folder), "data.pkl' record (not written by torch.save?)");
        MEDIMG_CHECK(pkl->uncompressed_size <= max_pickle_bytes, IoError, p, "data.pkl is ", pkl->uncompressed_size,
                     " bytes, more than the limit of ", max_pickle_bytes, " for a state_dict's pickle");
        if (const ZipEntry* order = zip.find(folder + "byteorder")) {  // "little" or "big" (sys.byteorder)
            MEDIMG_CHECK(order->uncompressed_size <= 16, IoError, p, "the byteorder record is ",
                         order->uncompressed_size, " bytes; expected 'little'");
            const ZipData d = zip.read(*order);
            const std::string text(reinterpret_cast<const char*>(d.data(b)), static_cast<std::size_t>(d.size));
            MEDIMG_CHECK(text == "little", IoError, p, "the byteorder record says '", detail::printable(text),
                         "'; medimg reads little-endian files only");
        }

        const ZipData pickle = zip.read(*pkl);
        Unpickler vm(pickle.data(b), pickle.size, p);
        const std::uint32_t sd = find_state_dict_(vm, vm.run());

        std::unordered_map<std::uint32_t, std::size_t> loaded;  // the unpickler's storage -> storages_
        for (const auto& [k, v] : vm.dict(sd).items) {
            const std::string& key = vm.string(k);
            const Unpickler::TensorRef& t = vm.tensors()[static_cast<std::size_t>(vm.obj(v).i)];
            auto it = loaded.find(t.storage);
            if (it == loaded.end()) it = loaded.emplace(t.storage, load_storage_(zip, vm.storages()[t.storage], folder, key)).first;
            entries_.push_back(make_entry_(key, t, it->second));
            index_.emplace(key, entries_.size() - 1);
        }
    }

    // The root object, or the dict nested under one of nesting_keys, when all its keys are strings
    // and all its values tensors.
    std::uint32_t find_state_dict_(const Unpickler& vm, std::uint32_t root) {
        const std::string p = prefix_();
        MEDIMG_CHECK(vm.is_(root, Unpickler::Kind::dict), IoError, p, "data.pkl holds ", vm.a_(root),
                     ", not a dict; expected a state_dict (torch.save(model.state_dict(), path))");
        const auto problem = [&](std::uint32_t d) -> std::string {
            for (const auto& [k, v] : vm.dict(d).items) {
                if (!vm.is_(k, Unpickler::Kind::string)) return "a key is " + vm.a_(k) + ", not a str";
                if (!vm.is_(v, Unpickler::Kind::tensor))
                    return "'" + detail::printable(vm.string(k)) + "' maps to " + vm.a_(v) + ", not a tensor";
            }
            return "";
        };
        const std::string why = problem(root);
        if (why.empty()) return root;
        const auto& by_string = vm.dict(root).by_string;
        for (const char* nest : nesting_keys) {
            const auto it = by_string.find(nest);
            if (it == by_string.end()) continue;
            const std::uint32_t v = vm.dict(root).items[it->second].second;
            MEDIMG_CHECK(vm.is_(v, Unpickler::Kind::dict), IoError, p, "data.pkl holds a checkpoint dict whose '", nest,
                         "' is ", vm.a_(v), ", not a state_dict");
            const std::string inner = problem(v);
            MEDIMG_CHECK(inner.empty(), IoError, p, "in the state_dict under '", nest, "', ", inner);
            nested_under_ = nest;
            return v;
        }
        throw IoError(::medimg::detail::concat(p, "data.pkl holds a dict in which ", why,
                                               "; expected a state_dict (str -> tensor), or one nested under "
                                               "'state_dict', 'model' or 'model_state_dict'"));
    }

    // Reads, CRC-checks (and inflates) the record of one storage; its size must match the persistent id.
    std::size_t load_storage_(ZipArchive& zip, const Unpickler::StorageRef& s, const std::string& folder,
                              const std::string& key) {
        const std::string p = prefix_();
        const std::string record = folder + "data/" + s.key;
        const ZipEntry* e = zip.find(record);
        MEDIMG_CHECK(e, IoError, p, "tensor '", detail::printable(key), "': its storage record '",
                     detail::printable(record), "' is missing from the archive");
        const std::uint64_t w = dtype_size(s.dtype);
        MEDIMG_CHECK(s.numel <= e->uncompressed_size / w && e->uncompressed_size == s.numel * w, IoError, p,
                     "storage record '", detail::printable(record), "' holds ", e->uncompressed_size,
                     " bytes but its persistent id says ", s.numel, " elements of ", torch_dtype_name(s.dtype), " (",
                     w, " bytes each)");
        storages_.push_back({record, s.dtype, s.numel, zip.read(*e)});
        return storages_.size() - 1;
    }

    // Checks a view against its storage: rank, element count, and the last element it reaches.
    Entry make_entry_(const std::string& key, const Unpickler::TensorRef& t, std::size_t storage) const {
        const Storage& s = storages_[storage];
        const std::string p = prefix_() + "tensor '" + detail::printable(key) + "': ";
        const auto dims = [](const std::vector<std::int64_t>& v) {
            std::string out = "[";
            for (std::size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + std::to_string(v[i]);
            return out + "]";
        };
        MEDIMG_CHECK(t.size.size() <= static_cast<std::size_t>(Shape::max_rank), IoError, p, "size ", dims(t.size),
                     " has rank ", t.size.size(), ", more than medimg's maximum of ", Shape::max_rank);
        constexpr auto limit = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
        std::uint64_t numel = 1;
        const bool empty = std::find(t.size.begin(), t.size.end(), 0) != t.size.end();
        for (std::int64_t d : t.size) {
            MEDIMG_CHECK(empty || numel <= limit / static_cast<std::uint64_t>(d), IoError, p, "size ", dims(t.size),
                         " overflows a 64-bit element count");
            numel = empty ? 0 : numel * static_cast<std::uint64_t>(d);
        }
        Entry e{key, storage, s.dtype, Shape(t.size), t.stride, t.offset, true};
        if (numel == 0) return e;
        // The last element the view reaches: offset + sum (size_i - 1) * stride_i, all terms >= 0.
        std::uint64_t last = static_cast<std::uint64_t>(t.offset);
        for (std::size_t i = 0; i < t.size.size(); ++i) {
            const auto span = static_cast<std::uint64_t>(t.size[i] - 1), st = static_cast<std::uint64_t>(t.stride[i]);
            MEDIMG_CHECK(st == 0 || span <= (limit - last) / st, IoError, p, "size ", dims(t.size), " with stride ",
                         dims(t.stride), " at storage offset ", t.offset, " overflows a 64-bit index");
            last += span * st;
        }
        MEDIMG_CHECK(last < s.numel, IoError, p, "size ", dims(t.size), " with stride ", dims(t.stride),
                     " at storage offset ", t.offset, " reaches element ", last, " but storage record '",
                     detail::printable(s.record), "' has ", s.numel, " elements");
        MEDIMG_CHECK(numel <= s.numel, IoError, p, "size ", dims(t.size), " with stride ", dims(t.stride),
                     " has more elements (", numel, ") than its storage (", s.numel,
                     "): a self-overlapping view (expand()), which medimg does not read; save it with .contiguous()");
        std::uint64_t expected = 1;  // row-major contiguity; dimensions of size 1 may have any stride
        for (std::size_t i = t.size.size(); i-- > 0;) {
            if (t.size[i] != 1 && static_cast<std::uint64_t>(t.stride[i]) != expected) e.contiguous = false;
            expected *= static_cast<std::uint64_t>(t.size[i]);
        }
        return e;
    }

    std::vector<std::uint8_t> bytes_;  // the whole file
    std::vector<Storage> storages_;    // those the state_dict's tensors use, in first-use order
    std::vector<Entry> entries_;       // in the state_dict's order
    std::map<std::string, std::size_t> index_;
    std::string name_, nested_under_;
};

/// TorchStateDict::load: a torch.save state_dict file (.pth, .pt), validated.
inline TorchStateDict load_torch_state_dict(const std::string& path, const ZipLimits& limits = {}) {
    return TorchStateDict::load(path, limits);
}
/// TorchStateDict::load_from_memory, for tests and fuzzing; `name` stands for the file in messages.
inline TorchStateDict load_torch_state_dict_from_memory(const void* data, std::size_t size,
                                                        std::string name = "<memory>", const ZipLimits& limits = {}) {
    return TorchStateDict::load_from_memory(data, size, std::move(name), limits);
}

}  // namespace medimg::io
