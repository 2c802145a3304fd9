// The precompiled header of every GoogleTest executable (tests/CMakeLists.txt): the headers
// nearly every test includes, parsed once per build instead of once per test source. It only
// saves compile time (CI has 2 cores); each test still includes what it uses.
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>
