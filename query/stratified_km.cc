#include "query/stratified_km.h"

#include <fmt/format.h>

#include <map>
#include <variant>

#include "query/query.h"
#include "stats/format.h"
#include "stats/survival_summary.h"

namespace trialmesh::query {

namespace {

bool sameName(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

// The plain log-rank test's note and printout, removed when the stratified one replaces it or
// is withheld.
void dropPlainTest(ResultTable& t, const std::string& call) {
  std::vector<std::string> kept;
  for (std::string& n : t.notes)
    if (n.rfind("log-rank test: ", 0) != 0) kept.push_back(std::move(n));
  t.notes = std::move(kept);
  if (t.logRank) {
    const std::string printed = "\n" + stats::formatLogRank(*t.logRank, call);
    if (size_t at = t.appendix.find(printed); at != std::string::npos)
      t.appendix.erase(at, printed.size());
  }
  t.logRank.reset();
}

// The curve name finalize gives a row's cell ("sex=F, arm=B"), from its first `columns` group
// columns, a label column ("<var>_label" after <var>) left out.
std::optional<std::string> cellName(const ResultTable& t, const std::vector<ResultValue>& row,
                                    size_t columns) {
  std::string name;
  for (size_t i = 0; i < columns; ++i) {
    if (i > 0 && t.columns[i] == t.columns[i - 1] + "_label") continue;
    const auto* v = std::get_if<std::string>(&row[i]);
    if (!v) return std::nullopt;
    name += (name.empty() ? "" : ", ") + t.columns[i] + "=" + *v;
  }
  return name.empty() ? std::string("all") : name;
}

std::optional<double> number(const ResultValue& v) {
  if (const auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  if (const auto* d = std::get_if<double>(&v)) return *d;
  return std::nullopt;
}

size_t column(const ResultTable& t, std::string_view name) {
  for (size_t i = 0; i < t.columns.size(); ++i)
    if (t.columns[i] == name) return i;
  return t.columns.size();
}

}  // namespace

Result<std::optional<StratifiedKmRequest>> parseStratifiedKm(std::string_view text) {
  auto parsed = parseQuery(text);
  if (!parsed.isOk() || parsed->select.size() != 1 || parsed->select[0].fn != AggFn::kKm ||
      parsed->select[0].strata.empty())
    return std::optional<StratifiedKmRequest>();
  Query q = *parsed;
  StratifiedKmRequest r;
  r.call = canonicalQueryText(q);
  r.strata = q.select[0].strata;
  for (const std::string& b : q.by) {
    if (sameName(b, r.strata))
      return Status::invalidArgument(fmt::format(
          "km: strata = {} is also a 'by' variable; stratify by another variable", r.strata));
  }
  q.select[0].strata.clear();
  r.curveQuery = canonicalQueryText(q);
  Query s;
  Aggregate km;
  km.fn = AggFn::kKm;
  km.var = q.select[0].var;
  km.event = q.select[0].event;
  s.select = {km};
  Filter present;
  present.kind = Filter::Kind::kIsNotMissing;
  present.var = r.strata;
  if (q.where) {
    Filter both;
    both.kind = Filter::Kind::kAnd;
    both.children = {*q.where, present};
    s.where = both;
  } else {
    s.where = present;
  }
  s.by = q.by;
  s.by.push_back(r.strata);
  r.strataQuery = canonicalQueryText(s);
  return std::optional<StratifiedKmRequest>(std::move(r));
}

void withholdStratifiedLogRank(ResultTable& curves, const StratifiedKmRequest& request,
                               const std::string& why) {
  dropPlainTest(curves, request.curveQuery);
  curves.notes.push_back(fmt::format("stratified log-rank test (strata = {}): withheld because {}",
                                     request.strata, why));
}

Status applyStratifiedLogRank(ResultTable& curves, const ResultTable& strata,
                              const StratifiedKmRequest& request) {
  if (curves.kind != ResultTable::Kind::kSurvival || strata.kind != ResultTable::Kind::kSurvival)
    return Status::invalidArgument("stratified log-rank: both results must be km tables");
  const std::string plainCall = request.curveQuery;
  // The plain test is absent with fewer than two non-empty groups, or withheld (a group is
  // suppressed): the stratified one follows it.
  if (!curves.logRank) return Status::ok();
  const size_t g = curves.groupColumns;
  if (strata.groupColumns <= g)
    return Status::invalidArgument("stratified log-rank: the strata result has no stratum column");
  const size_t timeCol = column(strata, "time"), eventCol = column(strata, "n_event"),
               censorCol = column(strata, "n_censor");
  if (timeCol == strata.columns.size() || eventCol == strata.columns.size() ||
      censorCol == strata.columns.size())
    return Status::invalidArgument("stratified log-rank: the strata result lacks time or counts");
  auto withhold = [&](const std::string& why) {
    withholdStratifiedLogRank(curves, request, why);
    return Status::ok();
  };
  // Groups as the plain test has them (non-empty curves, in order); strata in order met.
  std::vector<std::string> groups;
  for (const auto& lg : curves.logRank->groups) groups.push_back(lg.name);
  std::map<std::string, size_t> groupIndex;
  for (size_t i = 0; i < groups.size(); ++i) groupIndex[groups[i]] = i;
  std::vector<std::string> stratumOrder;
  std::map<std::string, std::vector<std::map<double, stats::SurvivalPoint>>> byStratum;
  for (const auto& row : strata.rows) {
    auto group = cellName(strata, row, g);
    const auto* stratum = std::get_if<std::string>(&row[g]);
    if (!group || !stratum) return withhold("a group or stratum is suppressed");
    const auto time = number(row[timeCol]), events = number(row[eventCol]),
               censored = number(row[censorCol]);
    if (!time || !events || !censored)
      return withhold("a (group, stratum) curve of the strata query is suppressed");
    auto it = groupIndex.find(*group);
    if (it == groupIndex.end()) continue;  // a group without rows in the curves: none here either
    auto [s, fresh] = byStratum.try_emplace(*stratum, groups.size());
    if (fresh) stratumOrder.push_back(*stratum);
    stats::SurvivalPoint& p = s->second[it->second][*time];
    p.time = *time;
    p.events += static_cast<uint64_t>(*events);
    p.censored += static_cast<uint64_t>(*censored);
  }
  if (stratumOrder.empty()) return withhold("no row has a stratum");
  std::vector<std::vector<stats::SurvivalGroup>> input;
  for (const std::string& s : stratumOrder) {
    std::vector<stats::SurvivalGroup> one;
    for (size_t i = 0; i < groups.size(); ++i) {
      stats::SurvivalGroup sg{groups[i], {}};
      for (const auto& [t, p] : byStratum[s][i]) sg.points.push_back(p);
      one.push_back(std::move(sg));
    }
    input.push_back(std::move(one));
  }
  auto test = stats::stratifiedLogRank(input);
  if (!test.isOk()) return withhold(test.status().message());
  dropPlainTest(curves, plainCall);
  curves.notes.push_back(fmt::format(
      "stratified log-rank test (strata = {}, {} strata): chisq = {} on {} degrees of freedom, "
      "p = {}",
      request.strata, stratumOrder.size(), test->chiSquare, test->df, test->pValue));
  curves.appendix += "\n" + stats::formatLogRank(*test, request.call);
  curves.logRank = std::move(*test);
  curves.logRankStrata = request.strata;
  return Status::ok();
}

}  // namespace trialmesh::query
