// Models in the query language: parsing and canonical text of lm/glm/coxph and their round
// statistics, binding (indicator columns, complete cases, errors), the site's round sums against
// a naive computation written here, and fits over split tables equal to the pooled fit.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <algorithm>

#include <cmath>

#include "query/model_runner.h"
#include "query_test_util.h"
#include "stats/regression.h"

namespace trialmesh::query {
namespace {

using namespace testing;  // NOLINT: test fixtures

std::string canon(const std::string& text) {
  auto q = parseQuery(text);
  EXPECT_TRUE(q.isOk()) << q.status().toString();
  return q ? canonicalQueryText(*q) : "";
}

std::string parseError(const std::string& text) {
  auto q = parseQuery(text);
  EXPECT_FALSE(q.isOk()) << text;
  return q ? "" : q.status().message();
}

TEST(ModelParse, CanonicalTextRoundTrips) {
  EXPECT_EQ(canon("LM( bmi~age+sex )"), "lm(bmi ~ age + sex)");
  EXPECT_EQ(canon("glm(death ~ age, family = binomial) where sex = \"F\""),
            "glm(death ~ age, family = binomial) where sex = \"F\"");
  EXPECT_EQ(canon("coxph(os_days, death ~ age + arm, ties = efron)"),
            "coxph(os_days, death ~ age + arm)");
  EXPECT_EQ(canon("coxph(os_days, death ~ age, strata = sex, ties = BRESLOW)"),
            "coxph(os_days, death ~ age, ties = breslow, strata = sex)");
  EXPECT_EQ(canon("lm(bmi ~ 1)"), "lm(bmi ~ 1)");
  // Round statistics carry doubles that must survive the text exactly.
  const std::vector<double> beta{0.1, -1.0 / 3.0, 1e-300, 123456789.125, -0.0};
  Aggregate a;
  a.fn = AggFn::kCoxSums;
  a.var = "os_days";
  a.event = "death";
  a.terms = {"age", "bmi", "sex", "arm", "smoker"};
  a.strata = "sex";
  a.beta = beta;
  a.center = {2.5, 1.0 / 7.0, 0, 0, 1};
  a.times = {{1, 2.5, 7}, {}};
  Query q;
  q.select.push_back(a);
  q.where = Filter{Filter::Kind::kIsNotMissing, "bmi", CompareOp::kEq, {}, {}};
  const std::string text = canonicalQueryText(q);
  auto back = parseQuery(text);
  ASSERT_TRUE(back.isOk()) << back.status().toString() << "\n" << text;
  EXPECT_EQ(*back, q);
  EXPECT_EQ(canonicalQueryText(*back), text);
  for (size_t i = 0; i < beta.size(); ++i)
    EXPECT_EQ(std::signbit(back->select[0].beta[i]), std::signbit(beta[i]));
  auto json = parseQueryJson(toJson(q));
  ASSERT_TRUE(json.isOk()) << json.status().toString();
  EXPECT_EQ(*json, q);
  for (const char* t : {"lm_sums(bmi ~ age + sex)", "glm_sums(death ~ age, beta = [0.5, -2])",
                        "cox_times(os_days, death ~ age, strata = sex)",
                        "glm(death ~ age + sex, family = binomial) where age > 30"}) {
    EXPECT_EQ(canon(t), t);
    auto p = parseQuery(t);
    auto j = parseQueryJson(toJson(*p));
    ASSERT_TRUE(j.isOk()) << j.status().toString();
    EXPECT_EQ(*j, *p);
  }
}

TEST(ModelParse, ErrorsNameTheProblem) {
  EXPECT_NE(parseError("glm(death ~ age)").find("glm needs 'family = binomial'"),
            std::string::npos);
  EXPECT_NE(parseError("glm(death ~ age, family = poisson)").find("family = binomial"),
            std::string::npos);
  EXPECT_NE(parseError("coxph(os_days, death ~ age, ties = exact)")
                .find("ties must be efron or breslow, found 'exact'"),
            std::string::npos);
  EXPECT_NE(parseError("lm(bmi ~ age, ties = efron)").find("lm() has no option 'ties'"),
            std::string::npos);
  EXPECT_NE(parseError("lm(bmi ~ age + age)").find("covariate 'age' appears twice"),
            std::string::npos);
  EXPECT_NE(parseError("lm(bmi, age)")
                .find("expected '~' between the response and the "
                      "covariates of lm(y ~ x1 + x2)"),
            std::string::npos);
  EXPECT_NE(parseError("coxph(os_days ~ age)").find("expected ','"), std::string::npos);
  EXPECT_NE(parseError("coxph(os_days, death ~ age, ties = efron, ties = breslow)")
                .find("option 'ties' is given twice"),
            std::string::npos);
}

Result<BoundQuery> bindText(const std::string& text) {
  TM_ASSIGN_OR_RETURN(Query q, parseQuery(text));
  return bindQuery(q, studyDictionary());
}

std::string bindError(const std::string& text) {
  auto b = bindText(text);
  EXPECT_FALSE(b.isOk()) << text;
  return b ? "" : b.status().message();
}

TEST(ModelBind, IndicatorColumnsAndErrors) {
  auto table = makeTable(studyDictionary(), randomRows(500, 3));
  auto r = localRoundRunner(*table)("lm_sums(bmi ~ age + sex + arm + smoker + status)");
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  std::vector<std::string> names;
  for (const auto& note : r->table.notes)
    if (note.rfind("design column: ", 0) == 0) names.push_back(note.substr(15));
  EXPECT_EQ(names, (std::vector<std::string>{"(Intercept)", "age", "sexM", "armB", "armC",
                                             "smokerTRUE", "status"}));

  EXPECT_NE(bindError("lm(bmi ~ age) by sex").find("cannot be grouped with 'by'"),
            std::string::npos);
  EXPECT_NE(bindError("count, lm(bmi ~ age)").find("must be the only statistic"),
            std::string::npos);
  EXPECT_NE(bindError("lm(bmi ~ enrolled)").find("covariate enrolled is a date"),
            std::string::npos);
  EXPECT_NE(bindError("lm(sex ~ age)").find("the response sex is categorical"), std::string::npos);
  EXPECT_NE(bindError("glm(bmi ~ age, family = binomial)")
                .find("logistic regression needs a boolean or a 0/1 integer outcome"),
            std::string::npos);
  EXPECT_NE(bindError("lm(bmi ~ agee)").find("unknown variable 'agee' (did you mean 'age'?)"),
            std::string::npos);
  EXPECT_NE(bindError("coxph(os_days, death ~ age, strata = bmi)")
                .find("strata need a categorical or boolean variable"),
            std::string::npos);
  EXPECT_NE(bindError("glm_sums(death ~ age + sex, beta = [1, 2])")
                .find("beta has 2 entries but the design has 3 columns ((Intercept), age, sexM)"),
            std::string::npos);
  EXPECT_NE(bindError("cox_sums(os_days, death ~ age, strata = sex, times = [[1, 2]])")
                .find("times has 1 event-time lists but the model has 2 strata"),
            std::string::npos);
}

// Naive design row from the fixture rows: NaN when any model variable is missing.
struct NaiveDesign {
  std::vector<std::vector<double>> x;
  std::vector<double> y;
  uint64_t missing = 0;
};

// lm(bmi ~ age + sex + arm + smoker) where status != 2, written from the language description.
NaiveDesign naiveDesign(const std::vector<Row>& rows) {
  NaiveDesign d;
  for (const auto& r : rows) {
    if (r[kStatus].i == 2) continue;
    if (r[kBmi].missing || r[kAge].missing || r[kSmoker].missing) {
      ++d.missing;
      continue;
    }
    d.x.push_back({1.0, static_cast<double>(r[kAge].i), r[kSex].i == 1 ? 1.0 : 0.0,
                   r[kArm].i == 1 ? 1.0 : 0.0, r[kArm].i == 2 ? 1.0 : 0.0,
                   r[kSmoker].i == 1 ? 1.0 : 0.0});
    d.y.push_back(r[kBmi].d);
  }
  return d;
}

TEST(ModelKernel, LinearSumsEqualNaiveComputation) {
  const auto rows = randomRows(3000, 11);
  auto table = makeTable(studyDictionary(), rows);
  auto r = localRoundRunner(*table)("lm_sums(bmi ~ age + sex + arm + smoker) where status != 2");
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  const NaiveDesign d = naiveDesign(rows);
  const size_t p = 6;
  const StatPartial& s = r->merged.stats[0];
  ASSERT_EQ(s.vec.size(), p * p + p + 2);
  EXPECT_EQ(s.n[0], d.y.size());
  EXPECT_EQ(s.missing[0], d.missing);
  EXPECT_GT(d.missing, 100u);
  for (size_t i = 0; i < p; ++i) {
    double xty = 0;
    for (size_t k = 0; k < d.y.size(); ++k) xty += d.x[k][i] * d.y[k];
    EXPECT_NEAR(s.vec[p * p + i], xty, 1e-9 * std::fabs(xty)) << i;
    for (size_t j = 0; j < p; ++j) {
      double xtx = 0;
      for (size_t k = 0; k < d.y.size(); ++k) xtx += d.x[k][i] * d.x[k][j];
      EXPECT_NEAR(s.vec[i * p + j], xtx, 1e-9 * std::fabs(xtx) + 1e-12) << i << "," << j;
    }
  }
  double yty = 0;
  for (double y : d.y) yty += y * y;
  EXPECT_NEAR(s.vec[p * p + p], yty, 1e-9 * yty);
  EXPECT_EQ(r->table.notes.back(), fmt::format("{} rows dropped for missing values", d.missing));
  EXPECT_EQ(std::get<int64_t>(r->table.rows.at(0).at(0)), static_cast<int64_t>(d.y.size()));
}

// A RoundRunner over several tables that merges their partials: a federation without network.
RoundRunner splitRunner(const std::vector<std::unique_ptr<InMemoryTable>>& tables) {
  return [&tables](const std::string& text) -> Result<RoundAnswer> {
    RoundAnswer out;
    for (size_t i = 0; i < tables.size(); ++i) {
      TM_ASSIGN_OR_RETURN(RoundAnswer a, localRoundRunner(*tables[i])(text));
      if (i == 0) {
        out = std::move(a);
      } else {
        TM_RETURN_IF_ERROR(mergeInto(out.merged, a.merged));
      }
    }
    return out;
  };
}

double relDiff(double a, double b) { return std::fabs(a - b) / std::max(1.0, std::fabs(b)); }

TEST(ModelFit, SplitTablesEqualPooled) {
  const auto rows = randomRows(4000, 5);
  auto pooled = makeTable(studyDictionary(), rows);
  std::vector<std::unique_ptr<InMemoryTable>> parts;
  for (size_t s = 0; s < 3; ++s) {
    std::vector<Row> part(rows.begin() + static_cast<std::ptrdiff_t>(s * rows.size() / 3),
                          rows.begin() + static_cast<std::ptrdiff_t>((s + 1) * rows.size() / 3));
    parts.push_back(makeTable(studyDictionary(), part));
  }
  struct Case {
    const char* text;
    double tolerance;
  };
  for (const Case& c :
       {Case{"lm(bmi ~ age + sex + ecog + smoker) where status != 2", 1e-9},
        Case{"glm(death ~ age + sex + bmi, family = binomial)", 1e-6},
        Case{"coxph(os_days, death ~ age + sex + bmi)", 1e-6},
        Case{"coxph(os_days, death ~ age + bmi, ties = breslow, strata = sex)", 1e-6}}) {
    SCOPED_TRACE(c.text);
    auto q = parseQuery(c.text);
    ASSERT_TRUE(q.isOk());
    auto whole = fitModel(*q, localRoundRunner(*pooled));
    ASSERT_TRUE(whole.isOk()) << whole.status().toString();
    auto split = fitModel(*q, splitRunner(parts));
    ASSERT_TRUE(split.isOk()) << split.status().toString();
    EXPECT_EQ(split->roundQueries.size(), whole->roundQueries.size());
    EXPECT_EQ(split->roundQueries.front(), whole->roundQueries.front());
    std::vector<std::pair<double, double>> pairs;
    if (whole->linear) {
      for (size_t j = 0; j < whole->linear->coefficients.size(); ++j) {
        pairs.emplace_back(split->linear->coefficients[j].estimate,
                           whole->linear->coefficients[j].estimate);
        pairs.emplace_back(split->linear->coefficients[j].stdError,
                           whole->linear->coefficients[j].stdError);
      }
      EXPECT_EQ(split->linear->missing, whole->linear->missing);
      EXPECT_EQ(whole->roundQueries.size(), 1u);
    }
    if (whole->logistic) {
      for (size_t j = 0; j < whole->logistic->coefficients.size(); ++j)
        pairs.emplace_back(split->logistic->coefficients[j].estimate,
                           whole->logistic->coefficients[j].estimate);
      pairs.emplace_back(split->logistic->deviance, whole->logistic->deviance);
      EXPECT_TRUE(whole->logistic->converged);
      EXPECT_EQ(static_cast<size_t>(whole->logistic->rounds), whole->roundQueries.size());
    }
    if (whole->cox) {
      for (size_t j = 0; j < whole->cox->coefficients.size(); ++j) {
        pairs.emplace_back(split->cox->coefficients[j].coef, whole->cox->coefficients[j].coef);
        pairs.emplace_back(split->cox->coefficients[j].stdError,
                           whole->cox->coefficients[j].stdError);
      }
      pairs.emplace_back(split->cox->loglik, whole->cox->loglik);
      EXPECT_TRUE(whole->cox->converged);
      EXPECT_EQ(static_cast<size_t>(whole->cox->rounds) + 1, whole->roundQueries.size());
    }
    for (const auto& [a, b] : pairs) EXPECT_LT(relDiff(a, b), c.tolerance) << a << " vs " << b;
    EXPECT_FALSE(formatModel(*whole).empty());
  }
}

TEST(ModelKernel, RefusesTooManyParametersForTheRows) {
  auto table = makeTable(studyDictionary(), randomRows(12, 2));
  auto r = localRoundRunner(*table)("lm_sums(bmi ~ age + sex + arm + smoker + status)");
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied);
  // 7 / 0.33 = 21.2: the rule's threshold, never the site's own count (12 rows at most).
  EXPECT_NE(r.status().message().find(
                "the model has 7 parameters and this site has fewer than the 22 complete-case"),
            std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("nfilter.glm"), std::string::npos);
  for (int n = 0; n <= 12; ++n)
    EXPECT_EQ(r.status().message().find("site has " + std::to_string(n)), std::string::npos);
}

// Secure modes: a small site contributes its sums; the rule applies to the pooled rows.
TEST(ModelKernel, WithoutThePerSiteRuleASmallSiteAnswersAndThePooledRuleRefuses) {
  auto table = makeTable(studyDictionary(), randomRows(12, 2));
  ExecOptions options;
  options.modelPerSiteRule = false;
  auto r = localRoundRunner(*table, options)("lm_sums(bmi ~ age + sex + arm + smoker + status)");
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  auto q = parseQuery("lm(bmi ~ age + sex + arm + smoker + status)");
  ASSERT_TRUE(q.isOk());
  auto fit = fitModel(*q, localRoundRunner(*table, options));
  ASSERT_FALSE(fit.isOk());
  EXPECT_EQ(fit.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(fit.status().message().find("pooled"), std::string::npos) << fit.status().message();
}

// The approval's model_min_site_rows: a smaller site refuses naming the rule, not its count.
TEST(ModelKernel, BelowTheApprovalsMinimumSiteRowsASiteRefusesWithoutItsCount) {
  auto table = makeTable(studyDictionary(), randomRows(12, 2));
  ExecOptions options;
  options.modelPerSiteRule = false;
  options.modelMinSiteRows = 50;
  auto r = localRoundRunner(*table, options)("lm_sums(bmi ~ age)");
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(r.status().message().find("fewer complete-case rows than the approval's "
                                      "model_min_site_rows (50)"),
            std::string::npos)
      << r.status().message();
  for (int n = 0; n <= 12; ++n)
    EXPECT_EQ(r.status().message().find("site has " + std::to_string(n)), std::string::npos);
  options.modelMinSiteRows = 2;
  EXPECT_TRUE(localRoundRunner(*table, options)("lm_sums(bmi ~ age)").isOk());
}

TEST(ModelKernel, AModelItselfIsNotASiteQuery) {
  auto table = makeTable(studyDictionary(), randomRows(100, 2));
  auto r = localRoundRunner(*table)("lm(bmi ~ age)");
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().message().find("fitted by the coordinator in rounds"), std::string::npos);
}

TEST(KmTable, ConfidenceLimitsMedianAndLogRank) {
  auto table = makeTable(studyDictionary(), randomRows(2000, 9));
  auto q = parseQuery("km(os_days, death) by sex");
  ASSERT_TRUE(q.isOk());
  auto b = bindQuery(*q, table->dictionary());
  ASSERT_TRUE(b.isOk());
  auto p = execute(*b, *table);
  ASSERT_TRUE(p.isOk());
  auto t = finalize(*p, *b);
  ASSERT_TRUE(t.isOk()) << t.status().toString();
  ASSERT_EQ(t->columns.back(), "upper_95");
  // Log-transformed limits bracket the estimate wherever it is defined.
  auto column = [&](const std::string& name) {
    return static_cast<size_t>(std::find(t->columns.begin(), t->columns.end(), name) -
                               t->columns.begin());
  };
  const size_t surv = column("survival"), se = column("std_err"), seLog = column("std_err_cumhaz");
  for (const auto& row : t->rows) {
    const auto* s = std::get_if<double>(&row[surv]);
    const auto* lo = std::get_if<double>(&row[column("lower_95")]);
    const auto* hi = std::get_if<double>(&row[column("upper_95")]);
    // summary.survfit's std.err (of S) is S times the survfit object's std.err (of -log S).
    const auto* a = std::get_if<double>(&row[se]);
    const auto* b = std::get_if<double>(&row[seLog]);
    if (s && a && b) {
      EXPECT_NEAR(*a, *s * *b, 1e-12);
    }
    if (s && lo && hi) {
      EXPECT_LE(*lo, *s + 1e-12);
      EXPECT_GE(*hi, *s - 1e-12);
    }
  }
  bool medianNote = false, logRankNote = false;
  for (const auto& n : t->notes) {
    medianNote = medianNote || n.rfind("sex=F: n = ", 0) == 0;
    logRankNote = logRankNote || n.rfind("log-rank test: chisq = ", 0) == 0;
  }
  EXPECT_TRUE(medianNote);
  EXPECT_TRUE(logRankNote);
  EXPECT_NE(t->appendix.find("sex=M"), std::string::npos);
  // The same figures as fields.
  ASSERT_EQ(t->curves.size(), 2u);
  EXPECT_EQ(t->curves[0].name, "sex=F");
  EXPECT_TRUE(t->curves[0].rows.empty());
  ASSERT_TRUE(t->logRank.has_value());
  EXPECT_EQ(t->logRank->groups.size(), 2u);
  EXPECT_EQ(t->logRank->variance.size(), 4u);
}

}  // namespace
}  // namespace trialmesh::query
