// A coordinator's connection to one site (secure stream, Cap'n Proto RPC on top) and the
// steps of opening one, shared by the coordinator session (node/coordinator.cc) and the
// one-shot calls to a single site (node/site_calls.cc). Internal to node/.
//
// Thread-safety: a ClientConnection belongs to the KJ event loop that opened it.
#pragma once

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include <memory>
#include <string>

#include "crypto/identity.h"
#include "node/config.h"
#include "protocol/messages.h"
#include "protocol/secure_stream.h"
#include "protocol/trialmesh.capnp.h"

namespace trialmesh::node::detail {

namespace wire = protocol::wire;

// A client connection to one site: secure stream, RPC on top.
struct ClientConnection {
  ClientConnection(kj::Own<protocol::SecureStream> s, capnp::ReaderOptions options,
                   const crypto::PublicKey& peerKey)
      : peer(peerKey),
        stream(kj::mv(s)),
        network(*stream, capnp::rpc::twoparty::Side::CLIENT, options),
        rpc(capnp::makeRpcClient(network)) {}

  wire::Site::Client bootstrap() {
    capnp::MallocMessageBuilder message(8);
    auto vatId = message.initRoot<capnp::rpc::twoparty::VatId>();
    vatId.setSide(capnp::rpc::twoparty::Side::SERVER);
    return rpc.bootstrap(vatId).castAs<wire::Site>();
  }

  // The key the site authenticated with (during a rotation, possibly its previous key).
  crypto::PublicKey peer;
  kj::Own<protocol::SecureStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
};

enum class Stage { kConnect, kHandshake, kRpc };

inline kj::Promise<kj::Own<ClientConnection>> connectSite(kj::AsyncIoContext& io,
                                                          const crypto::Identity& identity,
                                                          const Member& site,
                                                          uint64_t maxMessageBytes,
                                                          std::shared_ptr<Stage> stage) {
  *stage = Stage::kConnect;
  return io.provider->getNetwork()
      .parseAddress(site.address)
      .then([](kj::Own<kj::NetworkAddress> address) {
        auto connected = address->connect();
        return connected.attach(kj::mv(address));
      })
      .then([&identity, keys = site.allKeys(), stage](kj::Own<kj::AsyncIoStream> transport) {
        *stage = Stage::kHandshake;
        return protocol::secureConnect(kj::mv(transport), identity, keys);
      })
      .then([maxMessageBytes, stage, site](protocol::SecureConnection sc) {
        // Any key the members file lists for the site passes the handshake (during a key
        // rotation it may still run on its previous key); a retired or revoked one is refused
        // here, with the reason.
        Status key = site.checkKeyAt(sc.peer, nowUnixMs(), "site " + site.address);
        if (!key.isOk()) throw protocol::statusToException(key);
        *stage = Stage::kRpc;
        return kj::heap<ClientConnection>(kj::mv(sc.stream),
                                          protocol::peerReaderOptions(maxMessageBytes), sc.peer);
      });
}

// Ends the conversation cleanly: lets the RPC system send its last messages, then sends the
// channel's close frame so the site does not log a truncated stream.
template <typename T>
kj::Promise<T> closeAfter(ClientConnection& conn, T value) {
  auto holder = kj::heap<T>(kj::mv(value));
  T* p = holder.get();
  return kj::evalLater([&conn]() { return conn.stream->end(); })
      .then([]() {}, [](kj::Exception&&) {})
      .then([p]() { return kj::mv(*p); })
      .attach(kj::mv(holder));
}

inline std::string describeFailure(Stage stage, const Member& site, const kj::Exception& e) {
  const Status s = protocol::exceptionToStatus(e);
  switch (stage) {
    case Stage::kConnect:
      return "cannot connect to " + site.address + ": " + std::string(e.getDescription().cStr());
    case Stage::kHandshake:
      return "secure channel to " + site.address + " failed: " + s.toString();
    case Stage::kRpc:
      break;
  }
  return "connection lost during the query: " + s.toString();
}

}  // namespace trialmesh::node::detail
