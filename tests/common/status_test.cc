#include "common/status.h"

#include <gtest/gtest.h>

#include <string>

namespace trialmesh {
namespace {

Result<int> parsePositive(int v) {
  if (v <= 0) return Status::invalidArgument("value " + std::to_string(v) + " is not positive");
  return v;
}

Result<int> doubled(int v) {
  TM_ASSIGN_OR_RETURN(int x, parsePositive(v));
  return 2 * x;
}

Status check(int v) {
  TM_RETURN_IF_ERROR(parsePositive(v).status());
  return Status::ok();
}

TEST(StatusTest, OkHasNoMessage) {
  Status s;
  EXPECT_TRUE(s.isOk());
  EXPECT_EQ(s.toString(), "OK");
}

TEST(StatusTest, ErrorCarriesCodeAndMessage) {
  Status s = Status::notFound("dataset 'trial' does not exist");
  EXPECT_FALSE(s.isOk());
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.toString(), "NotFound: dataset 'trial' does not exist");
  EXPECT_EQ(s.withContext("store /srv/tm").message(),
            "store /srv/tm: dataset 'trial' does not exist");
  EXPECT_EQ(s.withContext("x").code(), StatusCode::kNotFound);
}

TEST(StatusTest, ResultPropagatesThroughMacros) {
  auto ok = doubled(21);
  ASSERT_TRUE(ok.isOk());
  EXPECT_EQ(*ok, 42);
  auto bad = doubled(-1);
  ASSERT_FALSE(bad.isOk());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), "value -1 is not positive");
  EXPECT_TRUE(check(3).isOk());
  EXPECT_EQ(check(0).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace trialmesh
