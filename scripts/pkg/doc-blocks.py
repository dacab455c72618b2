#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Extract the tested blocks of Documentation/admin-guide.rst.

    doc-blocks.py DOC OUTDIR

Every "code-block" of DOC must be preceded by a comment
".. admin-test: GROUP MODE"; a block without one is an error (so that no
command in the document escapes the tests).  For the N-th block it
writes OUTDIR/NN-GROUP-MODE/ with:

  cmds    one command per line: "#<TAB>cmd" (root) or "$<TAB>cmd" (user);
          backslash-continued lines are joined
  expect  the block's other lines (output the command must print)
  text    the block's text (for xml blocks)

and prints the directory names in document order.
"""
import os
import re
import sys


def main():
    doc, out = sys.argv[1], sys.argv[2]
    lines = open(doc, encoding="utf-8").read().split("\n")
    tag = None
    blocks = []
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^\s*\.\. admin-test: (\S+) (\S+)\s*$", line)
        if m:
            tag = (m.group(1), m.group(2))
            i += 1
            continue
        m = re.match(r"^(\s*)\.\. code-block::\s*(\S+)", line)
        if m:
            if tag is None:
                sys.exit("%s:%d: code-block without '.. admin-test: GROUP MODE'"
                         % (doc, i + 1))
            indent = len(m.group(1))
            i += 1
            body = []
            while i < len(lines):
                cur = lines[i]
                if cur.strip() and len(cur) - len(cur.lstrip()) <= indent:
                    break
                body.append(cur)
                i += 1
            while body and not body[-1].strip():
                body.pop()
            while body and not body[0].strip():
                body.pop(0)
            strip = min(len(b) - len(b.lstrip()) for b in body if b.strip())
            body = [b[strip:] for b in body]
            blocks.append((tag, m.group(2), body))
            tag = None
            continue
        i += 1
    for n, ((group, mode), lang, body) in enumerate(blocks, 1):
        d = os.path.join(out, "%02d-%s-%s" % (n, group, mode))
        os.makedirs(d, exist_ok=True)
        cmds, expect = [], []
        j = 0
        while j < len(body) and lang == "console":
            b = body[j]
            if b.startswith("# ") or b.startswith("$ "):
                prompt, cmd = b[0], b[2:]
                while cmd.endswith("\\") and j + 1 < len(body):
                    j += 1
                    cmd = cmd[:-1].rstrip() + " " + body[j].strip()
                cmds.append("%s\t%s" % (prompt, cmd))
            elif b.strip():
                expect.append(b)
            j += 1
        for name, data in (("cmds", cmds), ("expect", expect), ("text", body)):
            with open(os.path.join(d, name), "w", encoding="utf-8") as f:
                f.write("".join(x + "\n" for x in data))
        print(os.path.basename(d))


main()
