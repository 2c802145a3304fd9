// Internal to tm_query: the site side of model rounds (building the design matrix from the
// dictionary's columns and computing the additive sums of query/partial.h's layouts), and the
// conversions between those layouts and the stats:: sums the coordinator fits from.
// Not part of the public interface.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "query/engine.h"
#include "query/partial.h"
#include "query/plan.h"
#include "stats/cox.h"
#include "stats/regression.h"

namespace trialmesh::query::detail {

// A model is fitted only when parameters <= kModelParameterShare × complete-case rows
// (DataSHIELD's nfilter.glm rule, default 0.33): per site in plain aggregation
// (ExecOptions::modelPerSiteRule), on the pooled rows in secure modes. docs/statistics.md.
inline constexpr double kModelParameterShare = 0.33;

// The fewest complete-case rows that pass that rule for p parameters.
inline uint64_t minimumRowsFor(size_t p) {
  uint64_t n = 0;
  while (static_cast<double>(p) > kModelParameterShare * static_cast<double>(n)) ++n;
  return n;
}

// The round statistic's partial over `source`'s rows (the plan's statistic must be a model
// round; a model itself is refused with InvalidArgument).
Result<PartialResult> executeModel(const Plan& plan, const storage::ColumnSource& source,
                                   const ExecOptions& options);

// The selection mask (1 = passes the where clause) of one chunk; all ones without a filter.
// Implemented by the engine (engine.cc) so filters have one evaluator.
Result<std::vector<uint8_t>> selectChunk(const Plan& plan, const storage::ColumnSource& source,
                                         uint32_t chunk, uint32_t rows);

// Prefix of the notes of a round's table that name the design columns, one per note in order.
inline constexpr const char* kDesignColumnNote = "design column: ";

// The finalized table of a round: one row per stratum (cells) with its complete-case rows; notes
// name the design columns (kDesignColumnNote) and give the counts.
Result<ResultTable> finalizeModel(const PartialResult& partial, const Plan& plan);

// Layout conversions (query/partial.h). Errors: InvalidArgument when the vector length does not
// fit p (and the grids, for Cox).
Result<stats::LinearSums> linearSumsOf(const StatPartial& s, uint32_t p);
Result<stats::LogisticSums> logisticSumsOf(const StatPartial& s, uint32_t p);
// `deaths`: per stratum the events at each grid time (the cox_times round's counts), which a
// cox_sums vec does not carry.
Result<stats::CoxSums> coxSumsOf(const StatPartial& s, uint32_t p,
                                 const std::vector<std::vector<double>>& grids,
                                 const std::vector<std::vector<double>>& deaths);

// Lengths of the lm_sums and glm_sums vecs (layouts in query/partial.h).
inline size_t lmSumsLength(size_t p) { return p * p + p + 2; }
inline size_t glmSumsLength(size_t p) { return p * p + p + 3; }

// Length of a cox_sums vec: per grid time 2 + 2p scalars and vectors and two symmetric p x p
// blocks sent as lower triangles (p (p + 1) / 2 each), and per stratum p for the events' summed
// covariates. The events per time are not sent (the cox_times round gave them) nor their
// covariate sums per time (only the total enters the likelihood and score): fewer words to mask
// in secure rounds, and less that a site discloses.
inline size_t coxSumsLength(const std::vector<std::vector<double>>& grids, size_t p) {
  size_t times = 0;
  for (const auto& g : grids) times += g.size();
  return times * (2 + 2 * p + p * (p + 1)) + grids.size() * p;
}

}  // namespace trialmesh::query::detail
