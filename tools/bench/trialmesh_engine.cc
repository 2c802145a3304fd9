// trialmesh side of trialmesh-bench: CSV import through storage::Store and the four queries
// through the query engine over a dataset opened from the RocksDB store.
#include <chrono>
#include <filesystem>

#include "query/engine.h"
#include "query/query.h"
#include "storage/store.h"
#include "tools/bench/engines.h"

namespace trialmesh::bench {
namespace {

double msSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// One complete query as a client runs it: parse, bind, scan, finalize.
Result<query::PartialResult> runQuery(const std::string& text, const storage::ColumnSource& source,
                                      unsigned threads) {
  TM_ASSIGN_OR_RETURN(query::Query parsed, query::parseQuery(text));
  TM_ASSIGN_OR_RETURN(query::BoundQuery bound, query::bindQuery(parsed, source.dictionary()));
  query::ExecOptions exec;
  exec.threads = threads;
  TM_ASSIGN_OR_RETURN(query::PartialResult partial, query::execute(bound, source, exec));
  TM_ASSIGN_OR_RETURN(query::ResultTable table, query::finalize(partial, bound));
  if (table.rows.empty()) return Status::internal("query returned no rows: " + text);
  return partial;
}

Result<Answer> toAnswer(int q, const query::PartialResult& p) {
  Answer a;
  const auto need = [&](size_t stats, size_t cells) -> Status {
    if (p.stats.size() != stats || p.cellRows.size() != cells) {
      return Status::internal("unexpected partial shape for " + std::string(benchQueries()[q].id));
    }
    return Status::ok();
  };
  switch (q) {
    case 0:
      TM_RETURN_IF_ERROR(need(1, 1));
      a.push_back(static_cast<double>(p.stats[0].n[0]));
      break;
    case 1:
      TM_RETURN_IF_ERROR(need(3, 2));
      for (int g = 0; g < 2; ++g) {
        const double n = static_cast<double>(p.stats[2].n[g]);
        a.push_back(static_cast<double>(p.stats[0].n[g]));
        a.push_back(p.stats[1].mean[g]);
        a.push_back(p.stats[2].m2[g] / (n - 1));
      }
      break;
    case 2:
      TM_RETURN_IF_ERROR(need(1, 1));
      if (p.stats[0].bins != 12) return Status::internal("Q3: expected 12 bins");
      for (int k = 0; k < 12; ++k) a.push_back(static_cast<double>(p.stats[0].binCounts[k]));
      break;
    default:
      TM_RETURN_IF_ERROR(need(1, 12));
      for (int k = 0; k < 12; ++k) a.push_back(static_cast<double>(p.stats[0].n[k]));
      break;
  }
  return a;
}

}  // namespace

Result<double> trialmeshImport(const std::string& storeDir, const std::string& csvPath,
                               const std::string& dictionaryPath) {
  std::error_code ec;
  std::filesystem::remove_all(storeDir, ec);
  TM_ASSIGN_OR_RETURN(storage::Dictionary dict, storage::Dictionary::loadFile(dictionaryPath));
  TM_ASSIGN_OR_RETURN(std::unique_ptr<storage::Store> store, storage::Store::open(storeDir));
  const auto t0 = std::chrono::steady_clock::now();
  TM_ASSIGN_OR_RETURN(storage::ImportReport report, store->importCsv(kDatasetName, dict, csvPath));
  const double ms = msSince(t0);
  (void)report;
  return ms;
}

Result<TrialmeshQueryResult> trialmeshQueries(const std::string& storeDir, size_t cacheBytes,
                                              int runs, unsigned threads) {
  TrialmeshQueryResult r;
  storage::StoreOptions options;
  options.cacheBytes = cacheBytes;
  options.createIfMissing = false;
  for (int q = 0; q < kQueryCount; ++q) {
    // A freshly opened store: the first run finds the chunk cache empty (the OS page cache is
    // warm from the import or earlier runs).
    TM_ASSIGN_OR_RETURN(std::unique_ptr<storage::Store> store,
                        storage::Store::open(storeDir, options));
    TM_ASSIGN_OR_RETURN(std::shared_ptr<const storage::ColumnSource> source,
                        store->openDataset(kDatasetName));
    const std::string text = benchQueries()[q].trialmesh;
    auto t0 = std::chrono::steady_clock::now();
    TM_ASSIGN_OR_RETURN(query::PartialResult first, runQuery(text, *source, threads));
    r.coldMs[q] = msSince(t0);
    TM_ASSIGN_OR_RETURN(r.answers[q], toAnswer(q, first));
    std::vector<double> times;
    for (int i = 0; i < runs; ++i) {
      t0 = std::chrono::steady_clock::now();
      TM_ASSIGN_OR_RETURN(query::PartialResult p, runQuery(text, *source, threads));
      times.push_back(msSince(t0));
      // Thread scheduling may change the summation order, so compare with tolerance.
      TM_ASSIGN_OR_RETURN(Answer again, toAnswer(q, p));
      const std::string diff = compareAnswers(r.answers[q], again);
      if (!diff.empty()) {
        return Status::internal("trialmesh: repeated run of " + text + " differs: " + diff);
      }
    }
    r.warmMs[q] = median(times);
  }
  return r;
}

}  // namespace trialmesh::bench
