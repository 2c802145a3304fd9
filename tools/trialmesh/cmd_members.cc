// `trialmesh members`: the federation organiser signs the members file, and anyone checks a
// copy against the organiser's public key (node/members_signature.h).
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "crypto/identity.h"
#include "node/config.h"
#include "node/members_signature.h"
#include "tools/trialmesh/cli_status.h"
#include "tools/trialmesh/federation_commands.h"
#include "tools/trialmesh/passphrase.h"

namespace trialmesh::cli {
namespace {

struct MembersArgs {
  std::string file;
  std::string identity;
  std::string passphraseFile;
  std::string signer;
};

// Writes `text` to `path` through a temporary file, fsync and rename, so a crash leaves the old
// signature or the new one, never half of one.
Status writeAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) return Status::ioError("cannot write " + tmp);
  }
  FILE* f = std::fopen(tmp.c_str(), "rb");
  if (f != nullptr) {
    ::fsync(fileno(f));
    std::fclose(f);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Status::ioError("cannot rename " + tmp + " to " + path + ": " + ec.message());
  return Status::ok();
}

int runSign(const MembersArgs& a) {
  auto text = node::readConfigFile(a.file, "members file");
  if (!text) return fail(text.status());
  // Sign only what a node would accept: a file that does not parse is refused here, not later
  // at every site.
  auto members = node::parseMembers(*text, a.file);
  if (!members) return fail(members.status());
  auto organiser = crypto::loadIdentity(a.identity, passphraseProvider(a.passphraseFile));
  if (!organiser) return fail(organiser.status().withContext(a.identity));
  const std::string sigPath = node::membersSignaturePath(a.file);
  Status written = writeAtomically(sigPath, node::signMembersFile(*organiser, *text));
  if (!written.isOk()) return fail(written);
  std::printf("signed %s (federation '%s', %zu members) as %s\nwrote %s\n", a.file.c_str(),
              members->federation.c_str(), members->members.size(), organiser->pub.toText().c_str(),
              sigPath.c_str());
  std::printf("sites verify it with, in node.toml: members_signer = \"%s\"\n",
              organiser->pub.toText().c_str());
  return 0;
}

int runVerify(const MembersArgs& a) {
  auto signer = crypto::parsePublicKey(a.signer);
  if (!signer) return fail(signer.status().withContext("--signer"));
  auto members = node::loadMembers(a.file, *signer);
  if (!members) return fail(members.status());
  std::printf("OK: %s is signed by %s (federation '%s', %zu members)\n", a.file.c_str(),
              signer->toText().c_str(), members->federation.c_str(), members->members.size());
  return 0;
}

}  // namespace

void addMembersCommands(CLI::App& app, int& exitCode) {
  auto args = std::make_shared<MembersArgs>();
  CLI::App* m = app.add_subcommand(
      "members",
      "The federation's members file: the organiser signs it, sites check it (members_signer)");
  m->require_subcommand(1);

  CLI::App* sign = m->add_subcommand(
      "sign",
      "Sign a members file with the organiser's key; writes FILE.sig next to it. Example:\n"
      "  trialmesh members sign --identity organiser.key members.toml");
  sign->add_option("--identity", args->identity, "The organiser's key file")->required();
  sign->add_option("--passphrase-file", args->passphraseFile, "Key passphrase (first line)");
  sign->add_option("file", args->file, "Members file (members.toml)")->required();
  sign->callback([args, &exitCode] { exitCode = runSign(*args); });

  CLI::App* verify = m->add_subcommand(
      "verify",
      "Check a members file and its FILE.sig against the organiser's public key. Example:\n"
      "  trialmesh members verify --signer tmpk1... members.toml");
  verify->add_option("--signer", args->signer, "The organiser's public key (tmpk1...)")->required();
  verify->add_option("file", args->file, "Members file (members.toml)")->required();
  verify->callback([args, &exitCode] { exitCode = runVerify(*args); });
}

}  // namespace trialmesh::cli
