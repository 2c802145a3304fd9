# Result tables (kind "cells", "histogram", "survival"; docs/json-output.md) as data frames:
# one column per result column, typed (integer counts, double statistics, logical, character
# groups), NA for a null or a suppressed value. Which values disclosure control withheld is in
# attr(, "suppressed"), a logical matrix like the data frame; the notes in attr(, "notes").

column_vector <- function(values) {
  present <- Filter(Negate(is.null), values)
  if (length(present) == 0) return(rep(NA, length(values)))
  fill <- function(na, conv) vapply(values, function(v) if (is.null(v)) na else conv(v), na)
  if (all(vapply(present, is.logical, TRUE))) return(fill(NA, as.logical))
  if (all(vapply(present, is.numeric, TRUE))) {
    whole <- all(vapply(present, function(v) v == round(v) && abs(v) < .Machine$integer.max,
                        TRUE))
    if (whole && all(vapply(present, is.integer, TRUE))) return(fill(NA_integer_, as.integer))
    return(fill(NA_real_, as.double))
  }
  fill(NA_character_, function(v) as.character(v))
}

#' A result table object from trialmesh's JSON as a data.frame
tm_table <- function(result) {
  if (is.null(result)) return(NULL)
  if (is.character(result)) result <- jsonlite::fromJSON(result, simplifyVector = FALSE)
  columns <- unlist(result$columns)
  rows <- result$rows
  out <- lapply(columns, function(col) column_vector(lapply(rows, function(r) r[[col]])))
  names(out) <- columns
  df <- as.data.frame(out, stringsAsFactors = FALSE, optional = TRUE)
  names(df) <- columns
  suppressed <- matrix(FALSE, nrow = length(rows), ncol = length(columns),
                       dimnames = list(NULL, columns))
  for (i in seq_along(rows)) {
    cols <- unlist(rows[[i]]$suppressed)
    if (length(cols)) suppressed[i, intersect(cols, columns)] <- TRUE
  }
  attr(df, "suppressed") <- suppressed
  attr(df, "notes") <- unlist(result$notes)
  attr(df, "kind") <- result$kind
  attr(df, "by") <- unlist(result$by)
  df
}

#' Run an aggregate query and return its table as a data.frame
#'
#' `tm_query(con, "count, mean(bmi), sd(bmi) by arm")`. Federated results carry the sites
#' that answered in attr(, "sites") and the aggregation mode and approval in attributes.
tm_query <- function(con, query) {
  j <- tm_run(con, query)
  if (con$local) return(tm_table(j))
  if (is.null(j$result)) {
    stop("no result: ", if (nzchar(j$refusal)) j$refusal else "no site answered", call. = FALSE)
  }
  df <- tm_table(j$result)
  attr(df, "sites") <- do.call(rbind, lapply(j$sites, function(s)
    data.frame(site = s$site, outcome = s$outcome, reason = s$reason,
               stringsAsFactors = FALSE)))
  attr(df, "aggregation") <- j$aggregation
  attr(df, "approval") <- j$approval
  attr(df, "partial") <- isTRUE(j$partial)
  df
}

#' Exact quantiles (R's type 7), e.g. tm_quantile(con, "age", c(0.25, 0.5, 0.75))
tm_quantile <- function(con, x, probs = c(0.25, 0.5, 0.75), where = NULL) {
  q <- sprintf("quantile(%s, c(%s))", x, paste(format(probs, digits = 17), collapse = ", "))
  if (!is.null(where)) q <- paste(q, "where", where)
  j <- tm_run(con, q)
  values <- vapply(j$rows, function(r) if (is.null(r$quantile)) NA_real_ else r$quantile, 0)
  names(values) <- vapply(j$rows, function(r) r$name, "")
  attr(values, "n") <- j$n
  values
}
