// MessageSizeGuard (issue #12 item 6): a message within the limit passes through unchanged and
// reads back with Cap'n Proto's own reader; a segment table announcing more than the limit
// (or too many segments) is reported once with its size and fails the read.
#include "protocol/message_size_guard.h"

#include <capnp/message.h>
#include <capnp/serialize-async.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>

#include <memory>

#include "protocol/messages.h"

namespace trialmesh::protocol {
namespace {

struct Report {
  uint64_t announced = 0, limit = 0, segments = 0;
  int calls = 0;
};

class MessageSizeGuardTest : public ::testing::Test {
 protected:
  // Held by pointer: KJ's destructors are noexcept(false), which a gtest fixture's may not be.
  std::unique_ptr<kj::AsyncIoContext> ctx_ =
      std::make_unique<kj::AsyncIoContext>(kj::setupAsyncIo());
  std::unique_ptr<kj::TwoWayPipe> pipe_ = std::make_unique<kj::TwoWayPipe>(kj::newTwoWayPipe());
  kj::WaitScope& ws_ = ctx_->waitScope;
  // A write into KJ's in-memory pipe completes only as the other end reads, so writes are left
  // pending while the guard reads.
  std::vector<kj::Promise<void>> pending_;
  Report report_;
  MessageSizeGuard guard(uint64_t maxMessageBytes) {
    return MessageSizeGuard(*pipe_->ends[1], maxMessageBytes,
                            [this](uint64_t announced, uint64_t limit, uint64_t segments) {
                              report_ = {announced, limit, segments, report_.calls + 1};
                            });
  }
  void send(const std::vector<uint8_t>& bytes) {
    auto copy = kj::heapArray<kj::byte>(bytes.data(), bytes.size());
    auto write = pipe_->ends[0]->write(copy.begin(), copy.size());
    pending_.push_back(write.attach(kj::mv(copy)));
  }
};

TEST_F(MessageSizeGuardTest, MessagesWithinTheLimitPassUnchanged) {
  auto g = guard(64 << 10);
  // Two real messages, one of several segments, written by Cap'n Proto.
  for (int round = 0; round < 2; ++round) {
    capnp::MallocMessageBuilder builder(round == 0 ? 1024 : 8,
                                        capnp::AllocationStrategy::FIXED_SIZE);
    auto list = builder.initRoot<capnp::List<uint64_t>>(2000);  // 16 KB, several segments
    for (unsigned i = 0; i < list.size(); ++i) list.set(i, i * 7);
    auto write = capnp::writeMessage(*pipe_->ends[0], builder);
    auto reader = capnp::readMessage(g, peerReaderOptions(64 << 10)).wait(ws_);
    write.wait(ws_);
    auto back = reader->getRoot<capnp::List<uint64_t>>();
    ASSERT_EQ(back.size(), 2000u);
    EXPECT_EQ(back[1999], 1999u * 7);
  }
  EXPECT_EQ(report_.calls, 0);
}

TEST_F(MessageSizeGuardTest, OversizedTableIsReportedAndFailsTheRead) {
  auto g = guard(64 << 10);
  // One segment of 2^24 words (128 MiB): the table alone, as a flooding peer would send it.
  send({0, 0, 0, 0, 0, 0, 0, 1});
  char buf[64];
  try {
    g.tryRead(buf, 8, sizeof buf).wait(ws_);
    FAIL() << "read passed an oversized message";
  } catch (const kj::Exception& e) {
    EXPECT_EQ(e.getType(), kj::Exception::Type::DISCONNECTED);
    EXPECT_NE(std::string(e.getDescription().cStr())
                  .find("message of 134217728 bytes, more than the 65536 this node reads "
                        "(limits.max_message_bytes)"),
              std::string::npos)
        << e.getDescription().cStr();
  }
  EXPECT_EQ(report_.calls, 1);
  EXPECT_EQ(report_.announced, 134217728u);
  EXPECT_EQ(report_.limit, 65536u);
  // Later reads fail the same way without reporting again.
  EXPECT_ANY_THROW(g.tryRead(buf, 1, sizeof buf).wait(ws_));
  EXPECT_EQ(report_.calls, 1);
}

TEST_F(MessageSizeGuardTest, JustOverTheLimitAcrossSegmentsAndSplitReadsIsCaught) {
  auto g = guard(64 << 10);  // 8192 words
  // Three segments of 4096 + 4096 + 1 words; the table arrives one byte at a time.
  const std::vector<uint8_t> table = {2, 0, 0, 0, 0, 0x10, 0, 0, 0, 0x10, 0, 0, 1, 0, 0, 0};
  char buf[16];
  bool threw = false;
  for (size_t i = 0; i < table.size() && !threw; ++i) {
    send({table[i]});
    try {
      g.tryRead(buf, 1, 1).wait(ws_);
    } catch (const kj::Exception&) {
      threw = true;
    }
  }
  EXPECT_TRUE(threw);
  EXPECT_EQ(report_.announced, 8193u * 8);
  EXPECT_EQ(report_.segments, 3u);
}

TEST_F(MessageSizeGuardTest, TooManySegmentsIsCaught) {
  auto g = guard(64 << 10);
  send({0xff, 0x01, 0, 0, 0, 0, 0, 0});  // 512 segments
  char buf[8];
  EXPECT_ANY_THROW(g.tryRead(buf, 8, 8).wait(ws_));
  EXPECT_EQ(report_.calls, 1);
  EXPECT_EQ(report_.segments, 512u);
  EXPECT_EQ(report_.announced, 0u);
}

}  // namespace
}  // namespace trialmesh::protocol
