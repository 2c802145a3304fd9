// In-process measurements for the federation benchmark: channel throughput (frames alone and
// through SecureStream over loopback TCP) and the per-query cost items a federated query pays
// besides the scan (event loop, signing, handshake, dictionary round trip).
//
// Not a library: used only by trialmesh-bench-federation. Called from one thread; each function
// runs its own KJ event loop where it needs one, so the calling thread must not have one. Errors: a
// failed step returns its Status (the benchmark stops and prints it).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "common/status.h"
#include "crypto/identity.h"
#include "node/config.h"

namespace trialmesh::bench {

struct ChannelNumbers {
  size_t frameBytes = 0;
  double totalMiB = 0;
  double sealOpenCpuMBps = 0;   // MB = 10^6 bytes; thread CPU time
  double sealOpenWallMBps = 0;  // same run, wall time
  double sealCpuMBps = 0;       // the seal calls alone (sender side), thread CPU time
  double openCpuMBps = 0;       // the feed/nextFrame calls alone (receiver side)
  double rawAeadMBps = 0;       // libsodium XChaCha20-Poly1305 encrypt+decrypt, same frames
  double rawAeadCpuMBps = 0;    // same, thread CPU time
  double streamWallMBps = 0;    // SecureStream -> TCP 127.0.0.1 -> SecureStream, one thread
  double streamCpuMBps = 0;     // same, CPU time of the thread
  std::string streamNote;       // how the end-to-end run was made
  // One direction with each end on its own thread (as in a real connection, where the sender
  // seals on its machine and the receiver opens on its own): a sealer thread hands frames to an
  // opener thread through a bounded queue.
  double pipeWallMBps = 0;     // bytes opened / wall time
  double pipeSealCpuMBps = 0;  // sealer thread CPU
  double pipeOpenCpuMBps = 0;  // opener thread CPU
  // SecureStream over loopback TCP, writer and reader each on its own thread and KJ loop.
  double stream2WallMBps = 0;
  double stream2WriterCpuMBps = 0;
  double stream2ReaderCpuMBps = 0;
};

// Seals and opens `totalMiB` of `frameBytes` frames on one thread, then with sealer and opener
// on two threads, then sends the same volume through a SecureStream pair over a loopback TCP
// connection (writer and reader on one KJ loop, then on two threads with a loop each).
Result<ChannelNumbers> measureChannel(size_t frameBytes, size_t totalMiB);

// One line of the per-query cost model: what it is, median microseconds, how often a federated
// query over `sites` sites pays it.
struct CostItem {
  std::string what;
  double medianUs = 0;     // wall time
  double medianCpuUs = 0;  // this thread's CPU time (the other side's work is not in it)
  std::string perQuery;    // e.g. "1 per query", "1 per site"
};

// Measures the fixed costs of one federated query, in-process. `dictionaryToml` is the study's
// dictionary as a site ships it; `members` and `coordinator` let it time a bare
// connect + handshake + Site.info round trip against the running site `siteName`.
Result<std::vector<CostItem>> measureCostModel(const std::string& dictionaryToml,
                                               const std::string& queryText,
                                               const crypto::Identity& coordinator,
                                               const node::Members& members,
                                               const std::string& siteName, int iterations);

}  // namespace trialmesh::bench
