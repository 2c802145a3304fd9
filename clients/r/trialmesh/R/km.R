# Kaplan-Meier curves as an object shaped like survival's survfit: time, n.risk, n.event,
# n.censor, surv, std.err (of S, as summary.survfit prints it), lower, upper, strata (the
# number of rows of each curve, named "arm=PBO"), plus the curve summaries (n, events, median
# and its limits) and the log-rank test the federation released.

#' A federated Kaplan-Meier estimate: tm_km(con, "time", "event", by = "arm")
tm_km <- function(con, time, event, by = NULL, where = NULL) {
  q <- sprintf("km(%s, %s)", time, event)
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
  order <- unique(groups)
  strata <- if (length(by)) setNames(as.integer(table(factor(groups, levels = order))), order)
  structure(list(time = df$time, n.risk = df$n_risk, n.event = df$n_event,
                 n.censor = df$n_censor, surv = df$survival, std.err = df$std_err,
                 lower = df$lower_95, upper = df$upper_95, strata = strata, group = groups,
                 curves = curves, logrank = result$logrank, conf.int = 0.95, call = q,
                 suppressed = attr(df, "suppressed")),
            class = "tm_km")
}

print.tm_km <- function(x, ...) {
  cat("Call:", x$call, "\n\n")
  tab <- x$curves
  names(tab) <- c("group", "n", "events", "median", "0.95LCL", "0.95UCL", "suppressed")
  print(tab[, c("group", "n", "events", "median", "0.95LCL", "0.95UCL")], row.names = FALSE)
  if (!is.null(x$logrank)) {
    cat(sprintf("\nLog-rank test: Chisq = %.1f on %d degrees of freedom, p = %s\n",
                x$logrank$chi_square, as.integer(x$logrank$df),
                format.pval(x$logrank$p_value, digits = 2)))
  }
  invisible(x)
}

summary.tm_km <- function(object, ...) {
  data.frame(group = object$group, time = object$time, n.risk = object$n.risk,
             n.event = object$n.event, survival = object$surv, std.err = object$std.err,
             lower = object$lower, upper = object$upper)
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
