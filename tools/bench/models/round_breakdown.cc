#include "tools/bench/models/round_breakdown.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <vector>

#include "crypto/identity.h"
#include "crypto/mask.h"
#include "crypto/seal.h"
#include "query/additive.h"
#include "query/engine.h"
#include "query/query.h"

namespace trialmesh::bench {
namespace {

using Clock = std::chrono::steady_clock;

// Minimum over `runs` of `step`'s wall time in ms; the step's status stops the loop.
double minMs(int runs, const std::function<Status()>& step, Status& status) {
  double best = 1e300;
  for (int r = 0; r < runs && status.isOk(); ++r) {
    const auto t0 = Clock::now();
    status = step();
    best = std::min(best, std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  return best;
}

}  // namespace

std::string secureRoundBreakdown(const storage::ColumnSource& source, const std::string& roundQuery,
                                 uint32_t participants, double timeBin, unsigned cores) {
  auto q = query::parseQuery(roundQuery);
  if (!q) return "- round breakdown not run: " + q.status().toString() + "\n";
  auto bound = query::bindQuery(*q, source.dictionary());
  if (!bound) return "- round breakdown not run: " + bound.status().toString() + "\n";
  query::ExecOptions exec;
  exec.cacheKey = "bench-models-breakdown";
  exec.survivalTimeBin = timeBin;
  exec.modelPerSiteRule = false;
  query::AdditiveOptions ao;
  ao.kmTimeBin = timeBin;
  auto layout = query::AdditiveLayout::create(*bound, ao);
  if (!layout) return "- round breakdown not run: " + layout.status().toString() + "\n";

  std::vector<crypto::Identity> ids;
  std::vector<crypto::PublicKey> keys;
  for (uint32_t i = 0; i < participants; ++i) {
    ids.push_back(crypto::generateIdentity());
    keys.push_back(ids.back().pub);
  }
  std::sort(keys.begin(), keys.end(), [](const crypto::PublicKey& a, const crypto::PublicKey& b) {
    return a.bytes() < b.bytes();
  });
  const crypto::Identity coordinator = crypto::generateIdentity();
  const std::vector<uint8_t> roundId(16, 7);
  const crypto::Identity& self = ids.front();

  constexpr int kRuns = 7;
  Status st = Status::ok();
  query::PartialResult partial;
  (void)query::execute(*bound, source, exec);  // fills the cache, as the fit's first round does
  const double scan = minMs(
      kRuns,
      [&]() -> Status {
        TM_ASSIGN_OR_RETURN(partial, query::execute(*bound, source, exec));
        return Status::ok();
      },
      st);
  std::vector<query::AdditiveWord> words;
  const double encode = minMs(
      kRuns,
      [&]() -> Status {
        TM_ASSIGN_OR_RETURN(words, query::encodeAdditive(partial, *layout));
        return Status::ok();
      },
      st);
  std::optional<crypto::PairwiseMasker> masker;
  const double keysMs = minMs(
      kRuns,
      [&]() -> Status {
        TM_ASSIGN_OR_RETURN(crypto::PairwiseMasker m,
                            crypto::PairwiseMasker::create(self, keys, roundId));
        masker.emplace(std::move(m));
        return Status::ok();
      },
      st);
  const double mask = minMs(
      kRuns, [&]() -> Status { return masker ? masker->addMask(words) : st; }, st);
  std::vector<uint8_t> sealed;
  const double seal = minMs(
      kRuns,
      [&]() -> Status {
        TM_ASSIGN_OR_RETURN(sealed, crypto::sealForRound(self, coordinator.pub, roundId,
                                                         crypto::maskWordsToBytes(words)));
        return Status::ok();
      },
      st);
  // The coordinator, per site: open the box and unpack the words; once per round: add the
  // vectors and decode the sum.
  std::vector<crypto::MaskWord> unpacked;
  const double open = minMs(
      kRuns,
      [&]() -> Status {
        TM_ASSIGN_OR_RETURN(std::vector<uint8_t> plain,
                            crypto::openForRound(coordinator, self.pub, roundId, sealed));
        TM_ASSIGN_OR_RETURN(unpacked, crypto::maskWordsFromBytes(plain));
        return Status::ok();
      },
      st);
  std::vector<query::AdditiveWord> sum(words.size(), 0);
  const double add = minMs(
      kRuns,
      [&]() -> Status {
        for (size_t i = 0; i < sum.size(); ++i) sum[i] += unpacked[i];
        // Read the sum, so the compiler keeps the loop.
        volatile uint64_t sink = static_cast<uint64_t>(sum[sum.size() / 2]);
        (void)sink;
        return Status::ok();
      },
      st);
  // Decoding needs a valid sum: the unmasked words of one site stand in for the federation's.
  auto plainWords = query::encodeAdditive(partial, *layout);
  const double decode = minMs(
      kRuns, [&]() -> Status { return query::decodeAdditive(*plainWords, *layout, 1).status(); },
      st);
  if (!st.isOk()) return "- round breakdown failed: " + st.toString() + "\n";

  const double site = scan + encode + keysMs + mask + seal;
  const double coordinatorMs = participants * (open + add) + decode;
  const double cpu = participants * site + coordinatorMs;
  char buf[2048];
  std::snprintf(
      buf, sizeof buf,
      "- a secure cox_sums round, in-process (min of %d): %zu words per site (%.1f MB), %u "
      "participants\n"
      "  - site: scan with the cached design %.1f ms, encode %.1f ms, pair keys (%u X25519) "
      "%.1f ms, mask (%u key streams) %.1f ms, pack + seal %.1f ms: %.1f ms\n"
      "  - coordinator: open + unpack %.1f ms and add %.1f ms per site, decode %.1f ms: "
      "%.1f ms\n"
      "  - CPU of one round: %u x %.1f + %.1f = %.0f ms; on %u cores at best %.0f ms of wall "
      "time (sites run in parallel, the coordinator's share partly after them)\n",
      kRuns, words.size(), words.size() * 16.0 / 1e6, participants, scan, encode, participants - 1,
      keysMs, participants - 1, mask, seal, site, open, add, decode, coordinatorMs, participants,
      site, coordinatorMs, cpu, cores, cpu / std::max(1u, cores));
  return buf;
}

}  // namespace trialmesh::bench
