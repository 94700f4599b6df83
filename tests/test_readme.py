"""Every command of README.md and docs/*.md runs as written: its script exists, every flag it
names is one of the script's own option strings, and the script's parser accepts the command.

Commands are the lines of fenced code blocks marked bash, sh or shell (and of indented code
blocks, should any be written), with backslash continuations joined and `# comments` dropped.
A flag must match literally, because argparse accepts unambiguous abbreviations and would hide a
misspelt one. `make X` needs a Makefile target X; any other program's line is checked only for
the repository scripts it names.
"""

import argparse
import contextlib
import glob
import importlib.util
import io
import os
import re
import shlex
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
PYTHONS = {"python", "python3"}
# shell operators that separate commands on one line
SEPARATORS = {"&&", "||", ";", "|"}
# how a command line starts (optional VAR=value words, then the program)
COMMAND_START = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*=\S*\s+)*(python3?|torchrun|make)\s")
# the fewest commands the documents hold; finding fewer means the extraction broke
MIN_COMMANDS = 40


def documents():
    paths = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
    return [path for path in paths if os.path.isfile(path)]


def code_lines(text):
    """(line number, line) of the shell code of a Markdown text: the lines of fenced blocks marked
    as shell, and the command lines of indented blocks (four spaces after a blank line, outside
    fences; only lines that start like a command, since list paragraphs are indented too)."""
    lines = text.splitlines()
    found, fence, language, previous_blank, in_indented = [], None, None, True, False
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if fence is None:
            opening = re.match(r"^\s*(```+|~~~+)\s*([\w+-]*)", line)
            if opening:
                fence, language, in_indented = opening.group(1), opening.group(2).lower(), False
                continue
            indented = line.startswith("    ") and stripped and not re.match(r"[-*+]|\d+\.", stripped)
            if indented and (previous_blank or in_indented):
                in_indented = True
                if COMMAND_START.match(stripped):
                    found.append((number, stripped))
            elif stripped:
                in_indented = False
            previous_blank = not stripped
        elif stripped.startswith(fence) and not stripped[len(fence) :].strip():
            fence, previous_blank = None, True
        elif language in SHELL_LANGUAGES:
            found.append((number, line))
    return found


def unlabelled_blocks_with_commands(text):
    """Line numbers of fenced blocks without a language whose lines look like commands: they
    would escape the check, so the documents must mark them as bash."""
    bad, fence, language = [], None, None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if fence is None:
            opening = re.match(r"^\s*(```+|~~~+)\s*([\w+-]*)", line)
            if opening:
                fence, language = opening.group(1), opening.group(2)
        elif stripped.startswith(fence) and not stripped[len(fence) :].strip():
            fence = None
        elif not language and COMMAND_START.match(stripped):
            bad.append(number)
    return bad


def commands(path):
    """(where, [tokens]) of every command in the Markdown file `path`."""
    with open(path, encoding="utf-8") as file:
        text = file.read()
    name = os.path.relpath(path, ROOT)
    found, pending, start = [], "", None
    for number, line in code_lines(text):
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            start = start or number
            continue
        line, where = pending + line, f"{name}:{start or number}"
        pending, start = "", None
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as error:
            found.append((where, ["<unparsable>", line, str(error)]))
            continue
        command = []
        for token in tokens + [";"]:
            if token in SEPARATORS:
                if command:
                    found.append((where, command))
                command = []
            else:
                command.append(token)
    return found


_modules = {}


def load_script(script):
    """The script at `script` (relative to the repository root) imported as a module of its own
    name-spaced name, so that it shadows nothing (fid.py is not evaluation/fid.py)."""
    if script not in _modules:
        name = "readme_script_" + re.sub(r"\W", "_", script[:-3])
        spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, script))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look their module up here
        spec.loader.exec_module(module)
        _modules[script] = module
    return _modules[script]


def option_strings(parser, arguments):
    """The option strings a command line of `parser` may use: the parser's and, with subcommands,
    those of the one `arguments` chooses (the first argument that names one)."""
    options = {option for action in parser._actions for option in action.option_strings}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = next((argument for argument in arguments if argument in action.choices), None)
            if chosen is not None:
                options |= option_strings(action.choices[chosen], [])
    return options


def script_of(tokens):
    """(script, its arguments) of a python or torchrun command, or (None, None)."""
    program = os.path.basename(tokens[0])
    if program in PYTHONS and tokens[1:3] in (["-m", "torch.distributed.run"], ["-m", "torch.distributed.launch"]):
        tokens, program = ["torchrun"] + tokens[3:], "torchrun"
    if program in PYTHONS:
        if len(tokens) < 2 or tokens[1].startswith("-"):  # python -m MODULE, python -c CODE
            return None, None
        return tokens[1], tokens[2:]
    if program == "torchrun":
        for index, token in enumerate(tokens[1:], 1):  # the launcher's own options come first
            if token.endswith(".py"):
                return token, tokens[index + 1 :]
        return "<no script after torchrun>", []
    return None, None


def makefile_targets():
    with open(os.path.join(ROOT, "Makefile"), encoding="utf-8") as file:
        return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", file.read(), re.MULTILINE))


def check_command(tokens, targets):
    """What is wrong with one command (a list of messages; empty when it is fine)."""
    if tokens[0] == "<unparsable>":
        return [f"cannot split {tokens[1]!r} into words: {tokens[2]}"]
    while tokens and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", tokens[0]):  # VAR=value before the program
        tokens = tokens[1:]
    if not tokens:
        return []
    if tokens[0] == "make":
        missing = [target for target in tokens[1:] if not target.startswith("-") and target not in targets]
        return [f"the Makefile has no target {target!r}" for target in missing]

    script, arguments = script_of(tokens)
    if script is None:  # another program: only the repository scripts it names must exist
        named = [token.split("::")[0] for token in tokens[1:] if token.split("::")[0].endswith(".py")]
        return [f"{token} does not exist" for token in named if not os.path.isfile(os.path.join(ROOT, token))]
    if not os.path.isfile(os.path.join(ROOT, script)):
        return [f"{script} does not exist"]
    try:
        module = load_script(script)
    except Exception as error:  # noqa: BLE001 - any import failure is the finding
        return [f"{script} cannot be imported: {type(error).__name__}: {error}"]
    if not hasattr(module, "build_parser"):
        return [f"{script} has no build_parser()"]
    parser = module.build_parser()
    parser.prog = script  # messages name the script, not pytest

    problems = []
    known = option_strings(parser, arguments)
    for argument in arguments:
        if re.match(r"^--?[A-Za-z]", argument):
            flag = argument.split("=", 1)[0]
            if flag not in known:
                problems.append(f"{script} has no option {flag} (argparse would take an abbreviation silently)")
    output = io.StringIO()
    try:
        with contextlib.redirect_stderr(output), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(arguments)
    except SystemExit as stop:
        if stop.code not in (0, None):
            message = output.getvalue().strip().splitlines()
            problems.append(f"{script}'s parser refuses it: {message[-1] if message else stop.code}")
    return problems


def test_every_documented_command_exists_and_parses():
    targets = makefile_targets()
    found, broken, unlabelled = [], [], []
    for path in documents():
        with open(path, encoding="utf-8") as file:
            unlabelled += [f"{os.path.relpath(path, ROOT)}:{n}" for n in unlabelled_blocks_with_commands(file.read())]
        found += commands(path)
    for where, tokens in found:
        for problem in check_command(tokens, targets):
            broken.append(f"{where}: {shlex.join(tokens)}\n    {problem}")

    checked = [tokens for _, tokens in found if tokens[0] in PYTHONS | {"torchrun", "make"}]
    assert len(checked) >= MIN_COMMANDS, (
        f"found only {len(checked)} commands in {[os.path.relpath(p, ROOT) for p in documents()]}"
    )
    assert not unlabelled, "fenced blocks with commands but no language (mark them ```bash): " + ", ".join(unlabelled)
    assert not broken, f"{len(broken)} of {len(found)} documented commands are broken:\n" + "\n".join(broken)


def test_the_checker_catches_what_it_should(tmp_path):
    """The checks themselves: a misspelt or abbreviated flag, a missing script, a refused value,
    a missing make target, and a good command that passes."""
    targets = makefile_targets()

    def problems(line):
        return check_command(shlex.split(line, comments=True), targets)

    assert problems("python generate.py --name demo --ckpt 004000.pt --mode shift --radius 8") == []
    assert problems("torchrun --nproc_per_node=2 train.py --name a --path data/x --batch 8") == []
    assert any(
        "no option --bach" in p for p in problems("python -m torch.distributed.run train.py --name a --path b --bach 8")
    )
    assert problems("python metrics.py eqt --ckpt a.pt --no_circular") == []
    assert any("no option --radus" in p for p in problems("python generate.py --radus 8"))
    assert any("no option --trans" in p for p in problems("python train.py --name a --path b --trans 1.0"))
    assert any("no option --path" in p for p in problems("python metrics.py eqt --ckpt a.pt --path data/x"))
    assert any("refuses" in p for p in problems("python generate.py --mode sideways"))
    assert any("refuses" in p for p in problems("python train.py --path data/x"))  # --name is required
    assert problems("python no_such_script.py --flag") == ["no_such_script.py does not exist"]
    assert problems("make no_such_target") == ["the Makefile has no target 'no_such_target'"]
    assert problems("python -m pytest -q tests/no_such_test.py") == ["tests/no_such_test.py does not exist"]

    document = tmp_path / "doc.md"
    document.write_text(
        "Text.\n\n```bash\npython train.py --name a \\\n    --path b  # comment --not_a_flag\nls -l\n```\n\n"
        "    python generate.py --mode grid\n\n- a list item\n\n    with a paragraph, it's indented\n\n"
        "```python\nprint('not a command')\n```\n"
    )
    assert [tokens for _, tokens in commands(str(document))] == [
        ["python", "train.py", "--name", "a", "--path", "b"],
        ["ls", "-l"],
        ["python", "generate.py", "--mode", "grid"],
    ]
    assert unlabelled_blocks_with_commands("```\npython train.py\n```\n") == [2]


def test_relative_links_and_images_resolve():
    """Every relative link and image of README.md and docs/*.md names a file or folder that
    exists, seen from the document that holds it (docs/ files link to ../evidence/...)."""
    missing = []
    for path in documents():
        with open(path, encoding="utf-8") as file:
            text = re.sub(r"```.*?```", "", file.read(), flags=re.DOTALL)  # code is not links
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:|^#", target):  # a URL or an anchor in the same file
                continue
            if not os.path.exists(os.path.join(os.path.dirname(path), target.split("#")[0])):
                missing.append(f"{os.path.relpath(path, ROOT)}: {target}")
    assert not missing, "links to nothing:\n" + "\n".join(missing)


def test_make_demo_takes_no_options_and_a_wrong_one_starts_nothing(tmp_path, monkeypatch, capsys):
    import demo

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        demo.main(["--device", "cpu"])
    assert stopped.value.code == 2 and "unrecognized arguments: --device cpu" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
