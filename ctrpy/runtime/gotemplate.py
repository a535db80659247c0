"""A small Go text/template engine for `--format`, as docker and nerdctl take it.

Supported: text and `{{ }}` actions with `{{-`/`-}}` trimming; fields `.A.B` on dicts (and attributes), `.`,
`$` and `$var`; string, number and bool literals; pipelines `x | f`; parenthesised calls; `{{range}}` (with
`$i, $v :=`), `{{if}}`/`{{else if}}`/`{{else}}`, `{{with}}`, `{{end}}`; the functions docker's CLI adds (json,
join, split, lower, upper, title, truncate, pad, println) and Go's builtins (index, len, printf, print, eq, ne,
lt, le, gt, ge, and, or, not). A format starting with `table ` prints a header row made from the field names,
and the output is aligned in columns (Go's tabwriter with docker's padding of 3).

No Python package implements Go templates well enough to be worth a dependency; this is the part people use.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from ctrpy.runtime import errors

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"(?:[^"\\]|\\.)*"|`[^`]*`)
  | (?P<num>-?\d+(?:\.\d+)?)
  | (?P<decl>:=|=)
  | (?P<pipe>\|)
  | (?P<lp>\()
  | (?P<rp>\))
  | (?P<comma>,)
  | (?P<var>\$[A-Za-z0-9_]*)
  | (?P<field>(?:\.[A-Za-z0-9_]+)+|\.)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
""", re.VERBOSE)


class TemplateError(errors.InvalidArgument):
    pass


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise TemplateError(f"template: unexpected {text[pos:pos + 10]!r} in {{{{{text}}}}}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind != "ws":
            value = m.group()
            # A field chained on a variable or a parenthesised value: `$x.Name`, `(...).Name`.
            if kind == "field" and out and out[-1][0] in ("var", "rp") and value != "." and text[m.start() - 1] != " ":
                prev = out.pop()
                out.append(("chain", json.dumps([prev, value])))
                continue
            out.append((kind, value))
    return out


# ------------------------------------------------------------------------------------------------ parse

def _split(template: str) -> list[tuple[str, str]]:
    """[("text", ...), ("action", ...)] with {{- and -}} trimming applied."""
    parts: list[tuple[str, str]] = []
    pos = 0
    while True:
        start = template.find("{{", pos)
        if start < 0:
            parts.append(("text", template[pos:]))
            break
        end = template.find("}}", start)
        if end < 0:
            raise TemplateError("template: unclosed action (missing }})")
        text = template[pos:start]
        inner = template[start + 2:end]
        if inner.startswith("-") and inner[1:2].isspace():
            text = text.rstrip()
            inner = inner[1:]
        trim_after = inner.endswith("-") and inner[-2:-1].isspace()
        if trim_after:
            inner = inner[:-1]
        parts.append(("text", text))
        parts.append(("action", inner.strip()))
        pos = end + 2
        if trim_after:
            while pos < len(template) and template[pos].isspace():
                pos += 1
    return [p for p in parts if p != ("text", "")]


class _Node:
    def __init__(self, kind: str, arg: Any = None) -> None:
        self.kind = kind
        self.arg = arg
        self.body: list[_Node] = []
        self.else_body: list[_Node] = []
        self.decl: list[str] = []


def _parse(parts: list[tuple[str, str]]) -> list[_Node]:
    root: list[_Node] = []
    stack: list[tuple[_Node | None, list[_Node]]] = [(None, root)]
    for kind, text in parts:
        target = stack[-1][1]
        if kind == "text":
            target.append(_Node("text", text))
            continue
        if text.startswith("/*"):
            continue
        word = text.split(None, 1)[0] if text else ""
        rest = text[len(word):].strip()
        if word in ("range", "if", "with"):
            node = _Node(word)
            toks = _tokens(rest)
            if word == "range" and any(k == "decl" for k, _ in toks):
                i = next(i for i, (k, _) in enumerate(toks) if k == "decl")
                node.decl = [v for k, v in toks[:i] if k == "var"]
                toks = toks[i + 1:]
            node.arg = toks
            target.append(node)
            stack.append((node, node.body))
        elif word == "else":
            owner = stack[-1][0]
            if owner is None:
                raise TemplateError("template: {{else}} outside of if/range/with")
            stack.pop()
            if rest.startswith("if "):
                # {{else if X}}: an `if` nested in the else branch, closed by the same {{end}}.
                nested = _Node("if")
                nested.arg = _tokens(rest[3:])
                owner.else_body.append(nested)
                stack.append((nested, nested.body))
            else:
                stack.append((owner, owner.else_body))
        elif word == "end":
            if len(stack) == 1:
                raise TemplateError("template: unexpected {{end}}")
            stack.pop()
        else:
            toks = _tokens(text)
            if len(toks) >= 2 and toks[0][0] == "var" and toks[1][0] == "decl":
                node = _Node("assign", toks[2:])
                node.decl = [toks[0][1]]
                target.append(node)
            else:
                target.append(_Node("output", toks))
    if len(stack) != 1:
        raise TemplateError("template: missing {{end}}")
    return root


# ------------------------------------------------------------------------------------------------- eval

def _field(value: Any, path: str) -> Any:
    for name in [p for p in path.split(".") if p]:
        if isinstance(value, dict):
            if name in value:
                value = value[name]
            else:
                lowered = {str(k).lower(): v for k, v in value.items()}
                value = lowered.get(name.lower())
        elif value is None:
            return None
        else:
            try:
                value = getattr(value, name)
            except AttributeError:
                raise TemplateError(f"template: can't evaluate field {name} in type "
                                    f"{type(value).__name__}") from None
    return value


def _go_str(value: Any) -> str:
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_str(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_go_str(v) for v in value) + "]"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _truth(value: Any) -> bool:
    return bool(value) and value != "0001-01-01T00:00:00Z"


def _printf(fmt: str, *args: Any) -> str:
    conv = re.sub(r"%v", "%s", fmt)
    try:
        return conv % tuple(_go_str(a) if isinstance(a, (dict, list, bool)) or a is None else a for a in args)
    except (TypeError, ValueError) as exc:
        raise TemplateError(f"template: printf: {exc}") from None


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            if isinstance(value, dict):
                return None
            raise TemplateError(f"template: index of {key!r} out of range") from None
    return value


FUNCS: dict[str, Callable[..., Any]] = {
    "json": lambda v: json.dumps(v, separators=(",", ":"), default=str),
    "join": lambda items, sep: sep.join(_go_str(i) for i in (items or [])),
    "split": lambda s, sep: s.split(sep),
    "lower": lambda s: _go_str(s).lower(),
    "upper": lambda s: _go_str(s).upper(),
    "title": lambda s: _go_str(s).title(),
    "truncate": lambda s, n: _go_str(s)[:int(n)],
    "pad": lambda s, left, right: " " * int(left) + _go_str(s) + " " * int(right),
    "println": lambda *a: " ".join(_go_str(x) for x in a) + "\n",
    "print": lambda *a: "".join(_go_str(x) for x in a),
    "printf": _printf,
    "index": _index,
    "len": lambda v: len(v or []),
    "eq": lambda a, *bs: any(a == b for b in bs),
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "not": lambda a: not _truth(a),
}


class _Scope:
    def __init__(self, dot: Any, root: Any, variables: dict[str, Any]) -> None:
        self.dot, self.root, self.vars = dot, root, variables


def _literal(kind: str, text: str) -> Any:
    if kind == "str":
        return text[1:-1] if text.startswith("`") else json.loads(text)
    if kind == "num":
        return float(text) if "." in text else int(text)
    return None


def _operand(tok: tuple[str, str], scope: _Scope) -> Any:
    kind, text = tok
    if kind == "field":
        return scope.dot if text == "." else _field(scope.dot, text)
    if kind == "var":
        name = text or "$"
        if name == "$":
            return scope.root
        if name not in scope.vars:
            raise TemplateError(f"template: undefined variable {name}")
        return scope.vars[name]
    if kind == "chain":
        base, path = json.loads(text)
        return _field(_operand(tuple(base), scope), path)
    if kind in ("str", "num"):
        return _literal(kind, text)
    if kind == "ident":
        if text in ("true", "false"):
            return text == "true"
        if text == "nil":
            return None
        if text in FUNCS:
            return FUNCS[text]()
        raise TemplateError(f'template: function "{text}" not defined')
    raise TemplateError(f"template: unexpected {text!r}")


def _group(toks: list[tuple[str, str]]) -> list[Any]:
    """Nest parenthesised token runs into lists."""
    out: list[Any] = []
    stack: list[list[Any]] = [out]
    for tok in toks:
        if tok[0] == "lp":
            new: list[Any] = []
            stack[-1].append(new)
            stack.append(new)
        elif tok[0] == "rp":
            if len(stack) == 1:
                raise TemplateError("template: unexpected )")
            stack.pop()
        else:
            stack[-1].append(tok)
    if len(stack) != 1:
        raise TemplateError("template: unclosed (")
    return out


def _eval_cmd(items: list[Any], scope: _Scope, piped: tuple[Any, ...] = ()) -> Any:
    if not items:
        raise TemplateError("template: empty command")
    head = items[0]
    args = [_eval_pipeline(a, scope) if isinstance(a, list) else _operand(a, scope) for a in items[1:]]
    if isinstance(head, tuple) and head[0] == "ident" and head[1] in ("and", "or"):
        values = args + list(piped)
        if head[1] == "and":
            for v in values:
                if not _truth(v):
                    return v
            return values[-1] if values else None
        for v in values:
            if _truth(v):
                return v
        return values[-1] if values else None
    if isinstance(head, tuple) and head[0] == "ident" and head[1] not in ("true", "false", "nil"):
        fn = FUNCS.get(head[1])
        if fn is None:
            raise TemplateError(f'template: function "{head[1]}" not defined')
        try:
            return fn(*args, *piped)
        except TypeError as exc:
            raise TemplateError(f"template: wrong arguments for {head[1]}: {exc}") from None
    if args or piped:
        raise TemplateError("template: can't give arguments to a non-function")
    return _eval_pipeline(head, scope) if isinstance(head, list) else _operand(head, scope)


def _eval_pipeline(items: list[Any], scope: _Scope) -> Any:
    commands: list[list[Any]] = [[]]
    for item in items:
        if isinstance(item, tuple) and item[0] == "pipe":
            commands.append([])
        else:
            commands[-1].append(item)
    value = _eval_cmd(commands[0], scope)
    for cmd in commands[1:]:
        value = _eval_cmd(cmd, scope, (value,))
    return value


def _pipeline(toks: list[tuple[str, str]], scope: _Scope) -> Any:
    return _eval_pipeline(_group(toks), scope)


def _exec(nodes: list[_Node], scope: _Scope, out: list[str]) -> None:
    for node in nodes:
        if node.kind == "text":
            out.append(node.arg)
        elif node.kind == "output":
            value = _pipeline(node.arg, scope)
            out.append(_go_str(value))
        elif node.kind == "assign":
            scope.vars[node.decl[0]] = _pipeline(node.arg, scope)
        elif node.kind == "if":
            if _truth(_pipeline(node.arg, scope)):
                _exec(node.body, scope, out)
            else:
                _exec(node.else_body, scope, out)
        elif node.kind == "with":
            value = _pipeline(node.arg, scope)
            if _truth(value):
                _exec(node.body, _Scope(value, scope.root, dict(scope.vars)), out)
            else:
                _exec(node.else_body, scope, out)
        elif node.kind == "range":
            value = _pipeline(node.arg, scope)
            items: Iterable[tuple[Any, Any]]
            if isinstance(value, dict):
                items = sorted(value.items())
            elif value is None:
                items = []
            else:
                items = enumerate(value)
            ran = False
            for key, item in items:
                ran = True
                variables = dict(scope.vars)
                if len(node.decl) == 1:
                    variables[node.decl[0]] = item
                elif len(node.decl) == 2:
                    variables[node.decl[0]], variables[node.decl[1]] = key, item
                _exec(node.body, _Scope(item, scope.root, variables), out)
            if not ran:
                _exec(node.else_body, scope, out)


class Template:
    """A parsed template; `render(data)` returns the text for one object."""

    def __init__(self, text: str) -> None:
        self.table = text.startswith("table ") or text == "table"
        self.text = text[6:] if text.startswith("table ") else ("" if text == "table" else text)
        self.text = self.text.replace("\\t", "\t").replace("\\n", "\n")
        self.nodes = _parse(_split(self.text))

    def render(self, data: Any) -> str:
        out: list[str] = []
        _exec(self.nodes, _Scope(data, data, {"$": data}), out)
        return "".join(out)

    def header(self, headers: dict[str, str]) -> str:
        """The `table` header: each `{{.Field}}` replaced by its column title (docker's naming)."""
        def title(m: re.Match[str]) -> str:
            name = m.group(1)
            return headers.get(name, re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).upper())

        text = re.sub(r"\{\{-?\s*\.([A-Za-z0-9_]+)[^}]*\}\}", title, self.text)
        return re.sub(r"\{\{[^}]*\}\}", "", text)


def tabwrite(lines: list[str], padding: int = 3) -> list[str]:
    """Align tab-separated cells in columns (Go's tabwriter, minwidth 0, padding 3, as docker's tables)."""
    rows = [line.split("\t") for line in lines]
    widths: dict[int, int] = {}
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell))
    return ["".join(cell.ljust(widths[i] + padding) if i < len(row) - 1 else cell
                    for i, cell in enumerate(row)).rstrip() for row in rows]


def render_all(fmt: str, items: list[Any], headers: dict[str, str] | None = None) -> list[str]:
    """Lines for `items` under `fmt`: with `table`, a header and aligned columns."""
    template = Template(fmt)
    lines = []
    for item in items:
        lines.extend(template.render(item).split("\n"))
    if template.table:
        lines = tabwrite([template.header(headers or {})] + lines)
    return lines
