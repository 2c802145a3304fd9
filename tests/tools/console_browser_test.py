"""trialmesh console in headless Chromium (selenium) against a 3-site loopback federation
(`trialmesh console --demo`): open with the token, run a federated Kaplan-Meier query and check
the chart's step points equal the JSON table's (the page's table and a direct API call), draw a
Cox forest plot, see a syntax error point at its token; without the token the API answers 401,
and a cross-origin POST carrying the real cookie is refused with 403. The board page shows every
site's audit log verified, the approval active, then suspended after `trialmesh ethics
suspend`, and the timeline holds the coordinator's query text; a query is then refused by
every site, with the reason; a site whose log cannot be fetched (its node stopped) is red with
the reason.

    python3 console_browser_test.py <trialmesh binary> [<screenshot dir>]

With a screenshot directory it also writes the PNGs docs/console.md shows. Skips (exit 0 with
a message; ctest SKIP_RETURN_CODE 77) only when chromium, chromedriver or selenium is absent.
"""
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import unittest

CLI = sys.argv[1]
SHOTS = sys.argv[2] if len(sys.argv) > 2 else None
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    webdriver = None

if webdriver is None or CHROMIUM is None or DRIVER is None:
    print("SKIP: the console browser test needs chromium, chromium-driver and python3-selenium "
          "(scripts/install-deps.sh installs them)")
    sys.exit(77)


def http_call(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, data


class ConsoleBrowserTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.proc = subprocess.Popen(
            [CLI, "console", "--demo", "--demo-rows", "1500", "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        cls.url = None
        deadline = time.monotonic() + 90
        output = []
        while time.monotonic() < deadline:
            line = cls.proc.stdout.readline()
            if not line:
                break
            output.append(line)
            d = re.search(r"^demo: .* in (\S+) ", line)
            if d:
                cls.workdir = d.group(1)
            m = re.search(r"(http://127\.0\.0\.1:(\d+)/\?token=([0-9a-f]{64}))", line)
            if m:
                cls.url, cls.port, cls.token = m.group(1), int(m.group(2)), m.group(3)
                break
        if cls.url is None:
            cls.stop()
            raise RuntimeError("trialmesh console printed no URL:\n" + "".join(output))
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1200,1500"):
            options.add_argument(arg)
        cls.driver = webdriver.Chrome(service=Service(DRIVER), options=options)
        cls.driver.set_script_timeout(60)
        cls.driver.get(cls.url)
        WebDriverWait(cls.driver, 30).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#study option"))

    @classmethod
    def stop(cls):
        if cls.proc.poll() is None:
            cls.proc.send_signal(signal.SIGTERM)
            try:
                cls.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(cls.proc.pid, signal.SIGKILL)
                cls.proc.wait()

    @classmethod
    def tearDownClass(cls):
        cls.driver.quit()
        cls.stop()

    def run_query(self, text):
        d = self.driver
        d.execute_script("document.getElementById('query').value = arguments[0];", text)
        d.find_element(By.ID, "run").click()
        WebDriverWait(d, 60).until(
            lambda d: d.execute_script("return document.body.dataset.state") in ("done", "error"))
        return d.execute_script("return document.body.dataset.state")

    def shot(self, name):
        if SHOTS:
            os.makedirs(SHOTS, exist_ok=True)
            self.driver.save_screenshot(os.path.join(SHOTS, name))

    def test_1_token_redirect_left_the_url(self):
        # The token went into an HttpOnly cookie and out of the address bar.
        self.assertNotIn("token=", self.driver.current_url)
        self.assertEqual(self.driver.execute_script("return document.cookie"), "")
        self.assertIn("LUNG-7", self.driver.find_element(By.ID, "study").text)

    def test_2_km_curve_steps_equal_the_table(self):
        d = self.driver
        self.assertEqual(self.run_query("km(time, event) by arm"), "done")
        # The chart's curves, as Chart.js holds them.
        curves = d.execute_script("""
            const c = Chart.getChart('km-chart');
            const out = {};
            c.data.datasets.filter(s => s.tmRole === 'survival')
              .forEach(s => out[s.tmGroup] = s.data.map(p => [p.x, p.y]));
            return out;""")
        # The page's own table, read from the DOM.
        # (One script call: a WebDriver round trip per cell would take minutes.)
        header, rows = d.execute_script("""
            const t = document.getElementById('result');
            return [[...t.querySelectorAll('thead th')].map(th => th.textContent),
                    [...t.querySelectorAll('tbody tr')].map(
                        tr => [...tr.children].map(td => td.textContent))];""")
        # And the API's JSON for the same query (the schema of `trialmesh query --json`).
        status, body = http_call(self.port, "POST", "/api/query",
                                 json.dumps({"study": "LUNG-7", "query": "km(time, event) by arm"}),
                                 {"Authorization": "Bearer " + self.token})
        self.assertEqual(status, 200)
        api = json.loads(body)
        self.assertEqual(api["result"]["kind"], "survival")
        self.assertEqual([s["outcome"] for s in api["sites"]], ["answered"] * 3)
        expected = {}
        for r in api["result"]["rows"]:
            expected.setdefault("arm=" + r["arm"], [[0, 1]]).append([r["time"], r["survival"]])
        self.assertEqual(sorted(curves), sorted(expected))
        self.assertGreaterEqual(len(curves), 2)
        for group, points in expected.items():
            self.assertEqual(len(curves[group]), len(points), group)
            for (x, y), (ex, ey) in zip(curves[group], points):
                self.assertEqual(x, ex, group)
                self.assertAlmostEqual(y, ey, places=12, msg=group)
        t, s, arm = header.index("time"), header.index("survival"), header.index("arm")
        self.assertEqual(len(rows), len(api["result"]["rows"]))
        for row in rows:
            x = float(row[t])
            point = next(p for p in curves["arm=" + row[arm]] if p[0] == x)
            self.assertAlmostEqual(point[1], float(row[s]), places=5)
        # A band per curve, and numbers at risk starting at each arm's n.
        roles = d.execute_script(
            "return Chart.getChart('km-chart').data.datasets.map(s => s.tmRole)")
        self.assertEqual(roles.count("lower"), len(curves))
        self.assertEqual(roles.count("upper"), len(curves))
        first = d.execute_script(
            "return [...document.querySelectorAll('#km-risk tbody tr')]"
            ".map(tr => tr.children[1].textContent)")
        self.assertEqual(sorted(int(v) for v in first),
                         sorted(c["n"] for c in api["result"]["curves"]))
        # The sites panel says who answered.
        outcomes = [td.text for td in d.find_elements(By.CSS_SELECTOR, "#sites td.outcome")]
        self.assertEqual(outcomes, ["answered"] * 3)
        self.shot("console-km.png")

    def test_3_cox_forest_plot(self):
        d = self.driver
        self.assertEqual(self.run_query("coxph(time, event ~ age + sex + arm)"), "done")
        self.assertFalse(d.find_element(By.ID, "forest-area").get_attribute("hidden"))
        plot = d.execute_script("""
            const c = Chart.getChart('forest-chart');
            return {scale: c.scales.x.type,
                    ticks: c.scales.y.ticks.map(t => t.label),
                    estimates: c.data.datasets.find(s => s.tmRole === 'estimate').data.map(p => p.x),
                    hr: window.tmResult.coefficients.map(k => k.hazard_ratio),
                    names: window.tmResult.coefficients.map(k => k.name)};""")
        self.assertEqual(plot["scale"], "logarithmic")
        self.assertEqual(plot["estimates"], plot["hr"])
        self.assertEqual(plot["ticks"], plot["names"])
        # Drawn: the canvas holds non-blank pixels.
        inked = d.execute_script("""
            const cv = document.getElementById('forest-chart');
            const px = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
            let n = 0; for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++;
            return n;""")
        self.assertGreater(inked, 1000)
        self.shot("console-cox.png")

    def test_3b_histogram_bars_equal_the_counts(self):
        d = self.driver
        self.assertEqual(self.run_query("hist(age, 20, 100, 10) by arm"), "done")
        bars = d.execute_script("""
            const c = Chart.getChart('hist-chart');
            return {labels: c.data.labels,
                    sets: c.data.datasets.map(s => [s.tmGroup, s.data])};""")
        t = d.execute_script("return window.tmResult.result")
        self.assertEqual(t["kind"], "histogram")
        expected = {}
        for r in t["rows"]:
            expected.setdefault("arm=" + r["arm"], {})[r["bin"]] = r["count"]
        self.assertEqual(bars["labels"][0], "[20, 30)")
        self.assertEqual(len(bars["sets"]), 2)
        for group, data in bars["sets"]:
            self.assertEqual(data, [expected[group][b] for b in bars["labels"]], group)

    def test_4_syntax_error_points_at_the_token(self):
        d = self.driver
        self.assertEqual(self.run_query("count by arm where age >> 3"), "error")
        message = d.find_element(By.ID, "error").text
        self.assertIn("query:1:", message)
        self.assertIn("^", message)
        selected = d.execute_script(
            "const q = document.getElementById('query');"
            "return q.value.slice(q.selectionStart, q.selectionEnd);")
        self.assertEqual(selected, ">")
        self.shot("console-error.png")

    def test_5_requests_without_the_token_are_refused(self):
        status, _ = http_call(self.port, "GET", "/api/info")
        self.assertEqual(status, 401)
        status, _ = http_call(self.port, "POST", "/api/query",
                              json.dumps({"study": "LUNG-7", "query": "count"}),
                              {"Content-Type": "application/json"})
        self.assertEqual(status, 401)
        status, _ = http_call(self.port, "GET", "/?token=" + "0" * 64)
        self.assertEqual(status, 401)

    def test_6_cross_origin_post_is_refused(self):
        cookie = "trialmesh_console_%d=%s" % (self.port, self.token)
        body = json.dumps({"study": "LUNG-7", "query": "count"})
        status, data = http_call(self.port, "POST", "/api/query", body,
                                 {"Cookie": cookie, "Origin": "http://127.0.0.1:1"})
        self.assertEqual(status, 403, data)
        status, _ = http_call(self.port, "POST", "/api/query", body, {"Cookie": cookie})
        self.assertEqual(status, 403)
        # The same cookie from the console's own origin is accepted.
        status, data = http_call(self.port, "POST", "/api/query", body,
                                 {"Cookie": cookie, "Origin": "http://127.0.0.1:%d" % self.port})
        self.assertEqual(status, 200, data)

    def board(self):
        d = self.driver
        d.get("http://127.0.0.1:%d/board" % self.port)
        WebDriverWait(d, 60).until(
            lambda d: d.execute_script("return document.body.dataset.state") in ("done", "error"))
        self.assertEqual(d.execute_script("return document.body.dataset.state"), "done",
                         d.find_element(By.ID, "error").text)
        return d.execute_script("""
            const cells = (sel) => [...document.querySelectorAll(sel)].map(td =>
                [td.dataset.site, td.textContent, td.className]);
            return {logs: cells('#logs td[data-site]'),
                    states: cells('#approvals td[data-site]'),
                    timeline: [...document.querySelectorAll('#timeline tbody tr')].map(
                        tr => [...tr.children].map(td => td.textContent))};""")

    def test_7_board_verified_logs_timeline_and_a_suspension(self):
        page = self.board()
        sites = ["site-s01", "site-s02", "site-s03"]
        self.assertEqual([(s, t) for s, t, _ in page["logs"]], [(s, "verified") for s in sites])
        self.assertEqual([(s, t) for s, t, _ in page["states"]], [(s, "active") for s in sites])
        # The timeline names the coordinator and the query text of the KM query run above.
        kinds = {(r[2], r[4], r[5], r[6]) for r in page["timeline"]}
        self.assertIn(("query", "coordinator", "km(time, event) by arm", "LUNG-7 v1"), kinds)
        # The lead committee suspends the approval; every site's verified log says so.
        r = subprocess.run(
            [CLI, "ethics", "suspend", "--members", os.path.join(self.workdir, "members.toml"),
             "--identity", os.path.join(self.workdir, "committee.key"), "--study", "LUNG-7",
             "--version", "1", "--reason", "interim safety review"],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        page = self.board()
        self.assertEqual([(s, t) for s, t, _ in page["states"]], [(s, "suspended") for s in sites])
        self.assertTrue(all("state-suspended" in c for _, _, c in page["states"]))
        self.assertEqual(page["timeline"][0][2], "approval-suspended")
        self.assertIn("interim safety review", page["timeline"][0][8])
        self.shot("console-board.png")
        # A query now: every site refuses, and the page says why.
        d = self.driver
        d.get("http://127.0.0.1:%d/" % self.port)
        WebDriverWait(d, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#study option"))
        self.assertEqual(self.run_query("count by arm"), "done")
        outcomes = d.execute_script(
            "return [...document.querySelectorAll('#sites tbody tr')].map("
            "tr => [tr.children[1].textContent, tr.children[2].textContent])")
        self.assertEqual([o for o, _ in outcomes], ["refused"] * 3)
        self.assertTrue(all("suspended" in why for _, why in outcomes), outcomes)

    def test_8_a_site_that_cannot_be_verified_is_red_with_the_reason(self):
        # Stop site-s03's node (found by its own node.toml; started by this console --demo).
        config = os.path.join(self.workdir, "site-s03", "node.toml")
        pids = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    args = f.read().split(b"\0")
            except OSError:
                continue
            if config.encode() in args:
                pids.append(int(pid))
        self.assertEqual(len(pids), 1, pids)
        os.kill(pids[0], signal.SIGKILL)
        page = self.board()
        logs = {s: (t, c) for s, t, c in page["logs"]}
        self.assertEqual(logs["site-s01"][0], "verified")
        self.assertEqual(logs["site-s03"][0], "unreachable")
        self.assertIn("failed", logs["site-s03"][1])
        reason = self.driver.execute_script(
            "return [...document.querySelectorAll('#logs tbody tr')].at(-1).lastChild.textContent")
        self.assertIn("cannot connect", reason)
        self.assertEqual([(s, t) for s, t, _ in page["states"]],
                         [("site-s01", "suspended"), ("site-s02", "suspended"),
                          ("site-s03", "not held")])


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0]], verbosity=2)
