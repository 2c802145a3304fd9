#include "query/quantile_query.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <variant>

namespace trialmesh::query {

bool isQuantileQuery(const Query& q) {
  return q.select.size() == 1 && q.select[0].fn == AggFn::kQuantile;
}

Result<QuantileQueryResult> runQuantileQuery(const Query& q, const RoundRunner& run) {
  if (!isQuantileQuery(q))
    return Status::invalidArgument(
        "not a quantile query: quantile(x, p) or median(x) must be "
        "the only statistic");
  const Aggregate& a = q.select[0];
  if (!q.by.empty())
    return Status::invalidArgument(
        fmt::format("{} cannot be grouped with 'by': run one quantile per group with 'where'",
                    aggregateText(a)));
  QuantileQueryResult out;
  out.variable = a.var;
  out.call = canonicalQueryText(q);
  BucketCounter counter = [&](const SelectRound& r) -> Result<RoundCounts> {
    Query round;
    Aggregate counts;
    counts.fn = AggFn::kQuantileCounts;
    counts.var = a.var;
    for (const auto& iv : r.intervals) {
      counts.keyBounds.push_back(iv.lo);
      counts.keyBounds.push_back(iv.hi);
    }
    counts.buckets = r.buckets;
    round.select.push_back(std::move(counts));
    round.where = q.where;
    const std::string text = canonicalQueryText(round);
    out.roundQueries.push_back(text);
    TM_ASSIGN_OR_RETURN(RoundAnswer answer, run(text));
    const ResultTable& t = answer.table;
    // The table's one value is the pooled n after disclosure control: withheld (a marker
    // string) when below the minimum cell size.
    if (t.rows.size() == 1 && t.rows[0].size() > t.groupColumns &&
        std::holds_alternative<std::string>(t.rows[0][t.groupColumns]))
      return Status::permissionDenied(fmt::format(
          "{}: fewer rows with a value than the approval's minimum cell size; a quantile of so "
          "few values would be one patient's value",
          aggregateText(a)));
    // Every bucket, the counts of values without q decimal places, then outside.
    const size_t buckets = r.intervals.size() * size_t{r.buckets};
    const size_t expected = buckets + kDecimalTests + 1;
    if (answer.merged.stats.size() != 1 || answer.merged.stats[0].binCounts.size() != expected)
      return Status::corruption(fmt::format(
          "{}: the merged answer has {} bucket counts, expected {} (are every site and the "
          "coordinator the same trialmesh version?)",
          text, answer.merged.stats.empty() ? size_t{0} : answer.merged.stats[0].binCounts.size(),
          expected));
    const auto& bins = answer.merged.stats[0].binCounts;
    return RoundCounts{std::vector<uint64_t>(bins.begin(), bins.begin() + buckets),
                       std::vector<uint64_t>(bins.begin() + buckets, bins.end() - 1)};
  };
  TM_ASSIGN_OR_RETURN(out.result, federatedQuantile(a.probs, KeyKind::kReal, counter));
  return out;
}

std::string formatQuantileQuery(const QuantileQueryResult& r) {
  std::string out = formatQuantile(r.result);
  if (r.sites) out += modelSitesText(*r.sites, r.result.n, std::nullopt);
  out += fmt::format("\n({} round{} of site queries)\n", r.roundQueries.size(),
                     r.roundQueries.size() == 1 ? "" : "s");
  return out;
}

std::string quantileQueryJson(const QuantileQueryResult& r) {
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(quantileJson(r.result, r.variable));
  j["call"] = r.call;
  j["rounds"] = r.roundQueries.size();
  if (r.sites)
    j["sites"] = nlohmann::ordered_json::parse(modelSitesJson(*r.sites, r.result.n, std::nullopt));
  return j.dump();
}

std::string quantileQueryCsv(const QuantileQueryResult& r) {
  std::string out = quantileCsv(r.result);
  if (r.sites) out += "\n" + modelSitesCsv(*r.sites, r.result.n, std::nullopt);
  return out;
}

}  // namespace trialmesh::query
