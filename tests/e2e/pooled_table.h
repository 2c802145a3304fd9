// The pooled answer an e2e test compares a federated one with: `text` run on every site's store
// in this process and merged, as if the rows were in one place. The nodes must be stopped first
// (one process per RocksDB store).
#pragma once

#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "node/local_federation.h"
#include "query/engine.h"
#include "query/partial.h"
#include "storage/store.h"

namespace trialmesh::node::testing {

inline query::ResultTable pooledTable(const LocalFederation& fed, const std::string& text) {
  std::optional<query::PartialResult> merged;
  std::optional<query::BoundQuery> bound;
  for (size_t i = 0; i < fed.siteCount(); ++i) {
    storage::StoreOptions so;
    so.createIfMissing = false;
    auto store = storage::Store::open(fed.siteDirectory(i) + "/store", so);
    EXPECT_TRUE(store.isOk()) << store.status().toString();
    if (!store.isOk()) return {};
    auto source = (*store)->openDataset(LocalFederation::kDataset);
    EXPECT_TRUE(source.isOk()) << source.status().toString();
    if (!source.isOk()) return {};
    auto b = query::bindQuery(*query::parseQuery(text), (*source)->dictionary());
    EXPECT_TRUE(b.isOk()) << b.status().toString();
    if (!b.isOk()) return {};
    auto p = query::execute(*b, **source, {});
    EXPECT_TRUE(p.isOk()) << p.status().toString();
    if (!p.isOk()) return {};
    if (!merged) {
      merged = *p;
      bound = *b;
    } else {
      EXPECT_TRUE(query::mergeInto(*merged, *p).isOk());
    }
  }
  if (!merged) return {};
  auto t = query::finalize(*merged, *bound);
  EXPECT_TRUE(t.isOk()) << t.status().toString();
  return t.isOk() ? *t : query::ResultTable{};
}

}  // namespace trialmesh::node::testing
