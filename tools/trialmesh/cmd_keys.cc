// `trialmesh rotate-key`: site IT replaces a site node's key (issue #13 item 3, docs/keys.md).
//
// Two steps around the organiser's members file update:
//   1. `--generate`: write the new identity (protected like the current one) and print its
//      public key for the organiser, who publishes public_key = <new> with the current key
//      under previous_keys (retired = end of the grace period); every member reloads.
//   2. with the node stopped: record the change in the site's audit log as a key-rotation
//      entry signed by the old and the new key, then put the new identity in place of the old
//      (the old file is kept next to it, renamed). Started again, the node signs tree heads
//      with the new key, and peers and ethics boards follow the log across the change.
// Re-running step 2 after an interruption finishes it (the entry is not written twice).
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "crypto/identity.h"
#include "ethics/audit_log.h"
#include "ethics/key_rotation.h"
#include "node/check_config.h"
#include "node/config.h"
#include "node/members_signature.h"
#include "tools/trialmesh/cli_status.h"
#include "tools/trialmesh/federation_commands.h"

namespace trialmesh::cli {
namespace {

namespace fs = std::filesystem;

struct RotateArgs {
  std::string config;
  std::string newIdentity;
  bool generate = false;
};

// Moves `from` to `to` (copying across file systems), refusing to replace an existing file.
Status moveFile(const std::string& from, const std::string& to) {
  std::error_code ec;
  if (fs::exists(to, ec)) return Status::alreadyExists(to + " already exists; not replacing it");
  fs::rename(from, to, ec);
  if (!ec) return Status::ok();
  if (ec != std::errc::cross_device_link) {
    return Status::ioError("cannot move " + from + " to " + to + ": " + ec.message());
  }
  fs::copy_file(from, to, ec);  // keeps the mode (0600 for a secret key)
  if (ec) return Status::ioError("cannot copy " + from + " to " + to + ": " + ec.message());
  fs::remove(from, ec);
  return Status::ok();
}

std::string stamp(int64_t ms) {
  std::string s = node::formatUtcTime(ms);  // 2026-11-01T00:00:00Z
  std::string out;
  for (char c : s) {
    if (c != '-' && c != ':') out += c;
  }
  return out;  // 20261101T000000Z
}

int runGenerate(const RotateArgs& a, const node::NodeConfig& config) {
  // A new key is encrypted exactly when the node has a passphrase to give it
  // (identity_passphrase_file or TRIALMESH_PASSPHRASE), so the node starts with it unchanged.
  // A passphrase file that cannot be read is an error, not a reason to write a plain key.
  auto passphrase = node::readIdentityPassphrase(config);
  if (!passphrase && config.identityPassphraseFile) return fail(passphrase.status());
  crypto::Identity id = crypto::generateIdentity();
  Status saved = crypto::saveIdentity(
      a.newIdentity, id, passphrase ? std::optional<std::string_view>(*passphrase) : std::nullopt);
  if (!saved.isOk()) return fail(saved);
  std::printf("%s\n", id.pub.toText().c_str());
  std::fprintf(stderr,
               "wrote %s (secret, mode 0600) and %s.pub.\n"
               "Next: send %s.pub to the federation organiser through an authenticated channel; "
               "the members file must list it as public_key of '%s', with the current key under "
               "previous_keys (retired = the end of the grace period). Once every member has "
               "reloaded, stop this node and run:\n"
               "  trialmesh rotate-key --config %s --new-identity %s\n",
               a.newIdentity.c_str(), a.newIdentity.c_str(), a.newIdentity.c_str(),
               config.name.c_str(), config.path.c_str(), a.newIdentity.c_str());
  return 0;
}

int runRotate(const RotateArgs& a) {
  auto config = node::loadNodeConfig(a.config);
  if (!config) return fail(config.status());
  if (a.generate) return runGenerate(a, *config);

  auto members = node::loadNodeMembers(*config);
  if (!members) return fail(members.status());
  const node::Member* self = members->findByName(config->name);
  if (self == nullptr || self->role != node::Role::kSite) {
    return fail(Status::invalidArgument(config->membersPath + ": '" + config->name +
                                        "' is not a member with role site"));
  }
  auto provider = [&config]() { return node::readIdentityPassphrase(*config); };
  auto next = crypto::loadIdentity(a.newIdentity, provider);
  if (!next) return fail(next.status().withContext("--new-identity " + a.newIdentity));
  if (self->publicKey != next->pub) {
    return fail(Status::failedPrecondition(
        config->membersPath + " lists " + self->publicKey.toText() + " as public_key of '" +
        config->name + "', not the new key " + next->pub.toText() +
        ": the organiser must publish the new key first (public_key = the new key, the current "
        "one under previous_keys with its retirement time) and every member reload, "
        "docs/keys.md"));
  }
  auto current = crypto::loadIdentity(config->identityPath, provider);
  if (!current) return fail(current.status().withContext(config->identityPath));
  const int64_t now = node::nowUnixMs();

  // The audit log records the change first: if anything below fails, running this again
  // finishes the job, and a node started on the old key refuses to start (node/site.cc).
  ethics::AuditLogOptions options;
  std::unique_ptr<ethics::AuditLog> log;
  if (current->pub != next->pub) {
    if (self->findPrevious(current->pub) == nullptr) {
      return fail(Status::failedPrecondition(
          "the current identity " + config->identityPath + " (" + current->pub.toText() +
          ") is not under previous_keys of '" + config->name + "' in " + config->membersPath +
          ": peers could not follow the change; ask the organiser to list it there"));
    }
    auto opened = ethics::AuditLog::open(config->ethics.auditDir, *current, options);
    if (!opened) {
      return fail(opened.status().withContext("audit log " + config->ethics.auditDir +
                                              " (stop the node before rotating its key)"));
    }
    log = std::move(*opened);
  } else {
    // Interrupted after the identity files were swapped: only the log check remains.
    auto opened = ethics::AuditLog::open(config->ethics.auditDir, *next, options);
    if (!opened) {
      return fail(opened.status().withContext("audit log " + config->ethics.auditDir +
                                              " (stop the node before rotating its key)"));
    }
    log = std::move(*opened);
  }
  auto history = ethics::readKeyHistory(*log);
  if (!history) return fail(history.status());
  const bool recorded = history->latest && history->latest->newKey == next->pub;
  if (!recorded) {
    if (current->pub == next->pub) {
      return fail(Status::failedPrecondition(
          config->identityPath + " already holds the new key " + next->pub.toText() +
          " but the audit log records no rotation to it; restore the previous identity file "
          "(" +
          config->identityPath + ".retired-*) and run rotate-key again"));
    }
    if (history->latest && history->latest->newKey != current->pub) {
      return fail(Status::failedPrecondition(
          "the audit log's last key rotation is to " + history->latest->newKey.toText() +
          ", not to the current identity " + current->pub.toText()));
    }
    ethics::KeyRotationEvent event = ethics::signKeyRotation(*current, *next, config->name, now);
    auto entry = log->append(ethics::EntryKind::kKeyRotation, event);
    if (!entry) return fail(entry.status().withContext("audit log " + config->ethics.auditDir));
    std::printf("recorded in the audit log: %s\n", ethics::describeEntry(*entry).c_str());
  } else {
    std::printf("the audit log already records the rotation to %s\n", next->pub.toText().c_str());
  }
  log.reset();

  if (current->pub != next->pub) {
    const std::string kept = config->identityPath + ".retired-" + stamp(now);
    Status moved = moveFile(config->identityPath, kept);
    if (!moved.isOk()) return fail(moved);
    std::error_code ec;
    if (fs::exists(config->identityPath + ".pub", ec)) {
      moved = moveFile(config->identityPath + ".pub", kept + ".pub");
      if (!moved.isOk()) return fail(moved);
    }
    moved = moveFile(a.newIdentity, config->identityPath);
    if (!moved.isOk()) return fail(moved);
    if (fs::exists(a.newIdentity + ".pub", ec)) {
      moved = moveFile(a.newIdentity + ".pub", config->identityPath + ".pub");
      if (!moved.isOk()) return fail(moved);
    }
    std::printf(
        "new identity installed as %s; the previous one is kept as %s (delete it once "
        "its key is retired)\n",
        config->identityPath.c_str(), kept.c_str());
  }
  std::printf(
      "start the node again: it signs with %s from now on, and peers follow the log "
      "across the change\n",
      next->pub.toText().c_str());
  return 0;
}

}  // namespace

void addKeyCommands(CLI::App& app, int& exitCode) {
  auto args = std::make_shared<RotateArgs>();
  CLI::App* r = app.add_subcommand(
      "rotate-key",
      "Replace this site node's key (docs/keys.md). First --generate the new identity and have\n"
      "the organiser publish it; then, with the node stopped, record the change in the audit\n"
      "log (signed by both keys) and install the new identity:\n"
      "  trialmesh rotate-key --config node.toml --new-identity node-new.key --generate\n"
      "  trialmesh rotate-key --config node.toml --new-identity node-new.key");
  r->add_option("--config", args->config, "The node's node.toml")->required();
  r->add_option("--new-identity", args->newIdentity, "The new secret key file")->required();
  r->add_flag("--generate", args->generate,
              "Only create the new identity (encrypted like the current one) and print its key");
  r->callback([args, &exitCode] { exitCode = runRotate(*args); });
}

}  // namespace trialmesh::cli
