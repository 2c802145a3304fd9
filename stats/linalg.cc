#include "stats/linalg.h"

#include <cmath>
#include <string>

namespace trialmesh::stats {

Result<SymmetricFactor> SymmetricFactor::factor(const std::vector<double>& a, size_t n,
                                                const std::vector<std::string>& names) {
  if (a.size() != n * n) {
    return Status::invalidArgument("matrix has " + std::to_string(a.size()) +
                                   " entries, expected " + std::to_string(n * n));
  }
  auto name = [&](size_t j) {
    return j < names.size() ? names[j] : "column " + std::to_string(j + 1);
  };
  std::vector<double> l(n * n, 0.0);
  for (size_t j = 0; j < n; ++j) {
    for (size_t i = 0; i <= j; ++i) {
      if (!std::isfinite(a[j * n + i])) {
        return Status::invalidArgument("cross-product entry for '" + name(j) + "' and '" + name(i) +
                                       "' is not finite (overflow in the data?)");
      }
    }
  }
  for (size_t j = 0; j < n; ++j) {
    double diag = a[j * n + j];
    double pivot = diag;
    for (size_t k = 0; k < j; ++k) pivot -= l[j * n + k] * l[j * n + k];
    if (!(diag > 0) || !(pivot > kCollinearTolerance * diag)) {
      return Status::invalidArgument(
          "coefficient '" + name(j) +
          "' is not estimable: design is collinear (the column is constant zero or a linear "
          "combination of the columns before it); drop it or merge levels");
    }
    double ljj = std::sqrt(pivot);
    l[j * n + j] = ljj;
    for (size_t i = j + 1; i < n; ++i) {
      double s = a[i * n + j];
      for (size_t k = 0; k < j; ++k) s -= l[i * n + k] * l[j * n + k];
      l[i * n + j] = s / ljj;
    }
  }
  return SymmetricFactor(n, std::move(l));
}

std::vector<double> SymmetricFactor::solve(const std::vector<double>& b) const {
  std::vector<double> y(b);
  for (size_t i = 0; i < n_; ++i) {  // L y = b
    double s = y[i];
    for (size_t k = 0; k < i; ++k) s -= l_[i * n_ + k] * y[k];
    y[i] = s / l_[i * n_ + i];
  }
  for (size_t ii = n_; ii-- > 0;) {  // L' x = y
    double s = y[ii];
    for (size_t k = ii + 1; k < n_; ++k) s -= l_[k * n_ + ii] * y[k];
    y[ii] = s / l_[ii * n_ + ii];
  }
  return y;
}

std::vector<double> SymmetricFactor::inverse() const {
  std::vector<double> inv(n_ * n_, 0.0);
  std::vector<double> e(n_, 0.0);
  for (size_t j = 0; j < n_; ++j) {
    e.assign(n_, 0.0);
    e[j] = 1.0;
    std::vector<double> col = solve(e);
    for (size_t i = 0; i < n_; ++i) inv[i * n_ + j] = col[i];
  }
  // Symmetrise: the two triangles differ by rounding only.
  for (size_t i = 0; i < n_; ++i) {
    for (size_t j = i + 1; j < n_; ++j) {
      double m = 0.5 * (inv[i * n_ + j] + inv[j * n_ + i]);
      inv[i * n_ + j] = inv[j * n_ + i] = m;
    }
  }
  return inv;
}

double SymmetricFactor::inverseQuadraticForm(const std::vector<double>& b) const {
  // b' (L L')^{-1} b = |L^{-1} b|^2.
  std::vector<double> y(b);
  double q = 0;
  for (size_t i = 0; i < n_; ++i) {
    double s = y[i];
    for (size_t k = 0; k < i; ++k) s -= l_[i * n_ + k] * y[k];
    y[i] = s / l_[i * n_ + i];
    q += y[i] * y[i];
  }
  return q;
}

std::vector<double> multiply(const std::vector<double>& a, const std::vector<double>& x) {
  size_t n = x.size();
  std::vector<double> y(n, 0.0);
  for (size_t i = 0; i < n; ++i) {
    double s = 0;
    for (size_t j = 0; j < n; ++j) s += a[i * n + j] * x[j];
    y[i] = s;
  }
  return y;
}

double dot(const std::vector<double>& x, const std::vector<double>& y) {
  double s = 0;
  for (size_t i = 0; i < x.size(); ++i) s += x[i] * y[i];
  return s;
}

}  // namespace trialmesh::stats
