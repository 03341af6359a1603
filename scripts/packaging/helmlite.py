#!/usr/bin/env python3
"""A small, strict renderer for the subset of Helm's template language charts/arca uses.

The `helm` binary cannot be installed everywhere the test suite runs, so the offline checks
render the chart with this instead (`helm template` and `helm lint` run in the cluster e2e).
It knows exactly this much, and fails loudly on anything else:

- actions `{{ pipeline }}` with `{{-` / `-}}` whitespace trimming and `{{/* comments */}}`;
- `if` / `else if` / `else` / `end`, `range` over a list (`.` is the item, `$` the root);
- fields `.Values.a.b`, `.Release.Name|Namespace|Service`, `.Chart.Version|AppVersion`,
  `$.…`, string and integer literals, parenthesised sub-pipelines;
- functions quote, toYaml, nindent, indent, int, join, default, not, and, or, eq, ne, gt, lt.

Values are merged over values.yaml and checked against values.schema.json first, as Helm
does. Usage:

    helmlite.py render CHART [--release NAME] [--namespace NS] [-f values.yaml]... [--plain]

`--plain` drops the Helm-only labels (helm.sh/chart, managed-by: Helm) so the output is the
plain-manifest install (manifests/install/).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

import yaml

HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")


class TemplateError(Exception):
    """A template uses something this renderer does not support, or evaluates wrongly."""


class ValuesError(Exception):
    """The values do not meet values.schema.json."""


# ---------------------------------------------------------------------------- parsing

ACTION = re.compile(r'\{\{(-?)(\s*)((?:"(?:[^"\\]|\\.)*"|.)*?)(\s*)(-?)\}\}', re.S)


def tokenize(src: str):
    """Split a template into ("text", str) and ("action", str) with trimming applied."""
    out = []
    pos = 0
    trim_next = False
    for m in ACTION.finditer(src):
        text = src[pos : m.start()]
        if trim_next:
            text = text.lstrip()
        if m.group(1) == "-":
            if not m.group(2):
                raise TemplateError(f"'{{{{-' needs a space after it: {m.group(0)!r}")
            text = text.rstrip()
        out.append(("text", text))
        if m.group(5) == "-" and not m.group(4):
            raise TemplateError(f"'-}}}}' needs a space before it: {m.group(0)!r}")
        out.append(("action", m.group(3).strip()))
        trim_next = m.group(5) == "-"
        pos = m.end()
    text = src[pos:]
    if trim_next:
        text = text.lstrip()
    out.append(("text", text))
    return out


def parse(tokens):
    """Build a tree: lists of str | ("expr", e) | ("if", [(cond, body)], else) | ("range", e, body)."""
    pos = 0

    def block(stop):
        nonlocal pos
        body = []
        while pos < len(tokens):
            kind, val = tokens[pos]
            pos += 1
            if kind == "text":
                if val:
                    body.append(val)
                continue
            if val.startswith("/*"):
                if not val.endswith("*/"):
                    raise TemplateError(f"unterminated comment: {val!r}")
                continue
            word = val.split(None, 1)[0] if val else ""
            if word in stop or (word == "else" and "else" in stop):
                return body, val
            if word == "if":
                branches = []
                cond = val[2:].strip()
                while True:
                    inner, end = block({"else", "end"})
                    branches.append((cond, inner))
                    if end == "end":
                        body.append(("if", branches, []))
                        break
                    if end.startswith("else if "):
                        cond = end[len("else if ") :].strip()
                        continue
                    if end != "else":
                        raise TemplateError(f"unsupported {end!r}")
                    else_body, end = block({"end"})
                    body.append(("if", branches, else_body))
                    break
            elif word == "range":
                expr = val[5:].strip()
                if ":=" in expr:
                    raise TemplateError(f"range with variables is not supported: {val!r}")
                inner, end = block({"end"})
                if end != "end":
                    raise TemplateError(f"range ended by {end!r}")
                body.append(("range", expr, inner))
            elif word in ("with", "define", "template", "include", "block", "tpl"):
                raise TemplateError(f"{word!r} is not supported: keep the templates plain")
            elif word in ("end", "else"):
                raise TemplateError(f"unexpected {val!r}")
            else:
                body.append(("expr", val))
        if stop:
            raise TemplateError(f"missing {{{{ end }}}} (expected one of {sorted(stop)})")
        return body, None

    tree, _ = block(set())
    return tree


# ---------------------------------------------------------------------------- evaluation

TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|(\()|(\))|(\|)|([^\s()|]+))')


def lex(expr: str):
    out = []
    pos = 0
    expr = expr.strip()
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"cannot read {expr[pos:]!r}")
        pos = m.end()
        if m.group(1) is not None:
            out.append(("str", json.loads(m.group(1))))
        elif m.group(2):
            out.append(("(", None))
        elif m.group(3):
            out.append((")", None))
        elif m.group(4):
            out.append(("|", None))
        elif m.group(5):
            out.append(("word", m.group(5)))
    return out


def truth(v) -> bool:
    if v is None:
        return False
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return v != 0
    if isinstance(v, (str, list, dict)):
        return len(v) > 0
    return True


def to_str(v) -> str:
    """Text of a value as Go's fmt prints it (scalars only; Helm prints nil as "")."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e6 else repr(v)
    if isinstance(v, (int, str)):
        return str(v)
    raise TemplateError(f"printing a {type(v).__name__} directly: use toYaml")


def to_yaml(v) -> str:
    return yaml.safe_dump(v, default_flow_style=False, sort_keys=True).rstrip("\n")


def _indent(n, s):
    pad = " " * int(n)
    return "\n".join(pad + line if line else line for line in to_str(s).split("\n"))


def _cmp(a, b, op):
    if type(a) is not type(b) and not (isinstance(a, int) and isinstance(b, int)):
        raise TemplateError(f"incompatible types for comparison: {a!r} and {b!r} (use int)")
    return op(a, b)


def _to_int(v):
    if isinstance(v, bool) or v is None:
        return int(bool(v))
    if isinstance(v, (int, float)):
        return int(v)
    if isinstance(v, str):
        try:
            return int(float(v))
        except ValueError:
            return 0
    raise TemplateError(f"int of a {type(v).__name__}")


def _join(sep, items):
    if not isinstance(items, list):
        raise TemplateError("join needs a list")
    return sep.join(to_str(i) for i in items)


FUNCS = {
    "quote": lambda *a: " ".join(json.dumps(to_str(x)) for x in a),
    "toYaml": to_yaml,
    "nindent": lambda n, s: "\n" + _indent(n, s),
    "indent": _indent,
    "int": _to_int,
    "join": _join,
    "default": lambda d, v=None: v if truth(v) else d,
    "not": lambda v: not truth(v),
    "and": lambda *a: next((x for x in a if not truth(x)), a[-1]),
    "or": lambda *a: next((x for x in a if truth(x)), a[-1]),
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: _cmp(a, b, lambda x, y: x > y),
    "lt": lambda a, b: _cmp(a, b, lambda x, y: x < y),
}


class Scope:
    def __init__(self, root, dot):
        self.root = root
        self.dot = dot


def field(scope: Scope, word: str):
    if word == ".":
        return scope.dot
    if word == "$":
        return scope.root
    if word.startswith("$."):
        base, path = scope.root, word[2:]
    elif word.startswith("."):
        base, path = scope.dot, word[1:]
    else:
        raise TemplateError(f"unknown function or value {word!r}")
    cur = base
    walked = []
    for part in path.split("."):
        if not isinstance(cur, dict):
            raise TemplateError(f"nil pointer evaluating .{'.'.join(walked)}.{part}")
        cur = cur.get(part)
        walked.append(part)
    return cur


def eval_pipeline(tokens, scope: Scope):
    """Evaluate a token list (a pipeline of commands)."""
    commands = [[]]
    depth = 0
    for t in tokens:
        if t[0] == "(":
            depth += 1
        elif t[0] == ")":
            depth -= 1
        if t[0] == "|" and depth == 0:
            commands.append([])
        else:
            commands[-1].append(t)
    if depth != 0:
        raise TemplateError("unbalanced parentheses")
    value = None
    for i, cmd in enumerate(commands):
        if not cmd:
            raise TemplateError("empty command in pipeline")
        args = operands(cmd, scope)
        head = cmd[0]
        if head[0] == "word" and head[1] in FUNCS:
            fn = FUNCS[head[1]]
            call = args[1:] + ([value] if i > 0 else [])
            try:
                value = fn(*call)
            except TypeError as e:
                raise TemplateError(f"{head[1]}: wrong arguments ({e})") from None
        else:
            if i > 0 or len(args) != 1:
                raise TemplateError(f"{head[1]!r} is not a function")
            value = args[0]
    return value


def operands(cmd, scope):
    """Evaluate each operand of one command (the function name itself stays a name)."""
    out = []
    i = 0
    while i < len(cmd):
        kind, val = cmd[i]
        if kind == "(":
            depth, j = 1, i + 1
            while depth:
                if j >= len(cmd):
                    raise TemplateError("unbalanced parentheses")
                depth += {"(": 1, ")": -1}.get(cmd[j][0], 0)
                j += 1
            out.append(eval_pipeline(cmd[i + 1 : j - 1], scope))
            i = j
            continue
        if kind == "str":
            out.append(val)
        elif kind == "word":
            if i == 0 and val in FUNCS:
                out.append(val)
            elif re.fullmatch(r"-?[0-9]+", val):
                out.append(int(val))
            elif val in ("true", "false"):
                out.append(val == "true")
            else:
                out.append(field(scope, val))
        else:
            raise TemplateError(f"unexpected {kind!r}")
        i += 1
    return out


def execute(tree, scope: Scope) -> str:
    out = []
    for node in tree:
        if isinstance(node, str):
            out.append(node)
        elif node[0] == "expr":
            out.append(to_str(eval_pipeline(lex(node[1]), scope)))
        elif node[0] == "if":
            for cond, body in node[1]:
                if truth(eval_pipeline(lex(cond), scope)):
                    out.append(execute(body, scope))
                    break
            else:
                out.append(execute(node[2], scope))
        elif node[0] == "range":
            items = eval_pipeline(lex(node[1]), scope)
            if items is None:
                items = []
            if not isinstance(items, list):
                raise TemplateError(f"range over a {type(items).__name__}: only lists")
            for item in items:
                out.append(execute(node[2], Scope(scope.root, item)))
    return "".join(out)


# ---------------------------------------------------------------------------- the chart


def merge(base, override):
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, v in override.items():
            out[k] = merge(base.get(k), v) if k in base else v
        return out
    return copy.deepcopy(override)


def check_values(chart: Path, values: dict):
    """Validate merged values against values.schema.json, as `helm install` does."""
    import jsonschema

    schema = json.loads((chart / "values.schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(values), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for e in errors:
            where = ".".join(str(p) for p in e.absolute_path) or "(root)"
            lines.append(f"- {where}: {e.message}")
        raise ValuesError(
            "values don't meet the specifications of the schema(s) in the following chart(s):\n"
            f"{json.loads((chart / 'values.schema.json').read_text()).get('title', chart.name)}:\n"
            + "\n".join(lines)
        )


def load_values(chart: Path, overrides=()):
    values = yaml.safe_load((chart / "values.yaml").read_text()) or {}
    for o in overrides:
        values = merge(values, o or {})
    check_values(chart, values)
    return values


def render_chart(chart: Path, release="arca", namespace="arca-system", overrides=(), plain=False):
    """Render every template; returns [(template file, rendered text)]."""
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    root = {
        "Values": load_values(chart, overrides),
        "Release": {"Name": release, "Namespace": namespace, "Service": "Helm"},
        "Chart": {"Name": meta["name"], "Version": meta["version"], "AppVersion": meta["appVersion"]},
    }
    out = []
    for path in sorted((chart / "templates").glob("*.yaml")):
        try:
            text = execute(parse(tokenize(path.read_text())), Scope(root, root))
        except TemplateError as e:
            raise TemplateError(f"{path.name}: {e}") from None
        if plain:
            text = "\n".join(
                line
                for line in text.split("\n")
                if not re.match(r"\s*helm\.sh/chart:", line)
                and not re.match(r"\s*app\.kubernetes\.io/managed-by: Helm\s*$", line)
            )
        out.append((path.name, text))
    return out


def objects(rendered):
    """Parse rendered templates into objects (empty documents dropped)."""
    objs = []
    for name, text in rendered:
        try:
            for doc in yaml.safe_load_all(text):
                if doc is not None:
                    objs.append(doc)
        except yaml.YAMLError as e:
            raise TemplateError(f"{name} does not render to valid YAML: {e}") from None
    return objs


# Helm's install order (pkg/releaseutil/kind_sorter.go), for the kinds the chart has.
INSTALL_ORDER = ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                 "RoleBinding", "Service", "Deployment"]

PLAIN_HEADER = """# arca-operator: the chart charts/arca rendered with its default values (release "arca",
# namespace "arca-system"). Regenerate it after changing the chart:
#   python3 scripts/packaging/helmlite.py render charts/arca --plain > manifests/install/20-operator.yaml
# scripts/validate-manifests.sh (part of scripts/test.sh) fails when the two disagree."""


def install_rank(text):
    kinds = re.findall(r"^kind: (\S+)", text, re.M)
    ranks = [INSTALL_ORDER.index(k) if k in INSTALL_ORDER else len(INSTALL_ORDER) for k in kinds]
    return min(ranks, default=len(INSTALL_ORDER))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render")
    r.add_argument("chart", type=Path)
    r.add_argument("--release", default="arca")
    r.add_argument("--namespace", default="arca-system")
    r.add_argument("-f", "--values", action="append", default=[], type=Path)
    r.add_argument("--plain", action="store_true")
    args = ap.parse_args(argv)
    overrides = [yaml.safe_load(p.read_text()) for p in args.values]
    try:
        rendered = render_chart(args.chart, args.release, args.namespace, overrides, args.plain)
        objects(rendered)
    except (TemplateError, ValuesError) as e:
        print(f"helmlite: {e}", file=sys.stderr)
        return 1
    if args.plain:
        # kubectl applies in file order: identities and rights before the Deployment.
        rendered.sort(key=lambda nt: install_rank(nt[1]))
    docs = [PLAIN_HEADER] if args.plain else []
    for name, text in rendered:
        text = text.strip("\n")
        if not text.strip():
            continue
        if not text.startswith("---"):
            text = "---\n" + text
        docs.append(f"# Source: arca/templates/{name}\n{text}" if not args.plain else text)
    sys.stdout.write("\n".join(docs) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
