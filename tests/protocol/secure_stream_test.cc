#include "protocol/secure_stream.h"

#include <gtest/gtest.h>
#include <kj/async-io.h>

#include <memory>
#include <string>
#include <vector>

#include "protocol/messages.h"

namespace trialmesh::protocol {
namespace {

struct Pair {
  SecureConnection client;
  SecureConnection server;
};

class SecureStreamTest : public ::testing::Test {
 protected:
  SecureStreamTest() : ioOwner_(std::make_unique<kj::AsyncIoContext>(kj::setupAsyncIo())) {}

  // Handshake over an in-process pipe; both sides run concurrently (a two-way pipe blocks a
  // writer until the other side reads).
  Pair connect(std::vector<crypto::PublicKey> serverAccepts) {
    auto pipe = kj::newTwoWayPipe();
    auto c = secureConnect(kj::mv(pipe.ends[0]), client_, {server_.pub});
    auto s = secureAccept(kj::mv(pipe.ends[1]), server_, std::move(serverAccepts),
                          [this](const Status& st) { serverFailures_.push_back(st); });
    auto both = c.then([s = kj::mv(s)](SecureConnection cc) mutable {
      return s.then([cc = kj::mv(cc)](SecureConnection sc) mutable {
        return Pair{kj::mv(cc), kj::mv(sc)};
      });
    });
    return both.wait(io_.waitScope);
  }

  // Held by pointer: its destructor is noexcept(false), a gtest fixture's must not be.
  std::unique_ptr<kj::AsyncIoContext> ioOwner_;
  kj::AsyncIoContext& io_ = *ioOwner_;
  crypto::Identity client_ = crypto::generateIdentity();
  crypto::Identity server_ = crypto::generateIdentity();
  std::vector<Status> serverFailures_;
};

TEST_F(SecureStreamTest, CarriesLargeWritesSplitIntoFramesAndEndsCleanly) {
  Pair p = connect({client_.pub});
  EXPECT_EQ(p.server.peer, client_.pub);
  EXPECT_EQ(p.client.peer, server_.pub);
  // 2.5 MiB in two pieces: more than two frames of kMaxFramePlaintextBytes.
  std::vector<kj::byte> a(1'500'000), b(1'121'440);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<kj::byte>(i * 7);
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<kj::byte>(i * 13 + 1);
  kj::ArrayPtr<const kj::byte> pieces[] = {kj::arrayPtr(a.data(), a.size()),
                                           kj::arrayPtr(b.data(), b.size())};
  auto write = p.client.stream->write(kj::arrayPtr(pieces, 2)).then([&]() {
    return p.client.stream->end();
  });
  std::vector<kj::byte> got(a.size() + b.size() + 10);
  auto read = p.server.stream->tryRead(got.data(), got.size(), got.size());
  write.wait(io_.waitScope);
  size_t n = read.wait(io_.waitScope);
  ASSERT_EQ(n, a.size() + b.size());  // EOF after the close frame ends the read
  EXPECT_TRUE(std::equal(a.begin(), a.end(), got.begin()));
  EXPECT_TRUE(std::equal(b.begin(), b.end(), got.begin() + a.size()));
  EXPECT_TRUE(serverFailures_.empty());
}

TEST_F(SecureStreamTest, EndWithoutCloseFrameIsTruncationAndReported) {
  Pair p = connect({client_.pub});
  const std::string msg = "hello";
  auto write = p.client.stream->write(msg.data(), msg.size());
  char buf[16];
  auto read = p.server.stream->tryRead(buf, 5, 5);
  write.wait(io_.waitScope);
  ASSERT_EQ(read.wait(io_.waitScope), 5u);
  p.client.stream = nullptr;  // drops the transport without a close frame
  auto next = p.server.stream->tryRead(buf, 1, sizeof(buf));
  try {
    next.wait(io_.waitScope);
    FAIL() << "expected the truncated stream to fail";
  } catch (const kj::Exception& e) {
    EXPECT_EQ(e.getType(), kj::Exception::Type::DISCONNECTED);
    EXPECT_NE(std::string(e.getDescription().cStr()).find("truncated"), std::string::npos);
  }
  ASSERT_EQ(serverFailures_.size(), 1u);
  EXPECT_NE(serverFailures_[0].message().find("truncated"), std::string::npos);
}

TEST_F(SecureStreamTest, UnknownInitiatorIsRefusedDuringHandshake) {
  auto pipe = kj::newTwoWayPipe();
  auto c = secureConnect(kj::mv(pipe.ends[0]), client_, {server_.pub});
  // The server accepts someone else only.
  auto s = secureAccept(kj::mv(pipe.ends[1]), server_, {crypto::generateIdentity().pub});
  std::string serverError, clientError;
  auto sDone = s.then([](SecureConnection) {},
                      [&](kj::Exception&& e) { serverError = e.getDescription().cStr(); });
  sDone.wait(io_.waitScope);
  EXPECT_NE(serverError.find("is not a member"), std::string::npos) << serverError;
  EXPECT_NE(serverError.find(client_.pub.toText()), std::string::npos) << serverError;
  // The server dropped its end: the client learns the handshake was refused.
  try {
    c.wait(io_.waitScope);
    FAIL() << "client handshake should fail";
  } catch (const kj::Exception& e) {
    clientError = e.getDescription().cStr();
  }
  EXPECT_NE(clientError.find("handshake"), std::string::npos) << clientError;
}

}  // namespace
}  // namespace trialmesh::protocol
