#!/usr/bin/env python3
"""Lists import cycles between the modules of a Rust library crate.

    python3 tools/module-cycles.py crates/flywheel-model [crates/flywheel-server ...]

A module imports another when its code (outside `#[cfg(test)]` blocks and comments) names a
path into it: `crate::a::b`, `super::x`, `super::super::x`, `self::x`, or a group such as
`crate::{a::b, c}`. Paths through the crate root's re-exports
(`crate::ModelError`) count as imports of the module that defines the item. The crate root
itself (lib.rs), which only declares modules and re-exports, is not a node. Exits 1 when any
module reaches itself, printing one cycle per line; 0 otherwise.
"""

import re
import sys
from pathlib import Path


def modules(src: Path) -> dict:
    """Module path (tuple) -> source text without tests and comments."""
    out = {}
    for f in sorted(src.rglob("*.rs")):
        rel = f.relative_to(src).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "mod":
            parts = parts[:-1]
        if parts == ["lib"] or parts == ["main"]:
            parts = []
        text = f.read_text()
        text = text.split("#[cfg(test)]", 1)[0]
        text = re.sub(r"//[^\n]*", "", text)
        out[tuple(parts)] = text
    return out


def reexports(root: str) -> dict:
    """Item name -> first path segment it is re-exported from in the crate root."""
    names = {}
    for m in re.finditer(r"pub use (\w+)::(?:\{([^}]*)\}|(\w+))", root):
        items = m.group(2) or m.group(3)
        for item in re.split(r"[\s,]+", items):
            item = item.split("::")[-1].strip()
            if item:
                names[item] = m.group(1)
    return names


# `crate::a::b`, `super::super::x`, `self::x`, optionally ending in one `{…}` group.
PATH = re.compile(r"\b(crate|super|self)((?:::\w+)*)(?:::\{([^{}]*)\})?")


def paths(mod: tuple, m: re.Match) -> list:
    """The absolute paths (lists of segments) that one match names, from module `mod`."""
    head, rest = m.group(1), m.group(2).split("::")[1:]
    if head == "crate":
        base = []
    elif head == "super":
        base = list(mod[:-1])
    else:
        base = list(mod)
    while rest and rest[0] == "super":
        base, rest = base[:-1], rest[1:]
    if m.group(3) is None:
        return [base + rest]
    out = []
    for item in m.group(3).split(","):
        item = item.split(" as ")[0].strip()
        if item == "self":
            out.append(base + rest)
        elif item:
            out.append(base + rest + item.split("::"))
    return out


def edges(mods: dict) -> dict:
    root_items = reexports(mods.get((), ""))
    known = set(mods)
    graph = {m: set() for m in mods if m}
    for mod, text in mods.items():
        if not mod:
            continue
        for m in PATH.finditer(text):
            for path in paths(mod, m):
                # The longest known module that the path starts with.
                target = None
                for n in range(len(path), 0, -1):
                    if tuple(path[:n]) in known:
                        target = tuple(path[:n])
                        break
                if target is None and m.group(1) == "crate" and path and path[0] in root_items:
                    target = (root_items[path[0]],)
                if target and target != mod and target in graph and not is_prefix(mod, target):
                    graph[mod].add(target)
    return graph


def is_prefix(a: tuple, b: tuple) -> bool:
    """True when `b` is `a`'s ancestor (a module naming its own parent's items is not an
    import edge worth a cycle: the parent declares it)."""
    return len(b) < len(a) and a[: len(b)] == b


def cycles(graph: dict) -> list:
    found, seen = [], set()
    for start in graph:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    key = frozenset(path)
                    if key not in seen:
                        seen.add(key)
                        found.append(path + [start])
                elif nxt not in path and len(path) < 12:
                    stack.append((nxt, path + [nxt]))
    return found


def main() -> int:
    bad = 0
    for crate in sys.argv[1:]:
        graph = edges(modules(Path(crate) / "src"))
        found = cycles(graph)
        name = Path(crate).name
        if found:
            bad = 1
            for c in found:
                print(f"{name}: " + " -> ".join("::".join(m) for m in c))
        else:
            print(f"{name}: {len(graph)} modules, no import cycles")
    return bad


if __name__ == "__main__":
    sys.exit(main())
