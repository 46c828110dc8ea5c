// halsal's one exception type, and the helper that names the file a problem comes from.
#pragma once
#include <filesystem>
#include <stdexcept>
#include <system_error>
#include <string>

namespace halsal {

/// Every error halsal reports: a sentence that says what is wrong (and with which file).
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// An Error about a file: "<path>: <what is wrong>".
inline Error file_error(const std::filesystem::path& file, const std::string& what) {
  return Error(file.string() + ": " + what);
}

namespace detail {

/// Why `file` cannot be read as a file: "is a folder, not a file", "is not a regular file" or
/// "no such file".
inline std::string not_a_file(const std::filesystem::path& file) {
  std::error_code ec;
  const auto status = std::filesystem::status(file, ec);
  if (std::filesystem::is_directory(status)) return "is a folder, not a file";
  if (std::filesystem::exists(status)) return "is not a regular file";
  return "no such file";
}

}  // namespace detail

}  // namespace halsal
