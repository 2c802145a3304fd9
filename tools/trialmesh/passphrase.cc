#include "tools/trialmesh/passphrase.h"

#include <cstdlib>
#include <fstream>

namespace trialmesh::cli {

Result<std::string> readPassphraseFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::notFound("passphrase file '" + path + "' cannot be read");
  std::string line;
  std::getline(in, line);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.empty()) return Status::invalidArgument("passphrase file '" + path + "' is empty");
  return line;
}

crypto::PassphraseProvider passphraseProvider(const std::string& file) {
  return [file]() -> Result<std::string> {
    if (!file.empty()) return readPassphraseFile(file);
    if (const char* env = std::getenv("TRIALMESH_PASSPHRASE")) return std::string(env);
    return Status::failedPrecondition(
        "the key file is passphrase-protected: pass --passphrase-file or set "
        "TRIALMESH_PASSPHRASE");
  };
}

}  // namespace trialmesh::cli
