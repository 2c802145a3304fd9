// Internal to the query module: the words, names and numbers that the query parser
// (query_parser.cc) and the canonical text (query.cc) must agree on, so canonical text always
// parses back to the same query.
#pragma once

#include <string>
#include <string_view>

#include "query/query.h"

namespace trialmesh::query::detail {

// ASCII case-insensitive equality (keywords and function names are case-insensitive).
bool iequals(std::string_view a, std::string_view b);

// Words with a meaning inside a filter or between clauses (and, or, not, in, is, missing,
// where, by, true, false, date). A variable with one of these names must be written in
// backticks (`by`); canonical text does that.
bool isReserved(std::string_view word);

// A name that needs no backticks: a letter or '_', then letters, digits, '_' or '.'.
bool isPlainIdentifier(std::string_view s);

// Shortest text that reads back as the same double.
std::string numberText(double v);

// Every statistic, for looking a function name up.
inline constexpr AggFn kAllFns[] = {
    AggFn::kCount,   AggFn::kSum,      AggFn::kMean,          AggFn::kVar,     AggFn::kSd,
    AggFn::kMin,     AggFn::kMax,      AggFn::kHist,          AggFn::kKm,      AggFn::kLm,
    AggFn::kGlm,     AggFn::kCoxph,    AggFn::kLmSums,        AggFn::kGlmSums, AggFn::kCoxTimes,
    AggFn::kCoxSums, AggFn::kQuantile, AggFn::kQuantileCounts};

}  // namespace trialmesh::query::detail
