// The query language's parser: text -> Query (docs/query-language.md). Tokens carry their
// offset so every error points at the token; canonical text (query.cc) reads back through it.
#include <fmt/format.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <vector>

#include "query/query.h"
#include "query/query_text.h"
#include "query/time_group.h"
#include "storage/dictionary.h"
#include "storage/utf8.h"

namespace trialmesh::query {

namespace {

using detail::iequals;
using detail::isReserved;
using detail::kAllFns;

struct Token {
  enum class Kind { kIdent, kNumber, kString, kPunct, kEnd };
  Kind kind = Kind::kEnd;
  std::string text;  // identifier (unquoted), number text, string value, punctuation
  size_t offset = 0;
  size_t length = 0;
  bool quotedIdent = false;  // written in backticks: never a keyword
};

class Parser {
 public:
  explicit Parser(std::string_view src) : src_(src) {}

  Result<Query> parse() {
    TM_RETURN_IF_ERROR(tokenize());
    Query q;
    TM_RETURN_IF_ERROR(parseSelect(q));
    bool sawWhere = false, sawBy = false;
    while (peek().kind != Token::Kind::kEnd) {
      if (isKeyword(peek(), "where")) {
        if (sawWhere) return error(peek(), "a query has at most one 'where' clause");
        sawWhere = true;
        next();
        TM_ASSIGN_OR_RETURN(Filter f, parseOr());
        q.where = std::move(f);
      } else if (isKeyword(peek(), "by")) {
        if (sawBy) return error(peek(), "a query has at most one 'by' clause");
        sawBy = true;
        next();
        while (true) {
          if (peek().kind == Token::Kind::kIdent && !peek().quotedIdent &&
              peek(1).kind == Token::Kind::kPunct && peek(1).text == "(") {
            TM_ASSIGN_OR_RETURN(std::string group, parseTimeGroupTokens());
            q.by.push_back(std::move(group));
          } else {
            TM_ASSIGN_OR_RETURN(std::string name, expectVariable("after 'by'"));
            q.by.push_back(std::move(name));
          }
          if (!isPunct(peek(), ",")) break;
          next();
        }
      } else {
        return error(peek(), fmt::format("expected ',', 'where', 'by' or the end of the query, "
                                         "found {}",
                                         describe(peek())));
      }
    }
    return q;
  }

 private:
  // `week(onset_date)` or `week(onset_date, "2019-01-01", "2024-12-31")` after 'by': kept as
  // its canonical text (query/time_group.h).
  Result<std::string> parseTimeGroupTokens() {
    const Token start = peek();
    if (!iequals(start.text, "week") && !iequals(start.text, "day") &&
        !iequals(start.text, "month"))
      return error(start, fmt::format("'{}(...)' cannot be grouped by; after 'by' write a "
                                      "variable or week(date), day(date), month(date)",
                                      start.text));
    next();
    next();  // '('
    std::string text = fmt::format("{}(", start.text);
    for (auto& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    TM_ASSIGN_OR_RETURN(std::string var, expectVariable("inside " + start.text + "()"));
    text += "`" + var + "`";
    int bounds = 0;
    while (isPunct(peek(), ",")) {
      next();
      if (peek().kind == Token::Kind::kIdent && !peek().quotedIdent && iequals(peek().text, "date"))
        next();
      if (peek().kind != Token::Kind::kString)
        return error(peek(), fmt::format("expected a quoted date \"YYYY-MM-DD\" as a bound of "
                                         "the range, found {}",
                                         describe(peek())));
      if (!storage::parseIsoDate(peek().text))
        return error(peek(), fmt::format("'{}' is not a calendar date YYYY-MM-DD", peek().text));
      text += fmt::format(", \"{}\"", peek().text);
      ++bounds;
      next();
    }
    if (!isPunct(peek(), ")"))
      return error(peek(), fmt::format("expected ',' or ')' in {}(), found {}", start.text,
                                       describe(peek())));
    next();
    if (bounds != 0 && bounds != 2)
      return error(start, "give both ends of the date range (from, to) or neither");
    text += ")";
    TM_ASSIGN_OR_RETURN(std::optional<TimeGroup> g, parseTimeGroup(text));
    return timeGroupText(*g);
  }

  // --- tokens ---------------------------------------------------------------------------
  Status tokenize() {
    size_t i = 0;
    while (i < src_.size()) {
      char c = src_[i];
      if (std::isspace(static_cast<unsigned char>(c))) {
        ++i;
        continue;
      }
      Token t;
      t.offset = i;
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t j = i;
        while (j < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[j])) ||
                                   src_[j] == '_' || src_[j] == '.'))  // R names: ph.ecog, meal.cal
          ++j;
        t.kind = Token::Kind::kIdent;
        t.text = std::string(src_.substr(i, j - i));
        i = j;
      } else if (c == '`') {
        // A backtick inside a quoted name is written twice (`a``b` is a`b), so every name
        // has a canonical text that reads back.
        t.kind = Token::Kind::kIdent;
        t.quotedIdent = true;
        size_t j = i + 1;
        for (;;) {
          if (j >= src_.size())
            return errorAt(i, 1, "unterminated `quoted name`: add the closing backtick");
          if (src_[j] == '`') {
            if (j + 1 < src_.size() && src_[j + 1] == '`') {
              t.text.push_back('`');  // the doubled backtick stands for one
              j += 2;
              continue;
            }
            break;
          }
          t.text.push_back(src_[j++]);
        }
        if (t.text.empty()) return errorAt(i, 2, "empty `quoted name`");
        i = j + 1;
      } else if (std::isdigit(static_cast<unsigned char>(c)) ||
                 ((c == '-' || c == '+' || c == '.') && i + 1 < src_.size() &&
                  (std::isdigit(static_cast<unsigned char>(src_[i + 1])) ||
                   (src_[i + 1] == '.' && c != '.')))) {
        size_t j = i + 1;
        while (j < src_.size()) {
          char d = src_[j];
          if (std::isalnum(static_cast<unsigned char>(d)) || d == '.' || d == '_') {
            ++j;
          } else if ((d == '-' || d == '+') && (src_[j - 1] == 'e' || src_[j - 1] == 'E')) {
            ++j;
          } else {
            break;
          }
        }
        t.kind = Token::Kind::kNumber;
        t.text = std::string(src_.substr(i, j - i));
        i = j;
      } else if (c == '"' || c == '\'') {
        std::string value;
        size_t j = i + 1;
        bool closed = false;
        while (j < src_.size()) {
          if (src_[j] == '\\' && j + 1 < src_.size()) {
            value.push_back(src_[j + 1]);
            j += 2;
          } else if (src_[j] == c) {
            closed = true;
            ++j;
            break;
          } else {
            value.push_back(src_[j++]);
          }
        }
        if (!closed)
          return errorAt(i, 1, fmt::format("unterminated string: add the closing {}", c));
        t.kind = Token::Kind::kString;
        t.text = std::move(value);
        i = j;
      } else {
        static constexpr std::string_view kTwo[] = {"!=", "<>", "<=", ">=", "=="};
        t.kind = Token::Kind::kPunct;
        std::string_view two = src_.substr(i, 2);
        bool matched = false;
        for (auto p : kTwo) {
          if (two == p) {
            t.text = std::string(p);
            matched = true;
          }
        }
        if (!matched) {
          if (std::string_view("(),[]=<>~+").find(c) == std::string_view::npos)
            return errorAt(i, 1, fmt::format("unexpected character '{}'", c));
          t.text = std::string(1, c);
        }
        i += t.text.size();
      }
      t.length = i - t.offset;
      tokens_.push_back(std::move(t));
    }
    Token end;
    end.kind = Token::Kind::kEnd;
    end.offset = src_.size();
    tokens_.push_back(end);
    return Status::ok();
  }

  const Token& peek(size_t ahead = 0) const {
    return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)];
  }
  const Token& next() {
    const Token& t = tokens_[pos_];
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return t;
  }
  static bool isKeyword(const Token& t, std::string_view word) {
    return t.kind == Token::Kind::kIdent && !t.quotedIdent && iequals(t.text, word);
  }
  static bool isPunct(const Token& t, std::string_view p) {
    return t.kind == Token::Kind::kPunct && t.text == p;
  }
  std::string describe(const Token& t) const {
    if (t.kind == Token::Kind::kEnd) return "the end of the query";
    return fmt::format("'{}'", src_.substr(t.offset, t.length));
  }

  // --- errors ---------------------------------------------------------------------------
  Status errorAt(size_t offset, size_t length, const std::string& message) const {
    (void)length;
    size_t line = 1, lineStart = 0;
    for (size_t i = 0; i < offset && i < src_.size(); ++i) {
      if (src_[i] == '\n') {
        ++line;
        lineStart = i + 1;
      }
    }
    size_t lineEnd = src_.find('\n', lineStart);
    if (lineEnd == std::string_view::npos) lineEnd = src_.size();
    std::string_view lineText = src_.substr(lineStart, lineEnd - lineStart);
    size_t column = offset - lineStart + 1;
    std::string caretPad;
    for (size_t i = lineStart; i < offset; ++i) caretPad.push_back(src_[i] == '\t' ? '\t' : ' ');
    return Status::invalidArgument(
        fmt::format("query:{}:{}: {}\n  {}\n  {}^", line, column, message, lineText, caretPad));
  }
  Status error(const Token& t, const std::string& message) const {
    return errorAt(t.offset, t.length, message);
  }

  // --- grammar --------------------------------------------------------------------------
  Result<std::string> expectVariable(std::string_view where) {
    const Token& t = peek();
    if (t.kind != Token::Kind::kIdent)
      return error(t, fmt::format("expected a variable name {}, found {}", where, describe(t)));
    if (!t.quotedIdent && isReserved(t.text))
      return error(t, fmt::format("expected a variable name {}, found the keyword {} (write "
                                  "`{}` in backticks if it is a variable)",
                                  where, describe(t), t.text));
    next();
    return t.text;
  }

  Status expectPunct(std::string_view p, std::string_view context) {
    if (!isPunct(peek(), p))
      return error(peek(), fmt::format("expected '{}' {}, found {}", p, context, describe(peek())));
    next();
    return Status::ok();
  }

  Result<double> expectNumber(std::string_view context) {
    const Token& t = peek();
    if (t.kind != Token::Kind::kNumber)
      return error(t, fmt::format("expected a number {}, found {}", context, describe(t)));
    double v = 0;
    const char* b = t.text.data();
    const char* e = b + t.text.size();
    if (*b == '+') ++b;
    auto [ptr, ec] = std::from_chars(b, e, v);
    if (ec != std::errc() || ptr != e || !std::isfinite(v))
      return error(t, fmt::format("'{}' is not a valid number", t.text));
    next();
    return v;
  }

  Status parseSelect(Query& q) {
    while (true) {
      TM_ASSIGN_OR_RETURN(Aggregate a, parseAggregate());
      q.select.push_back(std::move(a));
      if (!isPunct(peek(), ",")) break;
      next();
    }
    return Status::ok();
  }

  Result<Aggregate> parseAggregate() {
    const Token& t = peek();
    std::optional<AggFn> fn;
    const bool median =
        t.kind == Token::Kind::kIdent && !t.quotedIdent && iequals(t.text, "median");
    if (t.kind == Token::Kind::kIdent && !t.quotedIdent) {
      for (AggFn f : kAllFns)
        if (iequals(t.text, aggFnName(f))) fn = f;
      if (median) fn = AggFn::kQuantile;
    }
    if (!fn) {
      return error(t, fmt::format("expected a statistic (count, sum, mean, var, sd, min, max, "
                                  "quantile, median, hist, km) or a model (lm, glm, coxph), "
                                  "found {}",
                                  describe(t)));
    }
    next();
    Aggregate a;
    a.fn = *fn;
    if (*fn == AggFn::kQuantile) {
      TM_RETURN_IF_ERROR(parseQuantile(a, median));
      return a;
    }
    if (*fn == AggFn::kQuantileCounts) {
      TM_RETURN_IF_ERROR(parseQuantileCounts(a));
      return a;
    }
    if (isModel(*fn) || isModelRound(*fn)) {
      TM_RETURN_IF_ERROR(parseModel(a));
      return a;
    }
    std::string context = fmt::format("after '{}'", aggFnName(*fn));
    if (*fn == AggFn::kCount && !isPunct(peek(), "(")) return a;  // bare count: rows
    TM_RETURN_IF_ERROR(expectPunct("(", context));
    std::string argContext = fmt::format("as the first argument of {}()", aggFnName(*fn));
    TM_ASSIGN_OR_RETURN(a.var, expectVariable(argContext));
    if (*fn == AggFn::kKm) {
      TM_RETURN_IF_ERROR(expectPunct(",", "after the time variable of km(time, event)"));
      TM_ASSIGN_OR_RETURN(a.event, expectVariable("as the event variable of km(time, event)"));
      TM_RETURN_IF_ERROR(parseKmOptions(a));
    } else if (*fn == AggFn::kHist) {
      TM_RETURN_IF_ERROR(expectPunct(
          ",", "after the variable of hist(var, from, to, width) or hist(var, [breaks])"));
      if (isPunct(peek(), "[")) {
        const Token& open = next();
        a.uniformBins = false;
        while (true) {
          TM_ASSIGN_OR_RETURN(double b, expectNumber("in the list of histogram breaks"));
          if (!a.breaks.empty() && b <= a.breaks.back())
            return error(tokens_[pos_ - 1], "histogram breaks must be strictly increasing");
          a.breaks.push_back(b);
          if (!isPunct(peek(), ",")) break;
          next();
        }
        TM_RETURN_IF_ERROR(expectPunct("]", "to close the list of histogram breaks"));
        if (a.breaks.size() < 2) return error(open, "a histogram needs at least two breaks");
      } else {
        const Token& fromTok = peek();
        TM_ASSIGN_OR_RETURN(a.from, expectNumber("(from) in hist(var, from, to, width)"));
        TM_RETURN_IF_ERROR(expectPunct(",", "after 'from' in hist(var, from, to, width)"));
        TM_ASSIGN_OR_RETURN(a.to, expectNumber("(to) in hist(var, from, to, width)"));
        TM_RETURN_IF_ERROR(expectPunct(",", "after 'to' in hist(var, from, to, width)"));
        const Token& widthTok = peek();
        TM_ASSIGN_OR_RETURN(a.width, expectNumber("(width) in hist(var, from, to, width)"));
        if (!(a.to > a.from)) return error(fromTok, "hist(var, from, to, width) needs from < to");
        if (!(a.width > 0)) return error(widthTok, "the histogram width must be positive");
        if ((a.to - a.from) / a.width > 1e6)
          return error(widthTok, "more than 1000000 histogram bins: use a larger width");
      }
    }
    TM_RETURN_IF_ERROR(expectPunct(")", fmt::format("to close {}(", aggFnName(*fn))));
    return a;
  }

  // km(time, event, times = [365, 730], rmean = 1825 | common, strata = s):
  // docs/query-language.md.
  Status parseKmOptions(Aggregate& a) {
    bool sawTimes = false, sawRmean = false, sawStrata = false;
    while (isPunct(peek(), ",")) {
      next();
      const Token& opt = next();
      const bool ident = opt.kind == Token::Kind::kIdent && !opt.quotedIdent;
      const bool isTimes = ident && iequals(opt.text, "times");
      const bool isStrata = ident && iequals(opt.text, "strata");
      if (!isTimes && !isStrata && !(ident && iequals(opt.text, "rmean")))
        return error(opt, fmt::format("km() has options times = [...], rmean = <time> or "
                                      "common, and strata = <variable>; found {}",
                                      describe(opt)));
      bool& seen = isTimes ? sawTimes : isStrata ? sawStrata : sawRmean;
      if (seen) return error(opt, fmt::format("option '{}' is given twice", opt.text));
      seen = true;
      TM_RETURN_IF_ERROR(expectPunct("=", fmt::format("after the option '{}'", opt.text)));
      if (isStrata) {
        TM_ASSIGN_OR_RETURN(a.strata, expectVariable("after 'strata ='"));
        continue;
      }
      if (isTimes) {
        const Token& open = peek();
        TM_ASSIGN_OR_RETURN(a.survTimes, parseNumberList("survival times"));
        if (a.survTimes.empty()) return error(open, "times = [...] needs at least one time");
        for (size_t k = 1; k < a.survTimes.size(); ++k)
          if (!(a.survTimes[k - 1] < a.survTimes[k]))
            return error(open, "the survival times must be strictly increasing");
      } else if (isKeyword(peek(), "common")) {
        next();
        a.rmean = std::numeric_limits<double>::infinity();
      } else {
        TM_ASSIGN_OR_RETURN(double tau, expectNumber("(a time or common) after 'rmean ='"));
        a.rmean = tau;
      }
    }
    return Status::ok();
  }

  // quantile(x), quantile(x, 0.9), quantile(x, [0.1, 0.9]), quantile(x, probs = c(0.1, 0.9))
  // as R writes it; median(x). Default probabilities 0.25, 0.5, 0.75 (R's default adds 0 and 1,
  // the minimum and maximum, which are refused here: see Aggregate::probs).
  Status parseQuantile(Aggregate& a, bool median) {
    const std::string name = median ? "median" : "quantile";
    TM_RETURN_IF_ERROR(expectPunct("(", "after '" + name + "'"));
    TM_ASSIGN_OR_RETURN(a.var, expectVariable("as the first argument of " + name + "()"));
    if (median) {
      a.probs = {0.5};
      return expectPunct(")", "to close median(");
    }
    if (!isPunct(peek(), ",")) {
      a.probs = {0.25, 0.5, 0.75};
      return expectPunct(")", "to close quantile(");
    }
    next();
    if (isKeyword(peek(), "probs") && isPunct(peek(1), "=")) {
      next();
      next();
    }
    const Token& first = peek();
    if (isPunct(first, "[")) {
      TM_ASSIGN_OR_RETURN(a.probs, parseNumberList("probabilities"));
    } else if (isKeyword(first, "c") && isPunct(peek(1), "(")) {  // R's c(0.1, 0.9)
      next();
      next();
      while (true) {
        TM_ASSIGN_OR_RETURN(double p, expectNumber("in c(...) of quantile probabilities"));
        a.probs.push_back(p);
        if (!isPunct(peek(), ",")) break;
        next();
      }
      TM_RETURN_IF_ERROR(expectPunct(")", "to close c("));
    } else {
      TM_ASSIGN_OR_RETURN(double p, expectNumber("(a probability) in quantile(x, p)"));
      a.probs = {p};
    }
    if (std::string why = quantileArgumentError(a); !why.empty()) return error(first, why);
    return expectPunct(")", "to close quantile(");
  }

  // quantile_counts(x, [lo1, hi1, lo2, hi2], 4096): one round of an exact quantile.
  Status parseQuantileCounts(Aggregate& a) {
    TM_RETURN_IF_ERROR(expectPunct("(", "after 'quantile_counts'"));
    TM_ASSIGN_OR_RETURN(a.var, expectVariable("as the first argument of quantile_counts()"));
    TM_RETURN_IF_ERROR(expectPunct(",", "after the variable of quantile_counts(x, [lo, hi], n)"));
    const Token& open = peek();
    TM_RETURN_IF_ERROR(expectPunct("[", "to open the key intervals of quantile_counts"));
    while (!isPunct(peek(), "]")) {
      const Token& k = peek();
      uint64_t v = 0;
      const char* b = k.text.data();
      const char* e = b + k.text.size();
      auto [ptr, ec] = std::from_chars(b, e, v);
      if (k.kind != Token::Kind::kNumber || ec != std::errc() || ptr != e)
        return error(k, fmt::format("expected a key (an integer 0..2^64-1) in quantile_counts, "
                                    "found {}",
                                    describe(k)));
      a.keyBounds.push_back(v);
      next();
      if (!isPunct(peek(), ",")) break;
      next();
    }
    TM_RETURN_IF_ERROR(expectPunct("]", "to close the key intervals of quantile_counts"));
    TM_RETURN_IF_ERROR(expectPunct(",", "after the key intervals of quantile_counts"));
    const Token& n = peek();
    TM_ASSIGN_OR_RETURN(double buckets, expectNumber("(buckets) in quantile_counts"));
    if (!(buckets >= 2 && buckets <= 65536) || buckets != std::floor(buckets))
      return error(n, "quantile_counts needs 2 to 65536 buckets");
    a.buckets = static_cast<uint32_t>(buckets);
    if (std::string why = quantileArgumentError(a); !why.empty()) return error(open, why);
    return expectPunct(")", "to close quantile_counts(");
  }

  // A list of numbers in brackets: [1, -2.5e-3]; may be empty.
  Result<std::vector<double>> parseNumberList(std::string_view what) {
    TM_RETURN_IF_ERROR(expectPunct("[", fmt::format("to open the list of {}", what)));
    std::vector<double> out;
    if (isPunct(peek(), "]")) {
      next();
      return out;
    }
    while (true) {
      TM_ASSIGN_OR_RETURN(double v, expectNumber(fmt::format("in the list of {}", what)));
      out.push_back(v);
      if (!isPunct(peek(), ",")) break;
      next();
    }
    TM_RETURN_IF_ERROR(expectPunct("]", fmt::format("to close the list of {}", what)));
    return out;
  }

  // name(response ~ terms, options) for lm/glm/*_sums; name(time, event ~ terms, options) for
  // coxph and cox_*. Which options each accepts is fixed here so canonical text is unique.
  Status parseModel(Aggregate& a) {
    const std::string name = aggFnName(a.fn);
    const bool survival = isSurvivalModel(a.fn);
    const std::string shape = survival ? name + "(time, event ~ x1 + x2)" : name + "(y ~ x1 + x2)";
    TM_RETURN_IF_ERROR(expectPunct("(", "after '" + name + "'"));
    TM_ASSIGN_OR_RETURN(a.var, expectVariable(survival ? "as the time variable of " + shape
                                                       : "as the response of " + shape));
    if (survival) {
      TM_RETURN_IF_ERROR(expectPunct(",", "after the time variable of " + shape));
      TM_ASSIGN_OR_RETURN(a.event, expectVariable("as the event variable of " + shape));
    }
    TM_RETURN_IF_ERROR(expectPunct("~", "between the response and the covariates of " + shape));
    if (peek().kind == Token::Kind::kNumber && peek().text == "1") {
      next();  // intercept only
    } else {
      while (true) {
        // factor(x) as in an R formula; a variable called factor stays usable (not followed
        // by '(', or in backticks).
        const bool factor = peek().kind == Token::Kind::kIdent && !peek().quotedIdent &&
                            iequals(peek().text, "factor") && pos_ + 1 < tokens_.size() &&
                            isPunct(tokens_[pos_ + 1], "(");
        if (factor) {
          next();
          next();
        }
        TM_ASSIGN_OR_RETURN(std::string term, expectVariable("as a covariate of " + shape));
        if (factor) {
          TM_RETURN_IF_ERROR(expectPunct(")", "after the variable of factor(...)"));
          if (!a.isFactor(term)) a.factors.push_back(term);
        }
        for (const auto& t : a.terms)
          if (t == term)
            return error(tokens_[pos_ - 1], fmt::format("covariate '{}' appears twice", term));
        a.terms.push_back(std::move(term));
        if (!isPunct(peek(), "+")) break;
        next();
      }
    }
    const bool isGlm = a.fn == AggFn::kGlm;
    bool sawFamily = false, sawTies = false, sawStrata = false, sawBeta = false, sawCenter = false,
         sawTimes = false;
    while (isPunct(peek(), ",")) {
      next();
      const Token& opt = peek();
      if (opt.kind != Token::Kind::kIdent || opt.quotedIdent)
        return error(opt, fmt::format("expected an option name (e.g. {}) after ',' in {}",
                                      isGlm      ? "family"
                                      : survival ? "ties, strata"
                                                 : "none",
                                      name));
      std::string key = opt.text;
      for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      auto allowed = [&](bool ok, bool& seen) -> Status {
        if (!ok) return error(opt, fmt::format("{}() has no option '{}'", name, opt.text));
        if (seen) return error(opt, fmt::format("option '{}' is given twice", key));
        seen = true;
        return Status::ok();
      };
      const Token& keyTok = next();
      TM_RETURN_IF_ERROR(expectPunct("=", "after the option '" + key + "'"));
      if (key == "family") {
        TM_RETURN_IF_ERROR(allowed(isGlm, sawFamily));
        const Token& v = peek();
        if (!isKeyword(v, "binomial"))
          return error(v, fmt::format("glm supports family = binomial (logistic regression) "
                                      "only, found {}; for a linear model write lm(...)",
                                      describe(v)));
        next();
      } else if (key == "ties") {
        TM_RETURN_IF_ERROR(allowed(a.fn == AggFn::kCoxph, sawTies));
        const Token& v = peek();
        if (isKeyword(v, "efron")) {
          a.breslow = false;
        } else if (isKeyword(v, "breslow")) {
          a.breslow = true;
        } else {
          return error(v, fmt::format("ties must be efron or breslow, found {}", describe(v)));
        }
        next();
      } else if (key == "strata") {
        TM_RETURN_IF_ERROR(allowed(survival, sawStrata));
        TM_ASSIGN_OR_RETURN(a.strata, expectVariable("after 'strata ='"));
      } else if (key == "beta") {
        TM_RETURN_IF_ERROR(allowed(a.fn == AggFn::kGlmSums || a.fn == AggFn::kCoxSums, sawBeta));
        TM_ASSIGN_OR_RETURN(a.beta, parseNumberList("coefficients"));
      } else if (key == "center") {
        TM_RETURN_IF_ERROR(allowed(a.fn == AggFn::kCoxSums, sawCenter));
        TM_ASSIGN_OR_RETURN(a.center, parseNumberList("centring values"));
      } else if (key == "times") {
        TM_RETURN_IF_ERROR(allowed(a.fn == AggFn::kCoxSums, sawTimes));
        TM_RETURN_IF_ERROR(expectPunct("[", "to open the list of per-stratum event times"));
        while (isPunct(peek(), "[")) {
          TM_ASSIGN_OR_RETURN(std::vector<double> grid, parseNumberList("event times"));
          for (size_t k = 1; k < grid.size(); ++k)
            if (!(grid[k - 1] < grid[k]))
              return error(tokens_[pos_ - 1], "event times must be strictly increasing");
          a.times.push_back(std::move(grid));
          if (!isPunct(peek(), ",")) break;
          next();
        }
        TM_RETURN_IF_ERROR(expectPunct("]", "to close the list of per-stratum event times"));
      } else {
        return error(keyTok, fmt::format("{}() has no option '{}'", name, opt.text));
      }
    }
    if (isGlm && !sawFamily)
      return error(peek(),
                   "glm needs 'family = binomial' (the only family; R's default gaussian "
                   "is lm(...))");
    return expectPunct(")", "to close " + name + "(");
  }

  Result<Filter> parseOr() {
    TM_ASSIGN_OR_RETURN(Filter first, parseAnd());
    if (!isKeyword(peek(), "or")) return first;
    Filter f;
    f.kind = Filter::Kind::kOr;
    f.children.push_back(std::move(first));
    while (isKeyword(peek(), "or")) {
      next();
      TM_ASSIGN_OR_RETURN(Filter c, parseAnd());
      f.children.push_back(std::move(c));
    }
    return f;
  }

  Result<Filter> parseAnd() {
    TM_ASSIGN_OR_RETURN(Filter first, parseNot());
    if (!isKeyword(peek(), "and")) return first;
    Filter f;
    f.kind = Filter::Kind::kAnd;
    f.children.push_back(std::move(first));
    while (isKeyword(peek(), "and")) {
      next();
      TM_ASSIGN_OR_RETURN(Filter c, parseNot());
      f.children.push_back(std::move(c));
    }
    return f;
  }

  Result<Filter> parseNot() {
    if (isKeyword(peek(), "not")) {
      next();
      TM_ASSIGN_OR_RETURN(Filter inner, parseNot());
      Filter f;
      f.kind = Filter::Kind::kNot;
      f.children.push_back(std::move(inner));
      return f;
    }
    if (isPunct(peek(), "(")) {
      next();
      TM_ASSIGN_OR_RETURN(Filter inner, parseOr());
      TM_RETURN_IF_ERROR(expectPunct(")", "to close the parenthesis"));
      return inner;
    }
    return parsePredicate();
  }

  Result<Filter> parsePredicate() {
    TM_ASSIGN_OR_RETURN(std::string var, expectVariable("in the filter"));
    Filter f;
    f.var = var;
    const Token& t = peek();
    if (isKeyword(t, "is")) {
      next();
      bool negated = false;
      if (isKeyword(peek(), "not")) {
        next();
        negated = true;
      }
      if (!isKeyword(peek(), "missing"))
        return error(peek(), fmt::format("expected 'missing' after '{} is{}', found {}", var,
                                         negated ? " not" : "", describe(peek())));
      next();
      f.kind = negated ? Filter::Kind::kIsNotMissing : Filter::Kind::kIsMissing;
      return f;
    }
    bool negatedIn = false;
    if (isKeyword(t, "not") && isKeyword(peek(1), "in")) {
      next();
      negatedIn = true;
    }
    if (isKeyword(peek(), "in")) {
      next();
      f.kind = Filter::Kind::kIn;
      TM_RETURN_IF_ERROR(expectPunct("(", fmt::format("after '{} in'", var)));
      while (true) {
        TM_ASSIGN_OR_RETURN(Literal lit, parseLiteral(var));
        f.values.push_back(std::move(lit));
        if (!isPunct(peek(), ",")) break;
        next();
      }
      TM_RETURN_IF_ERROR(expectPunct(")", "to close the 'in' list"));
      if (!negatedIn) return f;
      Filter n;
      n.kind = Filter::Kind::kNot;
      n.children.push_back(std::move(f));
      return n;
    }
    static constexpr std::pair<std::string_view, CompareOp> kOps[] = {
        {"=", CompareOp::kEq},  {"==", CompareOp::kEq}, {"!=", CompareOp::kNe},
        {"<>", CompareOp::kNe}, {"<", CompareOp::kLt},  {"<=", CompareOp::kLe},
        {">", CompareOp::kGt},  {">=", CompareOp::kGe}};
    std::optional<CompareOp> op;
    if (t.kind == Token::Kind::kPunct) {
      for (auto& [text, o] : kOps)
        if (t.text == text) op = o;
    }
    if (!op) {
      return error(
          t, fmt::format("expected a comparison operator after '{}', found {}", var, describe(t)));
    }
    next();
    f.kind = Filter::Kind::kCompare;
    f.op = *op;
    TM_ASSIGN_OR_RETURN(Literal lit, parseLiteral(var));
    f.values.push_back(std::move(lit));
    return f;
  }

  Result<Literal> parseLiteral(const std::string& var) {
    const Token& t = peek();
    switch (t.kind) {
      case Token::Kind::kString:
        next();
        return Literal::ofString(t.text);
      case Token::Kind::kNumber: {
        const char* b = t.text.data();
        const char* e = b + t.text.size();
        if (*b == '+') ++b;
        if (t.text.find_first_of(".eE") == std::string::npos) {
          int64_t v = 0;
          auto [ptr, ec] = std::from_chars(b, e, v);
          if (ec == std::errc() && ptr == e) {
            next();
            return Literal::ofInteger(v);
          }
        }
        double d = 0;
        auto [ptr, ec] = std::from_chars(b, e, d);
        if (ec != std::errc() || ptr != e || !std::isfinite(d))
          return error(t, fmt::format("'{}' is not a valid number", t.text));
        next();
        return Literal::ofReal(d);
      }
      case Token::Kind::kIdent:
        if (!t.quotedIdent) {
          if (iequals(t.text, "true") || iequals(t.text, "false")) {
            next();
            return Literal::ofBool(iequals(t.text, "true"));
          }
          if (iequals(t.text, "date")) {
            next();
            const Token& s = peek();
            if (s.kind != Token::Kind::kString)
              return error(s, fmt::format("expected a quoted date like \"2024-01-31\" after "
                                          "'date', found {}",
                                          describe(s)));
            next();
            return Literal::ofDate(s.text);
          }
        }
        break;
      default:
        break;
    }
    return error(t, fmt::format("expected a value to compare '{}' with (a number, a quoted "
                                "level, date \"YYYY-MM-DD\", true or false), found {}",
                                var, describe(t)));
  }

  std::string_view src_;
  std::vector<Token> tokens_;
  size_t pos_ = 0;
};

}  // namespace

Result<Query> parseQuery(std::string_view text) {
  // Names and strings end up in JSON output, logs and result columns, which must stay UTF-8.
  if (size_t bad = storage::detail::findInvalidUtf8(text.data(), text.size());
      bad != std::string_view::npos) {
    return Status::invalidArgument(
        fmt::format("query: byte {} is not valid UTF-8 (queries must be UTF-8 text)", bad));
  }
  size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string_view::npos && text[first] == '{') return parseQueryJson(text);
  return Parser(text).parse();
}

}  // namespace trialmesh::query
