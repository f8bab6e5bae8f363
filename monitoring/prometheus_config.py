"""Write a Prometheus config that scrapes beyondfit and loads its rules.

    python monitoring/prometheus_config.py --target 127.0.0.1:8000 --out .demo/prometheus.yml
    prometheus --config.file=.demo/prometheus.yml --web.listen-address=127.0.0.1:9090 \\
        --storage.tsdb.path=.demo/prometheus-data

The rules are loaded from the chart's files/rules/ (the single source the PrometheusRule
embeds too). `make demo` and the tests in tests/monitoring/ call this.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = REPO_ROOT / "charts" / "beyondfit" / "files" / "rules"


def rule_files(rules_dir: Path = RULES_DIR) -> list[Path]:
    """The rule files in load order (recording rules before the alerts built on them)."""
    files = sorted(rules_dir.glob("*.yaml"))
    return sorted(files, key=lambda p: (p.name != "recording.yaml", p.name))


def render_config(
    targets: list[str],
    *,
    job: str = "beyondfit",
    scrape_interval: str = "15s",
    evaluation_interval: str | None = None,
    rules: list[Path] | None = None,
) -> str:
    """Prometheus YAML: one static scrape job for `targets` (host:port) and the rule files.
    The evaluation interval defaults to the scrape interval."""
    rules = rule_files() if rules is None else rules
    lines = [
        "# Written by monitoring/prometheus_config.py; regenerated on each run.",
        "global:",
        f"  scrape_interval: {scrape_interval}",
        f"  evaluation_interval: {evaluation_interval or scrape_interval}",
        "rule_files:",
        *(f"  - {str(Path(p).resolve())!r}" for p in rules),
        "scrape_configs:",
        f"  - job_name: {job!r}",
        "    metrics_path: /metrics",
        "    static_configs:",
        "      - targets:",
        *(f"          - {t!r}" for t in targets),
    ]
    if not rules:
        lines[lines.index("rule_files:")] = "rule_files: []"
    if not targets:
        lines[-1] = "      - targets: []"
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a Prometheus config for beyondfit.")
    parser.add_argument("--target", action="append", required=True, help="host:port (repeat)")
    parser.add_argument("--job", default="beyondfit", help="the job label (default beyondfit)")
    parser.add_argument("--interval", default="15s", help="scrape and rule interval (15s)")
    parser.add_argument("--rules-dir", type=Path, default=RULES_DIR, help="rule files folder")
    parser.add_argument("--out", type=Path, required=True, help="where to write the config")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        render_config(
            args.target,
            job=args.job,
            scrape_interval=args.interval,
            rules=rule_files(args.rules_dir),
        )
    )
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
