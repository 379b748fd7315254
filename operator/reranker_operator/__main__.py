"""``reranker-operator``: run the kopf operator (standalone, one replica)."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reranker-operator",
        description="Reconcile Reranker resources into Deployments, Services and autoscalers.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--namespace", help="watch one namespace [env WATCH_NAMESPACE]")
    scope.add_argument("--all-namespaces", action="store_true", help="watch every namespace (default)")
    parser.add_argument("--liveness-port", type=int, help="port of /healthz [env LIVENESS_PORT; default 8080]")
    parser.add_argument("--image", help="default server image [env RERANKER_IMAGE]")
    parser.add_argument("--drift-interval", type=float, help="seconds between drift checks [env DRIFT_INTERVAL]")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    # Settings are read from the environment when the handlers import: flags go there first.
    for flag, env in (("namespace", "WATCH_NAMESPACE"), ("liveness_port", "LIVENESS_PORT"),
                      ("image", "RERANKER_IMAGE"), ("drift_interval", "DRIFT_INTERVAL")):  # fmt: skip
        value = getattr(args, flag)
        if value is not None:
            os.environ[env] = str(value)
    if args.all_namespaces:
        os.environ.pop("WATCH_NAMESPACE", None)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    import kopf

    from reranker_operator import handlers

    settings = handlers.SETTINGS
    namespace = settings.watch_namespace
    kopf.run(
        standalone=True,  # single replica: no peering objects to manage
        clusterwide=namespace is None,
        namespaces=[namespace] if namespace else (),
        liveness_endpoint=f"http://0.0.0.0:{settings.liveness_port}/healthz",
    )


if __name__ == "__main__":
    main()
