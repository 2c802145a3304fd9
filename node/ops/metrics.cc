#include "node/ops/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>
#include <system_error>

namespace trialmesh::ops {

namespace {

enum FamilyType { kCounterType = 0, kGaugeType = 1, kHistogramType = 2 };

const char* typeName(int type) {
  switch (type) {
    case kCounterType:
      return "counter";
    case kGaugeType:
      return "gauge";
    default:
      return "histogram";
  }
}

bool isMetricName(std::string_view name) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    bool digit = c >= '0' && c <= '9';
    if (!(alpha || (i > 0 && digit))) return false;
  }
  return true;
}

bool isLabelName(std::string_view name) {
  if (name.empty() || name.substr(0, 2) == "__") return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    bool digit = c >= '0' && c <= '9';
    if (!(alpha || (i > 0 && digit))) return false;
  }
  return true;
}

// Lock-free add for atomic<double>; fetch_add on floating atomics is C++20 but a CAS loop
// keeps the behaviour identical across standard libraries.
void atomicAdd(std::atomic<double>& target, double delta) {
  double current = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(current, current + delta, std::memory_order_relaxed)) {
  }
}

// Label values: backslash, double quote and line feed are escaped (exposition format 0.0.4).
void appendEscapedLabelValue(std::string& out, std::string_view value) {
  for (char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
}

// HELP text: only backslash and line feed are escaped.
void appendEscapedHelp(std::string& out, std::string_view help) {
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

// `{a="x",b="y"}` plus an optional trailing `le` label; nothing when there are no labels.
void appendLabels(std::string& out, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, const std::string* le = nullptr) {
  if (names.empty() && le == nullptr) return;
  out += '{';
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ',';
    out += names[i];
    out += "=\"";
    appendEscapedLabelValue(out, values[i]);
    out += '"';
  }
  if (le != nullptr) {
    if (!names.empty()) out += ',';
    out += "le=\"";
    out += *le;
    out += '"';
  }
  out += '}';
}

[[noreturn]] void misuse(const std::string& message) {
  throw std::logic_error("metrics registry: " + message);
}

}  // namespace

std::string formatMetricValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == 0) return "0";
  char buf[64];
  // Decimal notation for magnitudes people read easily, exponent notation beyond; both are
  // the shortest text that parses back to exactly `v`.
  double magnitude = std::fabs(v);
  auto format = (magnitude >= 1e-4 && magnitude < 1e21) ? std::chars_format::fixed
                                                        : std::chars_format::general;
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v, format);
  if (ec != std::errc()) {
    auto [end2, ec2] = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
    return std::string(buf, ec2 == std::errc() ? end2 : buf);
  }
  return std::string(buf, end);
}

void Gauge::add(double delta) { atomicAdd(value_, delta); }

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      buckets_(std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1)) {}

void Histogram::observe(double v) {
  if (std::isnan(v)) return;
  // Bucket i counts observations with bounds_[i-1] < v <= bounds_[i] ("le" is inclusive).
  std::size_t index = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  buckets_[index].fetch_add(1, std::memory_order_relaxed);
  atomicAdd(sum_, v);
}

std::vector<std::uint64_t> Histogram::bucketCounts() const {
  std::vector<std::uint64_t> counts(bounds_.size() + 1);
  for (std::size_t i = 0; i < counts.size(); ++i) {
    counts[i] = buckets_[i].load(std::memory_order_relaxed);
  }
  return counts;
}

std::uint64_t Histogram::count() const {
  std::uint64_t total = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    total += buckets_[i].load(std::memory_order_relaxed);
  }
  return total;
}

struct Registry::Family {
  struct Series {
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
  };

  std::string name;
  std::string help;
  int type = kCounterType;
  std::vector<std::string> labelNames;
  std::vector<double> bounds;                         // histograms only
  std::map<std::vector<std::string>, Series> series;  // keyed by label values

  Series& seriesFor(const Labels& labels) {
    std::vector<std::string> values;
    values.reserve(labels.size());
    for (const auto& [labelName, value] : labels) values.push_back(value);
    return series[values];
  }
};

Registry::Registry() = default;
Registry::~Registry() = default;

Registry::Family& Registry::family(std::string_view name, std::string_view help, int type,
                                   const Labels& labels) {
  if (!isMetricName(name)) {
    misuse("invalid metric name '" + std::string(name) + "' (allowed: [a-zA-Z_:][a-zA-Z0-9_:]*)");
  }
  std::vector<std::string> labelNames;
  for (const auto& [labelName, value] : labels) {
    if (!isLabelName(labelName)) {
      misuse("metric '" + std::string(name) + "': invalid label name '" + labelName + "'");
    }
    if (type == kHistogramType && labelName == "le") {
      misuse("histogram '" + std::string(name) + "': label name 'le' is reserved");
    }
    if (std::find(labelNames.begin(), labelNames.end(), labelName) != labelNames.end()) {
      misuse("metric '" + std::string(name) + "': label '" + labelName + "' given twice");
    }
    labelNames.push_back(labelName);
  }

  auto it = families_.find(name);
  if (it == families_.end()) {
    auto family = std::make_unique<Family>();
    family->name = std::string(name);
    family->help = std::string(help);
    family->type = type;
    family->labelNames = std::move(labelNames);
    it = families_.emplace(family->name, std::move(family)).first;
    return *it->second;
  }
  Family& family = *it->second;
  if (family.type != type) {
    misuse("metric '" + std::string(name) + "' is already registered as a " +
           typeName(family.type) + ", not a " + typeName(type));
  }
  if (family.labelNames != labelNames) {
    misuse("metric '" + std::string(name) + "': label names differ from the first registration");
  }
  return family;
}

Counter& Registry::counter(std::string_view name, std::string_view help, const Labels& labels) {
  std::lock_guard lock(mu_);
  Family::Series& series = family(name, help, kCounterType, labels).seriesFor(labels);
  if (!series.counter) series.counter = std::make_unique<Counter>();
  return *series.counter;
}

Gauge& Registry::gauge(std::string_view name, std::string_view help, const Labels& labels) {
  std::lock_guard lock(mu_);
  Family::Series& series = family(name, help, kGaugeType, labels).seriesFor(labels);
  if (!series.gauge) series.gauge = std::make_unique<Gauge>();
  return *series.gauge;
}

Histogram& Registry::histogram(std::string_view name, std::string_view help,
                               std::vector<double> bounds, const Labels& labels) {
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i]) || (i > 0 && !(bounds[i - 1] < bounds[i]))) {
      misuse("histogram '" + std::string(name) +
             "': bucket bounds must be finite and strictly increasing");
    }
  }
  std::lock_guard lock(mu_);
  Family& family = this->family(name, help, kHistogramType, labels);
  if (family.series.empty()) {
    family.bounds = bounds;
  } else if (family.bounds != bounds) {
    misuse("histogram '" + std::string(name) + "': bucket bounds differ from the first series");
  }
  Family::Series& series = family.seriesFor(labels);
  if (!series.histogram) series.histogram = std::make_unique<Histogram>(std::move(bounds));
  return *series.histogram;
}

std::string Registry::render() const {
  std::lock_guard lock(mu_);
  std::string out;
  out.reserve(families_.size() * 256);
  for (const auto& [name, family] : families_) {
    out += "# HELP ";
    out += name;
    out += ' ';
    appendEscapedHelp(out, family->help);
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += typeName(family->type);
    out += '\n';
    for (const auto& [values, series] : family->series) {
      if (series.counter) {
        out += name;
        appendLabels(out, family->labelNames, values);
        out += ' ';
        out += std::to_string(series.counter->value());
        out += '\n';
      } else if (series.gauge) {
        out += name;
        appendLabels(out, family->labelNames, values);
        out += ' ';
        out += formatMetricValue(series.gauge->value());
        out += '\n';
      } else if (series.histogram) {
        const Histogram& h = *series.histogram;
        // One snapshot of the buckets so that the +Inf bucket equals _count even while other
        // threads observe.
        std::vector<std::uint64_t> counts = h.bucketCounts();
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i < counts.size(); ++i) {
          cumulative += counts[i];
          std::string le = i < h.bounds().size() ? formatMetricValue(h.bounds()[i]) : "+Inf";
          out += name;
          out += "_bucket";
          appendLabels(out, family->labelNames, values, &le);
          out += ' ';
          out += std::to_string(cumulative);
          out += '\n';
        }
        out += name;
        out += "_sum";
        appendLabels(out, family->labelNames, values);
        out += ' ';
        out += formatMetricValue(h.sum());
        out += '\n';
        out += name;
        out += "_count";
        appendLabels(out, family->labelNames, values);
        out += ' ';
        out += std::to_string(cumulative);
        out += '\n';
      }
    }
  }
  return out;
}

const char* refusalReasonLabel(RefusalReason reason) {
  switch (reason) {
    case RefusalReason::kSignature:
      return "signature";
    case RefusalReason::kMembership:
      return "membership";
    case RefusalReason::kFreshness:
      return "freshness";
    case RefusalReason::kReplay:
      return "replay";
    case RefusalReason::kLimit:
      return "limit";
    case RefusalReason::kInvalid:
      return "invalid";
    case RefusalReason::kEthics:
      return "ethics";
    case RefusalReason::kError:
    case RefusalReason::kCount:
      break;
  }
  return "error";
}

const char* refusalClassLabel(RefusalClass c) {
  switch (c) {
    case RefusalClass::kBadSignature:
      return "bad-signature";
    case RefusalClass::kReplay:
      return "replay";
    case RefusalClass::kStale:
      return "stale";
    case RefusalClass::kMalformed:
      return "malformed";
    case RefusalClass::kMembership:
      return "membership";
    case RefusalClass::kLimit:
      return "limit";
    case RefusalClass::kHandshake:
      return "handshake";
    case RefusalClass::kOversized:
    case RefusalClass::kCount:
      break;
  }
  return "oversized";
}

const char* peerFailureKindLabel(PeerFailureKind kind) {
  switch (kind) {
    case PeerFailureKind::kHandshake:
      return "handshake";
    case PeerFailureKind::kFrame:
      return "frame";
    case PeerFailureKind::kDisconnect:
    case PeerFailureKind::kCount:
      break;
  }
  return "disconnect";
}

NodeMetrics::NodeMetrics(Registry& registry, std::chrono::system_clock::time_point startTime)
    : queriesServed(registry.counter("trialmesh_queries_served_total",
                                     "Queries this site answered with a result.")),
      queryLatencySeconds(registry.histogram(
          "trialmesh_query_latency_seconds",
          "Time from receiving a query to sending its result (served queries only), in seconds.",
          std::vector<double>(kLatencyBucketsSeconds.begin(), kLatencyBucketsSeconds.end()))),
      rowsScanned(registry.counter("trialmesh_rows_scanned_total",
                                   "Rows read from the local store to answer queries.")),
      queriesInFlight(
          registry.gauge("trialmesh_queries_in_flight", "Queries currently being answered.")),
      openConnections(registry.gauge("trialmesh_open_connections",
                                     "Authenticated peer connections currently open.")),
      up(registry.gauge("trialmesh_up", "1 while the node is serving queries.")),
      startTimeSeconds(registry.gauge("trialmesh_start_time_seconds",
                                      "Time the node started, in seconds since the Unix epoch.")),
      surveillanceAlerts(registry.counter(
          "trialmesh_surveillance_alerts_total",
          "Signed surveillance alerts from a study coordinator that this site verified and "
          "recorded in its audit log.")) {
  for (std::size_t i = 0; i < refused_.size(); ++i) {
    refused_[i] = &registry.counter(
        "trialmesh_queries_refused_total", "Queries this site refused, by reason.",
        {{"reason", refusalReasonLabel(static_cast<RefusalReason>(i))}});
  }
  for (std::size_t i = 0; i < peerFailures_.size(); ++i) {
    peerFailures_[i] = &registry.counter(
        "trialmesh_peer_failures_total", "Peer connections that failed, by kind of failure.",
        {{"kind", peerFailureKindLabel(static_cast<PeerFailureKind>(i))}});
  }
  for (std::size_t i = 0; i < refusals_.size(); ++i) {
    const Labels labels{{"class", refusalClassLabel(static_cast<RefusalClass>(i))}};
    refusals_[i] = &registry.counter(
        "trialmesh_refusals_total",
        "Requests and connections refused before the ethics check, by reason class.", labels);
    refusalsSummarised_[i] = &registry.counter(
        "trialmesh_refusals_summarised_total",
        "Refusals the audit rate limit wrote only as part of a summary entry, by reason class.",
        labels);
  }
  startTimeSeconds.set(std::chrono::duration<double>(startTime.time_since_epoch()).count());
}

}  // namespace trialmesh::ops
