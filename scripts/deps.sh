#!/usr/bin/env bash
# The import graph between the top-level modules of src/ (each folder, each
# top-level file, and `lib` for the crate root), drawn from `crate::` and
# `super::` paths in the code; fails naming the modules of every cycle.
#
#   scripts/deps.sh [SRC_DIR]   check the tree (default: src/ of this repo)
#   scripts/deps.sh --graph     also print every arrow
#   scripts/deps.sh --self-test check that a cycle is caught and a clean tree passes
#
# Test code is no part of the graph: files named tests.rs or under a tests/
# folder, and items marked #[cfg(test)], are left out. main.rs is a binary of
# its own (it imports the library by name), so it is no node either.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"

if [[ "${1:-}" == "--self-test" ]]; then
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    mkdir -p "$tmp/bad/a" "$tmp/bad/b" "$tmp/good/a" "$tmp/good/b"
    # A three-module cycle a -> b -> c -> a, one arrow of it hidden in a
    # grouped import, one in a super:: path that climbs to the root.
    printf 'use crate::{b::Thing, Root};\n' >"$tmp/bad/a/mod.rs"
    printf 'pub struct Thing;\nfn f() { let _ = crate::c::C; }\n' >"$tmp/bad/b/mod.rs"
    printf 'pub struct C;\nmod inner;\n' >"$tmp/bad/c.rs"
    mkdir -p "$tmp/bad/c"
    printf 'use super::super::a::X;\n' >"$tmp/bad/c/inner.rs"
    printf 'mod a;\nmod b;\nmod c;\npub struct Root;\n' >"$tmp/bad/lib.rs"
    # The same shape without the closing arrow; what test code imports and
    # what comments and strings name are no arrows.
    printf 'use crate::{b::Thing, Root};\n' >"$tmp/good/a/mod.rs"
    printf 'pub struct Thing;\nuse crate::c::C;\n// crate::a::X\nconst S: &str = "crate::a";\n#[cfg(test)]\nmod tests {\n    use crate::a::X;\n    fn f() { let s = "}"; }\n}\nfn g() {}\n' >"$tmp/good/b/mod.rs"
    printf 'pub struct C;\n#[cfg(test)]\nmod tests;\n' >"$tmp/good/c.rs"
    mkdir -p "$tmp/good/c"
    printf 'use crate::a::X;\n' >"$tmp/good/c/tests.rs"
    printf 'mod a;\nmod b;\nmod c;\npub struct Root;\nfn main() { c::go(); }\n' >"$tmp/good/lib.rs"
    if out="$("$0" "$tmp/bad" 2>&1)"; then
        echo "deps self-test: a cycle a -> b -> c -> a was not caught:" >&2
        echo "$out" >&2
        exit 1
    fi
    if ! grep -q "a -> b -> c -> a" <<<"$out"; then
        echo "deps self-test: the cycle was not named:" >&2
        echo "$out" >&2
        exit 1
    fi
    if ! out="$("$0" "$tmp/good" 2>&1)"; then
        echo "deps self-test: a tree without a cycle was refused:" >&2
        echo "$out" >&2
        exit 1
    fi
    echo "deps self-test: ok"
    exit 0
fi

graph=0
if [[ "${1:-}" == "--graph" ]]; then
    graph=1
    shift
fi
src="${1:-$here/../src}"

python3 - "$src" "$graph" <<'PY'
import os, re, sys

src, show = sys.argv[1], sys.argv[2] == "1"

def strip(text):
    """Comments, strings and char literals out, so only code is read."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            i = n if end < 0 else end + 1 + len(hashes)
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'":
            # A char literal ('x', '\n', '\u{..}'), not a lifetime ('a).
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:])
            if m:
                i += len(m.group(0))
                out.append("' '")
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)

def drop_test_items(code):
    """Removes each item marked #[cfg(test)] (or cfg(all(test, ..))): up to
    its `;` or its matching `}`."""
    out, i = [], 0
    pat = re.compile(r"#\[cfg\((all\()?test\b[^\]]*\]")
    while True:
        m = pat.search(code, i)
        if not m:
            out.append(code[i:])
            return "".join(out)
        out.append(code[i:m.start()])
        j = m.end()
        while j < len(code) and code[j] not in "{;":
            j += 1
        if j < len(code) and code[j] == "{":
            depth = 0
            while j < len(code):
                if code[j] == "{":
                    depth += 1
                elif code[j] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
        i = j + 1

def module_path(rel):
    parts = rel[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return parts

def expand(path_text):
    """`a::{b, c::d}` -> [a::b, a::c::d] (first segments are all we need)."""
    m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)?\s*(::)?\s*(\{)?", path_text)
    if m and m.group(3):
        body, depth, parts, cur = path_text[m.end():], 1, [], ""
        for ch in body:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    break
            if ch == "," and depth == 1:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        parts.append(cur)
        return [p.strip() for p in parts if p.strip()]
    return [path_text]

top_files, edges = set(), {}
for root, dirs, files in os.walk(src):
    dirs[:] = [d for d in dirs if d != "tests"]
    for name in files:
        if not name.endswith(".rs") or name == "tests.rs":
            continue
        rel = os.path.relpath(os.path.join(root, name), src)
        if rel in ("main.rs",) or rel.startswith("bin" + os.sep):
            continue
        mod = module_path(rel)
        node = mod[0] if mod else "lib"
        top_files.add(node)
        with open(os.path.join(root, name), encoding="utf-8") as f:
            code = drop_test_items(strip(f.read()))
        targets = set()
        # crate::X, crate::{X, Y::..}
        for m in re.finditer(r"\bcrate\s*::\s*(\{[^;]*|[A-Za-z_][A-Za-z0-9_]*)", code):
            for p in expand(m.group(1)):
                first = re.match(r"[A-Za-z_][A-Za-z0-9_]*", p)
                if first:
                    targets.add(first.group(0))
        # super::super::X climbing to the root
        for m in re.finditer(r"\b((?:super\s*::\s*)+)(\{[^;]*|[A-Za-z_][A-Za-z0-9_]*)", code):
            ups = m.group(1).count("super")
            if ups < len(mod):
                continue
            for p in expand(m.group(2)):
                first = re.match(r"[A-Za-z_][A-Za-z0-9_]*", p)
                if first:
                    targets.add(first.group(0))
        # In the crate root a path may start with a module's name itself.
        if node == "lib":
            for m in re.finditer(r"(?<![A-Za-z0-9_:])([a-z_][a-z0-9_]*)\s*::", code):
                if m.group(1) not in ("crate", "self", "super", "std", "core", "alloc"):
                    targets.add(m.group(1))
        for t in targets:
            if t == "self":
                t = "lib"
            edges.setdefault(node, set())
            edges[node].add(t)

# A name that is no top-level module (an item of lib.rs) points at the root;
# in the root itself such a name is another crate (anyhow::, serde_json::).
graph = {}
for a, ts in edges.items():
    for t in ts:
        if t not in top_files:
            if a == "lib":
                continue
            t = "lib"
        if t != a:
            graph.setdefault(a, set()).add(t)

if show:
    for a in sorted(graph):
        print(f"{a} -> {', '.join(sorted(graph[a]))}")

# Strongly connected components (Tarjan); each of more than one node is a cycle.
index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in sorted(graph.get(v, ())):
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            sccs.append(sorted(comp))
sys.setrecursionlimit(10000)
for v in sorted(set(graph) | {t for ts in graph.values() for t in ts}):
    if v not in index:
        visit(v)

def one_cycle(comp):
    """A path through the component back to its first module, for the message."""
    start, members = comp[0], set(comp)
    prev, todo = {start: None}, [start]
    while todo:
        v = todo.pop(0)
        for w in sorted(graph.get(v, ())):
            if w == start:
                path = [v]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return list(reversed(path)) + [start]
            if w in members and w not in prev:
                prev[w] = v
                todo.append(w)
    return comp

if sccs:
    for comp in sccs:
        print(f"import cycle between top-level modules {', '.join(comp)}: "
              f"{' -> '.join(one_cycle(comp))}", file=sys.stderr)
    sys.exit(1)
print(f"deps: {len(top_files)} top-level modules, no import cycle")
PY
