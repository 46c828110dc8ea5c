// Text helpers every layer shares: locale-independent number formatting and CSV fields (RFC 4180
// quoting), so that tables, reports and data files read and write the same way.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <locale>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace halsal {

/// True when `s` begins with `prefix` (std::string::starts_with is C++20).
inline bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

/// printf-style fixed-point text of `v` ("nan" for NaN, never "-0.0"), independent of the locale.
inline std::string format_fixed(double v, int decimals) {
  if (std::isnan(v)) return "nan";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", std::clamp(decimals, 0, 17), v);
  std::string s = buf;
  if (s.find_first_not_of("-0.") == std::string::npos && s[0] == '-') s.erase(0, 1);  // no "-0.0"
  return s;
}

/// Shortest round-trip text of a double ("" for NaN), for CSV files that are read back.
inline std::string format_exact(double v) {
  if (std::isnan(v)) return "";
  std::ostringstream os;
  os.imbue(std::locale::classic());
  os.precision(std::numeric_limits<double>::max_digits10);
  os << v;
  return os.str();
}

/// A CSV field, quoted when it contains a comma, quote or line break.
inline std::string csv_quote(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += (c == '"') ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

/// Splits one CSV line into `out` (RFC 4180 quoting); false when a quoted field is not closed.
inline bool csv_split(const std::string& line, std::vector<std::string>& out) {
  out.assign(1, std::string());
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        out.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        out.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      out.emplace_back();
    } else {
      out.back() += c;
    }
  }
  return !quoted;
}

/// The fields of one CSV line (an unclosed quote runs to the end of the line).
inline std::vector<std::string> csv_fields(const std::string& line) {
  std::vector<std::string> out;
  csv_split(line, out);
  return out;
}

}  // namespace halsal
