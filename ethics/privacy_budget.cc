#include "ethics/privacy_budget.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/utilities/checkpoint.h>

#include <cmath>
#include <cstring>
#include <mutex>
#include <vector>

#include "ethics/codec.h"

namespace trialmesh::ethics {
namespace {

using detail::bytesOf;
using detail::Reader;
using detail::Writer;

constexpr double kUnitsPerEpsilon = 1e9;

uint64_t toUnits(double epsilon) {
  return static_cast<uint64_t>(std::llround(epsilon * kUnitsPerEpsilon));
}
double fromUnits(uint64_t units) { return static_cast<double>(units) / kUnitsPerEpsilon; }

// "0.9", "1.0", "0.25": an ε as a real number.
std::string epsilonText(double v) { return detail::realNumberText(v); }

std::string accountLabel(const BudgetAccount& a) {
  return a.study + " for coordinator '" +
         (a.coordinatorName.empty() ? a.coordinator.toText() : a.coordinatorName) + "'";
}

// The account: study and coordinator, whatever the approval's version.
std::string accountKey(const BudgetAccount& a) {
  Writer w;
  w.str(a.study);
  w.fixed(a.coordinator.bytes());
  return w.take();
}

// Ledgers written before budgets spanned versions keyed each (study, version, coordinator).
std::string legacyStudyPrefix(const BudgetAccount& a) {
  Writer w;
  w.str(a.study);
  return w.take();
}

constexpr size_t kLegacyTail = 4 + crypto::kPublicKeyBytes;  // u32 version, coordinator key

}  // namespace

class PrivacyBudgetLedger::Impl {
 public:
  std::unique_ptr<rocksdb::DB> db;
  // default; privacy_budget (per study, version and coordinator: read only, for ledgers
  // written before a budget spanned versions); study_budget (per study and coordinator)
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  std::string path;
  mutable std::mutex mu;

  ~Impl() {
    if (db) {
      for (auto* h : handles) (void)db->DestroyColumnFamilyHandle(h);
      (void)db->Close();
    }
  }

  Result<uint64_t> decode(const std::string& value) const {
    Reader r(bytesOf(value), "privacy budget ledger " + path + " record");
    TM_ASSIGN_OR_RETURN(uint64_t units, r.u64("spent"));
    TM_RETURN_IF_ERROR(r.finish());
    return units;
  }

  // Units spent by the account: its record, or for an account first seen since budgets spanned
  // versions, the sum of its per-version records (so an upgrade does not reset a budget).
  Result<uint64_t> read(const BudgetAccount& account) const {
    std::string value;
    rocksdb::Status s = db->Get(rocksdb::ReadOptions(), handles[2], accountKey(account), &value);
    if (s.ok()) return decode(value);
    if (!s.IsNotFound())
      return Status::ioError("privacy budget ledger " + path + ": " + s.ToString());
    const std::string prefix = legacyStudyPrefix(account);
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), handles[1]));
    uint64_t units = 0;
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      const rocksdb::Slice key = it->key();
      if (key.size() != prefix.size() + kLegacyTail) continue;  // another study's longer name
      if (std::memcmp(key.data() + prefix.size() + 4, account.coordinator.bytes().data(),
                      crypto::kPublicKeyBytes) != 0)
        continue;
      TM_ASSIGN_OR_RETURN(uint64_t spent, decode(it->value().ToString()));
      units += spent;
    }
    if (!it->status().ok())
      return Status::ioError("privacy budget ledger " + path + ": " + it->status().ToString());
    return units;
  }
};

Result<std::unique_ptr<PrivacyBudgetLedger>> PrivacyBudgetLedger::open(const std::string& path) {
  rocksdb::DBOptions options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  for (const char* name :
       {rocksdb::kDefaultColumnFamilyName.c_str(), "privacy_budget", "study_budget"}) {
    families.emplace_back(name, rocksdb::ColumnFamilyOptions());
  }
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, path, families, &impl->handles, &raw);
  if (!s.ok()) {
    return Status::ioError("privacy budget ledger " + path + ": cannot open: " + s.ToString());
  }
  impl->db.reset(raw);
  return std::unique_ptr<PrivacyBudgetLedger>(new PrivacyBudgetLedger(std::move(impl)));
}

PrivacyBudgetLedger::PrivacyBudgetLedger(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PrivacyBudgetLedger::~PrivacyBudgetLedger() = default;

Result<BudgetCharge> PrivacyBudgetLedger::charge(const BudgetAccount& account, double epsilon) {
  if (!std::isfinite(account.budget) || !(account.budget > 0) ||
      account.budget > kMaxEpsilonBudget) {
    return Status::invalidArgument("privacy budget of " + accountLabel(account) + ": budget " +
                                   epsilonText(account.budget) +
                                   " must be a number above 0 and at most 1e6");
  }
  if (!std::isfinite(epsilon) || epsilon < kMinEpsilonCharge || epsilon > kMaxEpsilonBudget) {
    return Status::invalidArgument("privacy budget of " + accountLabel(account) +
                                   ": a query's epsilon must be between 1e-9 and 1e6, got " +
                                   epsilonText(epsilon));
  }
  const uint64_t need = toUnits(epsilon);
  const uint64_t budget = toUnits(account.budget);
  std::lock_guard lock(impl_->mu);
  TM_ASSIGN_OR_RETURN(uint64_t spent, impl_->read(account));
  if (spent > budget || need > budget - spent) {
    return Status::resourceExhausted(
        "privacy budget of " + accountLabel(account) + " exhausted: spent " +
        epsilonText(fromUnits(spent)) + " of " + epsilonText(account.budget) +
        " (the dp_budget of v" + std::to_string(account.protocolVersion) +
        "; what was spent under earlier versions counts), this query needs " +
        epsilonText(epsilon));
  }
  const uint64_t total = spent + need;
  Writer w;
  w.u64(total);
  rocksdb::WriteOptions wo;
  wo.sync = true;  // durable before any answer that spent it leaves the site
  rocksdb::Status s = impl_->db->Put(wo, impl_->handles[2], accountKey(account), w.take());
  if (!s.ok()) {
    return Status::ioError("privacy budget ledger " + impl_->path +
                           ": write failed: " + s.ToString());
  }
  return BudgetCharge{fromUnits(total), fromUnits(budget - total)};
}

Status PrivacyBudgetLedger::checkpoint(const std::string& targetDir) const {
  std::lock_guard lock(impl_->mu);
  rocksdb::Checkpoint* raw = nullptr;
  rocksdb::Status s = rocksdb::Checkpoint::Create(impl_->db.get(), &raw);
  std::unique_ptr<rocksdb::Checkpoint> cp(raw);
  if (s.ok()) s = cp->CreateCheckpoint(targetDir);
  if (!s.ok()) {
    return Status::ioError("privacy budget ledger " + impl_->path + ": checkpoint to " + targetDir +
                           ": " + s.ToString());
  }
  return Status::ok();
}

Result<double> PrivacyBudgetLedger::spent(const BudgetAccount& account) const {
  std::lock_guard lock(impl_->mu);
  TM_ASSIGN_OR_RETURN(uint64_t units, impl_->read(account));
  return fromUnits(units);
}

}  // namespace trialmesh::ethics
