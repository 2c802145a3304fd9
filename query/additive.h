// The exact additive encoding of a partial aggregate, for secure aggregation (issue #5).
//
// A site turns its PartialResult into a flat vector of 128-bit words whose sum modulo 2^128 over
// all sites decodes to the merged partial, which then goes through query::finalize unchanged.
// Pairwise masks (crypto/mask.h) are added to the words before they leave the site, so the
// coordinator only ever sees the sum. Layout, fixed-point scale, ranges and precision are
// documented in docs/privacy.md ("Masking"):
//
//   TM_ASSIGN_OR_RETURN(AdditiveLayout layout, AdditiveLayout::create(bound, {.kmTimeBin = 1}));
//   TM_ASSIGN_OR_RETURN(std::vector<AdditiveWord> words, encodeAdditive(partial, layout));
//   // ... add the pairwise mask, seal, send; the coordinator adds the vectors ...
//   TM_ASSIGN_OR_RETURN(PartialResult merged, decodeAdditive(sum, layout, sites));
//   TM_ASSIGN_OR_RETURN(ResultTable table, finalize(merged, bound));
//
// Every site and the coordinator must build the layout from the same bound query and options
// (the options come from the approval and the dictionary, so they agree by construction).
//
// Word kinds (per word, modulo 2^128):
//   count    a site's uint64 count; the decoded sum must fit in uint64
//   integer  an exact signed integer sum (sum of an integer variable), |site value| < 2^62
//   fixed    a real in fixed point: round(v * 2^32) as a two's-complement signed word,
//            |site value v| < 2^68 (about 2.95e20)
// A value out of range (or not finite) is refused by encodeAdditive with an error naming the
// statistic and cell, never wrapped. decodeAdditive refuses a sum that no set of `participants`
// in-range site vectors can produce (|sum| > participants x the site bound), which is how it
// detects a faulty or malicious site or vectors from different rounds.
//
// Statistics: count, sum, mean, var, sd, hist, km (on a bounded time grid), and the model
// rounds lm_sums, glm_sums and cox_sums (their vec, whose length the round fixes) and
// cox_times (its event counts on the same bounded time grid as km, and vec). min and max are
// refused: they reveal single values. A model itself is not encoded: the coordinator fits it
// from rounds. For cox rounds the sites bin their times onto the grid before computing
// (ExecOptions::survivalTimeBin), so both rounds see the same tied times.
//
// Thread-safety: an AdditiveLayout is immutable after create and may be shared; the functions
// are pure. Errors come back as Status/Result.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "query/engine.h"
#include "query/partial.h"

namespace trialmesh::query {

// One word of an additive vector; the same type as crypto::MaskWord.
using AdditiveWord = unsigned __int128;

// Reals are scaled by 2^kFixedPointFractionBits (quantum 2^-32, about 2.3e-10).
inline constexpr int kFixedPointFractionBits = 32;
// A site's real value must satisfy |v| < 2^kFixedPointMaxExponent.
inline constexpr int kFixedPointMaxExponent = 68;
// A site's exact integer sum must satisfy |v| < 2^kIntegerMaxExponent.
inline constexpr int kIntegerMaxExponent = 62;
// At most this many vectors may be summed: 2^26 x 2^100 < 2^127, so sums never wrap.
inline constexpr uint32_t kMaxAdditiveParticipants = uint32_t{1} << 26;
// Largest layout (words per vector); a larger one, e.g. a km grid of a million points in
// hundreds of cells, is refused.
inline constexpr size_t kMaxAdditiveWords = size_t{1} << 24;

// The secure-aggregation time grid 0, w, 2w, ...: a time t belongs to the first point k w at
// or above it, to within 1e-9 of a step (0.3 with w = 0.1 is point 3, not 4). nullopt for a
// negative or non-finite t, or a point beyond 2^53. REQUIRES: w > 0 and finite.
std::optional<uint64_t> timeGridIndex(double t, double w);
// The time of grid point k: k w, computed one way everywhere so binned times compare equal.
inline double timeGridTime(uint64_t k, double w) { return static_cast<double>(k) * w; }

struct AdditiveOptions {
  // km, cox_times: width w of the time grid 0, w, 2w, ... (the approval's time_bin). Default:
  // none, and a km or cox_times round is refused. REQUIRES: > 0 when set.
  std::optional<double> kmTimeBin;
  // km, cox_times: the largest time the grid must cover. Default: the time variable's
  // dictionary maximum; without one the query is refused.
  std::optional<double> kmTimeMax;
  // mean/var/sd: the shift c per variable name (sums of x - c are encoded). Default: the
  // midpoint of the variable's declared range, or 0 when the range is open. The closer c is to
  // the data's mean, the more precise the variance (docs/privacy.md, "Precision").
  std::map<std::string, double> shifts;
  // secure-dp: the count words carry zero-mean noise shares (crypto/noise.h), so a summed
  // count may be slightly negative. decodeAdditive then reads a count sum in the negative
  // range (|value| within the participants' bound) as 0 instead of refusing it. Default false.
  bool noisyCounts = false;
};

class AdditiveLayout {
 public:
  // What a run of words holds. Frozen for a protocol version: sites and coordinator must agree.
  enum class Field : uint8_t {
    kRowsScanned,     // 1 count
    kCellRows,        // count per cell
    kN,               // count per cell
    kMissing,         // count per cell
    kIntegerSum,      // integer per cell: sum(x) of an integer variable
    kRealSum,         // fixed per cell: sum(x) of a real or date variable
    kShiftedSum,      // fixed per cell: n (mean - c) = sum of (x - c)
    kShiftedSquares,  // fixed per cell: M2 + n (mean - c)^2 = sum of (x - c)^2
    kBinCounts,       // count per cell and bin slot (bins + 1, the last = outside)
    kKmEvents,        // count per cell and grid point (km, cox_times), secure-dp only
    kKmCensored,      // count per cell and grid point (cox_times: all 0), secure-dp only
    kKmPairs,         // count pair per cell and grid point: events + censorings x 2^64
    kVec,             // fixed: StatPartial::vec of a model round (issue #6)
    // Extension point: another additive real vector (per cell or not) is one more kFixed run
    // whose length the bound query fixes; a data-dependent length cannot be encoded.
  };
  // kCountPair: two uint64 counts in one word (low and high 64 bits). Their sums stay below
  // 2^64 (they count rows of the federation), so no carry crosses the halves; half the words
  // of two count runs to mask, seal and send. Not used when counts carry noise.
  enum class Kind : uint8_t { kCount, kInteger, kFixed, kCountPair };
  struct Segment {
    int stat = -1;  // index in the select list; -1 for kRowsScanned and kCellRows
    Field field = Field::kN;
    Kind kind = Kind::kCount;
    size_t offset = 0;  // first word
    size_t length = 0;  // words
  };

  // Errors (InvalidArgument): min or max in the query ("min(age): min/max reveal single values
  // and cannot be securely aggregated; ask for an approval in plain mode"); km without a time
  // bin or without a bounded time variable; a time bin that is not > 0; a layout larger than
  // kMaxAdditiveWords.
  static Result<AdditiveLayout> create(const BoundQuery& query,
                                       const AdditiveOptions& options = {});

  size_t words() const { return words_; }
  const std::vector<Segment>& segments() const { return segments_; }
  const BoundQuery& query() const { return query_; }
  // The shift c of statistic `stat` (mean/var/sd), 0 for the others.
  double shift(size_t stat) const { return shifts_[stat]; }
  // km: grid width, and number of grid points (0, w, ..., (points - 1) w).
  double kmTimeBin() const { return kmTimeBin_; }
  size_t kmGridPoints() const { return kmGridPoints_; }
  bool noisyCounts() const { return noisyCounts_; }

 private:
  explicit AdditiveLayout(BoundQuery query) : query_(std::move(query)) {}
  BoundQuery query_;
  std::vector<Segment> segments_;
  std::vector<double> shifts_;
  double kmTimeBin_ = 0;
  size_t kmGridPoints_ = 0;
  size_t words_ = 0;
  bool noisyCounts_ = false;
};

// A site's words. Errors (InvalidArgument): the partial is not of the layout's query (shape) or
// malformed; a value out of its range or not finite (names the statistic, the cell and the
// bound); a km time below 0 or beyond the grid.
Result<std::vector<AdditiveWord>> encodeAdditive(const PartialResult& partial,
                                                 const AdditiveLayout& layout);

// The merged partial from the modular sum of `participants` site vectors. Errors:
// InvalidArgument when sum.size() != layout.words() or participants is 0 or above
// kMaxAdditiveParticipants; Corruption when a word of the sum is outside what `participants`
// in-range vectors can produce (names the statistic and cell), e.g. a site exceeded its bounds
// or the vectors were masked for different rounds.
Result<PartialResult> decodeAdditive(std::span<const AdditiveWord> sum,
                                     const AdditiveLayout& layout, uint32_t participants);

}  // namespace trialmesh::query
