"""``microgradx step``: step through the backward pass of an expression at a prompt."""

from __future__ import annotations

import argparse

from ._common import expr_command, expression


def run(args: argparse.Namespace) -> int:
    from ..stepper import step

    out, leaves = expression(args)
    s = step(out)
    if _export(s, args):
        return 0
    try:
        return _session(s, args, leaves)
    except KeyboardInterrupt:
        # NOTE: Ctrl-C at the prompt ends the session like q does: one line, no traceback (a second Ctrl-C
        # while it is printed is ignored, not turned into a traceback).
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("\ninterrupted: the session ends here")
        return 130


def _export(s, args: argparse.Namespace) -> bool:
    """Write the pages, frames and handouts asked for; True when something was written (then no prompt)."""
    written = []
    if args.html:
        written.append(s.to_html(title=f"Backpropagation through {args.expr}").save(args.html))
    if args.frames:
        written.extend(s.save_frames(args.frames, args.frame_format))
    if args.gif:
        written.append(s.save_gif(args.gif))
    if args.pdf:
        written.append(s.save_pdf(args.pdf))
    if args.latex:
        from ..page import writable

        target = writable(args.latex)
        target.write_text(s.to_latex() + "\n", encoding="utf-8")
        written.append(target)
    for path in written:
        print(f"wrote {path}")
    return bool(written)


def _session(s, args: argparse.Namespace, leaves: dict) -> int:
    from ..stepper import describe

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
        ["'cos(w**2) + sin(w**2)' --at w=2", "'sigmoid(x*w1)*w2' --at x=2,w1=0.75,w2=0.5 --all",
         "'cos(w**2) + sin(w**2)' --at w=2 --html backprop.html",
         "'sigmoid(x*w1)*w2' --at x=2,w1=0.75,w2=0.5 --frames frames --gif backprop.gif --pdf handout.pdf"], run)
    p.add_argument("--all", action="store_true", help="print the whole trace without prompting")
    out = p.add_argument_group("pages, frames and handouts (written instead of the prompt)")
    out.add_argument("--html", metavar="FILE", help="a self-contained page that steps through the pass in a browser")
    out.add_argument("--frames", metavar="DIR", help="one drawing per step in DIR (step-001.svg, ...)")
    out.add_argument("--frame-format", choices=("svg", "png"), default="svg", help="the frames' format (svg)")
    out.add_argument("--gif", metavar="FILE", help="an animated GIF, one frame per step")
    out.add_argument("--pdf", metavar="FILE", help="a handout, one page per step: the drawing and the chain rule")
    out.add_argument("--latex", metavar="FILE", help="the derivation as a LaTeX align* block")
