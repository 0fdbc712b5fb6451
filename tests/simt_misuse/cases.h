// A tiny registry of named cases for the simt_cases driver: each .cpp file registers its
// kernels' host-side runners; main.cpp runs one by name. A runner returns normally when the
// kernel behaved as it should, and throws (simt::Error from the harness, std::logic_error
// for a wrong result) otherwise.
#pragma once

#include <cstdio>
#include <functional>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>

#include "cuda/portability.h"

namespace cases {

using Runner = std::function<void()>;

inline std::map<std::string, Runner>& registry() {
  static std::map<std::string, Runner> cases;
  return cases;
}

struct Register {
  Register(const char* name, Runner run) { registry().emplace(name, std::move(run)); }
};

// Throws std::logic_error with a message built from `parts` unless `ok`.
template <typename... Parts>
void expect(bool ok, const Parts&... parts) {
  if (!ok) {
    std::ostringstream out;
    out << "wrong result: ";
    (out << ... << parts);
    throw std::logic_error(out.str());
  }
}

}  // namespace cases

#define SIMT_CASE(name)                                        \
  static void name();                                          \
  static const cases::Register register_##name(#name, &name); \
  static void name()
