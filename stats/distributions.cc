#include "stats/distributions.h"

#include <boost/math/distributions/chi_squared.hpp>
#include <boost/math/distributions/fisher_f.hpp>
#include <boost/math/distributions/normal.hpp>
#include <boost/math/distributions/students_t.hpp>
#include <cmath>
#include <limits>

namespace trialmesh::stats::detail {

namespace {
// Report domain problems as NaN (printed "NA"), never as exceptions.
using Policy = boost::math::policies::policy<
    boost::math::policies::domain_error<boost::math::policies::ignore_error>,
    boost::math::policies::overflow_error<boost::math::policies::ignore_error>,
    boost::math::policies::evaluation_error<boost::math::policies::ignore_error>>;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
}  // namespace

double twoSidedT(double t, double df) {
  if (std::isnan(t) || !(df > 0)) return kNaN;
  if (std::isinf(t)) return 0.0;
  boost::math::students_t_distribution<double, Policy> dist(df);
  return 2.0 * boost::math::cdf(boost::math::complement(dist, std::fabs(t)));
}

double twoSidedNormal(double z) {
  if (std::isnan(z)) return kNaN;
  if (std::isinf(z)) return 0.0;
  boost::math::normal_distribution<double, Policy> dist;
  return 2.0 * boost::math::cdf(boost::math::complement(dist, std::fabs(z)));
}

double upperChiSquared(double x, double df) {
  if (std::isnan(x) || !(df > 0)) return kNaN;
  if (x <= 0) return 1.0;
  if (std::isinf(x)) return 0.0;
  boost::math::chi_squared_distribution<double, Policy> dist(df);
  return boost::math::cdf(boost::math::complement(dist, x));
}

double upperF(double f, double df1, double df2) {
  if (std::isnan(f) || !(df1 > 0) || !(df2 > 0)) return kNaN;
  if (f <= 0) return 1.0;
  if (std::isinf(f)) return 0.0;
  boost::math::fisher_f_distribution<double, Policy> dist(df1, df2);
  return boost::math::cdf(boost::math::complement(dist, f));
}

double normalQuantile(double p) {
  boost::math::normal_distribution<double, Policy> dist;
  return boost::math::quantile(dist, p);
}

}  // namespace trialmesh::stats::detail
