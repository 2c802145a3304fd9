// Model fits from the `trialmesh query` command (tools/trialmesh/cmd_model.cc): a query whose
// statistic is lm(...), glm(...) or coxph(...) runs as rounds (query/model_runner.h), locally
// (cmd_query.cc, --local) or across a federation (cmd_federation.cc).
#pragma once

#include <string>

#include "crypto/identity.h"
#include "node/config.h"
#include "query/model_runner.h"
#include "query/quantile_query.h"
#include "storage/column.h"

namespace trialmesh::cli {

// Draws `fit`'s forest plot at `plotPath` (nothing when empty) and says so on stderr. Returns 0,
// or 1 with the error on stderr.
int plotModelTo(const query::ModelResult& fit, const std::string& plotPath);

// True when `text` parses to a model query (lm, glm, coxph).
bool isModelQuery(const std::string& text);
// True when `text` parses to a quantile query (quantile(x, p), median(x)).
bool isQuantileQueryText(const std::string& text);

// quantile(x, p) / median(x) over one local dataset (query/quantile_query.h), printed like R's
// quantile() (or --json / --csv). Returns 0, or 1 with the error on stderr.
int runLocalQuantile(const query::Query& q, const storage::ColumnSource& source, unsigned threads,
                     bool json, bool csv);
// The same across the sites of `study` that can take part (node/model_runner.h
// federatedQuantileQuery), within `deadlineMs` for all rounds; prints who contributed.
int runFederatedQuantile(const std::string& text, const crypto::Identity& identity,
                         const node::Members& members, const std::string& study, int64_t deadlineMs,
                         bool json, bool csv);

// Fits the model over one local dataset and prints it (R layout, or --json / --csv), and with a
// non-empty `plotPath` draws its forest plot there (tools/plot/plot.h). Returns the exit status:
// 0, or 1 with the error on stderr.
int runLocalModel(const std::string& text, const storage::ColumnSource& source, unsigned threads,
                  bool json, bool csv, const std::string& plotPath = {});

// Fits the model across the sites of `study` that can take part (node/model_runner.h
// fitFederatedModel: sites that refuse, are down or miss the deadline are left out and named)
// over one coordinator session, within `deadlineMs` for the whole fit, and prints it. Returns
// 0, or 1 with the error (e.g. below the approval's quorum) on stderr.
// With a non-empty `plotPath`, also draws the forest plot there.
int runFederatedModel(const std::string& text, const crypto::Identity& identity,
                      const node::Members& members, const std::string& study, int64_t deadlineMs,
                      bool json, bool csv, const std::string& plotPath = {});

}  // namespace trialmesh::cli
