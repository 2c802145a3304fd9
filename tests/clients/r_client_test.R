# The R client (clients/r/trialmesh) against one site's store made by `trialmesh demo --local`:
# installed with R CMD INSTALL into a scratch library, every function's result compared with R
# itself on the same rows (the store's CSV): data frame types, NA for suppressed values,
# survfit's curves, coxph / lm / glm coefficients and covariances, quantile(), plot() to a PNG,
# and the CLI's errors surfacing as R errors.
#   Rscript r_client_test.R <trialmesh binary> <clients/r/trialmesh> <scratch dir>
args <- commandArgs(trailingOnly = TRUE)
cli <- args[1]; pkg <- args[2]; work <- args[3]
unlink(work, recursive = TRUE)
dir.create(file.path(work, "lib"), recursive = TRUE)
failures <- 0L
check <- function(ok, what) {
  if (!isTRUE(ok)) { failures <<- failures + 1L; cat("FAIL:", what, "\n") } else cat("ok:", what, "\n")
}
close_to <- function(a, b, tol) {
  isTRUE(all.equal(as.vector(unname(a)), as.vector(unname(b)), tolerance = tol))
}

rc <- system2("R", c("CMD", "INSTALL", "--no-test-load", paste0("--library=", file.path(work, "lib")),
                     shQuote(pkg)), stdout = FALSE, stderr = FALSE)
check(rc == 0, "R CMD INSTALL clients/r/trialmesh")
library(trialmesh, lib.loc = file.path(work, "lib"))
suppressMessages(library(survival))

data <- file.path(work, "data")
rc <- system2(cli, c("demo", "--local", "--rows", "3000", "--seed", "11", "--keep", "--workdir",
                     shQuote(data)), stdout = FALSE, stderr = FALSE)
check(rc == 0, "trialmesh demo --local")
d <- read.csv(file.path(data, "trial.csv"))
con <- tm_connect(store = file.path(data, "store"), dataset = "lung7", cli = cli)

# Tables: typed columns, equal to R.
t <- tm_query(con, "count, mean(bmi) by arm")
check(is.integer(t$count) && is.double(t[["mean(bmi)"]]) && is.character(t$arm), "column types")
check(identical(as.integer(t$count), as.integer(table(d$ARM)[t$arm])), "counts equal table()")
check(close_to(t[["mean(bmi)"]], tapply(d$BMI, d$ARM, mean, na.rm = TRUE)[t$arm], 1e-12),
      "means equal tapply(mean)")

# Suppressed values (a federated result's JSON): NA in a numeric column, flagged.
s <- tm_table('{"schema_version":1,"kind":"cells","columns":["arm","count","mean(bmi)"],
  "group_columns":["arm"],"by":["arm"],"statistics":["count","mean(bmi)"],
  "rows":[{"arm":"A","count":12,"mean(bmi)":25.5,"suppressed":[]},
          {"arm":"B","count":null,"mean(bmi)":null,"suppressed":["count","mean(bmi)"]}],"notes":[]}')
check(is.integer(s$count) && is.na(s$count[2]) && is.double(s[["mean(bmi)"]]), "suppressed is NA")
check(identical(unname(attr(s, "suppressed")[2, ]), c(FALSE, TRUE, TRUE)), "suppressed flags")

# Kaplan-Meier: survfit's curves, group by group.
km <- tm_km(con, "time", "event", by = "arm")
fit <- survfit(Surv(AVAL, EVENT) ~ ARM, data = d)
fs <- summary(fit, censored = TRUE)
for (g in unique(km$group)) {
  r <- fs$strata == sub("^arm=", "ARM=", g)
  i <- km$group == g
  check(close_to(km$time[i], fs$time[r], 0) && close_to(km$surv[i], fs$surv[r], 1e-12) &&
          close_to(km$std.err[i], fs$std.err[r], 1e-10) &&
          close_to(km$lower[i], fs$lower[r], 1e-10), paste("survfit curve", g))
}
# km options (times, rmean, strata): summary(survfit, times =), summary(survfit, rmean =)$table
# and survdiff(... + strata()) on the same rows.
k2 <- tm_km(con, "time", "event", by = "arm", times = c(180, 365.5), rmean = 365, strata = "ecog")
s2 <- summary(fit, times = c(180, 365.5))
a2 <- summary(k2, times = c(180, 365.5))
check(close_to(a2$time, s2$time, 0) && close_to(a2$n.risk, s2$n.risk, 0) &&
        close_to(a2$n.event, s2$n.event, 0) && close_to(a2$surv, s2$surv, 1e-12) &&
        close_to(a2$std.err, s2$std.err, 1e-10) && close_to(a2$lower, s2$lower, 1e-10) &&
        close_to(a2$upper, s2$upper, 1e-10) &&
        identical(sub("^arm=", "ARM=", as.character(a2$strata)), as.character(s2$strata)),
      "summary(tm_km, times =) equals summary(survfit, times =)")
a3 <- summary(k2, times = 365.5)
check(close_to(a3$surv, s2$surv[s2$time == 365.5], 1e-12), "summary at a subset of the times")
rt <- summary(fit, rmean = 365)$table
check(close_to(k2$rmean$rmean, rt[, "rmean"], 1e-10) &&
        close_to(k2$rmean$se.rmean, rt[, "se(rmean)"], 1e-10) && all(k2$rmean$tau == 365),
      "rmean equals survfit's rmean = 365")
sd <- survdiff(Surv(AVAL, EVENT) ~ ARM + strata(ph.ecog), data = d)
check(close_to(k2$logrank$chi_square, sd$chisq, 1e-10) &&
        close_to(k2$logrank$p_value, pchisq(sd$chisq, 1, lower.tail = FALSE), 1e-8),
      "strata = the stratified log-rank test equals survdiff(... + strata(ph.ecog))")
out <- capture.output(print(k2))
check(any(grepl("*se(rmean)", out, fixed = TRUE)) &&
        any(grepl("restricted mean with upper limit = 365", out, fixed = TRUE)) &&
        any(grepl("stratified by ecog", out, fixed = TRUE)),
      "print shows rmean as print.survfit(rmean =) and the stratified test")
invisible(capture.output(print(a2)))
kc <- tm_km(con, "time", "event", by = "arm", rmean = "common")
rc2 <- summary(fit, rmean = "common")$table
check(close_to(kc$rmean$rmean, rc2[, "rmean"], 1e-10), "rmean = \"common\" equals survfit's")
e <- tryCatch(summary(k2, times = 200), error = function(e) conditionMessage(e))
check(is.character(e) && grepl("tm_km(..., times = c(180, 200, 365.5))", e, fixed = TRUE),
      "summary at a time not asked for says which times to ask tm_km for")
e <- tryCatch(tm_km(con, "time", "event", times = c(365, 180)),
              error = function(e) conditionMessage(e))
check(is.character(e) && grepl("strictly increasing", e), "times out of order is an R error")
e <- tryCatch(tm_km(con, "time", "event", rmean = "all"), error = function(e) conditionMessage(e))
check(is.character(e) && grepl("common", e), "a bad rmean is an R error")

png_file <- file.path(work, "km.png")
grDevices::png(png_file, type = if (capabilities("cairo")) "cairo" else "Xlib")
plot(km)
invisible(grDevices::dev.off())
check(file.exists(png_file) && file.size(png_file) > 1000, "plot() writes a PNG")
invisible(capture.output(print(km)))

# Models: the federation's coefficients equal R's on the same rows.
cx <- tm_coxph(con, Surv(time, event) ~ age + sex)
rx <- coxph(Surv(AVAL, EVENT) ~ AGE + SEX, data = d, ties = "efron")
check(close_to(coef(cx), coef(rx), 1e-6), "coef(tm_coxph) equals coxph")
check(close_to(vcov(cx), vcov(rx), 1e-6), "vcov(tm_coxph) equals coxph")
check(close_to(confint(cx), confint(rx), 1e-6), "confint(tm_coxph) equals coxph")
check(nobs(cx) == rx$n, "nobs")
invisible(capture.output(print(cx), print(summary(cx))))
lx <- tm_lm(con, bmi ~ age + sex)
rl <- lm(BMI ~ AGE + SEX, data = d)
check(close_to(coef(lx), coef(rl), 1e-9) && close_to(vcov(lx), vcov(rl), 1e-8), "tm_lm equals lm")
check(close_to(confint(lx), confint(rl), 1e-8), "confint(tm_lm) equals confint.lm")
gx <- tm_glm(con, event ~ age + sex, family = binomial)
rg <- glm(EVENT ~ AGE + SEX, data = d, family = binomial)
check(close_to(coef(gx), coef(rg), 1e-6) && close_to(vcov(gx), vcov(rg), 1e-6), "tm_glm equals glm")

# Quantiles: exact.
q <- tm_quantile(con, "age", c(0.1, 0.5, 0.9))
check(identical(as.vector(q), as.vector(quantile(d$AGE, c(0.1, 0.5, 0.9), na.rm = TRUE))) &&
        identical(names(q), c("10%", "50%", "90%")), "tm_quantile equals quantile()")

# Errors carry the CLI's message.
e <- tryCatch(tm_query(con, "mean(nosuch)"), error = function(e) conditionMessage(e))
check(is.character(e) && grepl("nosuch", e), "an unknown variable is an R error naming it")
e <- tryCatch(tm_connect(store = file.path(work, "missing"), dataset = "x", cli = cli),
              error = function(e) conditionMessage(e))
check(grepl("no store directory", e), "tm_connect checks the store")

unlink(work, recursive = TRUE)
if (failures > 0L) { cat(failures, "check(s) failed\n"); quit(status = 1) }
cat("all checks passed\n")
