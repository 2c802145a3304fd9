#include "tools/bench/machine.h"

#include <sys/utsname.h>

#include <fstream>
#include <sstream>
#include <thread>

namespace trialmesh::bench {
namespace {

// The value of the first line of `path` that starts with `key` ("key: value" or key="value").
std::string readFirstMatch(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) {
      std::string v = line.substr(line.find_first_of(":=") + 1);
      v.erase(0, v.find_first_not_of(" \t\""));
      while (!v.empty() && (v.back() == '"' || v.back() == ' ')) v.pop_back();
      return v;
    }
  }
  return "unknown";
}

}  // namespace

std::string machineDescription(const std::string& buildType) {
  std::ostringstream s;
  struct utsname u {};
  ::uname(&u);
  s << "- CPU: " << readFirstMatch("/proc/cpuinfo", "model name")
    << ", `nproc` = " << std::thread::hardware_concurrency() << "\n";
  s << "- RAM: " << readFirstMatch("/proc/meminfo", "MemTotal") << "\n";
  s << "- OS: " << readFirstMatch("/etc/os-release", "PRETTY_NAME") << ", Linux " << u.release
    << "\n";
  s << "- Compiler: " << __VERSION__ << ", trialmesh built " << buildType << "\n";
  return s.str();
}

}  // namespace trialmesh::bench
