"""`framework run MODULE:WorkerClass`."""

from __future__ import annotations

import click

from framework.cli.context import state
from framework.consume.worker_spec import build_spec
from framework.ops import eventloop
from framework.ops.runner import load_worker_class, run_worker
from framework.ops.trace_export import install_from_env


@click.command("run")
@click.argument("target", metavar="MODULE:WorkerClass")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    metavar="PORT",
    help="Serve /metrics, /healthz and /readyz here (default: $FRAMEWORK_METRICS_PORT, else off).",
)
@click.pass_context
def run_command(ctx: click.Context, target: str, metrics_port: int | None) -> None:
    """Run a worker until SIGTERM/SIGINT, then drain in-flight handlers and exit.

    Spans are exported over OTLP when the OTEL_* environment variables ask for it
    (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_TRACES_EXPORTER=otlp; needs framework[otlp]).
    """
    worker_cls = load_worker_class(target)
    build_spec(worker_cls)  # configuration errors before any connection
    settings = state(ctx).settings
    if metrics_port is not None:
        settings = settings.model_copy(update={"metrics_port": metrics_port})
    exporting = install_from_env(worker_cls.service or worker_cls.queue)
    try:
        eventloop.run(run_worker(worker_cls, settings))
    finally:
        if exporting is not None:
            exporting.shutdown()  # export the spans still in the batch
