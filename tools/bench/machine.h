// The machine a benchmark ran on, as the markdown lines every report in BENCHMARKS.md starts
// with (CPU, nproc, RAM, OS, compiler and build type), so reports of different tools compare.
#pragma once

#include <string>

namespace trialmesh::bench {

// "- CPU: ...\n- RAM: ...\n- OS: ...\n- Compiler: ..., trialmesh built <buildType>\n".
std::string machineDescription(const std::string& buildType);

}  // namespace trialmesh::bench
