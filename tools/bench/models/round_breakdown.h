// Where a secure Newton round's milliseconds go (trialmesh-bench-models): the steps a site runs
// for one cox_sums round (node/site.cc: scan with the cached design, encode, derive the pair
// keys, mask, seal) and the coordinator's per-site and once-per-round steps (open, unpack, add,
// decode), timed in-process on one site's store, each the minimum of several runs so that other
// jobs on a shared machine distort it least.
#pragma once

#include <cstdint>
#include <string>

#include "storage/column.h"

namespace trialmesh::bench {

// `roundQuery` is a cox_sums round of a fit (ModelResult::roundQueries), `participants` the
// number of sites masking together. Returns markdown lines (one per step, then the sum for a
// round of `participants` sites on `cores` cores), or one line saying why it could not run.
std::string secureRoundBreakdown(const storage::ColumnSource& source, const std::string& roundQuery,
                                 uint32_t participants, double timeBin, unsigned cores);

}  // namespace trialmesh::bench
