// The differential-privacy budget ledger a site keeps for secure-dp approvals (issue #5 §3).
//
// Every query under an approval with aggregation = "secure-dp" spends the approval's
// dp_epsilon_per_query from a budget of dp_budget per (study, coordinator). Each site keeps its
// own ledger and refuses to contribute noise shares once the budget is spent, so a coordinator
// cannot exceed it by asking sites selectively. The account spans the approval's protocol
// versions: an amendment sets a new dp_budget (the limit of what was spent in all, under every
// version) but never gives back what earlier versions spent, since those answers were released
// (issue #12: a new version used to start a fresh account).
//
// Durability: charge() writes the new total with a synced RocksDB write before it returns, so
// a charge that was answered survives a crash; a crash before the write leaves the account as
// it was and no answer was sent. A charge is never refunded, even if the query fails later:
// the site may already have released a noisy answer. Amounts are stored as integer multiples
// of 1e-9 ε, so repeated charges of 0.1 add up to exactly 1.0 (no floating-point drift
// refusing the tenth query of ten).
//
// Storage: a RocksDB database of its own, column family "study_budget"; key = u32 length +
// study, 32-byte coordinator public key (big-endian); value = u64 spent in units of 1e-9 ε.
// Ledgers from before kept one record per protocol version (column family "privacy_budget",
// key = u32 length + study, u32 version, coordinator key): an account first charged since is
// opened with their sum. docs/privacy.md, "Privacy budget ledger".
//
// Errors: ResourceExhausted for an exhausted budget, with the message the coordinator sees:
//   privacy budget of LUNG-7 for coordinator 'alice' exhausted: spent 0.9 of 1.0 (the
//   dp_budget of v3; what was spent under earlier versions counts), this query needs 0.2
// InvalidArgument for a non-positive or non-finite ε or budget; IOError/Corruption from storage.
// Thread-safety: internally synchronised; one process may open a ledger at a time (RocksDB's
// lock refuses a second open with IOError).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"
#include "crypto/identity.h"

namespace trialmesh::ethics {

// Which budget a charge draws on.
struct BudgetAccount {
  std::string study;
  uint32_t protocolVersion = 0;  // the approval whose budget applies (messages only)
  crypto::PublicKey coordinator{std::array<uint8_t, crypto::kPublicKeyBytes>{}};
  std::string coordinatorName;  // only for messages (e.g. the member name)
  double budget = 0;            // the approval's dp_budget (total ε), > 0
};

// The account after a successful charge.
struct BudgetCharge {
  double spent = 0;      // ε spent including this charge
  double remaining = 0;  // budget − spent
};

// The smallest ε a charge may be and the largest a budget may be.
inline constexpr double kMinEpsilonCharge = 1e-9;
inline constexpr double kMaxEpsilonBudget = 1e6;

class PrivacyBudgetLedger {
 public:
  // Opens (creating if needed) the ledger database at `path`. IOError if it cannot be opened.
  static Result<std::unique_ptr<PrivacyBudgetLedger>> open(const std::string& path);
  ~PrivacyBudgetLedger();
  PrivacyBudgetLedger(const PrivacyBudgetLedger&) = delete;
  PrivacyBudgetLedger& operator=(const PrivacyBudgetLedger&) = delete;

  // Adds `epsilon` to the account if the total stays within account.budget (equality is
  // allowed), durably, and returns the new state. ResourceExhausted otherwise (nothing is
  // written). InvalidArgument for epsilon outside [kMinEpsilonCharge, kMaxEpsilonBudget] or a
  // budget outside (0, kMaxEpsilonBudget], or non-finite values.
  Result<BudgetCharge> charge(const BudgetAccount& account, double epsilon);

  // ε spent so far by the account (0 for an account never charged).
  Result<double> spent(const BudgetAccount& account) const;

  // A consistent, openable copy of the ledger in `targetDir` (must not exist), for backups.
  Status checkpoint(const std::string& targetDir) const;

  class Impl;

 private:
  explicit PrivacyBudgetLedger(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace trialmesh::ethics
