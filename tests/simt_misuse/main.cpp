// simt_cases: runs one registered case by name and prints how it ended, for
// tests/test_simt_harness.py.
//   simt_cases --list          the case names, one a line
//   simt_cases NAME [SEED]     runs NAME with simt::set_block_order_seed(SEED); prints its own
//                              output, then "OK", "SIMT_ERROR <message>" or "EXCEPTION <message>"
#include <cstdlib>
#include <string>

#include "cases.h"

int main(int argc, char** argv) {
  const auto& registry = cases::registry();
  if (argc == 2 && std::string(argv[1]) == "--list") {
    for (const auto& entry : registry) {
      std::printf("%s\n", entry.first.c_str());
    }
    return 0;
  }
  if (argc < 2 || registry.count(argv[1]) == 0) {
    std::fprintf(stderr, "usage: %s --list | NAME [SEED]\n", argv[0]);
    return 2;
  }
  simt::set_block_order_seed(argc > 2 ? std::strtoull(argv[2], nullptr, 0) : 0);
  try {
    registry.at(argv[1])();
    std::printf("OK\n");
  } catch (const simt::Error& e) {
    std::printf("SIMT_ERROR %s\n", e.what());
  } catch (const std::exception& e) {
    std::printf("EXCEPTION %s\n", e.what());
  }
  return 0;
}
