// simt::Error: the one exception type for every misuse the harness detects. launch_kernel
// throws it on the caller's stack, whichever fiber found the problem.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace simt {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error("simt: " + what) {}
};

namespace detail {

// Concatenates `parts` with operator<< into one message.
template <typename... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

template <typename... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  throw Error(concat(parts...));
}

// "0x0000ffff": masks read better in hex.
inline std::string hex_mask(unsigned mask) {
  std::ostringstream out;
  out << "0x";
  out.width(8);
  out.fill('0');
  out << std::hex << mask;
  return out.str();
}

}  // namespace detail
}  // namespace simt
