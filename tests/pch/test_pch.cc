// The translation unit that builds tests/pch/test_pch.h's precompiled header (tm_test_pch);
// the test executables reuse it.
