"""``microgradx step``: step through the backward pass of an expression at a prompt."""

from __future__ import annotations

import argparse

from ._common import expr_command, expression


def run(args: argparse.Namespace) -> int:
    from ..stepper import describe, step

    out, leaves = expression(args)
    s = step(out)
    if args.all:
        for ev in s:
            print(describe(ev, total=s.total))
        _print_gradients(leaves)
        return 0
    print(f"Backward pass of {args.expr}: {s.total} steps.  Enter = next, b = back, t = table, r = run to the "
          "end, q = quit")
    shown_done = False
    while True:
        try:
            cmd = input("step> ").strip().lower()
        except EOFError:
            print()
            break
        if cmd in ("q", "quit", "exit"):
            break
        if cmd in ("", "n", "next"):
            if s.done:
                print("already at the end: b = back, q = quit")
                continue
            s.next()
            print(describe(s.events[-1], total=s.total))
        elif cmd in ("b", "back"):
            s.back()
            print(describe(s.events[-1], total=s.total) if s.events else "back at the start: no step taken")
            shown_done = False
        elif cmd in ("t", "table"):
            print(s.table() if s.events else "no step taken yet")
        elif cmd in ("r", "run"):
            for ev in s:
                print(describe(ev, total=s.total))
        else:
            print(f"unknown command {cmd!r}: Enter = next, b = back, t = table, r = run, q = quit")
            continue
        if s.done and not shown_done:
            shown_done = True
            print("done: the backward pass is complete")
            _print_gradients(leaves)
    return 0


def _print_gradients(leaves: dict) -> None:
    for key, leaf in leaves.items():
        print(f"  d out / d {key} = {leaf.grad:.6g}")



def add_parser(sub) -> None:
    p = expr_command(
        sub, "step", "step through the backward pass of an expression",
        "Step through the backward pass one node at a time: each step shows the node, its gradient S and, for "
        "each parent, the edge derivative z, the contribution S*z and the parent's running total. Keys: Enter = "
        "next, b = back, t = table, r = run, q = quit.",
        ["'cos(w**2) + sin(w**2)' --at w=2", "'sigmoid(x*w1)*w2' --at x=2,w1=0.75,w2=0.5 --all"], run)
    p.add_argument("--all", action="store_true", help="print the whole trace without prompting")
