"""The Python client (clients/python/trialmesh) against a store made by `trialmesh demo --local`:
tables typed and equal to the rows' own counts and means, None for withheld values, quantiles
equal to R's type 7 computed here, a Cox fit equal to R's coxph (Rscript) on the same rows, and
the CLI's errors raised as TrialmeshError.

    python3 python_client_test.py <trialmesh binary> <clients/python> <scratch dir>
"""
import csv
import math
import os
import shutil
import statistics
import subprocess
import sys
import unittest

CLI, CLIENT, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, CLIENT)
import trialmesh  # noqa: E402


def type7(values, p):
    x = sorted(values)
    h = (len(x) - 1) * p
    lo = math.floor(h)
    return x[lo] + (h - lo) * (x[min(lo + 1, len(x) - 1)] - x[lo])


class PythonClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        shutil.rmtree(WORK, ignore_errors=True)
        cls.data = os.path.join(WORK, "data")
        subprocess.run([CLI, "demo", "--local", "--rows", "2000", "--seed", "5", "--keep",
                        "--workdir", cls.data], check=True, capture_output=True, timeout=240)
        with open(os.path.join(cls.data, "trial.csv"), newline="") as f:
            cls.rows = list(csv.DictReader(f))
        cls.con = trialmesh.connect(store=os.path.join(cls.data, "store"), dataset="lung7",
                                    cli=CLI)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(WORK, ignore_errors=True)

    def test_table_equals_the_rows(self):
        t = self.con.query("count, mean(bmi) by arm")
        self.assertEqual(t.columns, ["arm", "arm_label", "count", "mean(bmi)"])
        for row in t.rows:
            mine = [r for r in self.rows if r["ARM"] == row["arm"]]
            self.assertIsInstance(row["count"], int)
            self.assertEqual(row["count"], len(mine))
            bmi = [float(r["BMI"]) for r in mine if r["BMI"] != ""]
            self.assertAlmostEqual(row["mean(bmi)"], statistics.fmean(bmi), places=10)
        try:
            import pandas  # noqa: F401
        except ImportError:
            return
        self.assertEqual(t.as_frame().shape, (len(t.rows), 4))

    def test_withheld_values_are_none(self):
        t = trialmesh._table({"schema_version": 1, "kind": "cells",
                              "columns": ["arm", "count"], "group_columns": ["arm"],
                              "rows": [{"arm": "A", "count": 12, "suppressed": []},
                                       {"arm": "B", "count": None, "suppressed": ["count"]}],
                              "notes": []})
        self.assertEqual(t.column("count"), [12, None])
        self.assertEqual(t.suppressed, [[], ["count"]])
        with self.assertRaises(trialmesh.TrialmeshError):
            trialmesh._table({"schema_version": 2})

    def test_quantiles_are_type_7(self):
        q = self.con.quantile("age", [0.1, 0.5, 0.9])
        ages = [float(r["AGE"]) for r in self.rows if r["AGE"] != ""]
        self.assertEqual(list(q), ["10%", "50%", "90%"])
        for name, p in zip(q, [0.1, 0.5, 0.9]):
            self.assertAlmostEqual(q[name], type7(ages, p), places=9)

    def test_km_and_cox_equal_r(self):
        km = self.con.km("time", "event", by=["arm"])
        self.assertEqual(km.kind, "survival")
        self.assertTrue(all(0 <= s <= 1 for s in km.column("survival")))
        fit = self.con.coxph("time, event ~ age + sex")
        script = ("suppressMessages(library(survival)); d <- read.csv(commandArgs(TRUE)[1]); "
                  "f <- coxph(Surv(AVAL, EVENT) ~ AGE + SEX, data = d); "
                  "cat(sprintf('%.17g', c(coef(f), vcov(f))))")
        out = subprocess.run(["Rscript", "-e", script, os.path.join(self.data, "trial.csv")],
                             check=True, capture_output=True, text=True).stdout.split()
        r = [float(v) for v in out]
        for i, name in enumerate(fit.names):
            self.assertAlmostEqual(fit.coef[name] / r[i], 1, places=6)
        self.assertAlmostEqual(fit.vcov[0][0] / r[2], 1, places=6)
        lo, hi = fit.confint()["age"]
        self.assertLess(lo, fit.coef["age"])
        self.assertGreater(hi, fit.coef["age"])
        self.assertEqual(fit.n, len(self.rows))

    def test_errors_carry_the_cli_message(self):
        with self.assertRaisesRegex(trialmesh.TrialmeshError, "nosuch"):
            self.con.query("mean(nosuch)")
        with self.assertRaisesRegex(trialmesh.TrialmeshError, "no store directory"):
            trialmesh.connect(store=os.path.join(WORK, "missing"), dataset="x", cli=CLI)


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0]], verbosity=2)
