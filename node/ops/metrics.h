// Metrics for the node's /metrics endpoint: counters, gauges and fixed-bucket histograms kept in
// a Registry that renders the Prometheus text exposition format 0.0.4.
//
// Usage: create one Registry per process, register every series at startup (NodeMetrics does
// this for the node's standard set), keep the returned references and update them from any
// thread. Updates (inc, set, add, observe) are lock-free atomics, so they are cheap on the query
// path; registration and render() take the registry's mutex.
//
// Ownership: the Registry owns every metric; references it hands out stay valid for the
// Registry's lifetime. Registering an invalid name, a name already used by another metric type
// or a label set that does not match the family is a programming error and throws
// std::logic_error (names are constants in our code, never outside input).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace trialmesh::ops {

// Label name/value pairs of one series, in the order they are rendered. Every series of one
// family must use the same label names in the same order.
using Labels = std::vector<std::pair<std::string, std::string>>;

// A monotonically increasing count (Prometheus "counter"). Thread-safe, lock-free.
class Counter {
 public:
  void inc(std::uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

// A value that goes up and down (Prometheus "gauge"). Holds a double, which represents every
// integer up to 2^53 exactly, so it serves integer gauges (open connections) as well.
// Thread-safe, lock-free.
class Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void add(double delta);
  void inc() { add(1.0); }
  void dec() { add(-1.0); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Counts observations into fixed buckets (Prometheus "histogram"). Bucket upper bounds are set
// at registration; an implicit +Inf bucket catches the rest. observe() is lock-free.
// NaN observations are ignored (they would make _sum NaN forever).
class Histogram {
 public:
  // REQUIRES: bounds finite and strictly increasing (checked by Registry::histogram).
  explicit Histogram(std::vector<double> bounds);

  void observe(double v);
  // Convenience for latencies: records the duration in seconds.
  template <typename Rep, typename Period>
  void observeDuration(std::chrono::duration<Rep, Period> d) {
    observe(std::chrono::duration<double>(d).count());
  }

  const std::vector<double>& bounds() const { return bounds_; }
  // Per-bucket (not cumulative) counts; size bounds().size() + 1, the last is the +Inf bucket.
  std::vector<std::uint64_t> bucketCounts() const;
  // Total number of observations (sum of bucketCounts()).
  std::uint64_t count() const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;
  std::atomic<double> sum_{0.0};
};

// Latency buckets in seconds, from 0.5 ms to 10 s.
inline constexpr std::array<double, 14> kLatencyBucketsSeconds = {
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

// Owns metrics by name and renders them. Thread-safe.
class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Returns the series `name{labels}`, creating it (and its family, with `help`) on first use.
  // Calling again with the same name and labels returns the same object, so a new label value
  // (for instance a new refusal reason) can be added at run time.
  Counter& counter(std::string_view name, std::string_view help, const Labels& labels = {});
  Gauge& gauge(std::string_view name, std::string_view help, const Labels& labels = {});
  // `bounds` must match the family's bounds when the family already exists.
  Histogram& histogram(std::string_view name, std::string_view help, std::vector<double> bounds,
                       const Labels& labels = {});

  // The whole registry in Prometheus text format 0.0.4: families sorted by name, series sorted
  // by label values, each family introduced by "# HELP" and "# TYPE" lines.
  std::string render() const;

 private:
  struct Family;
  Family& family(std::string_view name, std::string_view help, int type, const Labels& labels);

  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Family>, std::less<>> families_;
};

// Formats a sample value the way Prometheus clients do: "+Inf", "-Inf", "NaN", plain decimals
// for ordinary magnitudes ("0.0005", "2.5", "1795000000"), exponent form otherwise ("1e-07").
std::string formatMetricValue(double v);

// Why a site refused a query; the `reason` label of trialmesh_queries_refused_total. To add a
// reason, add an enumerator before kCount and its label in refusalReasonLabel().
enum class RefusalReason {
  kSignature,   // the coordinator's signature did not verify
  kMembership,  // the signer is not a member, or not a coordinator of the study
  kFreshness,   // the query expired or is not yet valid
  kReplay,      // the nonce was seen before
  kLimit,       // a size/concurrency limit was hit
  kInvalid,     // the query failed to parse or names unknown data
  kEthics,      // no ethics approval covers the query (docs/ethics.md)
  kError,       // an internal or storage error while answering
  kCount,
};
const char* refusalReasonLabel(RefusalReason reason);

// Why a request or connection was refused BEFORE the ethics check (issue #12 item 6): the
// `class` label of trialmesh_refusals_total and the reason class of the audit log's refusal
// entries (docs/ethics.md). To add one, add an enumerator before kCount and its label.
enum class RefusalClass {
  kBadSignature,  // the query's signature did not verify
  kReplay,        // the query's nonce was seen before
  kStale,         // the query expired, is not yet valid, or its validity is too long
  kMalformed,     // the request did not decode, parse, or name data this site holds
  kMembership,    // signer not a coordinator of this federation, or not addressed to this site
  kLimit,         // a concurrency or connection limit, or the site is shutting down
  kHandshake,     // the connection failed to authenticate (unknown key, bad handshake, timeout)
  kOversized,     // an RPC message larger than limits.max_message_bytes
  kCount,
};
const char* refusalClassLabel(RefusalClass c);

// What went wrong with a peer connection; the `kind` label of trialmesh_peer_failures_total.
enum class PeerFailureKind {
  kHandshake,   // authentication or key exchange failed (unknown key, bad signature, ...)
  kFrame,       // a frame failed to decrypt, was replayed, reordered or too large
  kDisconnect,  // the peer went away mid-conversation
  kCount,
};
const char* peerFailureKindLabel(PeerFailureKind kind);

// The node's standard metrics, registered on construction (all label values pre-registered so
// they render as 0 before the first event). The references point into `registry`, which must
// outlive this object. Thread-safe like the metrics themselves.
struct NodeMetrics {
  explicit NodeMetrics(Registry& registry, std::chrono::system_clock::time_point startTime =
                                               std::chrono::system_clock::now());

  Counter& queriesServed;          // trialmesh_queries_served_total
  Histogram& queryLatencySeconds;  // trialmesh_query_latency_seconds
  Counter& rowsScanned;            // trialmesh_rows_scanned_total
  Gauge& queriesInFlight;          // trialmesh_queries_in_flight
  Gauge& openConnections;          // trialmesh_open_connections
  Gauge& up;                       // trialmesh_up (1 while the node serves)
  Gauge& startTimeSeconds;         // trialmesh_start_time_seconds (Unix time)
  Counter& surveillanceAlerts;     // trialmesh_surveillance_alerts_total (accepted alerts)

  Counter& queriesRefused(RefusalReason reason) const {
    return *refused_[static_cast<std::size_t>(reason)];
  }
  Counter& peerFailures(PeerFailureKind kind) const {
    return *peerFailures_[static_cast<std::size_t>(kind)];
  }
  // trialmesh_refusals_total: every refusal before the ethics check, whether or not the audit
  // log's rate limit let it be written individually.
  Counter& refusals(RefusalClass c) const { return *refusals_[static_cast<std::size_t>(c)]; }
  // trialmesh_refusals_summarised_total: those the rate limit only counted (they are in a
  // summary entry of the audit log, not in one of their own).
  Counter& refusalsSummarised(RefusalClass c) const {
    return *refusalsSummarised_[static_cast<std::size_t>(c)];
  }

 private:
  std::array<Counter*, static_cast<std::size_t>(RefusalReason::kCount)> refused_{};
  std::array<Counter*, static_cast<std::size_t>(PeerFailureKind::kCount)> peerFailures_{};
  std::array<Counter*, static_cast<std::size_t>(RefusalClass::kCount)> refusals_{};
  std::array<Counter*, static_cast<std::size_t>(RefusalClass::kCount)> refusalsSummarised_{};
};

// Increments a gauge now and decrements it when destroyed: wraps a connection's or a query's
// lifetime (`GaugeGuard g(metrics.openConnections);`). Move-only.
class GaugeGuard {
 public:
  explicit GaugeGuard(Gauge& gauge) : gauge_(&gauge) { gauge_->inc(); }
  GaugeGuard(GaugeGuard&& other) noexcept : gauge_(std::exchange(other.gauge_, nullptr)) {}
  GaugeGuard& operator=(GaugeGuard&&) = delete;
  GaugeGuard(const GaugeGuard&) = delete;
  GaugeGuard& operator=(const GaugeGuard&) = delete;
  ~GaugeGuard() {
    if (gauge_ != nullptr) gauge_->dec();
  }

 private:
  Gauge* gauge_;
};

}  // namespace trialmesh::ops
