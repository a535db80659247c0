"""Shell completion, driven through real bash, zsh and fish against the real console script.

The committed scripts in completions/ must equal what `ctrpy completion SHELL` generates from the Click tree
(regenerate with scripts/gen_completions.py). Dynamic answers (image refs, container IDs, running tasks,
namespaces, ...) come from a --root populated through the CLI itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support.runtimes import cleanup, rootfs, unusable  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parent.parent
COMPLETIONS = REPO / "completions"
BIN = str(Path(sys.executable).parent)
CTRPY = os.path.join(BIN, "ctrpy")
FILES = {"bash": "ctrpy.bash", "zsh": "_ctrpy", "fish": "ctrpy.fish"}


def shell_env(dirs: Any, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTRPY_")}
    env["PATH"] = BIN + ":" + env.get("PATH", "")
    env["CTRPY_CONFIG"] = str(dirs.root.parent / "config.toml")
    env.update(extra)
    return env


# The way bash calls a completion function: COMP_LINE/COMP_POINT, and COMP_WORDS/COMP_CWORD split at
# COMP_WORDBREAKS (so an image ref's ':' is a word of its own, as in a real shell).
BASH_DRIVER = r'''
source "$1"
line=$2
COMP_LINE=$line
[[ $3 == words ]] && unset COMP_LINE
COMP_POINT=${#line}
COMP_WORDS=()
w=""
for (( k = 0; k < ${#line}; k++ )); do
    ch=${line:k:1}
    if [[ $ch == [[:space:]] ]]; then
        [[ -n $w ]] && COMP_WORDS+=("$w"); w=""
    elif [[ $ch == [:=] ]]; then
        [[ -n $w ]] && COMP_WORDS+=("$w"); COMP_WORDS+=("$ch"); w=""
    else
        w+=$ch
    fi
done
COMP_WORDS+=("$w")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
COMPREPLY=()
_ctrpy ctrpy "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
'''


def bash_complete(line: str, env: dict[str, str], words_only: bool = False) -> list[str]:
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", BASH_DRIVER, "driver",
                        str(COMPLETIONS / FILES["bash"]), line, "words" if words_only else "line"],
                       capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", r.stderr
    return [w for w in r.stdout.split("\n") if w]


# Real zsh: an interactive shell in a pseudo-terminal (zsh/zpty) with compinit and _ctrpy on $fpath; for each
# line, <Tab> is pressed and every match zsh's completion system adds is printed through a wrapper around
# compadd. One shell answers all the lines of a test (starting zsh with compinit is the slow part).
ZSH_DRIVER = r'''
zmodload zsh/zpty
zpty z zsh -f -i
# $1: a directory for $fpath (the installed _ctrpy), or the script itself to source after compinit.
zpty -w z "PROMPT='<P>'; RPROMPT=''; [[ -d $1 ]] && fpath=($1 \$fpath); autoload -U compinit; compinit -u -D"
[[ -f $1 ]] && zpty -w z "source $1"
zpty -w z 'compadd () {
  if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return $?; fi
  typeset -a __hits
  builtin compadd -A __hits "$@"
  local h; for h in "${__hits[@]}"; do print -r -- "<<CAND>>$h"; done
}'
zpty -w z "zstyle ':completion:*' menu no; bindkey '^I' complete-word; print -r -- '<<READY''>>'"
local out line
# Wait for the prompt after each marker: keys typed before zle reads the line could be discarded.
zpty -r z out '*<<READY>>*<P>*'
shift
for typed in "$@"; do
  zpty -w -n z "$typed"$'\t'
  zpty -w -n z $'\C-u'"print -r -- '<<DONE''>>'"$'\n'
  # Read everything up to the marker in one go: line-by-line reads can split a candidate's line.
  zpty -r z out '*<<DONE>>*<P>*'
  for line in "${(@f)out}"; do
    [[ $line == *'<<CAND>>'* ]] && print -r -- "${${line##*<<CAND>>}//[$'\r\n']/}"
  done
  print -r -- '<<END>>'
done
zpty -d z
'''


def zsh_complete_many(lines: list[str], env: dict[str, str], source: bool = False) -> dict[str, list[str]]:
    where = COMPLETIONS / FILES["zsh"] if source else COMPLETIONS
    r = subprocess.run(["zsh", "-f", "-c", ZSH_DRIVER, "driver", str(where), *lines],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    blocks = r.stdout.split("<<END>>\n")
    assert len(blocks) == len(lines) + 1, r.stdout
    return {line: list(dict.fromkeys(w for w in block.split("\n") if w)) for line, block in zip(lines, blocks)}


def zsh_complete(line: str, env: dict[str, str]) -> list[str]:
    return zsh_complete_many([line], env)[line]


def fish_complete(line: str, env: dict[str, str]) -> list[str]:
    r = subprocess.run(["fish", "--no-config", "-c", 'source $argv[1]; complete -C $argv[2]',
                        str(COMPLETIONS / FILES["fish"]), line],
                       capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", r.stderr
    return [w.split("\t")[0] for w in r.stdout.split("\n") if w]


def complete_many(shell: str, lines: list[str], env: dict[str, str]) -> dict[str, list[str]]:
    """What <Tab> offers after each of `lines`, in `shell`."""
    if shell == "zsh":
        return zsh_complete_many(lines, env)
    one = bash_complete if shell == "bash" else fish_complete
    return {line: one(line, env) for line in lines}


def need(program: str) -> None:
    if shutil.which(program) is None:
        pytest.fail(f"{program} is not installed: `make deps` installs it (Makefile APT_PACKAGES)")


# ---------------------------------------------------------------------------------------------- generation

@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_committed_script_is_current(ctrpy: Any, shell: str) -> None:
    r = ctrpy("completion", shell)
    assert r.returncode == 0, r.stderr
    committed = (COMPLETIONS / FILES[shell]).read_text()
    assert r.stdout == committed, (
        f"completions/{FILES[shell]} differs from `ctrpy completion {shell}`: run scripts/gen_completions.py")


def test_generator_check_mode_agrees() -> None:
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_completions.py"), "--check"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_generator_check_mode_reports_drift(tmp_path: Path) -> None:
    (tmp_path / "ctrpy.bash").write_text("# stale\n")
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_completions.py"), "--check", "--out",
                        str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "ctrpy.bash" in r.stderr and "_ctrpy" in r.stderr
    assert (tmp_path / "ctrpy.bash").read_text() == "# stale\n"


def test_unknown_shell_is_a_usage_error(ctrpy: Any) -> None:
    r = ctrpy("completion", "tcsh")
    assert r.returncode == 2
    assert "tcsh" in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_every_command_and_alias_is_in_the_scripts(ctrpy: Any) -> None:
    from ctrpy.commands import ALIASES, COMMANDS

    text = (COMPLETIONS / FILES["bash"]).read_text()
    top = next(line for line in text.splitlines() if line.startswith("  ['ctrpy']="))
    listed = top.split("=", 1)[1].strip("'").split()
    r = ctrpy("--help")
    for name in COMMANDS:
        if f"  {name} " in r.stdout:  # shown by --help, so it exists now
            assert name in listed
    for alias, target in ALIASES.items():
        if target in listed:
            assert f"['ctrpy {alias}']='{target}'" in text


# ---------------------------------------------------------------------------------------------- __complete

def test_complete_fast_path_does_not_load_click(dirs: Any, ctrpy: Any) -> None:
    assert ctrpy("namespaces", "create", "alpha").returncode == 0
    env = shell_env(dirs, PYTHONPROFILEIMPORTTIME="1")
    r = subprocess.run([CTRPY, "__complete", "namespace", "--root", str(dirs.root)], capture_output=True,
                       text=True, env=env, timeout=30)
    assert r.returncode == 0
    assert "alpha" in r.stdout.split()
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert "sqlite3" in imported
    for heavy in ("click", "rich", "httpx", "pyroute2", "pathlib", "typing", "ctrpy.runtime.metadata.db"):
        assert heavy not in imported, f"`ctrpy __complete` imported {heavy}"
    # Of the runtime only the read-only lookups of the metadata layer (the one owner of SQL), and its
    # package modules, which import nothing themselves.
    runtime = {name for name in imported if name.startswith("ctrpy.runtime")}
    assert runtime == {"ctrpy.runtime", "ctrpy.runtime.metadata", "ctrpy.runtime.metadata.lookup"}


def test_complete_reads_without_writing(dirs: Any) -> None:
    # No store yet: nothing to offer, and nothing is created.
    r = subprocess.run([CTRPY, "__complete", "image", "--root", str(dirs.root)], capture_output=True, text=True,
                       env=shell_env(dirs), timeout=30)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert list(dirs.root.iterdir()) == []


def test_complete_follows_the_config_file(dirs: Any, ctrpy: Any, tmp_path: Path) -> None:
    """With no --root or CTRPY_ROOT, the root comes from the config file, as for every other command."""
    assert ctrpy("namespaces", "create", "from-config").returncode == 0
    config = tmp_path / "elsewhere.toml"
    config.write_text(f'root = "{dirs.root}"\n')
    env = shell_env(dirs)
    r = subprocess.run([CTRPY, "__complete", "namespace", "--config", str(config)], capture_output=True, text=True,
                       env=env, timeout=30)
    assert "from-config" in r.stdout.split()
    env["CTRPY_CONFIG"] = str(config)
    r = subprocess.run([CTRPY, "__complete", "namespace"], capture_output=True, text=True, env=env, timeout=30)
    assert "from-config" in r.stdout.split()
    # ... and --root wins over it, as on the command line.
    r = subprocess.run([CTRPY, "__complete", "namespace", "--root", str(tmp_path / "empty")], capture_output=True,
                       text=True, env=env, timeout=30)
    assert (r.returncode, r.stdout) == (0, "")


def test_complete_bad_kind_is_a_usage_error(dirs: Any) -> None:
    r = subprocess.run([CTRPY, "__complete", "bogus"], capture_output=True, text=True, env=shell_env(dirs),
                       timeout=30)
    assert r.returncode == 2
    assert r.stderr.startswith("ctrpy: unknown kind 'bogus'")
    assert "Traceback" not in r.stderr


# ---------------------------------------------------------------------------------------------- static words

def test_bash_registers_the_function(dirs: Any) -> None:
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", 'source "$1" && complete -p ctrpy', "x",
                        str(COMPLETIONS / FILES["bash"])], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "complete -F _ctrpy ctrpy"


def test_bash_without_comp_line(dirs: Any) -> None:
    # Callers that set only COMP_WORDS/COMP_CWORD (as bash-completion's helpers do) get the same answers.
    env = shell_env(dirs)
    assert bash_complete("ctrpy ima", env, words_only=True) == ["images"]
    assert sorted(bash_complete("ctrpy images ls --format ", env, words_only=True)) == ["json", "table"]
    assert bash_complete("ctrpy images ls --format=j", env, words_only=True) == ["json"]


def test_bash_paths_through_compgen(dirs: Any, tmp_path: Path) -> None:
    (tmp_path / "conf-a.toml").write_text("")
    (tmp_path / "confdir").mkdir()
    env = shell_env(dirs)
    assert bash_complete(f"ctrpy --config {tmp_path}/conf-", env) == [f"{tmp_path}/conf-a.toml"]
    assert bash_complete(f"ctrpy --root {tmp_path}/conf", env) == [f"{tmp_path}/confdir"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_static_words(shell: str, dirs: Any) -> None:
    need(shell)
    lines = ["ctrpy ima", "ctrpy ", "ctrpy images ", "ctrpy i ", "ctrpy images ls --fo", "ctrpy images ls --format ",
             "ctrpy tasks kill --signal SIGKI", "ctrpy completion f", "ctrpy --deb", "ctrpy no-such-command "]
    got = complete_many(shell, lines, shell_env(dirs))
    assert got["ctrpy ima"] == ["images"]
    top = got["ctrpy "]
    for name in ("images", "containers", "tasks", "snapshots", "namespaces", "run", "pull", "completion"):
        assert name in top
    assert "i" not in top  # aliases are understood, not offered
    subs = set(got["ctrpy images "])
    assert {"ls", "inspect", "rm", "tag"} <= subs
    assert "list" not in subs  # `images list` is an alias of `ls`
    assert set(got["ctrpy i "]) == subs  # an alias leads to the same group
    assert got["ctrpy images ls --fo"] == ["--format"]
    assert sorted(got["ctrpy images ls --format "]) == ["json", "table"]
    assert got["ctrpy tasks kill --signal SIGKI"] == ["SIGKILL"]
    assert got["ctrpy completion f"] == ["fish"]
    assert got["ctrpy --deb"] == ["--debug"]
    assert got["ctrpy no-such-command "] == []


def test_zsh_script_can_be_sourced(dirs: Any) -> None:
    # `source <(ctrpy completion zsh)` in .zshrc, instead of a file on $fpath.
    need("zsh")
    got = zsh_complete_many(["ctrpy images l", "ctrpy --deb"], shell_env(dirs), source=True)
    assert got == {"ctrpy images l": ["ls"], "ctrpy --deb": ["--debug"]}


# ---------------------------------------------------------------------------------------------- stored names

@pytest.fixture
def populated(ctrpy: Any, dirs: Any, seeded_registry: Any, tmp_path: Path) -> dict[str, Any]:
    """A root holding one pulled image, two containers, a snapshot, a second namespace and its container."""
    ref = f"{seeded_registry.host}/busybox:latest"
    r = ctrpy("pull", "--no-unpack", ref)
    assert r.returncode == 0, r.stderr
    rootfs_dir = tmp_path / "rootfs-dir"
    rootfs_dir.mkdir()
    for cid in ("web-1", "db-2"):
        r = ctrpy("containers", "create", "--rootfs", str(rootfs_dir), cid, "true")
        assert r.returncode == 0, r.stderr
    r = ctrpy("containers", "create", "--rootfs", str(rootfs_dir), "other-ns-box", "true", namespace="other")
    assert r.returncode == 0, r.stderr
    r = ctrpy("snapshots", "--snapshotter", "native", "prepare", "scratch-key")
    assert r.returncode == 0, r.stderr
    return {"ref": ref}


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_stored_names(shell: str, dirs: Any, populated: dict[str, Any]) -> None:
    need(shell)
    root = f"ctrpy --root {dirs.root} --state {dirs.state}"
    ref = populated["ref"]
    expected = {
        f"{root} images rm ": [ref],
        f"{root} run --rm ": [ref],
        f"{root} run --rm {ref} ": [],  # the new container's ID
        f"{root} exec web-1 ": [],  # a command inside the container
        f"{root} containers rm ": ["db-2", "web-1"],
        f"{root} containers info w": ["web-1"],
        f"{root} -n other containers rm ": ["other-ns-box"],
        f"{root} --namespace=other containers rm ": ["other-ns-box"],
        f"{root} snapshots --snapshotter native rm ": ["scratch-key"],
    }
    got = complete_many(shell, [*expected, f"{root} -n ", f"{root} namespaces rm "], shell_env(dirs))
    for line, want in expected.items():
        assert sorted(got[line]) == want, line
    assert "other" in got[f"{root} -n "]
    assert "other" in got[f"{root} namespaces rm "]
    # The root may come from the environment instead of the command line.
    got = complete_many(shell, ["ctrpy containers rm "], shell_env(dirs, CTRPY_ROOT=str(dirs.root)))
    assert sorted(got["ctrpy containers rm "]) == ["db-2", "web-1"]


def test_bash_image_ref_with_colons(dirs: Any, populated: dict[str, Any]) -> None:
    """COMP_WORDBREAKS holds ':': readline replaces only the text after the last ':', so bash gets that part."""
    env = shell_env(dirs, CTRPY_ROOT=str(dirs.root))
    ref = populated["ref"]  # 127.0.0.1:PORT/busybox:latest
    host, _, rest = ref.partition(":")
    assert bash_complete(f"ctrpy images rm {host}:", env) == [rest]
    assert bash_complete(f"ctrpy images rm {ref[:-3]}", env) == ["latest"]
    assert bash_complete(f"ctrpy images rm {ref[:-3]}", env, words_only=True) == ["latest"]


def _start(ctrpy: Any, runtime_name: str, rootfs: Path, cid: str, *cmd: str) -> None:
    r = ctrpy("run", "-d", "--runtime", runtime_name, "--rootfs", str(rootfs), cid, *cmd)
    assert r.returncode == 0, r.stderr


@pytest.mark.slow
def test_task_ids_by_state(ctrpy: Any, dirs: Any, rootfs: Path, cleanup: Any) -> None:  # noqa: F811
    """kill/exec/pause offer running tasks, resume the paused ones, logs and rm every task."""
    runtime_name = next((name for name in ("runc", "ctrpy") if unusable(name) is None), None)
    if runtime_name is None:
        pytest.skip("no runtime can run containers here")
    _start(ctrpy, runtime_name, rootfs, "busy", "sleep", "60")
    _start(ctrpy, runtime_name, rootfs, "frozen", "sleep", "60")
    _start(ctrpy, runtime_name, rootfs, "done", "true")
    r = ctrpy("tasks", "pause", "frozen")
    assert r.returncode == 0, r.stderr
    assert ctrpy("tasks", "wait", "done").returncode == 0
    r = ctrpy("containers", "create", "--rootfs", str(rootfs), "idle", "true")
    assert r.returncode == 0, r.stderr
    env = shell_env(dirs, CTRPY_ROOT=str(dirs.root), CTRPY_STATE=str(dirs.state))
    expected = {
        "ctrpy tasks kill ": ["busy"],
        "ctrpy exec ": ["busy"],
        "ctrpy tasks pause ": ["busy"],
        "ctrpy tasks resume ": ["frozen"],
        "ctrpy logs ": ["busy", "done", "frozen", "idle"],  # docker's logs: any container (kept after exit)
        "ctrpy tasks start ": ["busy", "done", "frozen", "idle"],
    }
    for shell in ("bash", "zsh", "fish"):
        got = complete_many(shell, list(expected), env)
        for line, want in expected.items():
            assert sorted(got[line]) == want, (shell, line)
    assert ctrpy("tasks", "resume", "frozen").returncode == 0


def test_complete_lookup_shares_the_name_label() -> None:
    # lookup.py cannot import ctrpy.runtime.names (pathlib, typing) on the fast path: it keeps a copy.
    from ctrpy.runtime.metadata import lookup
    from ctrpy.runtime.names import NAME_LABEL

    assert lookup.NAME_LABEL == NAME_LABEL
