// Where the CLI gets a key file's passphrase: the first line of --passphrase-file, else the
// environment variable TRIALMESH_PASSPHRASE, else a prompt on the terminal without echo. One
// place, so every command behaves alike.
#pragma once

#include <string>

#include "common/status.h"
#include "crypto/identity.h"

namespace trialmesh::cli {

// The first line of `path` (a trailing CR removed). NotFound when unreadable, InvalidArgument
// when empty.
Result<std::string> readPassphraseFile(const std::string& path);

// Asks on /dev/tty with echo off (termios). FailedPrecondition naming --passphrase-file and
// TRIALMESH_PASSPHRASE when there is no terminal (a script, a service).
Result<std::string> promptPassphrase(const std::string& prompt);

// For crypto::loadIdentity: asked only when the key file is passphrase-protected. `file` may be
// empty (then TRIALMESH_PASSPHRASE, else the terminal prompt).
crypto::PassphraseProvider passphraseProvider(const std::string& file);

}  // namespace trialmesh::cli
