"""Generate the beyondfit Grafana dashboard (dashboards as code).

    python monitoring/dashboard.py          # writes charts/beyondfit/files/dashboards/...json
    python monitoring/dashboard.py --check   # exits 1 if the committed JSON is out of date
    make dashboards                          # the same as the first line

The JSON file is generated: edit this script, never the JSON. The chart ships the JSON as a
ConfigMap with the Grafana sidecar label; tests/monitoring/test_dashboard.py checks its
schema, that every query parses in a real Prometheus, and that it equals this script's output.

Conventions every panel follows: the datasource is the `datasource` variable, every query
selects `namespace=~"$namespace", job=~"$job"` (two releases of one name in two namespaces
stay apart; outside Kubernetes "All" is `.*`, which also matches series without a namespace),
every rate() uses `$__rate_interval`, every panel has a unit, and
the panels with an alert behind them draw the alert's threshold.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    dashboard,
    prometheus,
    stat,
    timeseries,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as dashboard_models

REPO_ROOT = Path(__file__).resolve().parent.parent
OUTPUT = REPO_ROOT / "charts" / "beyondfit" / "files" / "dashboards" / "beyondfit.json"
RUNBOOK = "https://github.com/beyondfit/beyondfit/blob/main/docs/runbook.md"
REGENERATE = "make dashboards"

DATASOURCE = dashboard_models.DataSourceRef(type_val="prometheus", uid="${datasource}")
SEL = 'namespace=~"$namespace", job=~"$job"'

# Thresholds drawn on the panels: the same numbers as the alerts (charts/beyondfit/files/rules).
LATENCY_OBJECTIVE_S = 0.25
ERROR_BUDGET = 0.001
FAST_BURN_RATIO = 14.4 * ERROR_BUDGET
PSI_MODERATE = 0.1
PSI_ALERT = 0.25


def _label_variable(name: str, description: str, query: str) -> dashboard.QueryVariable:
    """A multi-value, "All"-able variable over the values of one label, sorted."""
    return (
        dashboard.QueryVariable(name)
        .label(name.capitalize())
        .description(description)
        .query(query)
        .datasource(DATASOURCE)
        .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
    )


def _thresholds(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(dashboard_models.ThresholdsMode.ABSOLUTE)
        .steps([dashboard_models.Threshold(value=v, color=c) for v, c in steps])
    )


def _query(expr: str, legend: str, ref_id: str, *, instant: bool = False) -> prometheus.Dataquery:
    q = (
        prometheus.Dataquery()
        .expr(expr)
        .legend_format(legend)
        .ref_id(ref_id)
        .datasource(DATASOURCE)
    )
    return q.instant() if instant else q.range()


def _timeseries(
    title: str,
    description: str,
    unit: str,
    queries: list[tuple[str, str]],
    *,
    thresholds: dashboard.ThresholdsConfig | None = None,
    stacked: bool = False,
    bars: bool = False,
    width: int = 12,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .min(0)
        .span(width)
        .height(8)
        .legend(
            common.VizLegendOptions()
            .display_mode(common_models.LegendDisplayMode.TABLE)
            .placement(common_models.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
        .tooltip(common.VizTooltipOptions().mode(common_models.TooltipDisplayMode.MULTI))
        .fill_opacity(10)
    )
    for i, (expr, legend) in enumerate(queries):
        panel = panel.with_target(_query(expr, legend, chr(ord("A") + i)))
    if thresholds is None:  # no alert behind this panel: a plain base colour
        panel = panel.thresholds(_thresholds((None, "green")))
    else:  # draw the alert's threshold as a line
        panel = panel.thresholds(thresholds).thresholds_style(
            common.GraphThresholdsStyleConfig().mode(common_models.GraphThresholdsStyleMode.LINE)
        )
    if stacked:
        panel = panel.stacking(common.StackingConfig().mode(common_models.StackingMode.NORMAL))
    if bars:
        panel = panel.draw_style(common_models.GraphDrawStyle.BARS)
    return panel


def _stat(
    title: str, description: str, unit: str, expr: str, legend: str, thresholds: Any
) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(6)
        .height(4)
        .with_target(_query(expr, legend, "A", instant=True))
        .thresholds(thresholds)
        .color_mode(common_models.BigValueColorMode.BACKGROUND)
        .graph_mode(common_models.BigValueGraphMode.NONE)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
    )


def _quantiles(metric: str, by: str, legend: str) -> list[tuple[str, str]]:
    return [
        (
            f"histogram_quantile({q}, sum by ({by}, le) "
            f"(rate({metric}_bucket{{{SEL}}}[$__rate_interval])))",
            f"p{int(float(q) * 100)} {legend}",
        )
        for q in ("0.5", "0.95", "0.99")
    ]


def build() -> dict[str, Any]:
    """The dashboard as a JSON-ready dict."""
    rate = "[$__rate_interval]"
    requests = f"http_requests_total{{{SEL}}}"
    overview = dashboard.Row("Overview")
    traffic = dashboard.Row("Requests")
    model = dashboard.Row("Model")
    drift = dashboard.Row("Drift")
    processes = dashboard.Row("Processes (gunicorn master and workers)")

    builder = (
        dashboard.Dashboard("beyondfit")
        .uid("beyondfit")
        .description(
            "Generated by monitoring/dashboard.py; do not edit the JSON. "
            f"Regenerate with `{REGENERATE}`."
        )
        .tags(["beyondfit", "mlops", "generated"])
        .editable()
        .timezone("browser")
        .time("now-1h", "now")
        .refresh("30s")
        .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
        .link(
            dashboard.DashboardLink("Runbook")
            .type(dashboard_models.DashboardLinkType.LINK)
            .url(RUNBOOK)
            .icon("doc")
            .target_blank(True)
        )
        .with_variable(
            dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
        .with_variable(
            _label_variable(
                "namespace",
                "Kubernetes namespaces with a beyondfit job (none outside Kubernetes)",
                "label_values(model_loaded, namespace)",
            ).all_value(".*")
        )
        .with_variable(
            _label_variable(
                "job",
                "beyondfit jobs: every job that exports model_loaded",
                'label_values(model_loaded{namespace=~"$namespace"}, job)',
            )
        )
        .with_row(overview)
        .with_panel(
            _stat(
                "Pods with a model",
                "Targets whose workers all have a model loaded (model_loaded, summed over pods).",
                "none",
                f"sum(model_loaded{{{SEL}}})",
                "loaded",
                _thresholds((None, "red"), (1, "green")),
            )
        )
        .with_panel(
            _stat(
                "Requests/s",
                "All API requests per second (health and /metrics excluded).",
                "reqps",
                f"sum(rate({requests}{rate}))",
                "requests/s",
                _thresholds((None, "green")),
            )
        )
        .with_panel(
            _stat(
                "5xx ratio",
                "Share of requests answered with 5xx. SLO: 99.9% without 5xx; the fast-burn "
                "page fires at 14.4x the budget (1.44%).",
                "percentunit",
                f'(sum(rate(http_requests_total{{{SEL},status=~"5.."}}{rate})) or vector(0))'
                f" / sum(rate({requests}{rate}))",
                "5xx ratio",
                _thresholds((None, "green"), (ERROR_BUDGET, "yellow"), (FAST_BURN_RATIO, "red")),
            )
        )
        .with_panel(
            _stat(
                "Highest feature PSI (1h)",
                "The most drifted input feature over the last hour. 0.1: moderate; "
                "0.25: the drift alert's threshold.",
                "none",
                f"max(model:feature_psi:1h{{{SEL}}})",
                "PSI",
                _thresholds((None, "green"), (PSI_MODERATE, "yellow"), (PSI_ALERT, "red")),
            )
        )
        .with_row(traffic)
        .with_panel(
            _timeseries(
                "Throughput per route",
                "Requests per second by route template and status.",
                "reqps",
                [(f"sum by (route, status) (rate({requests}{rate}))", "{{route}} {{status}}")],
            )
        )
        .with_panel(
            _timeseries(
                "Error rate",
                "Share of requests answered with 5xx (spends the error budget) and 4xx "
                "(rejected input). Lines: the budget (0.1%) and the fast-burn level (1.44%).",
                "percentunit",
                [
                    (
                        f'(sum(rate(http_requests_total{{{SEL},status=~"5.."}}{rate}))'
                        f" or vector(0)) / sum(rate({requests}{rate}))",
                        "5xx",
                    ),
                    (
                        f'(sum(rate(http_requests_total{{{SEL},status=~"4.."}}{rate}))'
                        f" or vector(0)) / sum(rate({requests}{rate}))",
                        "4xx",
                    ),
                ],
                thresholds=_thresholds(
                    (None, "green"), (ERROR_BUDGET, "yellow"), (FAST_BURN_RATIO, "red")
                ),
            )
        )
        .with_panel(
            _timeseries(
                "Latency p50/p95/p99 per route",
                "Request latency quantiles from http_request_duration_seconds, all workers "
                "and pods. Line: the p95 objective (250 ms).",
                "s",
                _quantiles("http_request_duration_seconds", "route", "{{route}}"),
                thresholds=_thresholds((None, "green"), (LATENCY_OBJECTIVE_S, "red")),
                width=24,
            )
        )
        .with_row(model)
        .with_panel(
            _timeseries(
                "Inference latency p50/p95/p99",
                "Time in the model call itself (model_inference_duration_seconds), per "
                "model version.",
                "s",
                _quantiles(
                    "model_inference_duration_seconds", "model_version", "v{{model_version}}"
                ),
            )
        )
        .with_panel(
            _timeseries(
                "Prediction distribution",
                "Share of each predicted class over time, all model versions.",
                "percentunit",
                [
                    (
                        f"sum by (predicted_class) (rate(model_predictions_total{{{SEL}}}{rate}))"
                        " / ignoring (predicted_class) group_left ()"
                        f" sum(rate(model_predictions_total{{{SEL}}}{rate}))",
                        "class {{predicted_class}}",
                    )
                ],
                stacked=True,
            )
        )
        .with_panel(
            _timeseries(
                "Positive-class score",
                "Quantiles of the positive-class probability (model_prediction_score).",
                "percentunit",
                [
                    (
                        f"histogram_quantile({q}, sum by (le) "
                        f"(rate(model_prediction_score_bucket{{{SEL}}}{rate})))",
                        f"p{int(float(q) * 100)}",
                    )
                    for q in ("0.1", "0.5", "0.9")
                ],
            )
        )
        .with_panel(
            _timeseries(
                "Model version in service",
                "Targets serving each model version (model_info == 1; versions served before "
                "read 0): a rollout or a hot swap shows as one version handing over to the next.",
                "none",
                [
                    (
                        f"count by (version, alias) (model_info{{{SEL}}} == 1)",
                        "v{{version}} @{{alias}}",
                    )
                ],
                stacked=True,
            )
        )
        .with_panel(
            _timeseries(
                "Model reloads",
                "Reloads per result (success, refused, error) in each interval. Refused or "
                "error fires BeyondfitModelReloadFailed.",
                "none",
                [
                    (
                        f"sum by (result) (increase(model_reloads_total{{{SEL}}}{rate}))",
                        "{{result}}",
                    )
                ],
                bars=True,
                width=24,
            )
        )
        .with_row(drift)
        .with_panel(
            _timeseries(
                "Feature drift (PSI, 1h window)",
                "Population Stability Index of each input feature against its training "
                "distribution, from the recording rule model:feature_psi:1h. 0.1: moderate; "
                "0.25: the drift alert's threshold.",
                "none",
                [(f"model:feature_psi:1h{{{SEL}}}", "{{feature}}")],
                thresholds=_thresholds(
                    (None, "green"), (PSI_MODERATE, "yellow"), (PSI_ALERT, "red")
                ),
                width=16,
            )
        )
        .with_panel(
            bargauge.Panel()
            .title("Feature drift now (PSI, 5m window)")
            .description("model:feature_psi:5m per feature, most drifted first.")
            .datasource(DATASOURCE)
            .unit("none")
            .min(0)
            .span(8)
            .height(8)
            .with_target(
                _query(
                    f"sort_desc(model:feature_psi:5m{{{SEL}}})", "{{feature}}", "A", instant=True
                )
            )
            .thresholds(_thresholds((None, "green"), (PSI_MODERATE, "yellow"), (PSI_ALERT, "red")))
            .display_mode(common_models.BarGaugeDisplayMode.GRADIENT)
            .orientation(common_models.VizOrientation.HORIZONTAL)
            .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
        )
        .with_row(processes)
        .with_panel(
            _timeseries(
                "Memory (RSS) per process",
                "Resident memory of the gunicorn master and each worker. A worker whose RSS "
                "only grows under steady load leaks (see loadtest/).",
                "bytes",
                [
                    (
                        f'process_resident_memory_bytes{{{SEL},role!=""}}',
                        "{{instance}} {{role}} {{pid}}",
                    )
                ],
            )
        )
        .with_panel(
            _timeseries(
                "CPU per process",
                "CPU time per second of the gunicorn master and each worker (1 = one core).",
                "percentunit",
                [
                    (
                        f'rate(process_cpu_seconds_total{{{SEL},role!=""}}{rate})',
                        "{{instance}} {{role}} {{pid}}",
                    )
                ],
            )
        )
    )
    board: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    # Stable, unique panel ids (links to a panel use them; the SDK leaves them at 0).
    for number, panel in enumerate(board["panels"], start=1):
        panel["id"] = number
    return board


def render() -> str:
    """The dashboard as the pretty JSON text committed to the chart."""
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT, help="where to write the JSON")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the file differs from the generated JSON"
    )
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run `{REGENERATE}`", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
