// Binding a query to a study's dictionary and running it over one site's rows.
//
//   TM_ASSIGN_OR_RETURN(Query q, parseQuery("count, mean(bmi) by arm"));
//   TM_ASSIGN_OR_RETURN(BoundQuery b, bindQuery(q, table.dictionary()));
//   TM_ASSIGN_OR_RETURN(PartialResult p, execute(b, table, {}));
//   // ... merge partials of other sites with mergeInto ...
//   TM_ASSIGN_OR_RETURN(ResultTable t, finalize(p, b));
//
// The engine scans chunk by chunk (storage::kChunkRows rows), reads only the columns the query
// names, and splits the chunks over worker threads; it does not depend on RocksDB.
//
// Thread-safety: a BoundQuery is immutable and may be shared; execute may run concurrently.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "common/status.h"
#include "query/partial.h"
#include "query/query.h"
#include "storage/column.h"
#include "storage/dictionary.h"

namespace trialmesh::query {

namespace detail {
struct Plan;
}

// A query whose names are resolved against one dictionary, with typed filter constants.
class BoundQuery {
 public:
  const Query& query() const;
  const std::string& canonicalText() const;
  const std::string& dictionaryHash() const;
  uint32_t cellCount() const;
  // The shape every partial of this query carries.
  PartialShape shape() const;

  // Implementation access for the engine and finalize.
  const detail::Plan& plan() const { return *plan_; }

 private:
  friend Result<BoundQuery> bindQuery(const Query&, const storage::Dictionary&);
  std::shared_ptr<const detail::Plan> plan_;
};

// Resolves names and checks types. Errors (InvalidArgument), for example:
//   unknown variable 'bmii' (did you mean 'bmi'?)
//   mean(arm): arm is categorical; mean needs an integer or real variable
//   'X' is not a level of sex (levels: F, M)
//   cannot group by bmi: bmi is real; group-by needs a categorical or boolean variable
Result<BoundQuery> bindQuery(const Query& query, const storage::Dictionary& dictionary);

struct ExecOptions {
  unsigned threads = 0;  // worker threads; 0 = std::thread::hardware_concurrency()
  // Identifies the source's contents (e.g. "<dataset>@<version>"): model rounds on the same key
  // reuse the design matrix and the Cox row order built by an earlier round (a small
  // process-wide cache), so a fit's later rounds skip the column reads and the sort. Must
  // change whenever the rows change. Empty: nothing is cached.
  std::string cacheKey;
  // Survival model rounds (cox_times, cox_sums): put every time on the grid 0, w, 2w, ...
  // (query/additive.h timeGridIndex: the first point at or above it) before computing, so the
  // rounds see the times secure aggregation can carry and agree on ties. Set by a site in
  // secure mode to the approval's time_bin; a negative time is then refused. REQUIRES: > 0.
  std::optional<double> survivalTimeBin;
  // Set by the caller when it no longer wants the answer (a site's query timed out or the node
  // is stopping): the scan stops at its next chunk of rows and returns ResourceExhausted, so an
  // abandoned query does not keep a worker busy. Null: the scan always runs to the end.
  std::shared_ptr<const std::atomic<bool>> cancelled;
  // Model rounds: refuse when parameters > kModelParameterShare x this source's complete-case
  // rows (query/model_kernel.h). A site in plain mode keeps it (the coordinator sees its sums);
  // in secure modes its sums are masked, so the rule applies to the pooled totals the
  // coordinator learns instead (query/model_runner.h) and a site of any size contributes.
  bool modelPerSiteRule = true;
  // Model rounds: the approval's model_min_site_rows (docs/ethics.md). A source with fewer
  // complete-case rows refuses, so the coordinator leaves the site out of the fit. 0 = none.
  uint32_t modelMinSiteRows = 0;
};

// The error a cancelled scan returns (ExecOptions::cancelled).
Status scanCancelledStatus();

// Computes the partial aggregates of `source`'s rows. Errors: FailedPrecondition when the
// source's dictionary is not the one the query was bound to; Corruption/IOError from the
// source, or Corruption when a stored value contradicts the dictionary (a level code out of
// range, a missing value where none is allowed); ResourceExhausted (scanCancelledStatus) when
// options.cancelled was set during the scan.
Result<PartialResult> execute(const BoundQuery& query, const storage::ColumnSource& source,
                              const ExecOptions& options = {});

}  // namespace trialmesh::query
