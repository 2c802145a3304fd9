# Kaplan-Meier curves as an object shaped like survival's survfit: time, n.risk, n.event,
# n.censor, surv, std.err (of S, as summary.survfit prints it), lower, upper, strata (the
# number of rows of each curve, named "arm=PBO"), plus the curve summaries (n, events, median
# and its limits) and the log-rank test the federation released. With the query language's km
# options (docs/query-language.md "km"): `times` adds survival at those times per curve (what
# summary(fit, times = ...) shows, computed by the federation on the merged curve), `rmean` the
# restricted mean (print(fit, rmean = ...)), `strata` a stratified log-rank test
# (survdiff(... + strata(s))).

# A number as the query language writes it: shortest text that reads back to the same double.
km_number <- function(x) {
  for (digits in 15:17) {
    text <- formatC(x, digits = digits, format = "g")
    if (as.numeric(text) == x) return(trimws(text))
  }
  trimws(formatC(x, digits = 17, format = "g"))
}

km_options <- function(times, rmean, strata) {
  opts <- character()
  if (!is.null(times)) {
    if (!is.numeric(times) || !length(times) || anyNA(times) || any(!is.finite(times)) ||
        (length(times) > 1 && any(diff(times) <= 0)))
      stop("tm_km: times must be finite numbers in strictly increasing order, e.g. c(180, 365)",
           call. = FALSE)
    opts <- c(opts, paste0("times = [", paste(vapply(times, km_number, ""), collapse = ", "), "]"))
  }
  if (!is.null(rmean)) {
    if (identical(rmean, "common")) {
      opts <- c(opts, "rmean = common")
    } else if (is.numeric(rmean) && length(rmean) == 1 && is.finite(rmean)) {
      opts <- c(opts, paste0("rmean = ", km_number(rmean)))
    } else {
      stop("tm_km: rmean must be one finite number (the upper limit) or \"common\"",
           call. = FALSE)
    }
  }
  if (!is.null(strata)) {
    if (!is.character(strata) || length(strata) != 1 || !nzchar(strata))
      stop("tm_km: strata must be one variable name, e.g. strata = \"ecog\"", call. = FALSE)
    opts <- c(opts, paste0("strata = ", strata))
  }
  opts
}

null_na <- function(v) if (is.null(v)) NA_real_ else as.numeric(v)

#' A federated Kaplan-Meier estimate: tm_km(con, "time", "event", by = "arm", times = c(180,
#' 365), rmean = 365, strata = "ecog")
tm_km <- function(con, time, event, by = NULL, where = NULL, times = NULL, rmean = NULL,
                  strata = NULL) {
  q <- sprintf("km(%s)", paste(c(time, event, km_options(times, rmean, strata)), collapse = ", "))
  if (!is.null(where)) q <- paste(q, "where", where)
  if (length(by)) q <- paste(q, "by", paste(by, collapse = ", "))
  j <- tm_run(con, q)
  result <- if (con$local) j else j$result
  if (is.null(result)) stop("no result: ", j$refusal, call. = FALSE)
  df <- tm_table(result)
  groups <- if (length(by)) {
    do.call(paste, c(lapply(by, function(b) paste0(b, "=", df[[b]])), sep = ", "))
  } else {
    rep("all", nrow(df))
  }
  curves <- do.call(rbind, lapply(result$curves, function(c)
    data.frame(group = c$group, n = c$n, events = c$events,
               median = if (is.null(c$median)) NA_real_ else c$median,
               lower = if (is.null(c$median_lower)) NA_real_ else c$median_lower,
               upper = if (is.null(c$median_upper)) NA_real_ else c$median_upper,
               suppressed = isTRUE(c$suppressed), stringsAsFactors = FALSE)))
  # Survival at the requested times, one row per curve and time within its follow-up, as
  # summary(fit, times = ...); a suppressed curve has none.
  at_times <- if (!is.null(times)) {
    rows <- lapply(result$curves, function(c) lapply(c$survival_at_times, function(a)
      data.frame(group = c$group, time = a$time, n.risk = a$n_risk, n.event = a$n_event,
                 surv = null_na(a$survival), std.err = null_na(a$std_err),
                 lower = null_na(a$lower_95), upper = null_na(a$upper_95),
                 stringsAsFactors = FALSE)))
    rows <- unlist(rows, recursive = FALSE)
    if (length(rows)) do.call(rbind, rows) else
      data.frame(group = character(), time = numeric(), n.risk = numeric(),
                 n.event = numeric(), surv = numeric(), std.err = numeric(),
                 lower = numeric(), upper = numeric())
  }
  rmeans <- if (!is.null(rmean)) {
    do.call(rbind, lapply(result$curves, function(c)
      data.frame(group = c$group, rmean = null_na(c$rmean$rmean),
                 se.rmean = null_na(c$rmean$se_rmean), tau = null_na(c$rmean$tau),
                 stringsAsFactors = FALSE)))
  }
  order <- unique(groups)
  strata_rows <- if (length(by)) setNames(as.integer(table(factor(groups, levels = order))), order)
  structure(list(time = df$time, n.risk = df$n_risk, n.event = df$n_event,
                 n.censor = df$n_censor, surv = df$survival, std.err = df$std_err,
                 lower = df$lower_95, upper = df$upper_95, strata = strata_rows, group = groups,
                 curves = curves, logrank = result$logrank, conf.int = 0.95, call = q,
                 times = times, at.times = at_times, rmean = rmeans,
                 suppressed = attr(df, "suppressed")),
            class = "tm_km")
}

# As print.survfit: n, events, median and its limits per curve, with rmean = ... also the
# restricted mean and its standard error ("*rmean", "*se(rmean)") and the footnote naming the
# upper limit.
print.tm_km <- function(x, ...) {
  cat("Call:", x$call, "\n\n")
  tab <- x$curves[, c("group", "n", "events")]
  if (!is.null(x$rmean)) {
    tab[["*rmean"]] <- x$rmean$rmean
    tab[["*se(rmean)"]] <- x$rmean$se.rmean
  }
  tab$median <- x$curves$median
  tab[["0.95LCL"]] <- x$curves$lower
  tab[["0.95UCL"]] <- x$curves$upper
  print(tab, row.names = FALSE)
  if (!is.null(x$rmean)) {
    taus <- unique(stats::na.omit(x$rmean$tau))
    cat("    * restricted mean with upper limit = ",
        if (length(taus)) paste(format(taus), collapse = ", ") else "NA (withheld)", "\n", sep = "")
  }
  if (!is.null(x$logrank)) {
    what <- if (is.null(x$logrank$strata)) "Log-rank test" else
      paste0("Log-rank test stratified by ", x$logrank$strata)
    cat(sprintf("\n%s: Chisq = %.1f on %d degrees of freedom, p = %s\n", what,
                x$logrank$chi_square, as.integer(x$logrank$df),
                format.pval(x$logrank$p_value, digits = 2)))
  }
  invisible(x)
}

# Without `times`: every row of the curves as a data frame. With `times`: survival at those
# times in summary.survfit's layout (time, n.risk, n.event, surv, std.err, lower, upper, strata)
# — the federation computes them, so they must be among the times given to tm_km().
summary.tm_km <- function(object, times = NULL, ...) {
  if (is.null(times)) {
    return(data.frame(group = object$group, time = object$time, n.risk = object$n.risk,
                      n.event = object$n.event, survival = object$surv,
                      std.err = object$std.err, lower = object$lower, upper = object$upper))
  }
  if (is.null(object$times) || !all(times %in% object$times))
    stop("summary(fit, times = ...): the federation computes survival at times; ask for them ",
         "in tm_km(..., times = c(", paste(vapply(sort(unique(c(object$times, times))),
                                                  km_number, ""), collapse = ", "), "))",
         call. = FALSE)
  a <- object$at.times[object$at.times$time %in% times, , drop = FALSE]
  out <- list(time = a$time, n.risk = a$n.risk, n.event = a$n.event, surv = a$surv,
              std.err = a$std.err, lower = a$lower, upper = a$upper, conf.int = object$conf.int,
              call = object$call)
  if (!is.null(object$strata))
    out$strata <- factor(a$group, levels = names(object$strata))
  structure(out, class = "summary.tm_km")
}

print.summary.tm_km <- function(x, ...) {
  cat("Call:", x$call, "\n\n")
  tab <- data.frame(time = x$time, n.risk = x$n.risk, n.event = x$n.event, survival = x$surv,
                    std.err = x$std.err, lower = x$lower, upper = x$upper)
  names(tab)[6:7] <- c(sprintf("lower %g%% CI", 100 * x$conf.int),
                       sprintf("upper %g%% CI", 100 * x$conf.int))
  groups <- if (is.null(x$strata)) list(all = rep(TRUE, nrow(tab))) else
    lapply(setNames(levels(x$strata), levels(x$strata)), function(l) x$strata == l)
  for (g in names(groups)) {
    if (!is.null(x$strata)) cat("                ", g, "\n")
    print(tab[groups[[g]], , drop = FALSE], row.names = FALSE, digits = 4)
    cat("\n")
  }
  invisible(x)
}

# One curve's step function from (0, 1): the points plot(type = "s") draws.
km_steps <- function(x, g, what) {
  i <- x$group == g
  list(time = c(0, x$time[i]), value = c(1, x[[what]][i]))
}

plot.tm_km <- function(x, conf.int = TRUE, col = seq_along(unique(x$group)), lty = 1,
                       xlab = "Time", ylab = "Survival probability", legend = TRUE, ...) {
  groups <- unique(x$group)
  graphics::plot(NA, xlim = c(0, max(x$time, na.rm = TRUE)), ylim = c(0, 1), xlab = xlab,
                 ylab = ylab, ...)
  lines.tm_km(x, conf.int = conf.int, col = col, lty = lty)
  if (legend && length(groups) > 1)
    graphics::legend("bottomleft", legend = groups, col = col, lty = lty, bty = "n")
  invisible(x)
}

lines.tm_km <- function(x, conf.int = TRUE, col = 1, lty = 1, ...) {
  groups <- unique(x$group)
  col <- rep_len(col, length(groups))
  for (k in seq_along(groups)) {
    s <- km_steps(x, groups[k], "surv")
    graphics::lines(s$time, s$value, type = "s", col = col[k], lty = lty, ...)
    if (conf.int) {
      for (what in c("lower", "upper")) {
        b <- km_steps(x, groups[k], what)
        graphics::lines(b$time, b$value, type = "s", col = col[k], lty = 2, ...)
      }
    }
  }
  invisible(x)
}
