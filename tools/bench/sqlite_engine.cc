// SQLite side of trialmesh-bench: an in-memory database (":memory:") holding the same rows in a
// table with the CSV's natural types, queried through the C API in this process.
#include <sqlite3.h>

#include <string>

#include "tools/bench/engines.h"

namespace trialmesh::bench {
namespace {

Status sqliteError(sqlite3* db, const std::string& what) {
  return Status::internal("SQLite: " + what + ": " + sqlite3_errmsg(db));
}

}  // namespace

SqliteBench::~SqliteBench() {
  if (db_ != nullptr) sqlite3_close(db_);
}

std::string SqliteBench::version() { return sqlite3_libversion(); }

Status SqliteBench::load(const gen::GenOptions& options) {
  if (sqlite3_open(":memory:", &db_) != SQLITE_OK) return sqliteError(db_, "open :memory:");
  const char* setup =
      "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;"
      "CREATE TABLE lung (usubjid TEXT, site TEXT, arm TEXT, sex TEXT, age INTEGER, bmi REAL,"
      " ecog INTEGER, mealcal INTEGER, biomarker REAL, time INTEGER, event INTEGER,"
      " randdt TEXT, smoker TEXT);";
  if (sqlite3_exec(db_, setup, nullptr, nullptr, nullptr) != SQLITE_OK) {
    return sqliteError(db_, "create table");
  }
  sqlite3_stmt* insert = nullptr;
  if (sqlite3_prepare_v2(db_, "INSERT INTO lung VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", -1, &insert,
                         nullptr) != SQLITE_OK) {
    return sqliteError(db_, "prepare insert");
  }
  sqlite3_exec(db_, "BEGIN", nullptr, nullptr, nullptr);
  gen::TrialRowGenerator generator(options);
  gen::TrialRow r;
  char id[32], date[48];
  Status status;
  for (uint64_t i = 0; i < options.rows && status.isOk(); ++i) {
    generator.next(r);
    const std::string site = gen::siteCode(r.site);
    std::snprintf(id, sizeof id, "LUNG7-%s-%06llu", site.c_str(),
                  static_cast<unsigned long long>(r.subject));
    // Date text as in the CSV (days since 1970-01-01 -> civil date).
    {
      int64_t z = int64_t{r.randdt} + 719468;
      const int64_t era = z / 146097, doe = z - era * 146097;
      const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
      const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
      const int64_t d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9;
      std::snprintf(date, sizeof date, "%04lld-%02lld-%02lld",
                    static_cast<long long>(yoe + era * 400 + (m <= 2)), static_cast<long long>(m),
                    static_cast<long long>(d));
    }
    sqlite3_bind_text(insert, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(insert, 2, site.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(insert, 3, r.arm ? "TRT" : "PBO", -1, SQLITE_STATIC);
    sqlite3_bind_text(insert, 4, r.sex ? "M" : "F", -1, SQLITE_STATIC);
    sqlite3_bind_int(insert, 5, r.age);
    sqlite3_bind_double(insert, 6, r.bmiTenths / 10.0);
    if (r.ecog < 0) {
      sqlite3_bind_null(insert, 7);
    } else {
      sqlite3_bind_int(insert, 7, r.ecog);
    }
    if (r.mealcal < 0) {
      sqlite3_bind_null(insert, 8);
    } else {
      sqlite3_bind_int(insert, 8, r.mealcal);
    }
    if (r.biomarkerHundredths < 0) {
      sqlite3_bind_null(insert, 9);
    } else {
      sqlite3_bind_double(insert, 9, r.biomarkerHundredths / 100.0);
    }
    sqlite3_bind_int(insert, 10, r.time);
    sqlite3_bind_int(insert, 11, r.event);
    sqlite3_bind_text(insert, 12, date, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(insert, 13, r.smoker ? "Y" : "N", -1, SQLITE_STATIC);
    if (sqlite3_step(insert) != SQLITE_DONE) status = sqliteError(db_, "insert");
    sqlite3_reset(insert);
  }
  sqlite3_finalize(insert);
  TM_RETURN_IF_ERROR(status);
  if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return sqliteError(db_, "commit");
  }
  return Status::ok();
}

Result<Answer> SqliteBench::run(int q) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, benchQueries()[q].sql, -1, &stmt, nullptr) != SQLITE_OK) {
    return sqliteError(db_, std::string("prepare ") + benchQueries()[q].id);
  }
  Answer a(q == 0 ? 1 : q == 1 ? 6 : 12, 0.0);
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    switch (q) {
      case 0:
        a[0] = sqlite3_column_double(stmt, 0);
        break;
      case 1: {
        const int g =
            std::string(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0))) == "TRT" ? 1
                                                                                              : 0;
        for (int k = 0; k < 3; ++k) a[g * 3 + k] = sqlite3_column_double(stmt, k + 1);
        break;
      }
      case 2: {
        const int bin = sqlite3_column_int(stmt, 0);
        if (bin >= 0 && bin < 12) a[bin] = sqlite3_column_double(stmt, 1);
        break;
      }
      default: {
        const int g =
            std::string(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0))) == "TRT" ? 1
                                                                                              : 0;
        const int e = sqlite3_column_type(stmt, 1) == SQLITE_NULL ? 5 : sqlite3_column_int(stmt, 1);
        if (e >= 0 && e <= 5) a[g * 6 + e] = sqlite3_column_double(stmt, 2);
        break;
      }
    }
  }
  sqlite3_finalize(stmt);
  if (rc != SQLITE_DONE) return sqliteError(db_, std::string("run ") + benchQueries()[q].id);
  return a;
}

}  // namespace trialmesh::bench
