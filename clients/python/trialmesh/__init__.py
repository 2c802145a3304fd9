"""trialmesh for Python: queries through the ``trialmesh`` command-line tool's JSON output.

Standard library only; results are pandas DataFrames when pandas is installed (``as_frame``),
else lists of dicts. The JSON schema is docs/json-output.md (schema_version 1).

    import trialmesh
    con = trialmesh.connect(study="LUNG-7", members="members.toml",
                            identity="coordinator.key")        # or store=..., dataset=...
    table = con.query("count, mean(bmi) by arm")               # Table: .rows, .columns
    km = con.km("time", "event", by=["arm"])
    fit = con.coxph("time, event ~ age + sex")                 # .coef, .vcov, .confint()
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["connect", "Connection", "Table", "Model", "TrialmeshError", "PartialResultWarning"]
__version__ = "0.1.0"
SCHEMA_VERSION = 1


class TrialmeshError(RuntimeError):
    """A query the CLI or the federation refused; the message is the CLI's."""


class PartialResultWarning(UserWarning):
    """Some sites did not answer a federated query; the result covers the others."""


@dataclass
class Table:
    """A result table: ``rows`` are dicts by column name, ``None`` for a null or withheld
    value; ``suppressed[i]`` names the columns disclosure control withheld in row i."""

    kind: str
    columns: List[str]
    group_columns: List[str]
    rows: List[Dict[str, Any]]
    suppressed: List[List[str]]
    notes: List[str]
    raw: Dict[str, Any]
    sites: List[Dict[str, Any]] = field(default_factory=list)
    aggregation: Optional[str] = None
    approval: Optional[str] = None
    partial: bool = False

    def column(self, name: str) -> List[Any]:
        if name not in self.columns:
            raise KeyError(f"no column {name!r}; columns are {self.columns}")
        return [r.get(name) for r in self.rows]

    def as_frame(self):
        """A pandas DataFrame (None as NaN/None); raises ImportError without pandas."""
        import pandas as pd  # optional

        return pd.DataFrame([{c: r.get(c) for c in self.columns} for r in self.rows],
                            columns=self.columns)


def _table(result: Dict[str, Any]) -> Table:
    if result.get("schema_version") != SCHEMA_VERSION:
        raise TrialmeshError(
            f"result schema_version {result.get('schema_version')}, this client reads "
            f"{SCHEMA_VERSION}: update the client")
    rows, suppressed = [], []
    for r in result["rows"]:
        withheld = list(r.get("suppressed", []))
        suppressed.append(withheld)
        rows.append({c: (None if c in withheld else r.get(c)) for c in result["columns"]})
    return Table(kind=result["kind"], columns=list(result["columns"]),
                 group_columns=list(result["group_columns"]), rows=rows,
                 suppressed=suppressed, notes=list(result.get("notes", [])), raw=result)


@dataclass
class Model:
    """A pooled model fit (lm, glm, coxph): coefficients by name, covariance, the JSON."""

    model: str
    call: str
    names: List[str]
    coef: Dict[str, float]
    std_error: Dict[str, float]
    p_value: Dict[str, Optional[float]]
    vcov: List[List[float]]
    n: int
    events: Optional[int]
    raw: Dict[str, Any]

    def confint(self, level: float = 0.95) -> Dict[str, tuple]:
        """Wald intervals (normal quantile; for lm R uses the t quantile, close for large n)."""
        z = _normal_quantile(1 - (1 - level) / 2)
        return {n: (self.coef[n] - z * self.std_error[n], self.coef[n] + z * self.std_error[n])
                for n in self.names}


def _normal_quantile(p: float) -> float:
    # Inverse of the standard normal CDF by bisection on math.erf (enough for intervals).
    lo, hi = -10.0, 10.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


class Connection:
    """What the CLI needs for a query: a federated study, or one site's own store."""

    def __init__(self, study=None, members=None, identity=None, passphrase_file=None,
                 store=None, dataset=None, deadline_ms=None, cli=None):
        self.cli = cli or os.environ.get("TRIALMESH_CLI", "trialmesh")
        if shutil.which(self.cli) is None and not os.path.exists(self.cli):
            raise TrialmeshError(f"the trialmesh program {self.cli!r} was not found; install "
                                 "the trialmesh package or pass cli=")
        self.local = store is not None
        if self.local:
            if dataset is None:
                raise TrialmeshError("a local connection needs store= and dataset=")
            if not os.path.isdir(store):
                raise TrialmeshError(f"no store directory {store}")
        elif not (study and members and identity):
            raise TrialmeshError("give study=, members= and identity= (federated), or store= "
                                 "and dataset= (one site's own store)")
        self.study, self.members, self.identity = study, members, identity
        self.passphrase_file, self.store, self.dataset = passphrase_file, store, dataset
        self.deadline_ms = deadline_ms

    def run(self, query: str) -> Dict[str, Any]:
        """Runs one query; the parsed JSON. Partial federated answers warn."""
        args = [self.cli, "query", "--json"]
        if self.local:
            args += ["--local", "--store", self.store, "--dataset", self.dataset]
        else:
            args += ["--study", self.study, "--members", self.members, "--identity",
                     self.identity]
            if self.passphrase_file:
                args += ["--passphrase-file", self.passphrase_file]
            if self.deadline_ms:
                args += ["--deadline-ms", str(self.deadline_ms)]
        proc = subprocess.run(args + [query], capture_output=True, text=True)
        if proc.returncode not in (0, 3):
            message = (proc.stderr or proc.stdout).strip()
            raise TrialmeshError(message[7:] if message.startswith("error: ") else message)
        try:
            out = json.loads(proc.stdout)
        except json.JSONDecodeError as e:
            raise TrialmeshError(f"the CLI printed no JSON ({e}): {proc.stdout[:200]!r}")
        if proc.returncode == 3:
            missing = [f"{s['site']} ({s['outcome']})" for s in out.get("sites", [])
                       if s["outcome"] != "answered"]
            warnings.warn("partial result: not every site answered: " + ", ".join(missing),
                          PartialResultWarning, stacklevel=2)
        return out

    def query(self, query: str) -> Table:
        j = self.run(query)
        if self.local:
            return _table(j)
        if j.get("result") is None:
            raise TrialmeshError("no result: " + (j.get("refusal") or "no site answered"))
        t = _table(j["result"])
        t.sites, t.aggregation, t.approval = j["sites"], j["aggregation"], j["approval"]
        t.partial = bool(j["partial"])
        return t

    def km(self, time: str, event: str, by: Sequence[str] = (), where: Optional[str] = None):
        q = f"km({time}, {event})" + (f" where {where}" if where else "")
        if by:
            q += " by " + ", ".join(by)
        return self.query(q)

    def quantile(self, x: str, probs: Sequence[float] = (0.25, 0.5, 0.75),
                 where: Optional[str] = None) -> Dict[str, Optional[float]]:
        q = f"quantile({x}, [{', '.join(repr(float(p)) for p in probs)}])"
        if where:
            q += f" where {where}"
        j = self.run(q)
        return {r["name"]: r["quantile"] for r in j["rows"]}

    def _model(self, text: str) -> Model:
        j = self.run(text)
        names = [c["name"] for c in j["coefficients"]]
        est = {c["name"]: c.get("coef", c.get("estimate")) for c in j["coefficients"]}
        return Model(model=j["model"], call=j["call"], names=names, coef=est,
                     std_error={c["name"]: c["std_error"] for c in j["coefficients"]},
                     p_value={c["name"]: c.get("p_value") for c in j["coefficients"]},
                     vcov=j.get("covariance"), n=j["n"], events=j.get("events"), raw=j)

    def coxph(self, formula: str, ties: str = "efron") -> Model:
        """``con.coxph("time, event ~ age + sex")``."""
        return self._model(f"coxph({formula}" + (", ties = breslow" if ties == "breslow" else "")
                           + ")")

    def glm(self, formula: str) -> Model:
        """Logistic regression: ``con.glm("event ~ age + arm")``."""
        return self._model(f"glm({formula}, family = binomial)")

    def lm(self, formula: str) -> Model:
        return self._model(f"lm({formula})")


def connect(**kwargs) -> Connection:
    """See Connection."""
    return Connection(**kwargs)
