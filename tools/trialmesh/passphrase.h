// Where the CLI gets a key file's passphrase: the first line of --passphrase-file, else the
// environment variable TRIALMESH_PASSPHRASE. One place, so every command behaves alike.
#pragma once

#include <string>

#include "common/status.h"
#include "crypto/identity.h"

namespace trialmesh::cli {

// The first line of `path` (a trailing CR removed). NotFound when unreadable, InvalidArgument
// when empty.
Result<std::string> readPassphraseFile(const std::string& path);

// For crypto::loadIdentity: asked only when the key file is passphrase-protected. `file` may be
// empty (then TRIALMESH_PASSPHRASE, else FailedPrecondition naming both ways).
crypto::PassphraseProvider passphraseProvider(const std::string& file);

}  // namespace trialmesh::cli
