"""`ctrpy completion bash|zsh|fish`: shell completion scripts generated from the Click tree.

The scripts are data plus one small walker per shell: for every command path they know the subcommands (and
aliases), the options (and which take a value), and what each positional argument is. Names of stored
objects are not in the script: an argument of a dynamic kind (image, container, task, running-task,
paused-task, snapshot, namespace, network, lease, content) is answered at <Tab> time by the hidden
`ctrpy __complete KIND` (ctrpy.commands._complete), which reads the metadata file without loading Click.

scripts/gen_completions.py writes the same output to completions/; tests/test_completion.py fails when the
committed files drift from the commands. Which argument is which kind is decided here (`argument_kind`,
`option_kind`) from the parameter's name and type, with `ARGUMENT_KINDS` for the exceptions.
"""

from __future__ import annotations

import signal as _signal
from dataclasses import dataclass, field

import click

from ctrpy.commands._kinds import DIR, FILE, tokens_of

SHELLS = ("bash", "zsh", "fish")

# Tokens of a value kind: "@KIND" asks `ctrpy __complete KIND`, ":file"/":dir" complete paths, anything else
# is a literal word. An empty list completes nothing. A parameter declares its own with
# `shell_complete=kind(...)` (ctrpy.commands._kinds); the rules below guess for the others.

# (command path, parameter name) -> tokens, where the rules in argument_kind would guess wrong. To shrink:
# each entry moves onto its parameter as `shell_complete=kind(...)` (i12/i13's files after this wave's merge).
ARGUMENT_KINDS: dict[tuple[tuple[str, ...], str], list[str]] = {
    (("pull",), "ref"): [],  # a remote name: nothing local to offer
    (("images", "pull"), "ref"): [],
    (("images", "tag"), "targets"): [],
    (("tag",), "targets"): [],  # i13: new names
    (("import",), "ref"): [],
    (("tasks", "start"), "container_id"): ["@container"],
    (("tasks", "kill"), "container_id"): ["@running-task"],
    (("tasks", "pause"), "container_ids"): ["@running-task"],
    (("tasks", "resume"), "container_ids"): ["@paused-task"],
    (("tasks", "exec"), "container_id"): ["@running-task"],
    (("tasks", "attach"), "container_id"): ["@running-task"],
    (("tasks", "ps"), "container_id"): ["@running-task"],
    (("tasks", "metrics"), "container_id"): ["@running-task"],
    (("exec",), "container"): ["@running-name"],
    (("attach",), "container"): ["@running-name"],
    (("stop",), "containers"): ["@running-name"],
    (("kill",), "containers"): ["@running-name"],
    (("pause",), "containers"): ["@running-name"],
    (("top",), "container"): ["@running-name"],
    (("rename",), "new_name"): [],
    (("inspect",), "objects"): ["@name", "@image"],
    (("network", "check"), "container_id"): ["@container"],
}

# Groups whose container-id arguments name tasks rather than containers.
_TASK_GROUPS = {"tasks", "logs", "exec"}
_SIGNALS = sorted(s.name for s in _signal.Signals if not s.name.startswith("SIG_") and s.name.startswith("SIG"))


@dataclass
class Option:
    names: list[str]
    takes_value: bool
    kind: list[str]
    help: str


@dataclass
class Node:
    """One command of the tree, with what a shell needs to complete its words."""

    path: tuple[str, ...]
    command: click.Command
    summary: str
    options: list[Option] = field(default_factory=list)
    # One token list per positional slot; `rest` applies to every slot after them (nargs=-1).
    positions: list[list[str]] = field(default_factory=list)
    rest: list[str] | None = None
    children: dict[str, Node] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    interspersed: bool = True

    @property
    def key(self) -> str:
        return " ".join(("ctrpy",) + self.path)


def _summary(parent: click.Command | None, name: str, command: click.Command) -> str:
    lazy = getattr(parent, "lazy", None)
    if lazy and name in lazy:
        return str(lazy[name][1])
    return command.get_short_help_str(limit=90)


def argument_kind(path: tuple[str, ...], param: click.Argument) -> list[str]:
    """What completes a positional argument of the command at `path`."""
    name = param.name or ""
    declared = tokens_of(param)
    if declared is not None:
        return declared
    if (path, name) in ARGUMENT_KINDS:
        return list(ARGUMENT_KINDS[(path, name)])
    if isinstance(param.type, click.Choice):
        return [str(c) for c in param.type.choices]
    if isinstance(param.type, click.Path):
        return [DIR] if not param.type.file_okay else [FILE]
    group = path[0] if path else ""
    if group == "runtime":
        # runc's interface: its container IDs live in the runtime's own state, not in ctrpy's store.
        return []
    if name in ("container", "containers"):
        return ["@name"]
    if name in ("container_id", "container_ids"):
        return ["@task"] if group in _TASK_GROUPS else ["@container"]
    if name in ("ref", "refs", "source", "local", "image"):
        return ["@image"]
    if name in ("key", "keys", "parent") and group in ("snapshots", "snapshot"):
        return ["@snapshot"]
    if name in ("digest", "digests"):
        return ["@content"]
    if name in ("name", "names"):
        return {"namespaces": ["@namespace"], "network": ["@network"]}.get(group, [])
    if name in ("id", "ids") and group == "leases":
        return ["@lease"]
    return []


def option_kind(path: tuple[str, ...], param: click.Option) -> list[str]:
    """What completes the value of an option."""
    names = set(param.opts) | set(param.secondary_opts)
    declared = tokens_of(param)
    if declared is not None:
        return declared
    if isinstance(param.type, click.Choice):
        return [str(c) for c in param.type.choices]
    if names & {"--namespace"}:
        return ["@namespace"]
    if names & {"--network", "--net"}:
        return ["bridge", "host", "none", "@network"]
    if names & {"--signal"}:
        return list(_SIGNALS)
    if names & {"--snapshotter"}:
        from ctrpy.runtime import plugins

        return plugins.ids(plugins.PluginType.SNAPSHOTTER)
    if names & {"--runtime"}:
        from ctrpy.runtime.config import DEFAULTS

        return sorted(DEFAULTS["runtimes"])
    if isinstance(param.type, click.Path):
        return [DIR] if not param.type.file_okay else [FILE]
    metavar = (param.metavar or "").upper()
    if metavar == "DIR":
        return [DIR]
    if metavar in ("FILE", "PATH"):
        return [FILE]
    return []


def _positions(path: tuple[str, ...], command: click.Command) -> tuple[list[list[str]], list[str] | None]:
    positions: list[list[str]] = []
    for param in command.params:
        if not isinstance(param, click.Argument):
            continue
        kind = argument_kind(path, param)
        if param.nargs == -1:
            if param.type is click.UNPROCESSED or getattr(param.type, "name", "") == "unprocessed":
                if not positions and path[-1:] in (("run",), ("create",)) and path[0] != "runtime":
                    # `IMAGE ID [COMMAND...]` (run, containers create): only the image is ours to complete.
                    return [["@image"], []], []
                # A command line for inside the container: nothing on this host to offer.
                return positions, []
            return positions, kind
        positions.extend([kind] * max(param.nargs, 1))
    return positions, None


def _aliases(group: click.Group, ctx: click.Context, names: list[str]) -> dict[str, str]:
    out = {}
    for alias, target in (getattr(group, "aliases", None) or {}).items():
        if target in names:
            out[alias] = target
    for alias, target in (getattr(group, "VERB_ALIASES", None) or {}).items():
        if target in names and alias not in names:
            out[alias] = target
    return out


def build_tree(root: click.Command | None = None) -> Node:
    """Walk the Click tree (importing every group) into Nodes."""
    if root is None:
        from ctrpy.commands import cli

        root = cli
    ctx = click.Context(root, info_name="ctrpy", **root.context_settings)
    node = Node((), root, root.get_short_help_str(limit=90))
    _fill(node, ctx, None)
    return node


def _fill(node: Node, ctx: click.Context, parent: click.Command | None) -> None:
    command = node.command
    for param in command.get_params(ctx):
        if isinstance(param, click.Option):
            if param.hidden:
                continue
            names = list(param.opts) + list(param.secondary_opts)
            takes_value = not param.is_flag and not param.count
            node.options.append(Option(names, takes_value, option_kind(node.path, param) if takes_value else [],
                                       " ".join((param.help or "").split())))
    node.positions, node.rest = _positions(node.path, command)
    node.interspersed = bool(command.context_settings.get("allow_interspersed_args", True))
    if isinstance(command, click.Group):
        listed = command.list_commands(ctx)
        extra_aliases = {}
        for name in listed:
            sub = command.get_command(ctx, name)
            if sub is None or getattr(sub, "hidden", False):
                continue
            if sub.name and sub.name != name and sub.name in listed:
                # `group.add_command(ls, "list")`: the same command under a second name is an alias.
                extra_aliases[name] = sub.name
                continue
            child = Node(node.path + (name,), sub, _summary(command, name, sub))
            _fill(child, click.Context(sub, info_name=name, parent=ctx, **sub.context_settings), command)
            node.children[name] = child
        node.aliases = _aliases(command, ctx, list(node.children)) | extra_aliases


def walk(node: Node) -> list[Node]:
    """The node and every descendant, depth first in listing order."""
    out = [node]
    for child in node.children.values():
        out.extend(walk(child))
    return out


# ---- bash ------------------------------------------------------------------------------------------------------

def _sq(text: str) -> str:
    """Single-quote for bash and zsh."""
    return "'" + text.replace("'", "'\\''") + "'"


def _spec(tokens: list[str] | None) -> str:
    return " ".join(tokens) if tokens else "-"


def _args_spec(node: Node) -> str:
    # Slots separated by ';'; a final slot starting with '*' repeats.
    slots = [_spec(p) for p in node.positions]
    if node.rest is not None:
        slots.append("*" + _spec(node.rest))
    return ";".join(slots)


def _tables(tree: Node, assoc: str) -> list[str]:
    """The data tables shared by the bash and zsh scripts (`assoc` is each shell's associative declaration)."""
    children, alias, opts, valopt, args, noint = [], [], [], [], [], []
    for node in walk(tree):
        if node.children:
            children.append(f"  [{_sq(node.key)}]={_sq(' '.join(node.children))}")
            words = {name: name for name in node.children} | node.aliases
            for word, target in words.items():
                alias.append(f"  [{_sq(node.key + ' ' + word)}]={_sq(target)}")
        opts.append(f"  [{_sq(node.key)}]={_sq(' '.join(n for o in node.options for n in o.names))}")
        for option in node.options:
            if option.takes_value:
                for name in option.names:
                    valopt.append(f"  [{_sq(node.key + ' ' + name)}]={_sq(_spec(option.kind))}")
        if not node.children:
            args.append(f"  [{_sq(node.key)}]={_sq(_args_spec(node))}")
        if not node.interspersed:
            noint.append(f"  [{_sq(node.key)}]=1")
    out = []
    for name, rows, what in (
        ("_ctrpy_children", children, "command path -> its subcommands"),
        ("_ctrpy_alias", alias, "'path word' -> the subcommand it names (aliases included)"),
        ("_ctrpy_opts", opts, "command path -> its options"),
        ("_ctrpy_valopt", valopt, "'path option' -> what completes its value (only options that take one)"),
        ("_ctrpy_args", args, "command path -> argument slots (';'-separated, '*' repeats, '-' nothing)"),
        ("_ctrpy_noint", noint, "command paths whose options end at the first argument"),
    ):
        out.append(f"# {what}")
        out.append(f"{assoc} {name}=(")
        out.extend(rows)
        out.append(")")
    return out


HEADER = """\
# {shell} completion for ctrpy: generated from the Click tree by `ctrpy completion {shell}`
# (scripts/gen_completions.py). Do not edit: regenerate.
"""

BASH_BODY = r'''
# The value kinds: @KIND asks `ctrpy __complete KIND` (stored names), :file/:dir complete paths.
_ctrpy_values() {
    local tok line
    for tok in $1; do
        case $tok in
            -) ;;
            @*)
                while IFS= read -r line; do
                    [[ -n $line ]] && _ctrpy_cands+=("$line")
                done < <("$_ctrpy_cmd" __complete "${tok#@}" "${_ctrpy_glob[@]}" 2>/dev/null)
                ;;
            :file)
                compopt -o filenames 2>/dev/null
                while IFS= read -r line; do _ctrpy_cands+=("$line"); done < <(compgen -f -- "$_ctrpy_cur")
                ;;
            :dir)
                compopt -o filenames 2>/dev/null
                while IFS= read -r line; do _ctrpy_cands+=("$line"); done < <(compgen -d -- "$_ctrpy_cur")
                ;;
            *) _ctrpy_cands+=("$tok") ;;
        esac
    done
}

_ctrpy() {
    local line words
    # Split the line ourselves: COMP_WORDS breaks image refs at ':' (COMP_WORDBREAKS).
    if [[ -n ${COMP_LINE+x} ]]; then
        line=${COMP_LINE:0:${COMP_POINT:-${#COMP_LINE}}}
    else
        # Rejoin what COMP_WORDBREAKS split: ':' and '=' glue to their neighbours.
        local k w prevw=""
        line=""
        for (( k = 0; k <= COMP_CWORD; k++ )); do
            w=${COMP_WORDS[k]}
            (( k > 0 )) && [[ $w != [:=] && $prevw != [:=] ]] && line+=" "
            line+=$w
            prevw=$w
        done
    fi
    read -ra words <<< "$line"
    local cur=""
    if [[ $line != *[[:space:]] ]]; then
        cur=${words[${#words[@]}-1]}
        unset 'words[${#words[@]}-1]'
    fi
    (( ${#words[@]} )) || return 0
    local _ctrpy_cmd=${words[0]} _ctrpy_cur=$cur
    local -a _ctrpy_glob=() _ctrpy_cands=()
    local node=ctrpy word opt val valkind="" i=1 n=${#words[@]} pos=0 dashdash=0
    while (( i < n )); do
        word=${words[i]}
        if (( ! dashdash )) && [[ $word == -?* ]] && ! (( pos > 0 && ${_ctrpy_noint[$node]:-0} )); then
            if [[ $word == -- ]]; then
                dashdash=1
            else
                opt=${word%%=*}
                if [[ -n ${_ctrpy_valopt["$node $opt"]+x} ]]; then
                    if [[ $word == *=* ]]; then
                        val=${word#*=}
                    elif (( i + 1 < n )); then
                        i=$((i + 1)); val=${words[i]}
                    else
                        valkind=${_ctrpy_valopt["$node $opt"]}
                        break
                    fi
                    case "$node $opt" in
                        "ctrpy --root"|"ctrpy --state"|"ctrpy -n"|"ctrpy --namespace"|"ctrpy --config"|*" --snapshotter")
                            _ctrpy_glob+=("$opt" "$val") ;;
                    esac
                fi
            fi
        elif [[ -n ${_ctrpy_children[$node]+x} ]]; then
            word=${_ctrpy_alias["$node $word"]}
            [[ -n $word ]] || return 0
            node="$node $word"
        else
            pos=$((pos + 1))
        fi
        i=$((i + 1))
    done
    local prefix=""
    if [[ -z $valkind && $cur == -?*=* && -n ${_ctrpy_valopt["$node ${cur%%=*}"]+x} ]]; then
        valkind=${_ctrpy_valopt["$node ${cur%%=*}"]}
        prefix=${cur%%=*}=
        _ctrpy_cur=${cur#*=}
    fi
    if [[ -n $valkind ]]; then
        _ctrpy_values "$valkind"
    elif [[ $cur == -* ]] && ! (( pos > 0 && ${_ctrpy_noint[$node]:-0} )) && (( ! dashdash )); then
        _ctrpy_cands=(${_ctrpy_opts[$node]})
    elif [[ -n ${_ctrpy_children[$node]+x} ]]; then
        _ctrpy_cands=(${_ctrpy_children[$node]})
    else
        local -a slots
        IFS=';' read -ra slots <<< "${_ctrpy_args[$node]}"
        local slot="-" k
        for (( k = 0; k < ${#slots[@]}; k++ )); do
            if [[ ${slots[k]} == \** ]]; then
                slot=${slots[k]#\*}; break
            elif (( k == pos )); then
                slot=${slots[k]}; break
            fi
        done
        _ctrpy_values "$slot"
    fi
    COMPREPLY=()
    local c cut=""
    # Readline replaces only the text after the last ':' or '=' of COMP_WORDBREAKS: answer with that part.
    if [[ $COMP_WORDBREAKS == *:* && $cur == *:* ]]; then
        cut=${cur%"${cur##*:}"}
    fi
    for c in "${_ctrpy_cands[@]}"; do
        c=$prefix$c
        [[ $c == "$cur"* ]] || continue
        [[ -n $cut ]] && c=${c#"$cut"}
        [[ -n $prefix && -z $cut && $COMP_WORDBREAKS == *=* ]] && c=${c#"$prefix"}
        COMPREPLY+=("$c")
    done
    return 0
}

complete -F _ctrpy ctrpy
'''


def render_bash(tree: Node) -> str:
    lines = [HEADER.format(shell="bash").rstrip("\n"),
             "# Install: ctrpy completion bash > /etc/bash_completion.d/ctrpy   (or: source <(ctrpy completion bash))",
             "# Needs bash 4 or later (associative arrays).", ""]
    lines += _tables(tree, "declare -gA")
    return "\n".join(lines) + "\n" + BASH_BODY


# ---- zsh -------------------------------------------------------------------------------------------------------

ZSH_FUNC = r'''
_ctrpy_values() {
    local tok
    local -a out
    for tok in ${=1}; do
        case $tok in
            -) ;;
            @*)
                out=("${(@f)$("${_ctrpy_cmd}" __complete "${tok#@}" "${_ctrpy_glob[@]}" 2>/dev/null)}")
                out=(${out:#})
                (( ${#out} )) && compadd -Q -- "${out[@]}"
                ;;
            :file) _files ;;
            :dir) _files -/ ;;
            *) compadd -- "$tok" ;;
        esac
    done
}

_ctrpy() {
    local node=ctrpy word opt val valkind="" i=2 n=$CURRENT pos=0 dashdash=0
    local _ctrpy_cmd=${words[1]}
    local -a _ctrpy_glob
    while (( i < n )); do
        word=${words[i]}
        if (( ! dashdash )) && [[ $word == -?* ]] && ! (( pos > 0 && ${_ctrpy_noint[$node]:-0} )); then
            if [[ $word == -- ]]; then
                dashdash=1
            else
                opt=${word%%=*}
                if (( ${+_ctrpy_valopt[$node $opt]} )); then
                    if [[ $word == *=* ]]; then
                        val=${word#*=}
                    elif (( i + 1 < n )); then
                        i=$((i + 1)); val=${words[i]}
                    else
                        valkind=${_ctrpy_valopt[$node $opt]}
                        break
                    fi
                    case "$node $opt" in
                        ("ctrpy --root"|"ctrpy --state"|"ctrpy -n"|"ctrpy --namespace"|"ctrpy --config"|*" --snapshotter")
                            _ctrpy_glob+=("$opt" "$val") ;;
                    esac
                fi
            fi
        elif (( ${+_ctrpy_children[$node]} )); then
            word=${_ctrpy_alias[$node $word]}
            [[ -n $word ]] || return 1
            node="$node $word"
        else
            pos=$((pos + 1))
        fi
        i=$((i + 1))
    done
    local cur=${words[CURRENT]}
    if [[ -z $valkind && $cur == -?*=* ]] && (( ${+_ctrpy_valopt[$node ${cur%%=*}]} )); then
        valkind=${_ctrpy_valopt[$node ${cur%%=*}]}
        compset -P '*='
    fi
    local -a descs
    if [[ -n $valkind ]]; then
        _ctrpy_values "$valkind"
    elif [[ $cur == -* ]] && ! (( pos > 0 && ${_ctrpy_noint[$node]:-0} )) && (( ! dashdash )); then
        descs=("${(@f)_ctrpy_optdesc[$node]}")
        _describe -t options 'option' descs
    elif (( ${+_ctrpy_children[$node]} )); then
        descs=("${(@f)_ctrpy_cmddesc[$node]}")
        _describe -t commands 'command' descs
    else
        local -a slots
        slots=("${(@s:;:)_ctrpy_args[$node]}")
        local slot="-" k
        for (( k = 1; k <= ${#slots}; k++ )); do
            if [[ ${slots[k]} == \** ]]; then
                slot=${slots[k]#\*}; break
            elif (( k == pos + 1 )); then
                slot=${slots[k]}; break
            fi
        done
        _ctrpy_values "$slot"
    fi
}

if [[ $funcstack[1] == _ctrpy ]]; then
    # Autoloaded from $fpath (#compdef): this run is the first completion.
    _ctrpy "$@"
else
    compdef _ctrpy ctrpy
fi
'''


def _zsh_escape_desc(name: str, text: str) -> str:
    return name.replace(":", "\\:") + ":" + text.replace("\n", " ")


def render_zsh(tree: Node) -> str:
    lines = ["#compdef ctrpy", HEADER.format(shell="zsh").rstrip("\n"),
             "# Install: ctrpy completion zsh > \"${fpath[1]}/_ctrpy\"   (then start a new shell; compinit must run)",
             "# or, without a file: source <(ctrpy completion zsh)", ""]
    lines += _tables(tree, "typeset -gA")
    cmd, opt = [], []
    for node in walk(tree):
        if node.children:
            rows = [_zsh_escape_desc(name, child.summary) for name, child in node.children.items()]
            cmd.append(f"  [{_sq(node.key)}]={_sq(chr(10).join(rows))}")
        rows = [_zsh_escape_desc(name, o.help) for o in node.options for name in o.names]
        opt.append(f"  [{_sq(node.key)}]={_sq(chr(10).join(rows))}")
    lines += ["# command path -> 'subcommand:summary' lines", "typeset -gA _ctrpy_cmddesc=(", *cmd, ")",
              "# command path -> 'option:help' lines", "typeset -gA _ctrpy_optdesc=(", *opt, ")"]
    return "\n".join(lines) + "\n" + ZSH_FUNC


# ---- fish ------------------------------------------------------------------------------------------------------

FISH_FUNC = r'''
# Walk the words before the cursor: prints the command path, then the argument slot, then forwarded options.
function __ctrpy_state
    set -l words (commandline -opc)
    set -l node ctrpy
    set -l pos 0
    set -l glob
    set -l i 2
    set -l n (count $words)
    set -l valkind ""
    while test $i -le $n
        set -l word $words[$i]
        set -l noint (__ctrpy_noint "$node")
        if string match -qr -- '^-.' $word; and not test $pos -gt 0 -a "$noint" = 1
            set -l opt (string split -m1 = -- $word)[1]
            set -l kind (__ctrpy_valopt "$node" $opt)
            if test -n "$kind"
                set -l val
                if string match -q -- '*=*' $word
                    set val (string split -m1 = -- $word)[2]
                else if test $i -lt $n
                    set i (math $i + 1)
                    set val $words[$i]
                else
                    set valkind $kind
                    break
                end
                if contains -- "$node $opt" "ctrpy --root" "ctrpy --state" "ctrpy -n" "ctrpy --namespace" "ctrpy --config"; or test "$opt" = --snapshotter
                    set -a glob $opt $val
                end
            end
        else if test -n "$(__ctrpy_children "$node")"
            set -l child (__ctrpy_alias "$node $word")
            test -n "$child"; or return 1
            set node "$node $child"
        else
            set pos (math $pos + 1)
        end
        set i (math $i + 1)
    end
    echo $node
    echo $pos
    echo $valkind
    string join \n -- $glob
    return 0
end

function __ctrpy_values -a kinds
    set -l state (__ctrpy_state)
    for tok in (string split ' ' -- $kinds)
        switch $tok
            case - ''
            case '@*'
                set -l cmd (commandline -opc)[1]
                $cmd __complete (string sub -s 2 -- $tok) $state[4..-1] 2>/dev/null
            case :file
                __fish_complete_path (commandline -ct)
            case :dir
                __fish_complete_directories (commandline -ct)
            case '*'
                echo $tok
        end
    end
end

function __ctrpy_complete
    set -l state (__ctrpy_state); or return
    set -l node $state[1]
    set -l pos $state[2]
    if test -n "$state[3]"
        __ctrpy_values "$state[3]"
        return
    end
    set -l cur (commandline -ct)
    if string match -qr -- '^-[^=]+=' "$cur"
        set -l opt (string split -m1 = -- "$cur")[1]
        set -l kind (__ctrpy_valopt "$node $opt")
        if test -n "$kind"
            for v in (__ctrpy_values "$kind")
                echo "$opt=$v"
            end
            return
        end
    end
    if string match -q -- '-*' "$cur"
        for o in (string split ' ' -- (__ctrpy_opts "$node"))
            echo $o
        end
        return
    end
    set -l children (__ctrpy_children "$node")
    if test -n "$children"
        __ctrpy_cmddesc "$node"
        return
    end
    set -l slots (string split ';' -- (__ctrpy_args "$node"))
    set -l k 1
    for slot in $slots
        if string match -q -- '\**' $slot
            __ctrpy_values (string sub -s 2 -- $slot)
            return
        end
        if test $k -eq (math $pos + 1)
            __ctrpy_values $slot
            return
        end
        set k (math $k + 1)
    end
end

complete -c ctrpy -f -a '(__ctrpy_complete)'
'''


def _fish_q(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_switch(fn: str, rows: list[tuple[str, str]], doc: str) -> list[str]:
    out = [f"# {doc}", f"function {fn}", "    switch \"$argv\""]
    for key, value in rows:
        out += [f"        case {_fish_q(key)}", f"            printf '%s\\n' {_fish_q(value)}"]
    out += ["    end", "end", ""]
    return out


def render_fish(tree: Node) -> str:
    lines = [HEADER.format(shell="fish").rstrip("\n"),
             "# Install: ctrpy completion fish > ~/.config/fish/completions/ctrpy.fish", ""]
    nodes = walk(tree)
    children, alias, opts, valopt, args, noint, cmddesc = [], [], [], [], [], [], []
    for node in nodes:
        if node.children:
            children.append((node.key, " ".join(node.children)))
            for word, target in ({name: name for name in node.children} | node.aliases).items():
                alias.append((node.key + " " + word, target))
            cmddesc.append((node.key, "\n".join(f"{name}\t{child.summary}" for name, child in node.children.items())))
        else:
            args.append((node.key, _args_spec(node)))
        opts.append((node.key, " ".join(n for o in node.options for n in o.names)))
        for option in node.options:
            if option.takes_value:
                for name in option.names:
                    valopt.append((node.key + " " + name, _spec(option.kind)))
        if not node.interspersed:
            noint.append((node.key, "1"))
    lines += _fish_switch("__ctrpy_children", children, "command path -> its subcommands")
    lines += _fish_switch("__ctrpy_alias", alias, "'path word' -> the subcommand it names (aliases included)")
    lines += _fish_switch("__ctrpy_opts", opts, "command path -> its options")
    lines += _fish_switch("__ctrpy_valopt", valopt, "'path option' -> what completes its value")
    lines += _fish_switch("__ctrpy_args", args, "command path -> argument slots (';'-separated, '*' repeats)")
    lines += _fish_switch("__ctrpy_noint", noint, "command paths whose options end at the first argument")
    lines += _fish_switch("__ctrpy_cmddesc", cmddesc, "command path -> subcommand<TAB>summary lines")
    # fish's `switch "$argv"` joins the two-argument form with a space: call sites pass one string.
    return "\n".join(lines) + FISH_FUNC


RENDERERS = {"bash": render_bash, "zsh": render_zsh, "fish": render_fish}
FILENAMES = {"bash": "ctrpy.bash", "zsh": "_ctrpy", "fish": "ctrpy.fish"}


def render(shell: str, tree: Node | None = None) -> str:
    """The completion script for `shell`, generated from the Click tree."""
    return RENDERERS[shell](tree or build_tree())


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print a shell completion script (bash, zsh or fish).

    The script completes commands, subcommands, aliases and options, and asks ctrpy for stored names
    (images, containers, running tasks, snapshots, namespaces, networks) as you type.

    \b
    Examples:
      source <(ctrpy completion bash)                            # this shell only
      ctrpy completion bash > /etc/bash_completion.d/ctrpy       # every new bash
      ctrpy completion zsh > "${fpath[1]}/_ctrpy"                 # zsh (compinit)
      ctrpy completion fish > ~/.config/fish/completions/ctrpy.fish
    """
    click.echo(render(shell), nl=False)


__all__ = ["ARGUMENT_KINDS", "Node", "Option", "argument_kind", "build_tree", "completion", "option_kind", "render",
           "walk"]
