#include "node/ops/metrics.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <map>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace trialmesh::ops {
namespace {

TEST(MetricsRender, ExactTextForSmallRegistry) {
  Registry registry;
  Counter& first =
      registry.counter("app_requests_total", "Requests handled.\nSecond line with \\ backslash.",
                       {{"path", "/a\"b\\c\nd"}, {"code", "200"}});
  Counter& second = registry.counter("app_requests_total", "help of later calls is ignored",
                                     {{"path", "/plain"}, {"code", "500"}});
  first.inc(3);
  second.inc();
  registry.gauge("app_temperature_celsius", "Temperature.").set(-2.5);
  Histogram& latency =
      registry.histogram("app_latency_seconds", "Latency.", {0.25, 0.5, 1}, {{"op", "scan"}});
  // Dyadic values so the sum is exact: 0.0625 + 0.25 + 0.5 + 0.75 + 2 = 3.5625.
  for (double v : {0.0625, 0.25, 0.5, 0.75, 2.0}) latency.observe(v);

  const std::string expected = R"(# HELP app_latency_seconds Latency.
# TYPE app_latency_seconds histogram
app_latency_seconds_bucket{op="scan",le="0.25"} 2
app_latency_seconds_bucket{op="scan",le="0.5"} 3
app_latency_seconds_bucket{op="scan",le="1"} 4
app_latency_seconds_bucket{op="scan",le="+Inf"} 5
app_latency_seconds_sum{op="scan"} 3.5625
app_latency_seconds_count{op="scan"} 5
# HELP app_requests_total Requests handled.\nSecond line with \\ backslash.
# TYPE app_requests_total counter
app_requests_total{path="/a\"b\\c\nd",code="200"} 3
app_requests_total{path="/plain",code="500"} 1
# HELP app_temperature_celsius Temperature.
# TYPE app_temperature_celsius gauge
app_temperature_celsius -2.5
)";
  EXPECT_EQ(registry.render(), expected);
}

TEST(MetricsRender, EmptyHistogramWithoutLabelsRendersZeros) {
  Registry registry;
  registry.histogram("h_seconds", "H.", {1, 2});
  EXPECT_EQ(registry.render(),
            "# HELP h_seconds H.\n# TYPE h_seconds histogram\n"
            "h_seconds_bucket{le=\"1\"} 0\nh_seconds_bucket{le=\"2\"} 0\n"
            "h_seconds_bucket{le=\"+Inf\"} 0\nh_seconds_sum 0\nh_seconds_count 0\n");
}

TEST(MetricsRender, FormatsValuesLikePrometheusClients) {
  EXPECT_EQ(formatMetricValue(0), "0");
  EXPECT_EQ(formatMetricValue(1), "1");
  EXPECT_EQ(formatMetricValue(2.5), "2.5");
  EXPECT_EQ(formatMetricValue(0.0005), "0.0005");
  EXPECT_EQ(formatMetricValue(-3), "-3");
  EXPECT_EQ(formatMetricValue(1795000000), "1795000000");
  EXPECT_EQ(formatMetricValue(1795000000.25), "1795000000.25");
  EXPECT_EQ(formatMetricValue(1e-7), "1e-07");
  EXPECT_EQ(formatMetricValue(1e21), "1e+21");
  EXPECT_EQ(formatMetricValue(INFINITY), "+Inf");
  EXPECT_EQ(formatMetricValue(-INFINITY), "-Inf");
  EXPECT_EQ(formatMetricValue(NAN), "NaN");
  // Every output parses back to the same double.
  for (double v : {0.1, 1.0 / 3, 123456.789, 6.02e23, 1e-300}) {
    EXPECT_EQ(std::stod(formatMetricValue(v)), v) << formatMetricValue(v);
  }
}

TEST(Histogram, BucketsAreUpperInclusiveAndNanIsIgnored) {
  Histogram h({1, 2, 4});
  for (double v : {-1.0, 1.0, 1.5, 2.0, 4.0, 4.5, 100.0, std::nan("")}) h.observe(v);
  EXPECT_EQ(h.bucketCounts(), (std::vector<std::uint64_t>{2, 2, 1, 2}));
  EXPECT_EQ(h.count(), 7u);
  EXPECT_EQ(h.sum(), -1.0 + 1.0 + 1.5 + 2.0 + 4.0 + 4.5 + 100.0);
  h.observeDuration(std::chrono::milliseconds(1500));
  EXPECT_EQ(h.bucketCounts()[1], 3u);
}

TEST(Registry, SameNameAndLabelsReturnSameSeries) {
  Registry registry;
  Counter& a = registry.counter("x_total", "X.", {{"k", "v"}});
  Counter& b = registry.counter("x_total", "X.", {{"k", "v"}});
  Counter& c = registry.counter("x_total", "X.", {{"k", "w"}});
  EXPECT_EQ(&a, &b);
  EXPECT_NE(&a, &c);
  Histogram& h1 = registry.histogram("y_seconds", "Y.", {1}, {{"op", "a"}});
  Histogram& h2 = registry.histogram("y_seconds", "Y.", {1}, {{"op", "a"}});
  EXPECT_EQ(&h1, &h2);
}

TEST(Registry, RejectsMisuseWithMessages) {
  Registry registry;
  registry.counter("x_total", "X.", {{"k", "v"}});
  auto expectThrow = [](auto&& fn, const std::string& fragment) {
    try {
      fn();
      ADD_FAILURE() << "expected std::logic_error containing '" << fragment << "'";
    } catch (const std::logic_error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  expectThrow([&] { registry.counter("9bad", "B."); }, "invalid metric name '9bad'");
  expectThrow([&] { registry.counter("bad-name", "B."); }, "invalid metric name");
  expectThrow([&] { registry.gauge("x_total", "X."); }, "already registered as a counter");
  expectThrow([&] { registry.counter("x_total", "X.", {{"other", "v"}}); }, "label names differ");
  expectThrow(
      [&] {
        registry.counter("z_total", "Z.", {{"__reserved", "v"}});
      },
      "invalid label name '__reserved'");
  expectThrow(
      [&] {
        registry.counter("z_total", "Z.", {{"a", "1"}, {"a", "2"}});
      },
      "label 'a' given twice");
  expectThrow([&] { registry.histogram("h", "H.", {1}, {{"le", "1"}}); }, "'le' is reserved");
  expectThrow([&] { registry.histogram("h", "H.", {2, 1}); }, "strictly increasing");
  expectThrow([&] { registry.histogram("h", "H.", {1, INFINITY}); }, "finite");
  registry.histogram("h2", "H.", {1, 2}, {{"op", "a"}});
  expectThrow([&] { registry.histogram("h2", "H.", {1, 3}, {{"op", "b"}}); }, "bounds differ");
}

TEST(MetricsConcurrency, IncrementsFromSeveralThreadsSumExactly) {
  Registry registry;
  Counter& counter = registry.counter("c_total", "C.");
  Gauge& gauge = registry.gauge("g", "G.");
  Histogram& histogram = registry.histogram("h_seconds", "H.", {0.5, 1, 2});
  constexpr int kThreads = 4;
  constexpr int kPerThread = 50'000;
  // Values chosen per (thread, i) and exactly representable, so the sum is exact.
  auto valueFor = [](int t, int i) { return static_cast<double>((t + i) % 5) * 0.5; };

  std::atomic<bool> done{false};
  std::atomic<int> inconsistentScrapes{0};
  std::thread scraper([&] {
    // Scrapes while writers run: every rendering must have +Inf bucket == _count.
    std::regex inf(R"(h_seconds_bucket\{le="\+Inf"\} (\d+))");
    std::regex count(R"(h_seconds_count (\d+))");
    while (!done.load()) {
      std::string text = registry.render();
      std::smatch a;
      std::smatch b;
      if (!std::regex_search(text, a, inf) || !std::regex_search(text, b, count) || a[1] != b[1]) {
        inconsistentScrapes++;
      }
    }
  });
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        counter.inc();
        gauge.add(2);
        gauge.dec();
        histogram.observe(valueFor(t, i));
      }
    });
  }
  for (auto& w : writers) w.join();
  done = true;
  scraper.join();

  // Naive expectation computed independently of the histogram code.
  std::vector<std::uint64_t> expectedBuckets(4, 0);
  double expectedSum = 0;
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      double v = valueFor(t, i);
      expectedSum += v;
      if (v <= 0.5) {
        expectedBuckets[0]++;
      } else if (v <= 1) {
        expectedBuckets[1]++;
      } else if (v <= 2) {
        expectedBuckets[2]++;
      } else {
        expectedBuckets[3]++;
      }
    }
  }
  EXPECT_EQ(counter.value(), std::uint64_t{kThreads} * kPerThread);
  EXPECT_EQ(gauge.value(), static_cast<double>(kThreads) * kPerThread);
  EXPECT_EQ(histogram.bucketCounts(), expectedBuckets);
  EXPECT_EQ(histogram.count(), std::uint64_t{kThreads} * kPerThread);
  EXPECT_EQ(histogram.sum(), expectedSum);
  EXPECT_EQ(inconsistentScrapes.load(), 0);
}

// Checks every line against the exposition grammar, independently of the renderer.
void expectValidExposition(const std::string& text) {
  std::regex comment(R"(# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .*)");
  std::regex sample(
      R"([a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*")*\})? (-?[0-9.e+-]+|\+Inf|-Inf|NaN))");
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    EXPECT_TRUE(std::regex_match(line, comment) || std::regex_match(line, sample)) << line;
  }
}

TEST(NodeMetrics, RegistersTheStandardSet) {
  Registry registry;
  auto start = std::chrono::system_clock::time_point(std::chrono::seconds(1795000000));
  NodeMetrics metrics(registry, start);
  metrics.up.set(1);
  metrics.queriesServed.inc(3);
  metrics.queriesRefused(RefusalReason::kReplay).inc(2);
  metrics.peerFailures(PeerFailureKind::kFrame).inc();
  metrics.rowsScanned.inc(12345);
  metrics.queryLatencySeconds.observe(0.003);
  {
    GaugeGuard connection(metrics.openConnections);
    GaugeGuard moved(std::move(connection));
    EXPECT_EQ(metrics.openConnections.value(), 1);
  }
  EXPECT_EQ(metrics.openConnections.value(), 0);
  metrics.openConnections.inc();

  std::string text = registry.render();
  expectValidExposition(text);
  for (const char* line : {
           "# TYPE trialmesh_queries_served_total counter\n",
           "trialmesh_queries_served_total 3\n",
           "trialmesh_queries_refused_total{reason=\"signature\"} 0\n",
           "trialmesh_queries_refused_total{reason=\"membership\"} 0\n",
           "trialmesh_queries_refused_total{reason=\"freshness\"} 0\n",
           "trialmesh_queries_refused_total{reason=\"replay\"} 2\n",
           "trialmesh_queries_refused_total{reason=\"limit\"} 0\n",
           "trialmesh_queries_refused_total{reason=\"invalid\"} 0\n",
           "trialmesh_queries_refused_total{reason=\"ethics\"} 0\n",
           "trialmesh_queries_refused_total{reason=\"error\"} 0\n",
           "# TYPE trialmesh_query_latency_seconds histogram\n",
           "trialmesh_query_latency_seconds_bucket{le=\"0.002\"} 0\n",
           "trialmesh_query_latency_seconds_bucket{le=\"0.005\"} 1\n",
           "trialmesh_query_latency_seconds_bucket{le=\"10\"} 1\n",
           "trialmesh_query_latency_seconds_count 1\n",
           "trialmesh_rows_scanned_total 12345\n",
           "# TYPE trialmesh_open_connections gauge\n",
           "trialmesh_open_connections 1\n",
           "trialmesh_queries_in_flight 0\n",
           "trialmesh_peer_failures_total{kind=\"handshake\"} 0\n",
           "trialmesh_peer_failures_total{kind=\"frame\"} 1\n",
           "trialmesh_peer_failures_total{kind=\"disconnect\"} 0\n",
           "trialmesh_up 1\n",
           "trialmesh_start_time_seconds 1795000000\n",
           "# TYPE trialmesh_surveillance_alerts_total counter\n",
           "trialmesh_surveillance_alerts_total 0\n",
       }) {
    EXPECT_NE(text.find(line), std::string::npos) << "missing: " << line << "in:\n" << text;
  }
  // 14 finite buckets + the +Inf bucket.
  std::size_t bucketLines = 0;
  for (std::size_t pos = 0;
       (pos = text.find("trialmesh_query_latency_seconds_bucket", pos)) != std::string::npos;
       ++pos) {
    ++bucketLines;
  }
  EXPECT_EQ(bucketLines, kLatencyBucketsSeconds.size() + 1);

  // A reason added at run time lands in the same family.
  registry.counter("trialmesh_queries_refused_total", "", {{"reason", "quota"}}).inc();
  EXPECT_NE(registry.render().find("trialmesh_queries_refused_total{reason=\"quota\"} 1\n"),
            std::string::npos);
}

}  // namespace
}  // namespace trialmesh::ops
