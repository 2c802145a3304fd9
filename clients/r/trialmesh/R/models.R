# Pooled models fitted across the federation (lm, glm with family = binomial, coxph), as objects
# with the methods R users reach for: print, summary, coef, vcov, confint, nobs. The fit is the
# federation's (docs/statistics.md); these methods only present it.

# A formula or text as the query language's model text. Surv(time, event) ~ x + y becomes
# "time, event ~ x + y"; factor(x) is kept.
model_text <- function(formula) {
  text <- if (inherits(formula, "formula")) paste(deparse(formula, width.cutoff = 500L),
                                                  collapse = " ") else as.character(formula)
  sub("^\\s*Surv\\(\\s*([^,]+?)\\s*,\\s*([^)]+?)\\s*\\)\\s*~", "\\1, \\2 ~", text, perl = TRUE)
}

tm_model <- function(con, query, class) {
  j <- tm_run(con, query)
  coefs <- j$coefficients
  names <- vapply(coefs, function(c) c$name, "")
  estimate <- vapply(coefs, function(c) if (is.null(c$coef)) c$estimate else c$coef, 0)
  se <- vapply(coefs, function(c) c$std_error, 0)
  stat <- vapply(coefs, function(c) {
    v <- if (!is.null(c$z)) c$z else if (!is.null(c$z_value)) c$z_value else c$t_value
    if (is.null(v)) NA_real_ else v
  }, 0)
  p <- vapply(coefs, function(c) if (is.null(c$p_value)) NA_real_ else c$p_value, 0)
  covariance <- do.call(rbind, lapply(j$covariance, function(r) unlist(r)))
  if (!is.null(covariance)) dimnames(covariance) <- list(names, names)
  structure(list(coefficients = setNames(estimate, names), std.error = setNames(se, names),
                 statistic = setNames(stat, names), p.value = setNames(p, names),
                 var = covariance, n = j$n, events = j$events, call = j$call,
                 model = j$model, df.residual = j$df_residual, json = j,
                 sites = j$sites),
            class = c(class, "tm_model"))
}

#' Pooled Cox model: tm_coxph(con, Surv(time, event) ~ age + sex + arm)
tm_coxph <- function(con, formula, ties = c("efron", "breslow"), strata = NULL) {
  ties <- match.arg(ties)
  q <- paste0("coxph(", model_text(formula), if (ties == "breslow") ", ties = breslow",
              if (!is.null(strata)) paste0(", strata = ", strata), ")")
  tm_model(con, q, "tm_coxph")
}

#' Pooled logistic regression: tm_glm(con, event ~ age + arm)
tm_glm <- function(con, formula, family = "binomial") {
  fam <- if (is.function(family)) family()$family else if (is.list(family)) family$family else family
  if (!identical(fam, "binomial"))
    stop("tm_glm: only family = binomial (logistic regression) is fitted by the federation; ",
         "for a linear model use tm_lm()")
  tm_model(con, paste0("glm(", model_text(formula), ", family = binomial)"), "tm_glm")
}

#' Pooled linear regression: tm_lm(con, bmi ~ age + sex)
tm_lm <- function(con, formula) tm_model(con, paste0("lm(", model_text(formula), ")"), "tm_lm")

coef.tm_model <- function(object, ...) object$coefficients
vcov.tm_model <- function(object, ...) object$var
nobs.tm_model <- function(object, ...) object$n

# Wald intervals (confint.default; for lm with the t quantile, as confint.lm).
confint.tm_model <- function(object, parm, level = 0.95, ...) {
  cf <- object$coefficients
  if (missing(parm)) parm <- names(cf)
  a <- (1 - level) / 2
  q <- if (inherits(object, "tm_lm")) stats::qt(1 - a, object$df.residual) else stats::qnorm(1 - a)
  ci <- cbind(cf[parm] - q * object$std.error[parm], cf[parm] + q * object$std.error[parm])
  dimnames(ci) <- list(parm, sprintf("%s %%", format(100 * c(a, 1 - a), trim = TRUE,
                                                     scientific = FALSE, digits = 3)))
  ci
}

summary.tm_model <- function(object, ...) {
  cox <- inherits(object, "tm_coxph")
  m <- cbind(object$coefficients, if (cox) exp(object$coefficients), object$std.error,
             object$statistic, object$p.value)
  colnames(m) <- if (cox) {
    c("coef", "exp(coef)", "se(coef)", "z", "Pr(>|z|)")
  } else if (inherits(object, "tm_lm")) {
    c("Estimate", "Std. Error", "t value", "Pr(>|t|)")
  } else {
    c("Estimate", "Std. Error", "z value", "Pr(>|z|)")
  }
  structure(list(call = object$call, coefficients = m, n = object$n, events = object$events,
                 sites = object$sites, model = object),
            class = "summary.tm_model")
}

print.tm_model <- function(x, ...) {
  s <- summary.tm_model(x)
  cat("Call (federated):", s$call, "\n\n")
  stats::printCoefmat(s$coefficients, P.values = TRUE, has.Pvalue = TRUE)
  cat("\nn =", s$n, if (!is.null(s$events)) paste(", events =", s$events), "\n")
  if (!is.null(s$sites)) {
    cat("sites contributed:", paste(unlist(s$sites$contributed), collapse = " "), "\n")
    for (l in s$sites$left_out) cat("left out:", l$site, "(", l$outcome, ":", l$reason, ")\n")
  }
  invisible(x)
}

print.summary.tm_model <- function(x, ...) {
  print.tm_model(x$model)
  invisible(x)
}
