"""`finetuneflow dataset list|show`: read the examples and their reject reasons without the GUI."""

from __future__ import annotations

import argparse
import sys

from finetuneflow.cli.common import add_json, open_context, print_json
from finetuneflow.core.statuses import ExampleStatus
from finetuneflow.core.terminal import printable
from finetuneflow.services.review import ExampleFilter, ExampleRow, ReviewService

DEFAULT_LIMIT = 50


def cmd_list(args: argparse.Namespace) -> int:
    review = ReviewService(open_context())
    filters = ExampleFilter(status=args.status, reason=args.reason)
    total = review.count(args.project, filters)
    rows = review.page(args.project, filters, limit=max(0, args.limit)) if args.limit else []
    if args.json:
        print_json({"total": total, "examples": [_row_json(row) for row in rows]})
        return 0
    for row in rows:  # stored text came from a model: its escape sequences are shown, not run
        print(printable(f"{row.id}\t{row.status}\t{row.reject_reason or '-'}\t{row.source}\t"
                        f"{row.prompt}"))
    shown = f"{len(rows)} of {total}" if len(rows) < total else f"{total}"
    print(f"{shown} examples shown. Read one with: finetuneflow dataset show "
          f"{args.project} ID", file=sys.stderr)
    return 0


def _row_json(row: ExampleRow) -> dict[str, object]:
    return {"id": row.id, "split": row.split, "status": row.status,
            "reject_reason": row.reject_reason, "tokens": row.tokens, "source": row.source,
            "prompt": row.prompt, "reply": row.reply}


def cmd_show(args: argparse.Namespace) -> int:
    from finetuneflow.services.status import example_detail

    detail = example_detail(open_context(), args.project, args.id)
    if args.json:
        print_json(detail.to_json())
        return 0
    print(f"example {detail.id}\t{detail.status}\t{detail.split}\t{detail.source}")
    if detail.reject_reason:
        print(printable(f"rejected because: {detail.reject_reason}"))
    if detail.tokens is not None:
        print(f"tokens: {detail.tokens}")
    for message in detail.messages:
        print(printable(f"\n[{message.get('role', '?')}]\n{message.get('content', '')}"))
    return 0


def register(dataset_actions: argparse._SubParsersAction) -> None:
    listing = dataset_actions.add_parser(
        "list", help="list the examples (the preview's left out), with their reject reasons")
    listing.add_argument("project")
    listing.add_argument("--status", choices=[s.value for s in ExampleStatus])
    listing.add_argument("--reason", metavar="R",
                         help="only the examples rejected for this reason (as project status "
                              "lists them, e.g. 'ungrounded')")
    listing.add_argument("--limit", type=int, default=DEFAULT_LIMIT, metavar="N",
                         help=f"show at most N examples ({DEFAULT_LIMIT})")
    add_json(listing)
    listing.set_defaults(handler=cmd_list)
    show = dataset_actions.add_parser("show", help="one example in full")
    show.add_argument("project")
    show.add_argument("id", type=int)
    add_json(show)
    show.set_defaults(handler=cmd_show)
