#!/usr/bin/env python3
"""Renders LIFECYCLE.md from a template: {{file|pattern}} becomes file:line of the first line
containing pattern."""
import re, sys, os
root = sys.argv[1]
tpl = open(sys.argv[2]).read()
def anchor(m):
    f, pat = m.group(1), m.group(2)
    for i, line in enumerate(open(os.path.join(root, f)), 1):
        if pat in line:
            return f"`{f}:{i}`"
    raise SystemExit(f"pattern not found: {f} | {pat}")
out = re.sub(r"\{\{([^|}]+)\|([^}]+)\}\}", anchor, tpl)
open(os.path.join(root, "LIFECYCLE.md"), "w").write(out)
if "{{" in out:
    raise SystemExit("unresolved anchor left in LIFECYCLE.md (a pattern with '}' in it?)")
