"""`router staffing`: agents needed for a service-level target, as a plain-text plan or JSON."""

from __future__ import annotations

import argparse
import math
import sys

import msgspec

from router.wfm.queueing import check_non_negative, parse_target
from router.wfm.staffing import MAX_AGENTS, StaffingPlan, agents_needed

# Seconds per unit of the CLI's `--per`.
_PER_SECONDS = {"second": 1.0, "minute": 60.0, "half-hour": 1800.0, "hour": 3600.0}


def staffing_report(plan: StaffingPlan) -> str:
    """A plain-text summary of a plan, one figure a line."""
    if plan.model == "erlang_a":
        model = f"Erlang A (M/M/n+M), mean patience {plan.patience:g} s"
    else:
        model = "Erlang C (M/M/n), no abandonment"
    t = plan.target
    asa = "infinite" if math.isinf(plan.asa) else f"{plan.asa:.1f} s"
    lines = [
        f"model              {model}",
        f"offered load       {plan.offered_load:.2f} erlangs "
        f"({plan.rate * 3600:g} contacts/hour, AHT {plan.aht:g} s)",
        f"target             {t.percent:g}% answered within {t.seconds:g} s",
        f"agents on phones   {plan.agents}",
        f"agents scheduled   {plan.scheduled} (shrinkage {plan.shrinkage:.0%})",
        f"service level      {plan.service_level:.1%} answered within {t.seconds:g} s",
        f"ASA                {asa}",
        f"abandon rate       {plan.abandon_probability:.1%}",
        f"occupancy          {plan.occupancy:.1%}",
        f"P(wait > 0)        {plan.wait_probability:.1%}",
        f"limited by         {', '.join(plan.limited_by) or '-'}",
    ]
    return "\n".join(lines)


def add_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `staffing` on the router CLI's subparsers (handler sets `fn`)."""
    sp = subparsers.add_parser(
        "staffing",
        help="agents needed for a service-level target (Erlang C, or Erlang A with --patience)",
    )
    sp.add_argument("--rate", type=float, required=True, help="contacts per --per")
    sp.add_argument("--per", choices=sorted(_PER_SECONDS), default="hour", help="(default hour)")
    sp.add_argument("--aht", type=float, required=True, help="average handle time, seconds")
    sp.add_argument("--target", default="80/20", help="PERCENT/SECONDS (default 80/20)")
    sp.add_argument("--patience", type=float, help="mean patience, seconds: Erlang A")
    sp.add_argument("--max-occupancy", type=float, help="fraction, e.g. 0.85")
    sp.add_argument("--max-asa", type=float, help="seconds")
    sp.add_argument("--max-abandon", type=float, help="fraction, e.g. 0.05 (Erlang A)")
    sp.add_argument("--shrinkage", type=float, default=0.0, help="fraction in [0, 1)")
    sp.add_argument("--max-agents", type=int, default=MAX_AGENTS)
    sp.add_argument("--json", action="store_true", help="print the plan as JSON")
    sp.set_defaults(fn=_staffing_cmd)


def _staffing_cmd(args: argparse.Namespace) -> int:
    try:
        check_non_negative("rate", args.rate)
        plan = agents_needed(
            args.rate / _PER_SECONDS[args.per],
            args.aht,
            parse_target(args.target),
            patience=args.patience,
            max_occupancy=args.max_occupancy,
            max_asa=args.max_asa,
            max_abandon=args.max_abandon,
            shrinkage=args.shrinkage,
            max_agents=args.max_agents,
        )
    except ValueError as exc:
        print(f"staffing: {exc}", file=sys.stderr)
        return 2
    print(msgspec.json.encode(plan).decode() if args.json else staffing_report(plan))
    return 0
