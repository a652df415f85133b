#!/usr/bin/env python3
"""Puts a freshly rendered RESULTS.md into the existing one, so that one scenario's run does not
wipe the others' figures (benches/run).

    splice_results.py OLD.md NEW.md SCENARIOS ALL NOTE  >  RESULTS.md

NEW.md is what benches/run rendered from this invocation's runs only (SCENARIOS, space-separated;
ALL: the scenarios of a plain `benches/run`).
Under "## Results", each "### NAME: …" (or "### NAME (…") section belongs to scenario NAME:

- a scenario run now gets its new section (replacing its old one);
- a scenario not run now keeps its old section;
- a section that is no scenario's (e.g. "### Redis Cluster: sharded pub/sub throughput per shard",
  written by benches/redis_cluster.sh) is kept as it is, after the scenarios' sections.

When this run covers ALL, or every scenario section of OLD.md, the head (what was measured when,
the machine) is NEW.md's. Otherwise OLD.md's head stays and each new section gets NOTE (when and
at what commit it was measured) under its heading. The command list is OLD.md's without the lines
of the scenarios run now, plus NEW.md's. "## What limits us" (benches/LIMITS.md) is always
NEW.md's. Without an OLD.md (or one with no "## Results"), NEW.md is printed as it is.
"""

import re
import sys

ORDER = ["light", "capacity", "idle", "churn", "rest", "redis", "floor", "cluster"]
HEAD_RE = re.compile(r"^### ([a-z]+)[ :(]")
SEPARATE = "Sections measured by a separate run say so under their heading."


def key_of(heading):
    m = HEAD_RE.match(heading)
    return m.group(1) if m and m.group(1) in ORDER else None


def parse(text):
    """(head, [(key, section text)], [(title, block text)] after the results); None if no Results."""
    lines = text.splitlines(keepends=True)
    try:
        r = next(i for i, l in enumerate(lines) if l.rstrip("\n") == "## Results")
    except StopIteration:
        return None
    head = "".join(lines[: r + 1])
    sections, tail = [], []
    cur = None
    i = r + 1
    while i < len(lines):
        l = lines[i]
        if l.startswith("## "):
            break
        if l.startswith("### "):
            cur = [key_of(l), l]
            sections.append(cur)
        elif cur is not None:
            cur[1] += l
        i += 1
    while i < len(lines):
        l = lines[i]
        if l.startswith("## "):
            tail.append([l.rstrip("\n"), l])
        else:
            tail[-1][1] += l
        i += 1
    return head, [(k, t.rstrip("\n") + "\n\n") for k, t in sections], [(t, b) for t, b in tail]


def commands(block):
    m = re.search(r"^```\n(.*?)^```", block, re.S | re.M)
    return m.group(1).splitlines() if m else []


def scenario_of_command(line):
    label = line.split(":", 1)[0]
    for s in ORDER:
        if label.startswith(s):
            return s
    return None


def main(old_path, new_path, scenarios, all_scenarios, note):
    run = set(scenarios.split())
    new_text = open(new_path).read()
    try:
        old_text = open(old_path).read()
    except OSError:
        old_text = ""
    old, new = parse(old_text) if old_text else None, parse(new_text)
    if old is None or new is None:
        sys.stdout.write(new_text)
        return
    old_head, old_secs, old_tail = old
    new_head, new_secs, new_tail = new
    old_keys = {k for k, _ in old_secs if k}
    whole = old_keys <= run or set(all_scenarios.split()) <= run
    by_key = {}
    for k, t in old_secs:
        if k and k not in run:
            by_key[k] = t
    for k, t in new_secs:
        if k:
            if not whole:
                heading, _, body = t.partition("\n")
                t = f"{heading}\n\n{note}\n{body}"
            by_key[k] = t
    foreign = [t for k, t in old_secs if not k] + [t for k, t in new_secs if not k]
    body = "".join(by_key[k] for k in ORDER if k in by_key) + "".join(foreign)

    if whole:
        head = new_head
    else:
        head = old_head
        if SEPARATE not in head:
            head = re.sub(r"^(Written by .*)$", lambda m: m.group(1) + " " + SEPARATE, head, count=1, flags=re.M)
    head = head.rstrip("\n") + "\n\n"

    tail = []
    new_titles = [t for t, _ in new_tail]
    old_cmds = next((b for t, b in old_tail if t == "## Commands"), "")
    for t, b in new_tail:
        if t == "## Commands":
            keep = [l for l in commands(old_cmds) if scenario_of_command(l) not in run]
            for l in commands(b):
                if l not in keep:
                    keep.append(l)
            intro = b.split("```", 1)[0]
            b = intro + "```\n" + "\n".join(keep) + "\n```\n"
        tail.append(b.rstrip("\n") + "\n\n")
    # Parts of the old file after the results that this renderer does not write (none today).
    for t, b in old_tail:
        if t not in new_titles:
            tail.append(b.rstrip("\n") + "\n\n")
    sys.stdout.write((head + body + "".join(tail)).rstrip("\n") + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 6:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    main(*sys.argv[1:])
