#include "tools/bench/federation/micro_bench.h"

#include <sodium.h>
#include <time.h>

#include <kj/async-io.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <thread>

#include "crypto/channel.h"
#include "node/coordinator.h"
#include "protocol/messages.h"
#include "protocol/secure_stream.h"
#include "query/engine.h"
#include "query/query.h"
#include "storage/dictionary.h"

namespace trialmesh::bench {
namespace {

using WallClock = std::chrono::steady_clock;

double threadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double secondsSince(WallClock::time_point t0) {
  return std::chrono::duration<double>(WallClock::now() - t0).count();
}

struct Medians {
  double wallUs = 0;
  double cpuUs = 0;
};

// Medians of `iterations` timed calls of `f`, in microseconds of wall and thread CPU time. `f`
// returning a non-OK Status stops the measurement.
Result<Medians> medianUs(int iterations, const std::function<Status()>& f) {
  std::vector<double> wall, cpu;
  wall.reserve(static_cast<size_t>(iterations));
  cpu.reserve(static_cast<size_t>(iterations));
  for (int i = 0; i < iterations; ++i) {
    const double c0 = threadCpuSeconds();
    const auto t0 = WallClock::now();
    TM_RETURN_IF_ERROR(f());
    wall.push_back(secondsSince(t0) * 1e6);
    cpu.push_back((threadCpuSeconds() - c0) * 1e6);
  }
  std::sort(wall.begin(), wall.end());
  std::sort(cpu.begin(), cpu.end());
  return Medians{wall[wall.size() / 2], cpu[cpu.size() / 2]};
}

Result<crypto::Session> sessionPairHalf(const crypto::Identity& a, const crypto::Identity& b,
                                        std::optional<crypto::Session>& responderSide) {
  crypto::HandshakeInitiator hi(a, {b.pub});
  crypto::HandshakeResponder hr(b, {a.pub});
  TM_ASSIGN_OR_RETURN(auto m1, hi.start());
  TM_ASSIGN_OR_RETURN(auto m2, hr.onMessage1(m1));
  TM_ASSIGN_OR_RETURN(auto m3, hi.onMessage2(m2));
  TM_ASSIGN_OR_RETURN(crypto::Session s1, hi.finish());
  TM_ASSIGN_OR_RETURN(crypto::Session s2, hr.onMessage3(m3));
  responderSide.emplace(std::move(s2));
  return s1;
}

kj::Promise<void> writeFrames(kj::AsyncIoStream& s, const std::vector<uint8_t>& buf,
                              size_t remaining) {
  if (remaining == 0) return kj::READY_NOW;
  return s.write(buf.data(), buf.size()).then([&s, &buf, remaining]() {
    return writeFrames(s, buf, remaining - 1);
  });
}

kj::Promise<size_t> readAll(kj::AsyncIoStream& s, std::vector<uint8_t>& buf, size_t target,
                            size_t done) {
  if (done >= target) return done;
  return s.tryRead(buf.data(), 1, buf.size()).then([&s, &buf, target, done](size_t n) {
    if (n == 0) return kj::Promise<size_t>(done);
    return readAll(s, buf, target, done + n);
  });
}

}  // namespace

Result<ChannelNumbers> measureChannel(size_t frameBytes, size_t totalMiB) {
  ChannelNumbers out;
  out.frameBytes = frameBytes;
  out.totalMiB = static_cast<double>(totalMiB);
  const crypto::Identity a = crypto::generateIdentity();
  const crypto::Identity b = crypto::generateIdentity();
  const size_t frames = totalMiB * (size_t{1} << 20) / frameBytes;
  const double megabytes = static_cast<double>(frames * frameBytes) / 1e6;
  std::vector<uint8_t> payload(frameBytes, 0x5a);

  {  // seal + open, one thread
    std::optional<crypto::Session> rs;
    TM_ASSIGN_OR_RETURN(crypto::Session s, sessionPairHalf(a, b, rs));
    size_t opened = 0;
    double sealCpu = 0;
    double openCpu = 0;
    const double c0 = threadCpuSeconds();
    const auto w0 = WallClock::now();
    for (size_t i = 0; i < frames; ++i) {
      const double t0 = threadCpuSeconds();
      TM_ASSIGN_OR_RETURN(std::vector<uint8_t> f, s.sealer.seal(payload));
      const double t1 = threadCpuSeconds();
      TM_RETURN_IF_ERROR(rs->opener.feed(f));
      while (auto p = rs->opener.nextFrame()) opened += p->size();
      sealCpu += t1 - t0;
      openCpu += threadCpuSeconds() - t1;
    }
    out.sealOpenWallMBps = megabytes / secondsSince(w0);
    out.sealOpenCpuMBps = megabytes / (threadCpuSeconds() - c0);
    out.sealCpuMBps = megabytes / sealCpu;
    out.openCpuMBps = megabytes / openCpu;
    if (opened != frames * frameBytes) return Status::internal("channel bench: bytes lost");
  }
  {  // libsodium AEAD alone: the floor for the framing above
    std::vector<uint8_t> key(crypto_aead_xchacha20poly1305_ietf_KEYBYTES, 7);
    std::vector<uint8_t> nonce(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, 1);
    std::vector<uint8_t> ct(frameBytes + crypto_aead_xchacha20poly1305_ietf_ABYTES);
    std::vector<uint8_t> pt(frameBytes);
    const double c0 = threadCpuSeconds();
    const auto w0 = WallClock::now();
    for (size_t i = 0; i < frames; ++i) {
      unsigned long long clen = 0, plen = 0;
      crypto_aead_xchacha20poly1305_ietf_encrypt(ct.data(), &clen, payload.data(), payload.size(),
                                                 nullptr, 0, nullptr, nonce.data(), key.data());
      if (crypto_aead_xchacha20poly1305_ietf_decrypt(pt.data(), &plen, nullptr, ct.data(), clen,
                                                     nullptr, 0, nonce.data(), key.data()) != 0) {
        return Status::internal("channel bench: raw AEAD failed");
      }
    }
    out.rawAeadMBps = megabytes / secondsSince(w0);
    out.rawAeadCpuMBps = megabytes / (threadCpuSeconds() - c0);
  }
  {  // one direction, sealer and opener on two threads (a bounded queue between them)
    std::optional<crypto::Session> rs;
    TM_ASSIGN_OR_RETURN(crypto::Session s, sessionPairHalf(a, b, rs));
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::vector<uint8_t>> queue;
    constexpr size_t kQueueFrames = 32;
    bool sealFailed = false;
    double sealCpu = 0;
    const auto w0 = WallClock::now();
    std::thread sealer([&]() {
      const double c0 = threadCpuSeconds();
      for (size_t i = 0; i < frames; ++i) {
        auto f = s.sealer.seal(payload);
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return queue.size() < kQueueFrames; });
        if (!f) {
          sealFailed = true;
          queue.emplace_back();
          cv.notify_all();
          break;
        }
        queue.push_back(std::move(f).value());
        cv.notify_all();
      }
      sealCpu = threadCpuSeconds() - c0;
    });
    const double c0 = threadCpuSeconds();
    size_t opened = 0;
    Status openStatus;
    for (size_t i = 0; i < frames && openStatus.isOk(); ++i) {
      std::vector<uint8_t> f;
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return !queue.empty(); });
        f = std::move(queue.front());
        queue.pop_front();
        cv.notify_all();
      }
      if (f.empty()) break;
      openStatus = rs->opener.feed(f);
      while (auto p = rs->opener.nextFrame()) opened += p->size();
    }
    const double openCpu = threadCpuSeconds() - c0;
    if (!openStatus.isOk()) {
      std::lock_guard<std::mutex> lock(mu);
      queue.clear();  // let a waiting sealer go on; its frames are not read any more
    }
    sealer.join();
    out.pipeWallMBps = megabytes / secondsSince(w0);
    out.pipeSealCpuMBps = megabytes / sealCpu;
    out.pipeOpenCpuMBps = megabytes / openCpu;
    TM_RETURN_IF_ERROR(openStatus);
    if (sealFailed || opened != frames * frameBytes) {
      return Status::internal("channel bench (two threads): bytes lost");
    }
  }
  // SecureStream over a real loopback TCP connection, both ends on one KJ loop (one thread):
  // seal, write(2), read(2), open all on the same core.
  try {
    auto io = kj::setupAsyncIo();
    auto& network = io.provider->getNetwork();
    auto listenAddress = network.parseAddress("127.0.0.1", 0).wait(io.waitScope);
    auto listener = listenAddress->listen();
    auto connectAddress = network.parseAddress("127.0.0.1", listener->getPort()).wait(io.waitScope);
    auto accepted = listener->accept();
    auto connected = connectAddress->connect();
    auto serverTransport = accepted.wait(io.waitScope);
    auto clientTransport = connected.wait(io.waitScope);
    auto client = protocol::secureConnect(kj::mv(clientTransport), a, {b.pub});
    auto server = protocol::secureAccept(kj::mv(serverTransport), b, {a.pub});
    kj::Vector<kj::Promise<protocol::SecureConnection>> both;
    both.add(kj::mv(client));
    both.add(kj::mv(server));
    auto conns = kj::joinPromises(both.releaseAsArray()).wait(io.waitScope);
    std::vector<uint8_t> readBuffer(frameBytes);
    const size_t target = frames * frameBytes;
    const double c0 = threadCpuSeconds();
    const auto w0 = WallClock::now();
    auto writer = writeFrames(*conns[0].stream, payload, frames);
    auto reader = readAll(*conns[1].stream, readBuffer, target, 0);
    writer.wait(io.waitScope);
    const size_t got = reader.wait(io.waitScope);
    out.streamWallMBps = megabytes / secondsSince(w0);
    out.streamCpuMBps = megabytes / (threadCpuSeconds() - c0);
    if (got != target) return Status::internal("SecureStream bench: bytes lost");
    out.streamNote = "SecureStream::write of " + std::to_string(frameBytes / 1024) +
                     " KiB -> TCP 127.0.0.1 -> SecureStream::tryRead, writer and reader on one "
                     "KJ event loop (one thread)";
  } catch (const kj::Exception& e) {
    return Status::internal(std::string("SecureStream bench: ") + e.getDescription().cStr());
  }
  // The same with the writer and the reader each on its own thread and KJ event loop.
  {
    std::promise<uint16_t> portPromise;
    auto portFuture = portPromise.get_future();
    const size_t target = frames * frameBytes;
    std::string readerError, writerError;
    double readerCpu = 0, writerCpu = 0;
    size_t got = 0;
    const auto w0 = WallClock::now();
    std::thread reader([&]() {
      try {
        auto io = kj::setupAsyncIo();
        auto address = io.provider->getNetwork().parseAddress("127.0.0.1", 0).wait(io.waitScope);
        auto listener = address->listen();
        portPromise.set_value(static_cast<uint16_t>(listener->getPort()));
        auto transport = listener->accept().wait(io.waitScope);
        auto conn = protocol::secureAccept(kj::mv(transport), b, {a.pub}).wait(io.waitScope);
        std::vector<uint8_t> readBuffer(frameBytes);
        const double c0 = threadCpuSeconds();
        // Until end of stream (target + 1), so the writer's close frame is read before
        // this end goes away.
        got = readAll(*conn.stream, readBuffer, target + 1, 0).wait(io.waitScope);
        readerCpu = threadCpuSeconds() - c0;
      } catch (const kj::Exception& e) {
        readerError = e.getDescription().cStr();
        try {
          portPromise.set_value(0);
        } catch (const std::future_error&) {
        }
      }
    });
    std::thread writer([&]() {
      try {
        const uint16_t port = portFuture.get();
        if (port == 0) return;
        auto io = kj::setupAsyncIo();
        auto address = io.provider->getNetwork().parseAddress("127.0.0.1", port).wait(io.waitScope);
        auto transport = address->connect().wait(io.waitScope);
        auto conn = protocol::secureConnect(kj::mv(transport), a, {b.pub}).wait(io.waitScope);
        const double c0 = threadCpuSeconds();
        writeFrames(*conn.stream, payload, frames).wait(io.waitScope);
        conn.stream->end().wait(io.waitScope);
        writerCpu = threadCpuSeconds() - c0;
      } catch (const kj::Exception& e) {
        writerError = e.getDescription().cStr();
      }
    });
    writer.join();
    reader.join();
    if (!readerError.empty() || !writerError.empty()) {
      return Status::internal("SecureStream two-thread bench: " + readerError + " " + writerError);
    }
    if (got != target) return Status::internal("SecureStream two-thread bench: bytes lost");
    // Wall time includes the two handshakes (< 1 ms), negligible against the volume.
    out.stream2WallMBps = megabytes / secondsSince(w0);
    out.stream2WriterCpuMBps = megabytes / writerCpu;
    out.stream2ReaderCpuMBps = megabytes / readerCpu;
  }
  return out;
}

Result<std::vector<CostItem>> measureCostModel(const std::string& dictionaryToml,
                                               const std::string& queryText,
                                               const crypto::Identity& coordinator,
                                               const node::Members& members,
                                               const std::string& siteName, int iterations) {
  std::vector<CostItem> items;
  auto add = [&](std::string what, std::string perQuery,
                 const std::function<Status()>& f) -> Status {
    TM_ASSIGN_OR_RETURN(Medians m, medianUs(iterations, f));
    items.push_back({std::move(what), m.wallUs, m.cpuUs, std::move(perQuery)});
    return Status::ok();
  };

  TM_RETURN_IF_ERROR(
      add("kj::setupAsyncIo() + teardown (the coordinator's own event loop)", "1 per query", []() {
        auto io = kj::setupAsyncIo();
        return Status::ok();
      }));

  TM_ASSIGN_OR_RETURN(query::Query parsed, query::parseQuery(queryText));
  protocol::QueryRequestFields fields;
  fields.federation = members.federation;
  fields.study = "LUNG-7";
  fields.queryText = query::canonicalQueryText(parsed);
  fields.coordinatorKey = coordinator.pub;
  fields.audience = {coordinator.pub};
  fields.nonce = protocol::newNonce();
  fields.issuedAtMs = 1;
  fields.expiresAtMs = 2;
  TM_RETURN_IF_ERROR(add("newNonce (randombytes_buf, 16 B)", "1 per query", []() {
    auto n = protocol::newNonce();
    return n.empty() ? Status::internal("empty nonce") : Status::ok();
  }));
  protocol::SignedQueryBytes signedQuery;
  TM_RETURN_IF_ERROR(add("signQuery: canonical encoding + Ed25519 sign",
                         "1 per query (protocol v2: one signature for all sites)", [&]() {
                           signedQuery = protocol::signQuery(coordinator, fields);
                           return Status::ok();
                         }));
  TM_RETURN_IF_ERROR(add("verifySignedQuery: decode + canonical check + Ed25519 verify (site)",
                         "1 per site (on the site)",
                         [&]() { return protocol::verifySignedQuery(signedQuery).status(); }));

  {  // the primitives the handshake and the query signature are built from
    std::vector<uint8_t> message(200, 1), sig(crypto_sign_BYTES);
    std::vector<uint8_t> pk(crypto_sign_PUBLICKEYBYTES), sk(crypto_sign_SECRETKEYBYTES);
    crypto_sign_keypair(pk.data(), sk.data());
    TM_RETURN_IF_ERROR(add("primitive: Ed25519 sign (crypto_sign_detached, 200 B)", "", [&]() {
      crypto_sign_detached(sig.data(), nullptr, message.data(), message.size(), sk.data());
      return Status::ok();
    }));
    TM_RETURN_IF_ERROR(add("primitive: Ed25519 verify", "", [&]() {
      return crypto_sign_verify_detached(sig.data(), message.data(), message.size(), pk.data()) == 0
                 ? Status::ok()
                 : Status::internal("verify failed");
    }));
    std::vector<uint8_t> xs(crypto_scalarmult_SCALARBYTES, 3), xp(crypto_scalarmult_BYTES),
        shared(crypto_scalarmult_BYTES);
    crypto_scalarmult_base(xp.data(), xs.data());
    TM_RETURN_IF_ERROR(add("primitive: X25519 scalar multiplication", "", [&]() {
      return crypto_scalarmult(shared.data(), xs.data(), xp.data()) == 0
                 ? Status::ok()
                 : Status::internal("scalarmult failed");
    }));
    TM_RETURN_IF_ERROR(
        add("primitive: sodium_malloc(32) + sodium_free (mmap, mprotect, munmap)", "", []() {
          void* p = sodium_malloc(32);
          if (p == nullptr) return Status::resourceExhausted("sodium_malloc");
          sodium_free(p);
          return Status::ok();
        }));
  }

  const crypto::Identity peer = crypto::generateIdentity();
  TM_RETURN_IF_ERROR(add("handshake crypto, both sides (X25519 + 2 signs + 2 verifies)",
                         "1 per site (split between coordinator and site)", [&]() {
                           std::optional<crypto::Session> rs;
                           return sessionPairHalf(coordinator, peer, rs).status();
                         }));

  TM_ASSIGN_OR_RETURN(storage::Dictionary dict,
                      storage::Dictionary::parseToml(dictionaryToml, "dictionary"));
  TM_RETURN_IF_ERROR(
      add("Dictionary::toToml (site, every answer)", "1 per site (on the site)", [&]() {
        std::string t = dict.toToml();
        return t.empty() ? Status::internal("empty") : Status::ok();
      }));
  TM_RETURN_IF_ERROR(add(
      "Dictionary::parseToml + hashHex of the shipped dictionary "
      "(" +
          std::to_string(dictionaryToml.size()) + " B TOML)",
      "1 per query (first answer)", [&]() {
        TM_ASSIGN_OR_RETURN(auto d, storage::Dictionary::parseToml(dictionaryToml, "dictionary"));
        return d.hashHex().empty() ? Status::internal("no hash") : Status::ok();
      }));
  TM_RETURN_IF_ERROR(add("Dictionary::hashHex alone", "1 per site", [&]() {
    return dict.hashHex().empty() ? Status::internal("no hash") : Status::ok();
  }));
  TM_RETURN_IF_ERROR(add("parseQuery + bindQuery", "1 per query (+1 per site on the site)", [&]() {
    TM_ASSIGN_OR_RETURN(query::Query q, query::parseQuery(queryText));
    return query::bindQuery(q, dict).status();
  }));
  TM_RETURN_IF_ERROR(
      add("fetchSiteInfo to one running site: event loop + TCP connect + "
          "handshake + one RPC round trip + close, no scan",
          "the floor of one query over a fresh connection", [&]() {
            return node::fetchSiteInfo(coordinator, members, siteName, std::chrono::seconds(5))
                .status();
          }));
  {
    node::CoordinatorSession session(coordinator, members);
    TM_RETURN_IF_ERROR(session.siteInfo(siteName, std::chrono::seconds(5)).status());
    TM_RETURN_IF_ERROR(
        add("Site.info over an open CoordinatorSession connection: hand-off to the "
            "session thread + one RPC round trip, no scan",
            "the floor of one query over an open session",
            [&]() { return session.siteInfo(siteName, std::chrono::seconds(5)).status(); }));
  }
  return items;
}

}  // namespace trialmesh::bench
