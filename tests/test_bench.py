"""`python3 -m bench --quick` runs end to end and reports every row; the shape only, never timings."""

import contextlib
import io
import json
import numbers
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from bench import ab, bench
from tests.support import ROOT, require_tool

HANDSHAKE_ROWS = [f"handshake/{keys}/tls{tls}/c{c}"
                  for keys in ("ec", "rsa") for tls in ("1.3", "1.2") for c in (1, 8, 64)]
REFERENCE_ROWS = HANDSHAKE_ROWS + ["trust/1", "trust/many"]
ALL_ROWS = REFERENCE_ROWS + ["keepalive/c1", "keepalive/c8", "keepalive/c64", "rss/idle", "rss/held"]
MEASURED = ("n", "errors", "seconds", "per_second", "server_cpu_s", "cost", "p50_ms", "p99_ms")


class QuickBenchTest(unittest.TestCase):
    """One `--quick --json` run as `make bench` does it, shared by the shape checks below."""

    @classmethod
    def setUpClass(cls):
        require_tool(cls(), "openssl")  # an instance: under CI=true a missing tool fails the test
        tmp = tempfile.TemporaryDirectory(prefix="mtls-bench-test-")
        cls.addClassCleanup(tmp.cleanup)
        path = Path(tmp.name) / "bench.json"
        cls.result = subprocess.run([sys.executable, "-W", "error", "-m", "bench", "--quick",
                                     "--json", str(path)], cwd=ROOT, capture_output=True,
                                    text=True, timeout=180, stdin=subprocess.DEVNULL)
        if cls.result.returncode != 0:
            raise AssertionError(f"bench --quick exited {cls.result.returncode}:\n"
                                 f"{cls.result.stderr}")
        cls.report = json.loads(path.read_text())
        cls.rows = {row["id"]: row for row in cls.report["rows"]}

    def assert_number(self, row_id: str, key: str, value) -> None:
        self.assertIsInstance(value, numbers.Real, f"{row_id}: {key} = {value!r}")
        self.assertNotIsInstance(value, bool, f"{row_id}: {key}")
        self.assertGreaterEqual(value, 0, f"{row_id}: {key}")

    def test_reports_every_row_once(self):
        self.assertEqual(sorted(self.rows), sorted(ALL_ROWS))
        self.assertEqual(len(self.report["rows"]), len(ALL_ROWS))

    def test_handshake_rows_are_measured_and_compared_with_the_reference(self):
        for row_id in REFERENCE_ROWS:
            row = self.rows[row_id]
            for part in (row, row["reference"]):
                for key in MEASURED:
                    if key == "cost" and not self.report["cpu_measured"]:
                        continue
                    self.assert_number(row_id, key, part[key])
                self.assertGreater(part["n"], 0, f"{row_id}: no connection completed")
            if self.report["cpu_measured"]:
                self.assert_number(row_id, "ratio", row["ratio"])

    def test_handshake_rows_use_the_tls_version_they_name(self):
        for row_id in HANDSHAKE_ROWS:
            tls = row_id.split("/")[2][3:]
            self.assertTrue(self.rows[row_id]["suite"].startswith(f"TLSv{tls} "), row_id)
            self.assertTrue(self.rows[row_id]["reference"]["suite"].startswith(f"TLSv{tls} "))

    def test_trust_rows_differ_only_in_the_size_of_the_trusted_set(self):
        one, many = self.rows["trust/1"], self.rows["trust/many"]
        self.assertEqual(one["trusted"], 1)
        self.assertGreater(many["trusted"], 1)
        for key in ("key_type", "tls", "concurrency"):
            self.assertEqual(one[key], many[key], key)

    def test_keepalive_rows_have_request_costs_and_latencies(self):
        for c in (1, 8, 64):
            row = self.rows[f"keepalive/c{c}"]
            self.assertEqual(row["concurrency"], c)
            self.assertEqual(row["unit"], "us_cpu_per_request")
            for key in MEASURED:
                if key == "cost" and not self.report["cpu_measured"]:
                    continue
                self.assert_number(row["id"], key, row[key])
            self.assertNotIn("reference", row)

    def test_rss_rows_report_idle_and_per_connection_memory(self):
        if not self.report["cpu_measured"]:
            self.skipTest("no /proc: RSS is not measured")
        self.assert_number("rss/idle", "cost", self.rows["rss/idle"]["cost"])
        self.assertGreater(self.rows["rss/idle"]["cost"], 0)
        held = self.rows["rss/held"]
        for key in ("n", "cost", "rss_idle_kb", "rss_held_kb"):
            self.assert_number("rss/held", key, held[key])

    def test_prints_machine_command_and_one_table_with_the_ratio(self):
        out = self.result.stdout
        self.assertRegex(out, r"(?m)^machine: .+, \d+ cores")
        self.assertRegex(out, r"(?m)^command: python3 -m bench --quick --json ")
        self.assertRegex(out, r"(?m)^ +n +err +per s +server cost +unit .+ ours/ref$")
        for row in self.report["rows"]:
            self.assertIn(row["label"], out)
        for key in ("cpu", "cores", "python", "python_openssl", "openssl_cli"):
            self.assertIn(key, self.report["machine"])


class BenchArgumentsTest(unittest.TestCase):
    """Flag mistakes are one-line usage errors before anything starts."""

    def test_accepts_quick_with_json_and_duration(self):
        args = bench.parse_args(["--quick", "--json", "out.json", "--duration", "0.5"])
        self.assertTrue(args.quick)
        self.assertEqual(args.duration, 0.5)

    def test_rejects_a_duration_that_is_not_positive(self):
        with self.assertRaises(SystemExit) as caught, contextlib.redirect_stderr(io.StringIO()):
            bench.main(["--duration", "0"])
        self.assertEqual(caught.exception.code, 2)

    def test_rejects_zero_load_processes(self):
        with self.assertRaises(SystemExit) as caught, contextlib.redirect_stderr(io.StringIO()):
            bench.main(["--workers", "0"])
        self.assertEqual(caught.exception.code, 2)


class QuickABTest(unittest.TestCase):
    """`python3 -m bench.ab --quick` compares two server trees (here one tree twice); shape only."""

    @classmethod
    def setUpClass(cls):
        require_tool(cls(), "openssl")
        tmp = tempfile.TemporaryDirectory(prefix="mtls-bench-ab-test-")
        cls.addClassCleanup(tmp.cleanup)
        path = Path(tmp.name) / "ab.json"
        server = "server/webserver.py"
        cls.result = subprocess.run([sys.executable, "-W", "error", "-m", "bench.ab", "--quick",
                                     "--json", str(path), server, server], cwd=ROOT,
                                    capture_output=True, text=True, timeout=120,
                                    stdin=subprocess.DEVNULL)
        if cls.result.returncode != 0:
            raise AssertionError(f"bench.ab --quick exited {cls.result.returncode}:\n"
                                 f"{cls.result.stderr}")
        cls.report = json.loads(path.read_text())

    def test_reports_both_servers_with_every_phase_measured(self):
        servers = self.report["servers"]
        self.assertEqual([s["id"] for s in servers], ["A", "B"])
        for entry in servers:
            self.assertEqual(Path(entry["path"]), ROOT / "server" / "webserver.py")
            for phase in ("keepalive", "handshake"):
                part = entry[phase]
                self.assertEqual(len(part["rounds"]), 1, f"{entry['id']} {phase}")
                self.assertGreater(part["n"][0], 0, f"{entry['id']} {phase}: nothing completed")
                self.assertIsInstance(part["errors"], int, f"{entry['id']} {phase}")
                if not self.report["cpu_measured"]:
                    continue
                for key in ("median", "min", "max", "ratio"):
                    value = part[key]
                    self.assertIsInstance(value, numbers.Real, f"{entry['id']} {phase} {key}")
                    self.assertNotIsInstance(value, bool, f"{entry['id']} {phase} {key}")
                    self.assertGreaterEqual(value, 0, f"{entry['id']} {phase} {key}")

    def test_ratios_are_to_the_first_server(self):
        if not self.report["cpu_measured"]:
            self.skipTest("no /proc: server CPU is not measured")
        for phase in ("keepalive", "handshake"):
            self.assertEqual(self.report["servers"][0][phase]["ratio"], 1.0, phase)

    def test_prints_one_row_per_server_under_the_table_header(self):
        out = self.result.stdout
        self.assertRegex(out, r"(?m)^command: python3 -m bench\.ab --quick --json ")
        self.assertRegex(out, r"(?m)^ +server +keep-alive µs CPU/req .+ ratio$")
        self.assertRegex(out, r"(?m)^A  .*server/webserver\.py")
        self.assertRegex(out, r"(?m)^B  .*server/webserver\.py")

    def test_rejects_a_single_server(self):
        with self.assertRaises(SystemExit) as caught, contextlib.redirect_stderr(io.StringIO()):
            ab.main(["server/webserver.py"])
        self.assertEqual(caught.exception.code, 2)


if __name__ == "__main__":
    unittest.main()
