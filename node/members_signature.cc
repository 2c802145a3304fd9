#include "node/members_signature.h"

#include <algorithm>
#include <cstdint>
#include <span>
#include <sstream>
#include <vector>

#include "crypto/hash.h"

namespace trialmesh::node {
namespace {

constexpr std::string_view kMagic = "trialmesh-members-signature";
constexpr std::string_view kFormatVersion = "1";
// Domain separation: this signature can never stand for an approval, a tree head or a query.
constexpr std::string_view kDomain = "trialmesh-members-v1";

std::vector<uint8_t> signedMessage(std::string_view fileBytes) {
  std::vector<uint8_t> m(kDomain.begin(), kDomain.end());
  m.push_back(0);
  m.insert(m.end(), fileBytes.begin(), fileBytes.end());
  return m;
}

}  // namespace

std::string membersSignaturePath(const std::string& membersPath) { return membersPath + ".sig"; }

std::string signMembersFile(const crypto::Identity& organiser, std::string_view fileBytes) {
  const crypto::Signature sig = crypto::sign(organiser.secret, signedMessage(fileBytes));
  return std::string(kMagic) + " " + std::string(kFormatVersion) + " " + organiser.pub.toText() +
         " " + crypto::toHex(sig) + "\n";
}

Status verifyMembersSignature(std::string_view fileBytes, std::string_view signatureText,
                              const crypto::PublicKey& signer, const std::string& membersPath) {
  const std::string sigPath = membersSignaturePath(membersPath);
  const std::string refetch =
      "; ask the federation's organiser for the members file and its "
      "signature as they signed them (trialmesh members sign)";
  std::istringstream in{std::string(signatureText)};
  std::string magic, version, keyText, sigHex, extra;
  in >> magic >> version >> keyText >> sigHex;
  if (magic != kMagic || sigHex.empty() || (in >> extra)) {
    return Status::permissionDenied(sigPath + ": not a members signature (expected one line '" +
                                    std::string(kMagic) + " 1 <tmpk1 key> <128 hex>')" + refetch);
  }
  if (version != kFormatVersion) {
    return Status::permissionDenied(sigPath + ": signature format version '" + version +
                                    "' is not supported (this build reads version 1)");
  }
  auto key = crypto::parsePublicKey(keyText);
  if (!key) return key.status().withContext(sigPath + ": signer key");
  if (!(*key == signer)) {
    return Status::permissionDenied(sigPath + ": signed by " + key->toText() +
                                    ", not by the members_signer " + signer.toText() +
                                    " this node trusts" + refetch);
  }
  auto bytes = crypto::fromHex(sigHex);
  if (!bytes || bytes->size() != crypto::kSignatureBytes) {
    return Status::permissionDenied(sigPath + ": the signature is not " +
                                    std::to_string(crypto::kSignatureBytes * 2) + " hex digits" +
                                    refetch);
  }
  crypto::Signature sig;
  std::copy(bytes->begin(), bytes->end(), sig.begin());
  if (!crypto::verify(signer, signedMessage(fileBytes), sig)) {
    return Status::permissionDenied(
        membersPath + ": the organiser's signature (" + sigPath +
        ") does not match the file: it was changed after it was signed, or the signature "
        "belongs to another version of it; the file is not used" +
        refetch);
  }
  return Status::ok();
}

Result<Members> loadMembers(const std::string& path,
                            const std::optional<crypto::PublicKey>& signer) {
  TM_ASSIGN_OR_RETURN(std::string text, readConfigFile(path, "members file"));
  if (signer) {
    auto signature = readConfigFile(membersSignaturePath(path), "members signature");
    if (!signature) {
      return Status::permissionDenied(
          signature.status().message() +
          ": members_signer is set, so the members file needs the organiser's signature next "
          "to it (trialmesh members sign)");
    }
    TM_RETURN_IF_ERROR(verifyMembersSignature(text, *signature, *signer, path));
  }
  return parseMembers(text, path);
}

Result<Members> loadNodeMembers(const NodeConfig& config) {
  return loadMembers(config.membersPath, config.membersSigner);
}

}  // namespace trialmesh::node
