# A connection is only what the trialmesh CLI needs to run a query: the federated study
# (members file, coordinator key, passphrase file) or one site's own store (--local). Every
# call runs `trialmesh query --json` and parses its output (docs/json-output.md, schema 1).

#' Connect to a trialmesh federation or to a site's own store
#'
#' Federated: `tm_connect(study = "LUNG-7", members = "members.toml",
#' identity = "coordinator.key")`. Local: `tm_connect(store = "/var/lib/trialmesh/store",
#' dataset = "lung7")`. `cli` is the trialmesh program (default: `trialmesh` on the PATH, or
#' the environment variable TRIALMESH_CLI).
tm_connect <- function(study = NULL, members = NULL, identity = NULL,
                       passphrase_file = NULL, store = NULL, dataset = NULL,
                       deadline_ms = NULL, cli = Sys.getenv("TRIALMESH_CLI", "trialmesh")) {
  local <- !is.null(store)
  if (local) {
    if (is.null(dataset)) stop("tm_connect: a local connection needs store = and dataset =")
    if (!dir.exists(store)) stop("tm_connect: no store directory ", store)
  } else {
    if (is.null(study) || is.null(members) || is.null(identity))
      stop("tm_connect: give study =, members = and identity = (federated), ",
           "or store = and dataset = (one site's own store)")
    for (f in c(members, identity))
      if (!file.exists(f)) stop("tm_connect: no such file ", f)
  }
  if (!nzchar(Sys.which(cli)) && !file.exists(cli))
    stop("tm_connect: the trialmesh program '", cli, "' was not found; install the trialmesh ",
         "package or set cli = / TRIALMESH_CLI")
  structure(list(local = local, study = study, members = members, identity = identity,
                 passphrase_file = passphrase_file, store = store, dataset = dataset,
                 deadline_ms = deadline_ms, cli = cli),
            class = "tm_connection")
}

print.tm_connection <- function(x, ...) {
  if (x$local) {
    cat("trialmesh local connection: store", x$store, "dataset", x$dataset, "\n")
  } else {
    cat("trialmesh federated connection: study", x$study, "members", x$members, "\n")
  }
  invisible(x)
}

# Runs one query; the parsed JSON (a list). A federated answer that is partial (some site did
# not answer; exit status 3) is returned with a warning naming the sites; any other failure
# stops with the CLI's own error message.
tm_run <- function(con, query) {
  if (!inherits(con, "tm_connection")) stop("tm_run: con must come from tm_connect()")
  args <- c("query", "--json")
  if (con$local) {
    args <- c(args, "--local", "--store", shQuote(con$store), "--dataset", shQuote(con$dataset))
  } else {
    args <- c(args, "--study", shQuote(con$study), "--members", shQuote(con$members),
              "--identity", shQuote(con$identity))
    if (!is.null(con$passphrase_file))
      args <- c(args, "--passphrase-file", shQuote(con$passphrase_file))
    if (!is.null(con$deadline_ms)) args <- c(args, "--deadline-ms", con$deadline_ms)
  }
  err <- tempfile("trialmesh-err")
  on.exit(unlink(err))
  out <- suppressWarnings(system2(con$cli, c(args, shQuote(query)), stdout = TRUE, stderr = err))
  status <- attr(out, "status")
  if (is.null(status)) status <- 0L
  message_text <- paste(readLines(err, warn = FALSE), collapse = "\n")
  if (status != 0L && status != 3L) {
    if (!nzchar(message_text)) message_text <- paste(out, collapse = "\n")
    stop(sub("^error: ", "", message_text), call. = FALSE)
  }
  json <- paste(out, collapse = "\n")
  parsed <- jsonlite::fromJSON(json, simplifyVector = FALSE)
  if (status == 3L) {
    missing <- vapply(Filter(function(s) s$outcome != "answered", parsed$sites),
                      function(s) paste0(s$site, " (", s$outcome, ")"), "")
    warning("partial result: not every site answered: ", paste(missing, collapse = ", "),
            call. = FALSE)
  }
  parsed
}
