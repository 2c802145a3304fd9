// Small dense linear algebra for the model fits: the Cholesky factor of a symmetric
// positive-definite matrix (p up to a few hundred), solves and the inverse.
//
// Matrices are std::vector<double> of n*n entries, row-major. Only the lower triangle of the
// input is read, so callers may fill either both triangles or just the lower one.
//
// Thread-safety: SymmetricFactor is an immutable value after factor(); safe to share.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "common/status.h"

namespace trialmesh::stats {

// A column whose pivot, relative to its own diagonal entry, falls below this is declared
// collinear with the columns before it: it means more than 1 - 1e-10 of its variation is
// explained by them. This is stricter than lm's QR tolerance (1e-7 on the R diagonal, i.e.
// 1e-14 here) because our cross-product matrices are summed across sites in floating point
// and lose about half the digits a QR decomposition of the rows would keep.
inline constexpr double kCollinearTolerance = 1e-10;

class SymmetricFactor {
 public:
  // Factors the n*n matrix `a` = L L'. `names` (n entries, or empty) name the columns for the
  // error message. Errors: InvalidArgument "coefficient 'x2' is not estimable: design is
  // collinear ..." when a pivot is not positive or below kCollinearTolerance of its diagonal;
  // InvalidArgument when `a` has a non-finite entry or the wrong size.
  static Result<SymmetricFactor> factor(const std::vector<double>& a, size_t n,
                                        const std::vector<std::string>& names = {});

  size_t size() const { return n_; }
  // x with A x = b. REQUIRES: b.size() == size().
  std::vector<double> solve(const std::vector<double>& b) const;
  // A^{-1}, n*n row-major, symmetric.
  std::vector<double> inverse() const;
  // b' A^{-1} b (a quadratic form such as a score or Wald statistic).
  double inverseQuadraticForm(const std::vector<double>& b) const;

 private:
  SymmetricFactor(size_t n, std::vector<double> l) : n_(n), l_(std::move(l)) {}
  size_t n_ = 0;
  std::vector<double> l_;  // lower-triangular factor, row-major n*n
};

// y = A x for an n*n row-major A.
std::vector<double> multiply(const std::vector<double>& a, const std::vector<double>& x);
// x' y.
double dot(const std::vector<double>& x, const std::vector<double>& y);

}  // namespace trialmesh::stats
