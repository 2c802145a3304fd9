#include "stats/format.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

namespace trialmesh::stats {

namespace {

constexpr double kEps = std::numeric_limits<double>::epsilon();

std::string pad(const std::string& s, size_t width, bool left = false) {
  if (s.size() >= width) return s;
  return left ? s + std::string(width - s.size(), ' ') : std::string(width - s.size(), ' ') + s;
}

std::string cformat(const char* fmt, int precision, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, precision, v);
  return buf;
}

std::string formatOne(double v, int digits) { return formatNumbers({v}, digits)[0]; }

// format.pval for a column (the non-small values are formatted together in two groups).
std::vector<std::string> formatPValues(const std::vector<double>& pv, int digits) {
  std::vector<std::string> out(pv.size());
  std::vector<double> fixedVals, sciVals;
  std::vector<size_t> fixedIdx, sciIdx;
  bool anyTiny = false, anyOther = false;
  for (size_t i = 0; i < pv.size(); ++i) {
    if (std::isnan(pv[i])) {
      out[i] = "NA";
    } else if (pv[i] < kEps) {
      anyTiny = true;
    } else {
      anyOther = true;
      const double expo = std::floor(std::log10(pv[i] > 0 ? pv[i] : 1e-50));
      if (expo >= -3 || (expo == -4 && digits > 1)) {
        fixedVals.push_back(pv[i]);
        fixedIdx.push_back(i);
      } else {
        sciVals.push_back(pv[i]);
        sciIdx.push_back(i);
      }
    }
  }
  size_t nc = 0;
  auto fill = [&](const std::vector<double>& vals, const std::vector<size_t>& idx) {
    if (vals.empty()) return;
    std::vector<std::string> f = formatNumbers(vals, digits);
    for (size_t k = 0; k < idx.size(); ++k) {
      out[idx[k]] = f[k];
      nc = std::max(nc, f[k].size());
    }
  };
  fill(fixedVals, fixedIdx);
  fill(sciVals, sciIdx);
  if (anyTiny) {
    int d = std::max(1, digits - 2);
    std::string sep;
    if (anyOther) {
      if (d > 1 && static_cast<size_t>(d + 6) > nc) d = std::max(1, static_cast<int>(nc) - 7);
      sep = (d == 1 && nc <= 6) ? "" : " ";
    } else {
      sep = d == 1 ? "" : " ";
    }
    const std::string tiny = "<" + sep + formatOne(kEps, d);
    for (size_t i = 0; i < pv.size(); ++i) {
      if (!std::isnan(pv[i]) && pv[i] < kEps) out[i] = tiny;
    }
  }
  return out;
}

const char* kSignifCodes = "---\nSignif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1\n";

std::string stars(double p) {
  if (std::isnan(p)) return "";
  if (p < 0.001) return "***";
  if (p < 0.01) return "**";
  if (p < 0.05) return "*";
  if (p < 0.1) return ".";
  return " ";
}

bool anyStars(const std::vector<double>& pvalues) {
  for (double p : pvalues) {
    if (p < 0.1) return true;
  }
  return false;
}

std::string legend(const std::vector<double>& pvalues) {
  return anyStars(pvalues) ? kSignifCodes : "";
}

// A table: the first column left-aligned row names, the others right-aligned under headers.
std::string table(const std::vector<std::string>& rowNames, const std::vector<std::string>& headers,
                  const std::vector<std::vector<std::string>>& columns,
                  const std::string& corner = "") {
  size_t nameWidth = corner.size();
  for (const auto& n : rowNames) nameWidth = std::max(nameWidth, n.size());
  std::vector<size_t> widths;
  for (size_t c = 0; c < columns.size(); ++c) {
    size_t w = headers[c].size();
    for (const auto& s : columns[c]) w = std::max(w, s.size());
    widths.push_back(w);
  }
  std::ostringstream out;
  out << pad(corner, nameWidth, true);
  for (size_t c = 0; c < columns.size(); ++c) out << ' ' << pad(headers[c], widths[c]);
  out << '\n';
  for (size_t r = 0; r < rowNames.size(); ++r) {
    out << pad(rowNames[r], nameWidth, true);
    for (size_t c = 0; c < columns.size(); ++c) out << ' ' << pad(columns[c][r], widths[c]);
    out << '\n';
  }
  return out.str();
}

// printCoefmat: estimate-like columns rounded jointly, test statistics to 3 decimals (via
// digits - 1), p-values by format.pval, and significance stars.
std::string coefficientTable(const std::vector<std::string>& names,
                             const std::vector<std::string>& estimateHeaders,
                             const std::vector<std::vector<double>>& estimates,
                             const std::string& statHeader, const std::vector<double>& stats,
                             const std::string& pHeader, const std::vector<double>& pvalues) {
  const int digits = 4;
  // R: round(x, max(1, digits - digmin)) with digmin = 1 + floor(log10(range(|x|))), i.e.
  // enough decimals for the smallest non-zero entry.
  double minAbs = 0;
  std::vector<double> all;
  for (const auto& col : estimates) {
    for (double v : col) {
      if (std::isfinite(v) && v != 0 && (minAbs == 0 || std::fabs(v) < minAbs)) {
        minAbs = std::fabs(v);
      }
      all.push_back(v);
    }
  }
  const int digmin = minAbs > 0 ? 1 + static_cast<int>(std::floor(std::log10(minAbs))) : 1;
  const int round = std::min(15, std::max(1, digits - digmin));
  const double scale = std::pow(10.0, round);
  for (double& v : all) {
    if (std::isfinite(v)) v = std::round(v * scale) / scale;
  }
  std::vector<std::string> formatted = formatNumbers(all, digits);
  std::vector<std::vector<std::string>> columns;
  std::vector<std::string> headers = estimateHeaders;
  for (size_t c = 0; c < estimates.size(); ++c) {
    columns.emplace_back(formatted.begin() + c * names.size(),
                         formatted.begin() + (c + 1) * names.size());
  }
  const int digTst = std::max(1, std::min(5, digits - 1));
  std::vector<double> roundedStats;
  for (double v : stats) {
    roundedStats.push_back(
        std::isfinite(v) ? std::round(v * std::pow(10.0, digTst)) / std::pow(10.0, digTst) : v);
  }
  columns.push_back(formatNumbers(roundedStats, digits));
  headers.push_back(statHeader);
  columns.push_back(formatPValues(pvalues, digTst));
  headers.push_back(pHeader);
  // printCoefmat shows stars (and the legend) only when some p-value is below 0.1.
  if (anyStars(pvalues)) {
    std::vector<std::string> starCol;
    for (double p : pvalues) starCol.push_back(stars(p));
    columns.push_back(starCol);
    headers.push_back("");
  }
  std::string t = table(names, headers, columns);
  // R pads the star column to its width; trailing spaces are harmless but noisy in diffs.
  std::ostringstream out;
  std::istringstream in(t);
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out << line << '\n';
  }
  return out.str();
}

std::string callBlock(const std::string& call) {
  return call.empty() ? std::string() : "\nCall:\n" + call + "\n";
}

std::string deletedLine(uint64_t missing) {
  if (missing == 0) return "";
  return "  (" + std::to_string(missing) + (missing == 1 ? " observation" : " observations") +
         " deleted due to missingness)\n";
}

nlohmann::json number(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}

nlohmann::json matrixJson(const std::vector<double>& m, size_t p) {
  nlohmann::json rows = nlohmann::json::array();
  for (size_t i = 0; i < p; ++i) {
    nlohmann::json row = nlohmann::json::array();
    for (size_t j = 0; j < p; ++j) row.push_back(number(m[i * p + j]));
    rows.push_back(row);
  }
  return rows;
}

nlohmann::json coefficientsJson(const std::vector<Coefficient>& cs, const char* statName) {
  nlohmann::json out = nlohmann::json::array();
  for (const Coefficient& c : cs) {
    out.push_back({{"name", c.name},
                   {"estimate", number(c.estimate)},
                   {"std_error", number(c.stdError)},
                   {statName, number(c.statistic)},
                   {"p_value", number(c.pValue)}});
  }
  return out;
}

std::string dfString(double df) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f", df);
  return buf;
}

}  // namespace

std::vector<std::string> formatNumbers(const std::vector<double>& values, int digits) {
  digits = std::clamp(digits, 1, 15);
  struct Info {
    bool neg = false;
    int kp = 0;
    int nsig = 1;
  };
  std::vector<Info> info(values.size());
  bool anyFinite = false, anyNeg = false;
  int rgt = 0, mxsl = 1, mxns = 1, maxKp = 0, minKp = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    const double v = values[i];
    if (!std::isfinite(v)) continue;
    Info& in = info[i];
    in.neg = v < 0;
    const double a = std::fabs(v);
    if (a > 0) {
      int kp = static_cast<int>(std::floor(std::log10(a)));
      double r = std::round(a / std::pow(10.0, kp - digits + 1));
      if (r >= std::pow(10.0, digits)) {
        r /= 10;
        ++kp;
      }
      int nsig = digits;
      while (nsig > 1 && std::fmod(r, 10.0) == 0) {
        r /= 10;
        --nsig;
      }
      in.kp = kp;
      in.nsig = nsig;
    }
    const int left = in.kp >= 0 ? in.kp + 1 : 1;
    const int sleft = (in.neg ? 1 : 0) + left;
    if (!anyFinite) {
      maxKp = minKp = in.kp;
    }
    anyFinite = true;
    anyNeg = anyNeg || in.neg;
    rgt = std::max(rgt, in.nsig - in.kp - 1);
    mxsl = std::max(mxsl, sleft);
    mxns = std::max(mxns, in.nsig);
    maxKp = std::max(maxKp, in.kp);
    minKp = std::min(minKp, in.kp);
  }
  const int wF = mxsl + rgt + (rgt > 0 ? 1 : 0);
  const int expDigits = (std::abs(maxKp) >= 100 || std::abs(minKp) >= 100) ? 3 : 2;
  const int wE = (anyNeg ? 1 : 0) + (mxns > 1 ? mxns + 1 : mxns) + 2 + expDigits;
  const bool fixed = wF <= wE;
  std::vector<std::string> out;
  size_t width = 0;
  for (double v : values) {
    std::string s;
    if (std::isnan(v)) {
      s = "NA";
    } else if (std::isinf(v)) {
      s = v > 0 ? "Inf" : "-Inf";
    } else if (fixed) {
      s = cformat("%.*f", rgt, v);
    } else {
      s = cformat("%.*e", mxns - 1, v);
    }
    width = std::max(width, s.size());
    out.push_back(s);
  }
  for (std::string& s : out) s = pad(s, width);
  return out;
}

std::string formatPValue(double p, int digits, double eps) {
  if (std::isnan(p)) return "NA";
  if (p < eps) {
    const int d = std::max(1, digits - 2);
    return std::string("<") + (d == 1 ? "" : " ") + formatOne(eps, d);
  }
  return formatOne(p, digits);
}

std::string formatLinear(const LinearFit& fit, const std::string& call) {
  std::ostringstream out;
  out << callBlock(call) << "\nCoefficients:\n";
  std::vector<std::string> names;
  std::vector<double> est, se, t, p;
  for (const Coefficient& c : fit.coefficients) {
    names.push_back(c.name);
    est.push_back(c.estimate);
    se.push_back(c.stdError);
    t.push_back(c.statistic);
    p.push_back(c.pValue);
  }
  out << coefficientTable(names, {"Estimate", "Std. Error"}, {est, se}, "t value", t, "Pr(>|t|)",
                          p);
  out << legend(p) << '\n';
  out << "Residual standard error: " << formatOne(fit.sigma, 4) << " on "
      << dfString(fit.dfResidual) << " degrees of freedom\n";
  out << deletedLine(fit.missing);
  out << "Multiple R-squared:  " << formatOne(fit.rSquared, 4)
      << ",\tAdjusted R-squared:  " << formatOne(fit.adjRSquared, 4) << " \n";
  if (!std::isnan(fit.fStatistic)) {
    out << "F-statistic: " << formatOne(fit.fStatistic, 4) << " on " << dfString(fit.fDf1)
        << " and " << dfString(fit.fDf2) << " DF,  p-value: " << formatPValue(fit.fPValue, 4)
        << '\n';
  }
  return out.str();
}

std::string formatLogistic(const LogisticFit& fit, const std::string& call) {
  std::ostringstream out;
  out << callBlock(call) << "\nCoefficients:\n";
  std::vector<std::string> names;
  std::vector<double> est, se, z, p;
  for (const Coefficient& c : fit.coefficients) {
    names.push_back(c.name);
    est.push_back(c.estimate);
    se.push_back(c.stdError);
    z.push_back(c.statistic);
    p.push_back(c.pValue);
  }
  out << coefficientTable(names, {"Estimate", "Std. Error"}, {est, se}, "z value", z, "Pr(>|z|)",
                          p);
  out << legend(p) << '\n';
  out << "(Dispersion parameter for binomial family taken to be 1)\n\n";
  std::vector<std::string> dev = formatNumbers({fit.nullDeviance, fit.deviance}, 5);
  std::vector<std::string> df = formatNumbers({fit.dfNull, fit.dfResidual}, 5);
  out << "    Null deviance: " << dev[0] << "  on " << df[0] << "  degrees of freedom\n";
  out << "Residual deviance: " << dev[1] << "  on " << df[1] << "  degrees of freedom\n";
  out << deletedLine(fit.missing);
  out << "AIC: " << formatOne(fit.aic, 5) << "\n\n";
  out << "Number of Fisher Scoring iterations: " << fit.iterations << "\n";
  for (const std::string& w : fit.warnings) out << "Warning: " << w << '\n';
  return out.str();
}

std::string formatCox(const CoxFit& fit, const std::string& call) {
  std::ostringstream out;
  out << callBlock(call) << '\n';
  out << "  n= " << fit.n << ", number of events= " << fit.events << " \n";
  out << (fit.missing > 0 ? " " + deletedLine(fit.missing) : std::string()) << '\n';
  std::vector<std::string> names;
  std::vector<double> coef, hr, se, z, p, ihr, lo, hi;
  for (const CoxCoefficient& c : fit.coefficients) {
    names.push_back(c.name);
    coef.push_back(c.coef);
    hr.push_back(c.hazardRatio);
    se.push_back(c.stdError);
    z.push_back(c.z);
    p.push_back(c.pValue);
    ihr.push_back(1 / c.hazardRatio);
    lo.push_back(c.lower);
    hi.push_back(c.upper);
  }
  out << coefficientTable(names, {"coef", "exp(coef)", "se(coef)"}, {coef, hr, se}, "z", z,
                          "Pr(>|z|)", p);
  out << legend(p) << '\n';
  char level[16];
  std::snprintf(level, sizeof level, "%.2f", fit.confLevel);
  std::string lvl = std::string(level).substr(1);  // ".95"
  out << table(
      names, {"exp(coef)", "exp(-coef)", "lower " + lvl, "upper " + lvl},
      {formatNumbers(hr, 4), formatNumbers(ihr, 4), formatNumbers(lo, 4), formatNumbers(hi, 4)});
  out << '\n';
  auto testLine = [&](const char* label, const CoxTest& t) {
    const std::string stat = formatOne(std::round(t.statistic * 100) / 100, 7);
    out << label << "= " << stat << "  on " << dfString(t.df)
        << " df,   p=" << formatPValue(t.pValue, 1) << '\n';
  };
  testLine("Likelihood ratio test", fit.likelihoodRatio);
  testLine("Wald test            ", fit.wald);
  testLine("Score (logrank) test ", fit.score);
  out << "\n  Log-likelihood at 0: " << formatOne(fit.loglikNull, 7)
      << ", at the fit: " << formatOne(fit.loglik, 7) << "; ties: " << coxTiesName(fit.ties)
      << "; iterations: " << fit.iterations << '\n';
  for (const std::string& w : fit.warnings) out << "Warning: " << w << '\n';
  return out.str();
}

std::string formatKmTable(const std::vector<KmCurve>& curves, const std::string& call) {
  std::ostringstream out;
  if (!call.empty()) out << "Call: " << call << "\n\n";
  std::vector<std::string> names, n, events;
  std::vector<double> med, lo, hi;
  for (const KmCurve& c : curves) {
    names.push_back(c.name);
    n.push_back(std::to_string(c.n));
    events.push_back(std::to_string(c.events));
    med.push_back(c.median);
    lo.push_back(c.medianLower);
    hi.push_back(c.medianUpper);
  }
  const double level = curves.empty() ? 0.95 : curves[0].confLevel;
  char buf[16];
  std::snprintf(buf, sizeof buf, "%g", level);
  const std::string lvl = buf;
  out << table(names, {"n", "events", "median", lvl + "LCL", lvl + "UCL"},
               {n, events, formatNumbers(med, 4), formatNumbers(lo, 4), formatNumbers(hi, 4)});
  return out.str();
}

std::string formatKmSummary(const std::vector<KmCurve>& curves, const std::string& call) {
  std::ostringstream out;
  if (!call.empty()) out << "Call: " << call << "\n\n";
  for (const KmCurve& c : curves) {
    std::vector<std::string> rowNames, time, risk, event;
    std::vector<double> surv, se, lo, hi, times;
    for (const KmRow& r : c.rows) {
      if (r.nEvent == 0) continue;  // summary.survfit shows event times only
      times.push_back(r.time);
      risk.push_back(std::to_string(r.nRisk));
      event.push_back(std::to_string(r.nEvent));
      surv.push_back(r.survival);
      se.push_back(r.stdErr);
      lo.push_back(r.lower);
      hi.push_back(r.upper);
      rowNames.push_back("");
    }
    out << pad(c.name, 20) << " \n";
    const int pct = static_cast<int>(std::lround(c.confLevel * 100));
    const std::string ci = " " + std::to_string(pct) + "% CI";
    std::vector<std::string> t = formatNumbers(times, 4);
    out << table(rowNames,
                 {"time", "n.risk", "n.event", "survival", "std.err", "lower" + ci, "upper" + ci},
                 {t, risk, event, formatNumbers(surv, 3), formatNumbers(se, 3),
                  formatNumbers(lo, 3), formatNumbers(hi, 3)});
    out << '\n';
  }
  return out.str();
}

std::string formatLogRank(const LogRankTest& test, const std::string& call) {
  std::ostringstream out;
  if (!call.empty()) out << "Call:\n" << call << "\n\n";
  std::vector<std::string> names, n;
  std::vector<double> o, e, oe2e, oe2v;
  for (const LogRankGroup& g : test.groups) {
    names.push_back(g.name);
    n.push_back(std::to_string(g.n));
    o.push_back(g.observed);
    e.push_back(g.expected);
    const double d = g.observed - g.expected;
    oe2e.push_back(d * d / g.expected);
    oe2v.push_back(d * d / g.variance);
  }
  out << table(names, {"N", "Observed", "Expected", "(O-E)^2/E", "(O-E)^2/V"},
               {n, formatNumbers(o, 3), formatNumbers(e, 3), formatNumbers(oe2e, 3),
                formatNumbers(oe2v, 3)});
  out << "\n Chisq= " << formatOne(std::round(test.chiSquare * 10) / 10, 7) << "  on "
      << dfString(test.df) << " degrees of freedom, p= " << formatPValue(test.pValue, 1) << " \n";
  return out.str();
}

nlohmann::json toJson(const LinearFit& fit) {
  return {{"model", "linear"},
          {"n", fit.n},
          {"missing", fit.missing},
          {"intercept", fit.intercept},
          {"coefficients", coefficientsJson(fit.coefficients, "t_value")},
          {"residual_standard_error", number(fit.sigma)},
          {"df_residual", number(fit.dfResidual)},
          {"rss", number(fit.rss)},
          {"r_squared", number(fit.rSquared)},
          {"adj_r_squared", number(fit.adjRSquared)},
          {"f_statistic",
           {{"value", number(fit.fStatistic)},
            {"df1", number(fit.fDf1)},
            {"df2", number(fit.fDf2)},
            {"p_value", number(fit.fPValue)}}},
          {"covariance", matrixJson(fit.covariance, fit.coefficients.size())}};
}

nlohmann::json toJson(const LogisticFit& fit) {
  return {{"model", "logistic"},
          {"n", fit.n},
          {"missing", fit.missing},
          {"intercept", fit.intercept},
          {"coefficients", coefficientsJson(fit.coefficients, "z_value")},
          {"null_deviance", number(fit.nullDeviance)},
          {"df_null", number(fit.dfNull)},
          {"deviance", number(fit.deviance)},
          {"df_residual", number(fit.dfResidual)},
          {"aic", number(fit.aic)},
          {"events", fit.events},
          {"likelihood_ratio_test",
           {{"statistic", number(fit.lrStatistic)},
            {"df", number(fit.lrDf)},
            {"p_value", number(fit.lrPValue)}}},
          {"iterations", fit.iterations},
          {"rounds", fit.rounds},
          {"converged", fit.converged},
          {"warnings", fit.warnings},
          {"covariance", matrixJson(fit.covariance, fit.coefficients.size())}};
}

nlohmann::json toJson(const CoxFit& fit) {
  nlohmann::json coefs = nlohmann::json::array();
  for (const CoxCoefficient& c : fit.coefficients) {
    coefs.push_back({{"name", c.name},
                     {"coef", number(c.coef)},
                     {"hazard_ratio", number(c.hazardRatio)},
                     {"std_error", number(c.stdError)},
                     {"z", number(c.z)},
                     {"p_value", number(c.pValue)},
                     {"lower", number(c.lower)},
                     {"upper", number(c.upper)}});
  }
  auto test = [](const CoxTest& t) {
    return nlohmann::json{
        {"statistic", number(t.statistic)}, {"df", number(t.df)}, {"p_value", number(t.pValue)}};
  };
  return {{"model", "coxph"},
          {"ties", coxTiesName(fit.ties)},
          {"conf_level", fit.confLevel},
          {"n", fit.n},
          {"events", fit.events},
          {"missing", fit.missing},
          {"strata", fit.strata},
          {"coefficients", coefs},
          {"loglik_null", number(fit.loglikNull)},
          {"loglik", number(fit.loglik)},
          {"likelihood_ratio_test", test(fit.likelihoodRatio)},
          {"wald_test", test(fit.wald)},
          {"score_test", test(fit.score)},
          {"iterations", fit.iterations},
          {"rounds", fit.rounds},
          {"converged", fit.converged},
          {"warnings", fit.warnings},
          {"covariance", matrixJson(fit.covariance, fit.coefficients.size())}};
}

nlohmann::json toJson(const KmCurve& curve) {
  nlohmann::json rows = nlohmann::json::array();
  for (const KmRow& r : curve.rows) {
    rows.push_back({{"time", r.time},
                    {"n_risk", r.nRisk},
                    {"n_event", r.nEvent},
                    {"n_censor", r.nCensor},
                    {"survival", number(r.survival)},
                    {"std_err", number(r.stdErr)},
                    {"lower", number(r.lower)},
                    {"upper", number(r.upper)}});
  }
  return {{"group", curve.name},
          {"n", curve.n},
          {"events", curve.events},
          {"conf_level", curve.confLevel},
          {"conf_type", "log"},
          {"median", number(curve.median)},
          {"median_lower", number(curve.medianLower)},
          {"median_upper", number(curve.medianUpper)},
          {"rows", rows}};
}

nlohmann::json toJson(const LogRankTest& test) {
  nlohmann::json groups = nlohmann::json::array();
  for (const LogRankGroup& g : test.groups) {
    groups.push_back({{"group", g.name},
                      {"n", g.n},
                      {"observed", number(g.observed)},
                      {"expected", number(g.expected)},
                      {"variance", number(g.variance)}});
  }
  return {{"test", "logrank"},
          {"groups", groups},
          {"chi_square", number(test.chiSquare)},
          {"df", number(test.df)},
          {"p_value", number(test.pValue)}};
}

}  // namespace trialmesh::stats
