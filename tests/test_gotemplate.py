"""The Go-template engine behind `--format` (ctrpy.runtime.gotemplate), against what Go's text/template prints."""

from __future__ import annotations

import pytest

from ctrpy.runtime import errors
from ctrpy.runtime.gotemplate import Template, render_all

DATA = {"ID": "abc", "Names": "web", "Labels": {"a": "1", "b": "2"}, "List": ["x", "y"],
        "State": {"Status": "running", "Pid": 3, "Running": True}, "Zero": 0, "Ports": None}


@pytest.mark.parametrize("text, want", [
    ("{{.ID}}", "abc"),
    ("{{ .State.Status }}/{{.State.Pid}}", "running/3"),
    ("{{.State.Running}}", "true"),
    ("{{json .Labels}}", '{"a":"1","b":"2"}'),
    ("{{json .List}}", '["x","y"]'),
    ('{{index .Labels "b"}}', "2"),
    ("{{index .List 1}}", "y"),
    ("{{range .List}}[{{.}}]{{end}}", "[x][y]"),
    ("{{range $i, $v := .List}}{{$i}}={{$v}} {{end}}", "0=x 1=y "),
    ("{{range $k, $v := .Labels}}{{$k}}:{{$v}};{{end}}", "a:1;b:2;"),
    ("{{range .Ports}}x{{else}}none{{end}}", "none"),
    ('{{join .List ", "}}', "x, y"),
    ("{{.Names | upper}}", "WEB"),
    ("{{upper .Names | lower}}", "web"),
    ('{{if eq .State.Status "running"}}up{{else}}down{{end}}', "up"),
    ("{{if .Zero}}a{{else if .ID}}b{{else}}c{{end}}", "b"),
    ("{{if and .ID .Zero}}y{{else}}n{{end}}", "n"),
    ("{{if or .Zero .ID}}y{{end}}", "y"),
    ("{{if not .Zero}}zero{{end}}", "zero"),
    ("{{with .State}}{{.Pid}}{{end}}", "3"),
    ('{{printf "%s:%d" .ID .State.Pid}}', "abc:3"),
    ("{{len .List}}", "2"),
    ("{{$n := .Names}}{{$n}}-{{$.ID}}", "web-abc"),
    ("a  {{- .ID -}}  b", "aabcb"),
    ("{{.Missing}}", "<no value>"),
    ('{{(index .List 0) | upper}}', "X"),
    ("{{.labels.a}}", "1"),  # docker's field names are matched case-insensitively as a fallback
])
def test_render(text: str, want: str) -> None:
    assert Template(text).render(DATA) == want


def test_table_header_and_alignment() -> None:
    rows = [{"ID": "abc", "Names": "web"}, {"ID": "longer-id", "Names": "db"}]
    lines = render_all("table {{.ID}}\t{{.Names}}", rows, {"ID": "CONTAINER ID"})
    assert lines == ["CONTAINER ID   NAMES", "abc            web", "longer-id      db"]


@pytest.mark.parametrize("text", ["{{.ID", "{{if .ID}}x", "{{end}}", "{{nosuchfunc .ID}}", "{{range .List}}{{else}}"])
def test_bad_templates_are_invalid_arguments(text: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        Template(text).render(DATA)
