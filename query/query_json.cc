// The JSON form of a query (docs/query-language.md), read and written with nlohmann::json.
#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "query/query.h"

namespace trialmesh::query {

namespace {

using nlohmann::json;

Status jsonError(const std::string& path, const std::string& message) {
  return Status::invalidArgument(fmt::format("query JSON: {}: {}", path, message));
}

Result<std::string> getString(const json& obj, const char* key, const std::string& path) {
  auto it = obj.find(key);
  if (it == obj.end()) return jsonError(path, fmt::format("missing key \"{}\"", key));
  if (!it->is_string()) return jsonError(path + "." + key, "must be a string");
  return it->get<std::string>();
}

// A variable's name: a string, and not empty (the text form has no empty name, so a query
// with one could not be written back as text).
Result<std::string> getName(const json& obj, const char* key, const std::string& path) {
  TM_ASSIGN_OR_RETURN(std::string name, getString(obj, key, path));
  if (name.empty()) return jsonError(path + "." + key, "must name a variable (it is empty)");
  return name;
}

Result<double> getNumber(const json& v, const std::string& path) {
  if (!v.is_number()) return jsonError(path, "must be a number");
  double d = v.get<double>();
  if (!std::isfinite(d)) return jsonError(path, "must be a finite number");
  return d;
}

Result<Literal> parseLiteral(const json& v, const std::string& path) {
  if (v.is_boolean()) return Literal::ofBool(v.get<bool>());
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX))
      return Literal::ofReal(v.get<double>());
    return Literal::ofInteger(v.get<int64_t>());
  }
  if (v.is_number_float()) {
    TM_ASSIGN_OR_RETURN(double d, getNumber(v, path));
    return Literal::ofReal(d);
  }
  if (v.is_string()) return Literal::ofString(v.get<std::string>());
  if (v.is_object() && v.size() == 1 && v.contains("date") && v["date"].is_string())
    return Literal::ofDate(v["date"].get<std::string>());
  return jsonError(path,
                   "a value must be a number, a string, true/false or {\"date\": "
                   "\"YYYY-MM-DD\"}");
}

Result<Filter> parseFilter(const json& j, const std::string& path) {
  if (!j.is_object()) return jsonError(path, "a filter must be an object");
  Filter f;
  for (const char* logic : {"and", "or"}) {
    if (!j.contains(logic)) continue;
    if (j.size() != 1) return jsonError(path, fmt::format("\"{}\" must be the only key", logic));
    const json& list = j[logic];
    if (!list.is_array() || list.empty())
      return jsonError(path + "." + logic, "must be a non-empty array of filters");
    if (list.size() == 1) return parseFilter(list[0], fmt::format("{}.{}[0]", path, logic));
    f.kind = std::string_view(logic) == "and" ? Filter::Kind::kAnd : Filter::Kind::kOr;
    for (size_t i = 0; i < list.size(); ++i) {
      TM_ASSIGN_OR_RETURN(Filter c, parseFilter(list[i], fmt::format("{}.{}[{}]", path, logic, i)));
      f.children.push_back(std::move(c));
    }
    return f;
  }
  if (j.contains("not")) {
    if (j.size() != 1) return jsonError(path, "\"not\" must be the only key");
    TM_ASSIGN_OR_RETURN(Filter c, parseFilter(j["not"], path + ".not"));
    f.kind = Filter::Kind::kNot;
    f.children.push_back(std::move(c));
    return f;
  }
  TM_ASSIGN_OR_RETURN(f.var, getName(j, "var", path));
  TM_ASSIGN_OR_RETURN(std::string op, getString(j, "op", path));
  for (char& c : op) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (op == "is missing" || op == "is not missing") {
    f.kind = op == "is missing" ? Filter::Kind::kIsMissing : Filter::Kind::kIsNotMissing;
    return f;
  }
  if (op == "in" || op == "not in") {
    auto it = j.find("values");
    if (it == j.end() || !it->is_array() || it->empty())
      return jsonError(path, "\"in\" needs \"values\": a non-empty array");
    f.kind = Filter::Kind::kIn;
    for (size_t i = 0; i < it->size(); ++i) {
      TM_ASSIGN_OR_RETURN(Literal l, parseLiteral((*it)[i], fmt::format("{}.values[{}]", path, i)));
      f.values.push_back(std::move(l));
    }
    if (op == "in") return f;
    Filter n;
    n.kind = Filter::Kind::kNot;
    n.children.push_back(std::move(f));
    return n;
  }
  static constexpr std::pair<std::string_view, CompareOp> kOps[] = {
      {"=", CompareOp::kEq},  {"==", CompareOp::kEq}, {"!=", CompareOp::kNe},
      {"<>", CompareOp::kNe}, {"<", CompareOp::kLt},  {"<=", CompareOp::kLe},
      {">", CompareOp::kGt},  {">=", CompareOp::kGe}};
  for (auto& [text, o] : kOps) {
    if (op != text) continue;
    f.kind = Filter::Kind::kCompare;
    f.op = o;
    if (!j.contains("value")) return jsonError(path, "a comparison needs \"value\"");
    TM_ASSIGN_OR_RETURN(Literal l, parseLiteral(j["value"], path + ".value"));
    f.values.push_back(std::move(l));
    return f;
  }
  return jsonError(path + ".op", fmt::format("unknown operator \"{}\" (use =, !=, <, <=, >, >=, "
                                             "in, not in, is missing, is not missing)",
                                             op));
}

Result<std::vector<double>> getNumberList(const json& j, const std::string& path) {
  if (!j.is_array()) return jsonError(path, "must be an array of numbers");
  std::vector<double> out;
  for (size_t i = 0; i < j.size(); ++i) {
    TM_ASSIGN_OR_RETURN(double v, getNumber(j[i], fmt::format("{}[{}]", path, i)));
    out.push_back(v);
  }
  return out;
}

// {"fn": "lm", "response": "y", "terms": [...]}; survival models have "time" and "event"
// instead of "response"; options as keys (family, ties, strata, beta, center, times).
Result<Aggregate> parseModelJson(const json& j, const std::string& path, Aggregate a) {
  const bool survival = isSurvivalModel(a.fn);
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    bool ok = k == "fn" || k == "terms" ||
              (survival ? k == "time" || k == "event" || k == "strata" : k == "response");
    ok = ok || (a.fn == AggFn::kGlm && k == "family") || (a.fn == AggFn::kCoxph && k == "ties") ||
         ((a.fn == AggFn::kGlmSums || a.fn == AggFn::kCoxSums) && k == "beta") ||
         (a.fn == AggFn::kCoxSums && (k == "center" || k == "times"));
    if (!ok) return jsonError(path, fmt::format("{} has no key \"{}\"", aggFnName(a.fn), k));
  }
  if (survival) {
    TM_ASSIGN_OR_RETURN(a.var, getName(j, "time", path));
    TM_ASSIGN_OR_RETURN(a.event, getName(j, "event", path));
  } else {
    TM_ASSIGN_OR_RETURN(a.var, getName(j, "response", path));
  }
  if (auto t = j.find("terms"); t != j.end()) {
    if (!t->is_array()) return jsonError(path + ".terms", "must be an array of variable names");
    for (size_t i = 0; i < t->size(); ++i) {
      const auto& term = (*t)[i];
      // A covariate is "x", or {"factor": "x"} for R's factor(x).
      if (term.is_object() && term.size() == 1 && term.contains("factor") &&
          term["factor"].is_string()) {
        const std::string name = term["factor"].get<std::string>();
        if (name.empty())
          return jsonError(fmt::format("{}.terms[{}].factor", path, i),
                           "must name a variable (it is empty)");
        if (!a.isFactor(name)) a.factors.push_back(name);
        a.terms.push_back(name);
        continue;
      }
      if (!term.is_string() || term.get<std::string>().empty())
        return jsonError(fmt::format("{}.terms[{}]", path, i),
                         "must be a variable name or {\"factor\": name}");
      a.terms.push_back(term.get<std::string>());
    }
  }
  if (a.fn == AggFn::kGlm) {
    TM_ASSIGN_OR_RETURN(std::string family, getString(j, "family", path));
    if (family != "binomial")
      return jsonError(path + ".family", "glm supports \"binomial\" only; use lm for gaussian");
  }
  if (auto t = j.find("ties"); t != j.end()) {
    if (*t == "breslow") {
      a.breslow = true;
    } else if (*t != "efron") {
      return jsonError(path + ".ties", "must be \"efron\" or \"breslow\"");
    }
  }
  if (j.contains("strata")) {
    TM_ASSIGN_OR_RETURN(a.strata, getName(j, "strata", path));
  }
  if (auto b = j.find("beta"); b != j.end()) {
    TM_ASSIGN_OR_RETURN(a.beta, getNumberList(*b, path + ".beta"));
  }
  if (auto c = j.find("center"); c != j.end()) {
    TM_ASSIGN_OR_RETURN(a.center, getNumberList(*c, path + ".center"));
  }
  if (auto t = j.find("times"); t != j.end()) {
    if (!t->is_array()) return jsonError(path + ".times", "must be an array of arrays");
    for (size_t i = 0; i < t->size(); ++i) {
      TM_ASSIGN_OR_RETURN(std::vector<double> grid,
                          getNumberList((*t)[i], fmt::format("{}.times[{}]", path, i)));
      for (size_t k = 1; k < grid.size(); ++k)
        if (!(grid[k - 1] < grid[k]))
          return jsonError(fmt::format("{}.times[{}]", path, i), "must be strictly increasing");
      a.times.push_back(std::move(grid));
    }
  }
  return a;
}

Result<Aggregate> parseAggregate(const json& j, const std::string& path) {
  if (!j.is_object())
    return jsonError(path, "a statistic must be an object like {\"fn\": \"count\"}");
  TM_ASSIGN_OR_RETURN(std::string fn, getString(j, "fn", path));
  Aggregate a;
  bool found = false;
  for (AggFn f : {AggFn::kCount, AggFn::kSum, AggFn::kMean, AggFn::kVar, AggFn::kSd, AggFn::kMin,
                  AggFn::kMax, AggFn::kHist, AggFn::kKm, AggFn::kLm, AggFn::kGlm, AggFn::kCoxph,
                  AggFn::kLmSums, AggFn::kGlmSums, AggFn::kCoxTimes, AggFn::kCoxSums,
                  AggFn::kQuantile, AggFn::kQuantileCounts}) {
    if (fn == aggFnName(f)) {
      a.fn = f;
      found = true;
    }
  }
  if (!found)
    return jsonError(path + ".fn", fmt::format("unknown statistic \"{}\" (count, sum, mean, var, "
                                               "sd, min, max, quantile, hist, km, lm, glm, "
                                               "coxph)",
                                               fn));
  if (isModel(a.fn) || isModelRound(a.fn)) return parseModelJson(j, path, a);
  if (a.fn == AggFn::kQuantile || a.fn == AggFn::kQuantileCounts) {
    TM_ASSIGN_OR_RETURN(a.var, getName(j, "var", path));
    const char* listKey = a.fn == AggFn::kQuantile ? "probs" : "intervals";
    if (!j.contains(listKey) || !j[listKey].is_array())
      return jsonError(path, fmt::format("{} needs \"{}\": an array", fn, listKey));
    const json& list = j[listKey];
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string at = fmt::format("{}.{}[{}]", path, listKey, i);
      if (a.fn == AggFn::kQuantile) {
        TM_ASSIGN_OR_RETURN(double p, getNumber(list[i], at));
        a.probs.push_back(p);
      } else {
        if (!list[i].is_number_unsigned()) return jsonError(at, "must be an integer 0..2^64-1");
        a.keyBounds.push_back(list[i].get<uint64_t>());
      }
    }
    if (a.fn == AggFn::kQuantileCounts) {
      if (!j.contains("buckets") || !j["buckets"].is_number_unsigned() ||
          j["buckets"].get<uint64_t>() > 65536)
        return jsonError(path + ".buckets", "must be an integer 2..65536");
      a.buckets = static_cast<uint32_t>(j["buckets"].get<uint64_t>());
    }
    if (std::string why = quantileArgumentError(a); !why.empty()) return jsonError(path, why);
    return a;
  }
  if (a.fn == AggFn::kKm) {
    TM_ASSIGN_OR_RETURN(a.var, getName(j, "time", path));
    TM_ASSIGN_OR_RETURN(a.event, getName(j, "event", path));
    if (auto t = j.find("times"); t != j.end()) {
      TM_ASSIGN_OR_RETURN(a.survTimes, getNumberList(*t, path + ".times"));
      if (a.survTimes.empty()) return jsonError(path + ".times", "needs at least one time");
      for (size_t k = 1; k < a.survTimes.size(); ++k)
        if (!(a.survTimes[k - 1] < a.survTimes[k]))
          return jsonError(path + ".times", "must be strictly increasing");
    }
    if (auto r = j.find("rmean"); r != j.end()) {
      if (r->is_string() && r->get<std::string>() == "common") {
        a.rmean = std::numeric_limits<double>::infinity();
      } else if (r->is_number()) {
        TM_ASSIGN_OR_RETURN(double tau, getNumber(*r, path + ".rmean"));
        a.rmean = tau;
      } else {
        return jsonError(path + ".rmean", "must be a number (a time) or \"common\"");
      }
    }
    if (j.contains("strata")) {
      TM_ASSIGN_OR_RETURN(a.strata, getName(j, "strata", path));
    }
    return a;
  }
  if (a.fn == AggFn::kCount && !j.contains("var")) return a;
  TM_ASSIGN_OR_RETURN(a.var, getName(j, "var", path));
  if (a.fn != AggFn::kHist) return a;
  if (j.contains("breaks")) {
    const json& b = j["breaks"];
    if (!b.is_array() || b.size() < 2)
      return jsonError(path + ".breaks", "must be an array of at least two numbers");
    a.uniformBins = false;
    for (size_t i = 0; i < b.size(); ++i) {
      TM_ASSIGN_OR_RETURN(double v, getNumber(b[i], fmt::format("{}.breaks[{}]", path, i)));
      if (!a.breaks.empty() && v <= a.breaks.back())
        return jsonError(path + ".breaks", "must be strictly increasing");
      a.breaks.push_back(v);
    }
    return a;
  }
  for (const char* key : {"from", "to", "width"}) {
    if (!j.contains(key))
      return jsonError(path, fmt::format("hist needs \"from\", \"to\" and \"width\", or "
                                         "\"breaks\"; \"{}\" is missing",
                                         key));
  }
  TM_ASSIGN_OR_RETURN(a.from, getNumber(j["from"], path + ".from"));
  TM_ASSIGN_OR_RETURN(a.to, getNumber(j["to"], path + ".to"));
  TM_ASSIGN_OR_RETURN(a.width, getNumber(j["width"], path + ".width"));
  if (!(a.to > a.from)) return jsonError(path, "hist needs from < to");
  if (!(a.width > 0)) return jsonError(path + ".width", "must be positive");
  if ((a.to - a.from) / a.width > 1e6)
    return jsonError(path + ".width", "more than 1000000 histogram bins: use a larger width");
  return a;
}

json literalJson(const Literal& l) {
  switch (l.kind) {
    case Literal::Kind::kInteger:
      return l.integer;
    case Literal::Kind::kReal:
      return l.real;
    case Literal::Kind::kString:
      return l.text;
    case Literal::Kind::kDate:
      return json{{"date", l.text}};
    case Literal::Kind::kBool:
      return l.boolean;
  }
  return nullptr;
}

json filterJson(const Filter& f) {
  switch (f.kind) {
    case Filter::Kind::kCompare:
      return json{{"var", f.var},
                  {"op", compareOpText(f.op)},
                  {"value", f.values.empty() ? json() : literalJson(f.values[0])}};
    case Filter::Kind::kIn: {
      json values = json::array();
      for (const auto& v : f.values) values.push_back(literalJson(v));
      return json{{"var", f.var}, {"op", "in"}, {"values", values}};
    }
    case Filter::Kind::kIsMissing:
      return json{{"var", f.var}, {"op", "is missing"}};
    case Filter::Kind::kIsNotMissing:
      return json{{"var", f.var}, {"op", "is not missing"}};
    case Filter::Kind::kAnd:
    case Filter::Kind::kOr: {
      json list = json::array();
      for (const auto& c : f.children) list.push_back(filterJson(c));
      return json{{f.kind == Filter::Kind::kAnd ? "and" : "or", list}};
    }
    case Filter::Kind::kNot:
      return json{{"not", f.children.empty() ? json::object() : filterJson(f.children[0])}};
  }
  return nullptr;
}

}  // namespace

Result<Query> parseQueryJson(std::string_view text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    return Status::invalidArgument(
        fmt::format("query JSON: not valid JSON at byte {}: {}", e.byte, e.what()));
  } catch (const json::exception& e) {
    // out_of_range 406: a number such as 1e99999 that overflows a double.
    return Status::invalidArgument(fmt::format("query JSON: {}", e.what()));
  }
  if (!j.is_object()) return jsonError("(top)", "a query must be a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() != "select" && it.key() != "where" && it.key() != "by")
      return jsonError("(top)",
                       fmt::format("unknown key \"{}\" (allowed: select, where, by)", it.key()));
  }
  Query q;
  auto sel = j.find("select");
  if (sel == j.end() || !sel->is_array() || sel->empty())
    return jsonError("select", "must be a non-empty array of statistics");
  for (size_t i = 0; i < sel->size(); ++i) {
    TM_ASSIGN_OR_RETURN(Aggregate a, parseAggregate((*sel)[i], fmt::format("select[{}]", i)));
    q.select.push_back(std::move(a));
  }
  if (auto w = j.find("where"); w != j.end() && !w->is_null()) {
    TM_ASSIGN_OR_RETURN(Filter f, parseFilter(*w, "where"));
    q.where = std::move(f);
  }
  if (auto b = j.find("by"); b != j.end()) {
    if (!b->is_array()) return jsonError("by", "must be an array of variable names");
    for (size_t i = 0; i < b->size(); ++i) {
      if (!(*b)[i].is_string() || (*b)[i].get<std::string>().empty())
        return jsonError(fmt::format("by[{}]", i), "must name a variable (a non-empty string)");
      q.by.push_back((*b)[i].get<std::string>());
    }
  }
  return q;
}

std::string toJson(const Query& query) {
  json j;
  json sel = json::array();
  for (const auto& a : query.select) {
    json s{{"fn", aggFnName(a.fn)}};
    if (isModel(a.fn) || isModelRound(a.fn)) {
      if (isSurvivalModel(a.fn)) {
        s["time"] = a.var;
        s["event"] = a.event;
        if (!a.strata.empty()) s["strata"] = a.strata;
      } else {
        s["response"] = a.var;
      }
      nlohmann::json terms = nlohmann::json::array();
      for (const auto& t : a.terms) {
        if (a.isFactor(t)) {
          terms.push_back({{"factor", t}});
        } else {
          terms.push_back(t);
        }
      }
      s["terms"] = std::move(terms);
      if (a.fn == AggFn::kGlm) s["family"] = "binomial";
      if (a.breslow) s["ties"] = "breslow";
      if (!a.beta.empty()) s["beta"] = a.beta;
      if (!a.center.empty()) s["center"] = a.center;
      if (!a.times.empty()) s["times"] = a.times;
      sel.push_back(std::move(s));
      continue;
    }
    if (a.fn == AggFn::kQuantile || a.fn == AggFn::kQuantileCounts) {
      s["var"] = a.var;
      if (a.fn == AggFn::kQuantile) {
        s["probs"] = a.probs;
      } else {
        s["intervals"] = a.keyBounds;
        s["buckets"] = a.buckets;
      }
      sel.push_back(std::move(s));
      continue;
    }
    if (a.fn == AggFn::kKm) {
      s["time"] = a.var;
      s["event"] = a.event;
      if (!a.survTimes.empty()) s["times"] = a.survTimes;
      if (a.rmean) s["rmean"] = std::isinf(*a.rmean) ? json("common") : json(*a.rmean);
      if (!a.strata.empty()) s["strata"] = a.strata;
    } else if (!a.var.empty()) {
      s["var"] = a.var;
    }
    if (a.fn == AggFn::kHist) {
      if (a.uniformBins) {
        s["from"] = a.from;
        s["to"] = a.to;
        s["width"] = a.width;
      } else {
        s["breaks"] = a.breaks;
      }
    }
    sel.push_back(std::move(s));
  }
  j["select"] = std::move(sel);
  if (query.where) j["where"] = filterJson(*query.where);
  if (!query.by.empty()) j["by"] = query.by;
  return j.dump();
}

}  // namespace trialmesh::query
