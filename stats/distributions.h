// Internal to tm_stats: tail probabilities and quantiles used by the fits (Boost.Math).
// Upper tails are computed as complements, so tiny p-values keep their digits (no 1 - 1).
#pragma once

namespace trialmesh::stats::detail {

double twoSidedT(double t, double df);        // 2 * pt(-|t|, df)
double twoSidedNormal(double z);              // 2 * pnorm(-|z|)
double upperChiSquared(double x, double df);  // pchisq(x, df, lower.tail = FALSE)
double upperF(double f, double df1, double df2);
double normalQuantile(double p);  // qnorm(p)

}  // namespace trialmesh::stats::detail
