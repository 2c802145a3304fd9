#include "tools/trialmesh/passphrase.h"

#include <fcntl.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
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

Result<std::string> promptPassphrase(const std::string& prompt) {
  // The controlling terminal, not stdin/stdout: they may be redirected (export > report.csv).
  const int fd = ::open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    return Status::failedPrecondition(
        "the key file is passphrase-protected and there is no terminal to ask on: pass "
        "--passphrase-file or set TRIALMESH_PASSPHRASE");
  }
  struct termios saved {};
  if (::tcgetattr(fd, &saved) != 0) {
    ::close(fd);
    return Status::failedPrecondition(std::string("cannot read the terminal settings: ") +
                                      std::strerror(errno));
  }
  struct termios quiet = saved;
  quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
  quiet.c_lflag |= ECHONL;
  (void)!::write(fd, prompt.data(), prompt.size());
  if (::tcsetattr(fd, TCSAFLUSH, &quiet) != 0) {
    ::close(fd);
    return Status::failedPrecondition(std::string("cannot turn off the terminal echo: ") +
                                      std::strerror(errno));
  }
  std::string line;
  char c = 0;
  ssize_t n = 0;
  while ((n = ::read(fd, &c, 1)) == 1 && c != '\n') line.push_back(c);
  ::tcsetattr(fd, TCSAFLUSH, &saved);
  ::close(fd);
  if (n < 0) return Status::ioError(std::string("reading the passphrase: ") + std::strerror(errno));
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.empty()) return Status::invalidArgument("empty passphrase");
  return line;
}

crypto::PassphraseProvider passphraseProvider(const std::string& file) {
  return [file]() -> Result<std::string> {
    if (!file.empty()) return readPassphraseFile(file);
    if (const char* env = std::getenv("TRIALMESH_PASSPHRASE")) return std::string(env);
    return promptPassphrase("Passphrase for the key file: ");
  };
}

}  // namespace trialmesh::cli
