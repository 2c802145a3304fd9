#include "query/additive.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <utility>

#include "query/model_kernel.h"
#include "query/plan.h"
#include "query/quantile.h"

namespace trialmesh::query {

namespace {

using Field = AdditiveLayout::Field;
using Kind = AdditiveLayout::Kind;
using Segment = AdditiveLayout::Segment;
using SignedWord = __int128;

// A site time t goes to the first grid point k w >= t; the slack absorbs the rounding of t / w
// (0.3 / 0.1 = 3.0000000000000004 must land on point 3, not 4).
constexpr long double kGridSlack = 1e-9L;

constexpr AdditiveWord kUint64Max = std::numeric_limits<uint64_t>::max();
const long double kFixedScale = std::ldexp(1.0L, kFixedPointFractionBits);
const long double kFixedSiteLimit =
    std::ldexp(1.0L, kFixedPointMaxExponent + kFixedPointFractionBits);  // in fixed units

// Bound on the magnitude of one site's word of this kind (exclusive for signed kinds).
AdditiveWord siteBound(Kind kind) {
  switch (kind) {
    case Kind::kCount:
      return kUint64Max;
    case Kind::kInteger:
      return AdditiveWord{1} << kIntegerMaxExponent;
    case Kind::kFixed:
      return AdditiveWord{1} << (kFixedPointMaxExponent + kFixedPointFractionBits);
    case Kind::kCountPair:
      return ~AdditiveWord{0};  // each half is checked after the decode
  }
  return 0;
}

const char* fieldName(Field f) {
  switch (f) {
    case Field::kRowsScanned:
      return "rows scanned";
    case Field::kCellRows:
      return "rows per cell";
    case Field::kN:
      return "n";
    case Field::kMissing:
      return "missing";
    case Field::kIntegerSum:
      return "sum";
    case Field::kRealSum:
      return "sum";
    case Field::kShiftedSum:
      return "sum of (x - c)";
    case Field::kShiftedSquares:
      return "sum of (x - c)^2";
    case Field::kBinCounts:
      return "bin count";
    case Field::kKmEvents:
      return "events";
    case Field::kKmCensored:
      return "censorings";
    case Field::kKmPairs:
      return "events and censorings";
    case Field::kVec:
      return "vector";
  }
  return "?";
}

// The statistic's text for error messages, formatted only when a message is built: a model
// round's text carries its whole grid, β and centre (tens of KB for a Cox round).
struct StatName {
  const detail::Plan* plan = nullptr;
  int stat = -1;
  std::string str() const {
    return stat < 0 ? std::string("the query") : aggregateText(plan->query.select[stat]);
  }
};

}  // namespace
}  // namespace trialmesh::query

template <>
struct fmt::formatter<trialmesh::query::StatName> : fmt::formatter<std::string> {
  auto format(const trialmesh::query::StatName& name, fmt::format_context& ctx) const {
    return fmt::formatter<std::string>::format(name.str(), ctx);
  }
};

namespace trialmesh::query {
namespace {

std::string decimal(SignedWord v) {
  const bool negative = v < 0;
  AdditiveWord u = negative ? AdditiveWord(0) - AdditiveWord(v) : AdditiveWord(v);
  std::string s;
  do {
    s.insert(s.begin(), static_cast<char>('0' + static_cast<int>(u % 10)));
    u /= 10;
  } while (u != 0);
  return negative ? "-" + s : s;
}

Status fixedRangeError(long double v, const StatName& stat, const char* what, uint32_t cell) {
  return Status::invalidArgument(fmt::format(
      "{}: the {} of cell {} is {}, outside the range secure aggregation can encode exactly "
      "(|value| < 2^{} = {:.3g}); run this query in plain mode, or narrow it with a filter",
      stat, what, cell, static_cast<double>(v), kFixedPointMaxExponent,
      std::ldexp(1.0, kFixedPointMaxExponent)));
}

// Fixed point of a site's real value; refuses what does not fit instead of wrapping.
Result<AdditiveWord> toFixed(long double v, const StatName& stat, const char* what, uint32_t cell) {
  const long double scaled = v * kFixedScale;
  if (!std::isfinite(v) || !(std::fabs(scaled) < kFixedSiteLimit))
    return fixedRangeError(v, stat, what, cell);
  return AdditiveWord(static_cast<SignedWord>(std::round(scaled)));
}

// The same for a double, without x87 arithmetic: v * 2^32 is exact in double, so this rounds
// exactly as the long double version. Model rounds encode hundreds of thousands of these.
Result<AdditiveWord> toFixed(double v, const StatName& stat, const char* what, uint32_t cell) {
  constexpr double kScale = 0x1p32;
  static_assert(kFixedPointFractionBits == 32);
  const double scaled = std::round(v * kScale);
  if (!(std::fabs(scaled) < 0x1p100)) return fixedRangeError(v, stat, what, cell);
  if (std::fabs(scaled) < 0x1p62)
    return AdditiveWord(static_cast<SignedWord>(static_cast<int64_t>(scaled)));
  return AdditiveWord(static_cast<SignedWord>(scaled));
}

long double fromFixed(SignedWord v) { return static_cast<long double>(v) / kFixedScale; }

// fromFixed rounded to double; words that fit 64 bits (almost all) skip the 128-bit
// conversion. Exact as fromFixed: int64 -> double rounds once, the 2^-32 scaling is exact.
double fixedToDouble(SignedWord v) {
  if (v >= INT64_MIN && v <= INT64_MAX)
    return static_cast<double>(static_cast<int64_t>(v)) * 0x1p-32;
  return static_cast<double>(fromFixed(v));
}

// The grid point of a km time; nullopt when the time lies outside the grid.
std::optional<size_t> gridPoint(double time, double width, size_t points) {
  std::optional<uint64_t> k = timeGridIndex(time, width);
  if (!k || *k >= points) return std::nullopt;
  return static_cast<size_t>(*k);
}

// The time variable a km or cox_times statistic counts on the grid.
const storage::Variable& gridTimeVariable(const detail::Plan& plan,
                                          const detail::BoundAggregate& a) {
  return plan.dictionary.variable(a.fn == AggFn::kKm ? a.var : plan.model->response);
}

}  // namespace

std::optional<uint64_t> timeGridIndex(double t, double w) {
  if (!std::isfinite(t) || t < 0) return std::nullopt;
  const long double k = std::ceil(static_cast<long double>(t) / w - kGridSlack);
  if (k <= 0) return uint64_t{0};
  if (!(k <= 0x1p53L)) return std::nullopt;
  return static_cast<uint64_t>(k);
}

Result<AdditiveLayout> AdditiveLayout::create(const BoundQuery& query,
                                              const AdditiveOptions& options) {
  const detail::Plan& plan = query.plan();
  AdditiveLayout layout(query);
  layout.noisyCounts_ = options.noisyCounts;
  const size_t cells = plan.cells;
  bool tooBig = false;
  auto add = [&](int stat, Field field, Kind kind, size_t length) {
    if (length > kMaxAdditiveWords || layout.words_ > kMaxAdditiveWords - length) tooBig = true;
    layout.segments_.push_back({stat, field, kind, layout.words_, length});
    layout.words_ += length;
  };
  add(-1, Field::kRowsScanned, Kind::kCount, 1);
  add(-1, Field::kCellRows, Kind::kCount, cells);
  layout.shifts_.assign(plan.aggregates.size(), 0.0);
  for (size_t i = 0; i < plan.aggregates.size(); ++i) {
    const detail::BoundAggregate& a = plan.aggregates[i];
    const int stat = static_cast<int>(i);
    const StatName name{&plan, stat};
    if (a.fn == AggFn::kMin || a.fn == AggFn::kMax) {
      return Status::invalidArgument(
          fmt::format("{}: min/max reveal single values and cannot be securely aggregated; ask "
                      "for an approval in plain mode",
                      name));
    }
    if (a.fn == AggFn::kQuantileCounts && options.noisyCounts) {
      // The select narrows on exact ranks: noisy counts would point it at the wrong values.
      return Status::invalidArgument(
          fmt::format("{}: an exact quantile needs exact counts, and secure-dp adds noise to "
                      "every count; ask for an approval in secure or plain mode",
                      name));
    }
    if (a.fn == AggFn::kMean || a.fn == AggFn::kVar || a.fn == AggFn::kSd) {
      const storage::Variable& v = plan.dictionary.variable(a.var);
      double c = 0;
      if (auto it = options.shifts.find(v.name); it != options.shifts.end()) {
        c = it->second;
      } else if (v.min && v.max) {
        c = *v.min + (*v.max - *v.min) / 2;
      }
      if (!std::isfinite(c)) {
        return Status::invalidArgument(
            fmt::format("{}: the shift for {} must be a finite number", name, v.name));
      }
      layout.shifts_[i] = a.sameStateAs >= 0 ? layout.shifts_[a.sameStateAs] : c;
      // Same state as an earlier entry: its words carry this one too.
      if (a.sameStateAs >= 0) continue;
    }
    add(stat, Field::kN, Kind::kCount, cells);
    if (a.hasVar || isModelRound(a.fn)) add(stat, Field::kMissing, Kind::kCount, cells);
    switch (a.fn) {
      case AggFn::kCount:
        break;
      case AggFn::kSum:
        if (a.type == storage::VariableType::kInteger) {
          add(stat, Field::kIntegerSum, Kind::kInteger, cells);
        } else {
          add(stat, Field::kRealSum, Kind::kFixed, cells);
        }
        break;
      case AggFn::kMean:
      case AggFn::kVar:
      case AggFn::kSd:
        add(stat, Field::kShiftedSum, Kind::kFixed, cells);
        add(stat, Field::kShiftedSquares, Kind::kFixed, cells);
        break;
      case AggFn::kHist:
        add(stat, Field::kBinCounts, Kind::kCount, cells * a.breaks.size());  // bins + 1 slots
        break;
      case AggFn::kQuantileCounts:  // one cell; every bucket of every interval, the decimal
                                    // counts (query/quantile.h), then outside
        add(stat, Field::kBinCounts, Kind::kCount,
            a.keyBounds.size() / 2 * size_t{a.buckets} + kDecimalTests + 1);
        break;
      case AggFn::kKm:
      case AggFn::kCoxTimes: {
        // cox_times: the distinct event times per stratum, as event counts on the km grid
        // (its censorings run stays 0), then Σx (p) for the centring means.
        const storage::Variable& t = gridTimeVariable(plan, a);
        if (!options.kmTimeBin) {
          return Status::invalidArgument(fmt::format(
              "{}: secure aggregation counts survival times on a fixed grid, and no grid width "
              "is set; the approval must set time_bin (e.g. time_bin = 1 for times in days)",
              name));
        }
        const double w = *options.kmTimeBin;
        if (!(w > 0) || !std::isfinite(w)) {
          return Status::invalidArgument(
              fmt::format("{}: the time grid width (time_bin) must be > 0, got {}", name, w));
        }
        std::optional<double> tmax = options.kmTimeMax ? options.kmTimeMax : t.max;
        if (!tmax) {
          return Status::invalidArgument(fmt::format(
              "{}: the time grid is unbounded because {} has no maximum in the dictionary; "
              "declare max for {} so secure aggregation can count times on a bounded grid",
              name, t.name, t.name));
        }
        if (!(*tmax >= 0) || !std::isfinite(*tmax)) {
          return Status::invalidArgument(
              fmt::format("{}: the time grid runs from 0 to the maximum of {}, which is {}", name,
                          t.name, *tmax));
        }
        const long double points = std::ceil(*tmax / static_cast<long double>(w) - kGridSlack) + 1;
        if (!(points * cells * 2 <= static_cast<long double>(kMaxAdditiveWords))) {
          return Status::invalidArgument(fmt::format(
              "{}: a time grid of width {} up to {} has {:.0f} points per cell; with {} cells "
              "that exceeds the {} words secure aggregation allows; choose a larger time_bin",
              name, w, *tmax, static_cast<double>(points), cells, kMaxAdditiveWords));
        }
        if (layout.kmGridPoints_ != 0 &&
            (layout.kmTimeBin_ != w || layout.kmGridPoints_ != static_cast<size_t>(points))) {
          return Status::invalidArgument(
              fmt::format("{}: every km statistic of one query must share one time grid", name));
        }
        layout.kmTimeBin_ = w;
        layout.kmGridPoints_ = static_cast<size_t>(points);
        if (options.noisyCounts) {
          // Noise shares are signed: a negative half would borrow from its neighbour.
          add(stat, Field::kKmEvents, Kind::kCount, cells * layout.kmGridPoints_);
          add(stat, Field::kKmCensored, Kind::kCount, cells * layout.kmGridPoints_);
        } else {
          add(stat, Field::kKmPairs, Kind::kCountPair, cells * layout.kmGridPoints_);
        }
        if (a.fn == AggFn::kCoxTimes) add(stat, Field::kVec, Kind::kFixed, plan.model->width());
        break;
      }
      case AggFn::kCoxSums: {
        // The round's grid (its `times`, one list per stratum) fixes the length (layout in
        // query/partial.h).
        const size_t p = plan.model->width();
        add(stat, Field::kVec, Kind::kFixed, detail::coxSumsLength(plan.query.select[i].times, p));
        break;
      }
      case AggFn::kLmSums:
      case AggFn::kGlmSums: {
        // Model rounds of issue #6: one real vector of fixed length (layouts in
        // query/partial.h): X'X, X'y, y'y, sum y (+ the boundary rows of glm).
        const size_t p = plan.model ? plan.model->width() : 0;
        add(stat, Field::kVec, Kind::kFixed,
            a.fn == AggFn::kLmSums ? detail::lmSumsLength(p) : detail::glmSumsLength(p));
        break;
      }
      case AggFn::kMin:
      case AggFn::kMax:
        break;  // refused above
      default:
        // Models are fitted by the coordinator in rounds: the rounds are encoded, not the
        // model.
        return Status::invalidArgument(fmt::format(
            "{}: {} is fitted by the coordinator from rounds and is never sent as one secure "
            "query; run it with `trialmesh query`, which drives the rounds",
            name, aggFnName(a.fn)));
    }
  }
  if (tooBig) {
    return Status::invalidArgument(
        fmt::format("'{}' needs more than {} words for secure aggregation; use fewer cells or bins",
                    plan.canonical, kMaxAdditiveWords));
  }
  return layout;
}

Result<std::vector<AdditiveWord>> encodeAdditive(const PartialResult& partial,
                                                 const AdditiveLayout& layout) {
  const detail::Plan& plan = layout.query().plan();
  if (!(partial.shape == layout.query().shape())) {
    return Status::invalidArgument(
        fmt::format("the partial is for '{}' ({} cells), not for the query '{}' ({} cells)",
                    partial.shape.queryText, partial.shape.cells, plan.canonical, plan.cells));
  }
  const size_t cells = plan.cells;
  if (partial.cellRows.size() != cells || partial.stats.size() != plan.aggregates.size()) {
    return Status::invalidArgument(fmt::format(
        "the partial for '{}' is malformed: wrong number of cells or statistics", plan.canonical));
  }
  std::vector<AdditiveWord> out(layout.words(), 0);
  for (const Segment& seg : layout.segments()) {
    const StatName name{&plan, seg.stat};
    auto malformed = [&] {
      return Status::invalidArgument(
          fmt::format("{}: the partial's {} vector has the wrong length for '{}'", name,
                      fieldName(seg.field), plan.canonical));
    };
    AdditiveWord* w = out.data() + seg.offset;
    if (seg.field == Field::kRowsScanned) {
      w[0] = partial.rowsScanned;
      continue;
    }
    if (seg.field == Field::kCellRows) {
      for (size_t c = 0; c < cells; ++c) w[c] = partial.cellRows[c];
      continue;
    }
    const StatPartial& s = partial.stats[seg.stat];
    auto counts = [&](const std::vector<uint64_t>& v) -> Status {
      if (v.size() != seg.length) return malformed();
      for (size_t k = 0; k < v.size(); ++k) w[k] = v[k];
      return Status::ok();
    };
    switch (seg.field) {
      case Field::kN:
        TM_RETURN_IF_ERROR(counts(s.n));
        break;
      case Field::kMissing:
        TM_RETURN_IF_ERROR(counts(s.missing));
        break;
      case Field::kBinCounts:
        TM_RETURN_IF_ERROR(counts(s.binCounts));
        break;
      case Field::kIntegerSum:
        if (s.intSum.size() != cells || s.sum.size() != cells) return malformed();
        for (size_t c = 0; c < cells; ++c) {
          // intSum is exact modulo 2^64; the double sum tells whether it is exact outright.
          if (!(std::fabs(s.sum[c]) < std::ldexp(1.0, kIntegerMaxExponent))) {
            return Status::invalidArgument(fmt::format(
                "{}: the sum of cell {} is {}, outside the range secure aggregation can encode "
                "exactly (|sum| < 2^{}); run this query in plain mode, or narrow it with a "
                "filter",
                name, c, s.sum[c], kIntegerMaxExponent));
          }
          w[c] = AdditiveWord(static_cast<SignedWord>(s.intSum[c]));
        }
        break;
      case Field::kRealSum:
        if (s.sum.size() != cells) return malformed();
        for (size_t c = 0; c < cells; ++c) {
          TM_ASSIGN_OR_RETURN(w[c], toFixed(s.sum[c], name, "sum", static_cast<uint32_t>(c)));
        }
        break;
      case Field::kShiftedSum:
      case Field::kShiftedSquares: {
        if (s.mean.size() != cells || s.m2.size() != cells || s.n.size() != cells)
          return malformed();
        const long double shift = layout.shift(seg.stat);
        for (size_t c = 0; c < cells; ++c) {
          const long double n = static_cast<long double>(s.n[c]);
          const long double d = n > 0 ? s.mean[c] - shift : 0.0L;
          if (seg.field == Field::kShiftedSum) {
            TM_ASSIGN_OR_RETURN(w[c],
                                toFixed(n * d, name, "sum of (x - c)", static_cast<uint32_t>(c)));
          } else {
            TM_ASSIGN_OR_RETURN(w[c], toFixed(s.m2[c] + n * d * d, name, "sum of (x - c)^2",
                                              static_cast<uint32_t>(c)));
          }
        }
        break;
      }
      case Field::kKmEvents:
      case Field::kKmPairs: {
        if (s.km.size() != cells) return malformed();
        const size_t points = layout.kmGridPoints();
        // Unpaired, the censorings run follows the events run (AdditiveLayout::create); paired,
        // censorings go to the high half of the events word.
        const bool paired = seg.field == Field::kKmPairs;
        AdditiveWord* censored = paired ? nullptr : w + seg.length;
        const auto& a = plan.aggregates[seg.stat];
        for (size_t c = 0; c < cells; ++c) {
          for (const KmPoint& p : s.km[c]) {
            std::optional<size_t> k = gridPoint(p.time, layout.kmTimeBin(), points);
            if (!k) {
              return Status::invalidArgument(fmt::format(
                  "{}: cell {} has a time {} outside the secure-aggregation time grid [0, {}] "
                  "(width {}); check the values of {} against its dictionary range",
                  name, c, p.time, static_cast<double>(points - 1) * layout.kmTimeBin(),
                  layout.kmTimeBin(), gridTimeVariable(plan, a).name));
            }
            if (paired) {
              w[c * points + *k] += AdditiveWord(p.events) + (AdditiveWord(p.censored) << 64);
            } else {
              w[c * points + *k] += p.events;
              censored[c * points + *k] += p.censored;
            }
          }
        }
        break;
      }
      case Field::kKmCensored:
        break;  // filled with the events
      case Field::kVec:
        if (s.vec.size() != seg.length) return malformed();
        for (size_t k = 0; k < seg.length; ++k) {
          TM_ASSIGN_OR_RETURN(w[k],
                              toFixed(s.vec[k], name, "vector element", static_cast<uint32_t>(k)));
        }
        break;
      case Field::kRowsScanned:
      case Field::kCellRows:
        break;  // handled above
    }
  }
  return out;
}

Result<PartialResult> decodeAdditive(std::span<const AdditiveWord> sum,
                                     const AdditiveLayout& layout, uint32_t participants) {
  const detail::Plan& plan = layout.query().plan();
  if (sum.size() != layout.words()) {
    return Status::invalidArgument(fmt::format("the summed vector for '{}' has {} words, not {}",
                                               plan.canonical, sum.size(), layout.words()));
  }
  if (participants == 0 || participants > kMaxAdditiveParticipants) {
    return Status::invalidArgument(
        fmt::format("{} participants: secure aggregation decodes sums of 1 to {} vectors",
                    participants, kMaxAdditiveParticipants));
  }
  const size_t cells = plan.cells;
  PartialResult p;
  p.shape = layout.query().shape();
  p.cellRows.assign(cells, 0);
  p.stats.resize(plan.aggregates.size());
  std::vector<std::vector<long double>> shifted(plan.aggregates.size());
  std::vector<uint64_t> events;

  for (const Segment& seg : layout.segments()) {
    const StatName name{&plan, seg.stat};
    // Every word of the run, range-checked for its kind.
    auto word = [&](size_t k, SignedWord* out) -> Status {
      const AdditiveWord w = sum[seg.offset + k];
      const AdditiveWord bound = siteBound(seg.kind);
      // Only for error messages: formatted when one is needed, not per word.
      auto whereText = [&] {
        return seg.stat < 0 && seg.field == Field::kRowsScanned ? std::string()
                                                                : fmt::format(" at index {}", k);
      };
      const AdditiveWord limit = bound * participants;
      if (seg.kind == Kind::kCount) {
        if (layout.noisyCounts() && SignedWord(w) < 0 && AdditiveWord(0) - w < limit) {
          *out = 0;  // noise drove a small count below zero (secure-dp): clamp
          return Status::ok();
        }
        if (w > limit) {
          return Status::corruption(fmt::format(
              "{}: the summed {}{} is {}, which {} in-range site vectors cannot produce; a site "
              "sent a value outside its bounds or the vectors were masked for different rounds",
              name, fieldName(seg.field), whereText(), decimal(SignedWord(w)), participants));
        }
        if (w > kUint64Max) {
          return Status::invalidArgument(
              fmt::format("{}: the summed {}{} is {}, which does not fit in 64 bits", name,
                          fieldName(seg.field), whereText(), decimal(SignedWord(w))));
        }
        *out = SignedWord(w);
        return Status::ok();
      }
      const SignedWord v = SignedWord(w);
      const AdditiveWord magnitude = v < 0 ? AdditiveWord(0) - w : w;
      if (magnitude >= limit) {
        return Status::corruption(fmt::format(
            "{}: the summed {}{} is out of range for {} sites (|value| must stay below {} x 2^{} "
            "in {}); a site sent a value outside its bounds or the vectors were masked for "
            "different rounds",
            name, fieldName(seg.field), whereText(), participants, participants,
            seg.kind == Kind::kInteger ? kIntegerMaxExponent
                                       : kFixedPointMaxExponent + kFixedPointFractionBits,
            seg.kind == Kind::kInteger ? "integer units" : "fixed-point units"));
      }
      *out = v;
      return Status::ok();
    };
    auto countsInto = [&](std::vector<uint64_t>& dst) -> Status {
      dst.assign(seg.length, 0);
      for (size_t k = 0; k < seg.length; ++k) {
        SignedWord v;
        TM_RETURN_IF_ERROR(word(k, &v));
        dst[k] = static_cast<uint64_t>(v);
      }
      return Status::ok();
    };

    if (seg.field == Field::kRowsScanned) {
      std::vector<uint64_t> one;
      TM_RETURN_IF_ERROR(countsInto(one));
      p.rowsScanned = one[0];
      continue;
    }
    if (seg.field == Field::kCellRows) {
      TM_RETURN_IF_ERROR(countsInto(p.cellRows));
      continue;
    }
    StatPartial& s = p.stats[seg.stat];
    const auto& a = plan.aggregates[seg.stat];
    switch (seg.field) {
      case Field::kN:
        TM_RETURN_IF_ERROR(countsInto(s.n));
        break;
      case Field::kMissing:
        TM_RETURN_IF_ERROR(countsInto(s.missing));
        break;
      case Field::kBinCounts:
        s.bins = a.fn == AggFn::kQuantileCounts
                     ? static_cast<uint32_t>(a.keyBounds.size() / 2 * a.buckets + kDecimalTests)
                     : static_cast<uint32_t>(a.breaks.size() - 1);
        TM_RETURN_IF_ERROR(countsInto(s.binCounts));
        break;
      case Field::kIntegerSum:
        s.intSum.assign(cells, 0);
        s.sum.assign(cells, 0.0);
        for (size_t c = 0; c < cells; ++c) {
          SignedWord v;
          TM_RETURN_IF_ERROR(word(c, &v));
          // Modulo 2^64 like mergeInto; finalize shows the double once |sum| >= 2^62.
          s.intSum[c] = static_cast<int64_t>(static_cast<uint64_t>(AdditiveWord(v)));
          s.sum[c] = static_cast<double>(v);
        }
        break;
      case Field::kRealSum:
        s.sum.assign(cells, 0.0);
        for (size_t c = 0; c < cells; ++c) {
          SignedWord v;
          TM_RETURN_IF_ERROR(word(c, &v));
          s.sum[c] = fixedToDouble(v);
        }
        break;
      case Field::kShiftedSum:
        shifted[seg.stat].assign(cells, 0.0L);
        for (size_t c = 0; c < cells; ++c) {
          SignedWord v;
          TM_RETURN_IF_ERROR(word(c, &v));
          shifted[seg.stat][c] = fromFixed(v);
        }
        break;
      case Field::kShiftedSquares: {
        // n, then Σ(x - c), then Σ(x - c)^2: the layout's order. The mean is c + Σ(x-c)/n and
        // M2 = Σ(x-c)^2 - (Σ(x-c))^2 / n (docs/privacy.md "Precision").
        const long double shift = layout.shift(seg.stat);
        s.mean.assign(cells, 0.0);
        s.m2.assign(cells, 0.0);
        for (size_t c = 0; c < cells; ++c) {
          SignedWord v;
          TM_RETURN_IF_ERROR(word(c, &v));
          const long double t1 = shifted[seg.stat][c];
          const long double t2 = fromFixed(v);
          if (s.n[c] == 0) {
            if (t1 != 0 || t2 != 0) {
              return Status::corruption(fmt::format(
                  "{}: cell {} has no values but non-zero sums; the vectors do not belong "
                  "together",
                  name, c));
            }
            continue;
          }
          const long double n = static_cast<long double>(s.n[c]);
          s.mean[c] = static_cast<double>(shift + t1 / n);
          s.m2[c] = static_cast<double>(std::max(t2 - t1 * (t1 / n), 0.0L));
        }
        break;
      }
      case Field::kKmEvents:
        TM_RETURN_IF_ERROR(countsInto(events));
        break;
      case Field::kKmPairs: {
        // Every counted row has one grid point, so a cell's events and censorings add up to at
        // most its n (exactly n for km); more means a site sent an out-of-range pair or the
        // vectors do not belong together.
        const size_t points = layout.kmGridPoints();
        s.km.assign(cells, {});
        for (size_t c = 0; c < cells; ++c) {
          AdditiveWord total = 0;
          for (size_t k = 0; k < points; ++k) {
            const AdditiveWord v = sum[seg.offset + c * points + k];
            const uint64_t e = static_cast<uint64_t>(v), d = static_cast<uint64_t>(v >> 64);
            total += AdditiveWord(e) + d;
            if (e == 0 && d == 0) continue;
            s.km[c].push_back({timeGridTime(k, layout.kmTimeBin()), e, d});
          }
          if (c >= s.n.size() || total > s.n[c]) {
            return Status::corruption(fmt::format(
                "{}: cell {} counts {} events and censorings but has {} rows; a site sent a value "
                "outside its bounds or the vectors were masked for different rounds",
                name, c, decimal(SignedWord(total)), c < s.n.size() ? s.n[c] : 0));
          }
        }
        break;
      }
      case Field::kKmCensored: {
        std::vector<uint64_t> censored;
        TM_RETURN_IF_ERROR(countsInto(censored));
        const size_t points = layout.kmGridPoints();
        s.km.assign(cells, {});
        for (size_t c = 0; c < cells; ++c) {
          for (size_t k = 0; k < points; ++k) {
            const uint64_t e = events[c * points + k], d = censored[c * points + k];
            if (e == 0 && d == 0) continue;
            s.km[c].push_back({timeGridTime(k, layout.kmTimeBin()), e, d});
          }
        }
        break;
      }
      case Field::kVec:
        s.vec.assign(seg.length, 0.0);
        for (size_t k = 0; k < seg.length; ++k) {
          SignedWord v;
          TM_RETURN_IF_ERROR(word(k, &v));
          s.vec[k] = fixedToDouble(v);
        }
        break;
      case Field::kRowsScanned:
      case Field::kCellRows:
        break;  // handled above
    }
  }
  // Entries that share the state of an earlier one (mean, var, sd of one variable).
  for (size_t i = 0; i < plan.aggregates.size(); ++i) {
    const int same = plan.aggregates[i].sameStateAs;
    if (same >= 0) p.stats[i] = p.stats[same];
  }
  return p;
}

}  // namespace trialmesh::query
