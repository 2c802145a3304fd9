// A members file signed by the federation's organiser (issue #13 item 4), so a site refuses a
// tampered or substituted copy: whoever can write /etc/trialmesh/members.toml (or intercept its
// distribution) could otherwise add a "coordinator" or swap a site's key.
//
// The organiser signs the file's exact bytes with an ordinary trialmesh identity
// (`trialmesh members sign`); the detached signature sits next to the file as
// "<members file>.sig", one line of text:
//
//   trialmesh-members-signature 1 <signer public key, tmpk1...> <Ed25519 signature, 128 hex>
//
// The signed message is the domain "trialmesh-members-v1" and a NUL, then the file's bytes, so
// the signature cannot be replayed as any other trialmesh signature. A node whose config sets
// `members_signer` verifies it at start, at reload (SIGHUP) and in --check-config; any change to
// the file, even a comment, needs a new signature. Without `members_signer` nothing is checked
// (docs/deployment.md, "Members file signature").
//
// Thread-safety: pure functions apart from reading and writing files.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "crypto/identity.h"
#include "node/config.h"

namespace trialmesh::node {

// "<membersPath>.sig".
std::string membersSignaturePath(const std::string& membersPath);

// The signature line (with its newline) for `fileBytes`, signed by `organiser`.
std::string signMembersFile(const crypto::Identity& organiser, std::string_view fileBytes);

// Checks `signatureText` (the .sig file) against `fileBytes` and the expected signer. Errors
// say what is wrong and what to do: a malformed line (PermissionDenied naming the part), a
// signature by another key than `signer`, or one that does not match the bytes (the file was
// changed after signing). `membersPath` only names the file in messages.
Status verifyMembersSignature(std::string_view fileBytes, std::string_view signatureText,
                              const crypto::PublicKey& signer, const std::string& membersPath);

// Reads and parses the members file; when `signer` is set, first reads "<path>.sig" and
// verifies it over the same bytes that are parsed (no window between check and use).
Result<Members> loadMembers(const std::string& path,
                            const std::optional<crypto::PublicKey>& signer);

// The members file a site node runs with: config.membersPath, checked against
// config.membersSigner.
Result<Members> loadNodeMembers(const NodeConfig& config);

}  // namespace trialmesh::node
