"""The documentation works as written: README.md, docs/*.md, config/README.md and benchmarks/README.md.

**Links.** Every relative Markdown link or image in those pages resolves to a file or folder inside the repository,
and a ``#anchor`` matches a heading of the target page (GitHub's heading ids). No page, nor the comments of
config/calibration.yaml, names a document outside the repository.

**Fenced commands: the convention the pages follow.**

- Blocks tagged ``bash``, ``sh`` or ``shell`` hold commands, run from the repository root exactly as written: every
  non-blank line that does not start with ``#`` is one command (a trailing ``\\`` continues it; a trailing
  ``# comment`` is allowed). In ``console`` blocks only the lines starting with ``$ `` are commands. Blocks tagged
  otherwise (``text``, ``yaml``) or untagged are not commands.
- Commands call the virtual environment's programs by path (``.venv/bin/snakemake``, ``.venv/bin/python``); parts
  are joined with ``&&`` only.

**What is checked.** Every block parses (``bash -n``). Each ``&&`` part, by the program it runs:

- ``snakemake``: it names its cores (``--cores``/``-c``, ``--jobs``/``-j`` or a ``--profile``), unless it is a dry
  run or ``--unlock``, because Snakemake refuses local execution without them; then it runs in a fresh temporary
  copy of the working tree (empty ``results/`` and ``resources/``, ``.venv`` linked), so nothing here is touched: a
  ``plan`` command runs for real (it loads no model and must print its plan), ``--unlock`` runs as written, any
  other command as a dry run (``-n`` appended). Each must exit 0. ``--report`` needs a finished run: parsed only.
- ``python <script>.py``: the script exists; its ``--help`` runs and names every ``--option`` the command uses; a
  script without ``--help`` (it exits non-zero) is compiled only.
- ``python -m <module>``: ``python -m <module> --help`` exits 0, and every path the command names exists.
- Parsed only (``bash -n`` on the command and on the script it runs), reported as skipped with the reason:
  ``./setup.sh`` (installs into ``.venv``), ``scripts/slurm_cluster.sh`` (needs root; installs and starts SLURM),
  ``benchmarks/gpu_check.sh`` (needs a CUDA GPU), commands that need the SLURM test cluster (``-m slurm``), and
  ``--report``. Commands for a real cluster (``--profile profiles/slurm``) are dry-run like the others: a dry run
  needs no SLURM.

Environment assignments before a command (``HF_HUB_OFFLINE=0 ...``) apply to it; the dry runs otherwise get
``HF_HUB_OFFLINE=0`` (tests/conftest.py sets 1 for the unit tests; pile.yaml's hub ids need 0, and neither a dry
run nor ``plan`` touches the network). The SLURM executor plugin runs ``scontrol show config`` when it is imported,
which waits ~9 s where slurm-wlm is installed but not running; the copies put a stub ``scontrol`` (exit 1) first on
PATH. The commands run three at a time; the whole file takes about two to three minutes on 2 cores.

Also: the README stays a landing page (at most 150 lines), CITATION.cff names the paper, and every module of
``src/tttnn`` is named in docs/outputs.md's layout.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(
    [ROOT / "README.md", ROOT / "config/README.md", ROOT / "benchmarks/README.md", *(ROOT / "docs").glob("*.md")]
)
COMMAND_LANGS = {"bash", "sh", "shell", "console"}
OUTSIDE = ["NOTES.md", "../shared"]
# scripts that are only parsed, with why
PARSE_ONLY_SCRIPTS = {
    "setup.sh": "installs into .venv",
    "scripts/slurm_cluster.sh": "needs root; installs and starts SLURM",
    "benchmarks/gpu_check.sh": "needs a CUDA GPU",
}
WORKERS = 3  # commands checked at once: Snakemake's start is partly waiting, so 3 beat 2 on 2 cores
CORES_FLAGS = ("--cores", "-c", "--jobs", "-j", "--profile")
NO_CORES_NEEDED = ("-n", "--dry-run", "--dryrun", "--unlock", "--lint", "--version", "--help", "-h")


# ---------------------------------------------------------------------------------------------- parsing the pages


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str  # dedented content


@dataclass
class Command:
    page: Path
    line: int
    text: str
    parts: list[list[str]] = field(default_factory=list)  # tokens of each && part

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}: {self.text[:70]}"


def fenced_blocks(page: Path) -> list[Block]:
    blocks, lines = [], page.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = len(m.group(1)), m.group(2), m.group(3).lower()
        body, j = [], i + 1
        while j < len(lines) and not re.match(rf"^\s*{re.escape(fence)}\s*$", lines[j]):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        blocks.append(Block(page, i + 1, lang, "\n".join(body)))
        i = j + 1
    return blocks


def prose(page: Path) -> str:
    """The page without its fenced blocks (fence lines blanked, so line numbers stay)."""
    out, inside, fence = [], False, ""
    for line in page.read_text().splitlines():
        m = re.match(r"^\s*(`{3,}|~{3,})", line)
        if m and not inside:
            inside, fence = True, m.group(1)
            out.append("")
        elif inside and re.match(rf"^\s*{re.escape(fence)}\s*$", line):
            inside = False
            out.append("")
        else:
            out.append("" if inside else line)
    return "\n".join(out)


def commands(block: Block) -> list[Command]:
    out, pending, start = [], "", 0
    for k, raw in enumerate(block.text.splitlines()):
        line = raw.strip()
        if block.lang == "console":
            if not line.startswith("$ "):
                continue
            line = line[2:]
        if not pending and (not line or line.startswith("#")):
            continue
        if not pending:
            start = block.line + 1 + k
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = pending + line
        pending = ""
        tokens = shlex.split(text, comments=True)
        parts, cur = [], []
        for t in tokens:
            if t == "&&":
                parts.append(cur)
                cur = []
            else:
                cur.append(t)
        parts.append(cur)
        out.append(Command(block.page, start, text, parts))
    return out


def all_blocks() -> list[Block]:
    return [b for p in PAGES for b in fenced_blocks(p)]


def all_commands() -> list[Command]:
    return [c for b in all_blocks() if b.lang in COMMAND_LANGS for c in commands(b)]


# ------------------------------------------------------------------------------------------------------ links


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def heading_ids(page: Path) -> set[str]:
    """GitHub's ids of a Markdown page's headings: lower case, punctuation dropped, spaces to hyphens, -1, -2 for
    repeats."""
    ids: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose(page).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1))  # links: their text
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        ids.add(slug if n == 0 else f"{slug}-{n}")
    return ids


def links(page: Path) -> list[tuple[int, str]]:
    out = []
    for k, line in enumerate(prose(page).splitlines(), 1):
        line = re.sub(r"`[^`]*`", "", line)  # code spans are not links (their text is kept out)
        out += [(k, m.group(1)) for m in LINK.finditer(line)]
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(page):
    bad = []
    for line, target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.is_relative_to(ROOT):
            bad.append(f"line {line}: {target} leaves the repository")
        elif not dest.exists():
            bad.append(f"line {line}: {target} does not exist")
        elif anchor and dest.suffix == ".md" and anchor not in heading_ids(dest):
            bad.append(f"line {line}: {target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not bad, f"{page.relative_to(ROOT)}:\n" + "\n".join(bad)


@pytest.mark.parametrize("path", [*PAGES, ROOT / "config/calibration.yaml"], ids=lambda p: str(p.relative_to(ROOT)))
def test_no_document_outside_the_repository(path):
    text = path.read_text()
    named = [s for s in OUTSIDE if s in text]
    assert not named, f"{path.relative_to(ROOT)} names a document outside the repository: {named}"


def test_pages_have_commands_and_parse():
    blocks = [b for b in all_blocks() if b.lang in COMMAND_LANGS]
    assert len(blocks) >= 10
    bad = []
    for b in blocks:
        text = "\n".join(c.text for c in commands(b))
        r = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True, check=False)
        if r.returncode:
            bad.append(f"{b.page.relative_to(ROOT)}:{b.line}: {r.stderr.strip()}")
    assert not bad, "\n".join(bad)


# ------------------------------------------------------------------------------------------------- commands


def _venv() -> Path | None:
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix)
    return ROOT / ".venv" if (ROOT / ".venv/bin/snakemake").exists() else None


def _working_tree_copy(dest: Path, venv: Path) -> None:
    """The working tree's files (tracked and untracked, not ignored) without results/ and resources/."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for f in files:
        src = ROOT / f
        if not f or not src.is_file() or f.startswith(("results/", "resources/")):
            continue
        if src.stat().st_size > 20 * 2**20:  # a large untracked data file: not what a command needs
            continue
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / f)
    (dest / ".venv").symlink_to(venv)


def _env(assign: dict[str, str], stub: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["HF_HUB_OFFLINE"] = "0"  # a shell where the hub is allowed: tttnn also reads TRANSFORMERS_OFFLINE
    env.pop("TRANSFORMERS_OFFLINE", None)
    env["PATH"] = f"{stub}{os.pathsep}{env.get('PATH', '')}"
    env.update(assign)
    return env


def _split_env(tokens: list[str]) -> tuple[dict[str, str], list[str]]:
    assign = {}
    while tokens and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", tokens[0]):
        k, _, v = tokens[0].partition("=")
        assign[k] = v
        tokens = tokens[1:]
    return assign, tokens


def _is_python(prog: str) -> bool:
    return Path(prog).name in {"python", "python3"}


def _script(tokens: list[str]) -> str | None:
    """The shell script a command runs (``./setup.sh``, ``bash benchmarks/gpu_check.sh``), else None."""
    prog = tokens[0]
    if Path(prog).name in {"bash", "sh"} and len(tokens) > 1:
        return tokens[1]
    return prog if prog.endswith(".sh") else None


@dataclass
class Verdict:
    ok: bool
    message: str = ""
    skipped: str = ""  # parsed only: why


def check_part(tokens: list[str], tmp: Path, venv: Path | None, stub: Path) -> Verdict:
    assign, tokens = _split_env(tokens)
    if not tokens:
        return Verdict(False, "an empty command")
    prog = tokens[0]
    script = _script(tokens)
    if script is not None:
        path = ROOT / script
        if not path.is_file():
            return Verdict(False, f"{script} does not exist")
        r = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
        if r.returncode:
            return Verdict(False, f"bash -n {script}: {r.stderr}")
        reason = PARSE_ONLY_SCRIPTS.get(os.path.normpath(script))
        return Verdict(True, skipped=f"{script}: {reason or 'a shell script'}")
    if venv is None:
        return Verdict(True, skipped="no virtual environment with snakemake to run it in")
    if Path(prog).name == "snakemake":
        return check_snakemake(assign, tokens, tmp, venv, stub)
    if _is_python(prog) and len(tokens) > 1 and tokens[1] == "-m":
        return check_module(assign, tokens, venv, stub)
    if _is_python(prog) and len(tokens) > 1 and tokens[1].endswith(".py"):
        return check_script(assign, tokens, venv, stub)
    return Verdict(False, f"no rule in tests/test_docs.py checks the program {prog!r}")


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def check_snakemake(assign, tokens, tmp: Path, venv: Path, stub: Path) -> Verdict:
    args = tokens[1:]
    if "--report" in args:
        return Verdict(True, skipped="--report needs a finished run's outputs")
    names_cores = any(a in CORES_FLAGS or re.match(r"^-[cj]\d+$", a) for a in args)
    if not names_cores and not any(a in NO_CORES_NEEDED for a in args):
        return Verdict(False, "no --cores/--jobs/--profile: Snakemake stops with 'cores have to be specified'")
    copy = Path(tempfile.mkdtemp(dir=tmp))
    _working_tree_copy(copy, venv)
    is_plan = "plan" in args and args[args.index("plan") - 1] not in ("--config", "--configfile")
    run_as_written = is_plan or "--unlock" in args or any(a in ("-n", "--dry-run", "--dryrun") for a in args)
    argv = [str(copy / tokens[0])] + args + ([] if run_as_written else ["-n"])
    r = _run(argv, copy, _env(assign, stub))
    out = r.stdout + r.stderr
    if r.returncode:
        return Verdict(False, f"exit {r.returncode}:\n{out[-3000:]}")
    if is_plan and "plan of run" not in out:
        return Verdict(False, f"no plan printed:\n{out[-3000:]}")
    return Verdict(True)


def check_module(assign, tokens, venv: Path, stub: Path) -> Verdict:
    module = tokens[2]
    r = _run([str(venv / "bin/python"), "-m", module, "--help"], ROOT, _env(assign, stub), timeout=60)
    if r.returncode:
        return Verdict(False, f"python -m {module} --help: exit {r.returncode}\n{r.stderr[-2000:]}")
    missing = [t for t in tokens[3:] if "/" in t and not t.startswith("-") and not (ROOT / t.split("::")[0]).exists()]
    if missing:
        return Verdict(False, f"paths that do not exist: {missing}")
    return Verdict(True)


def check_script(assign, tokens, venv: Path, stub: Path) -> Verdict:
    script = ROOT / tokens[1]
    if not script.is_file():
        return Verdict(False, f"{tokens[1]} does not exist")
    r = _run([str(venv / "bin/python"), str(script), "--help"], ROOT, _env(assign, stub), timeout=60)
    if r.returncode:  # no --help: compiled only
        c = _run([str(venv / "bin/python"), "-m", "py_compile", str(script)], ROOT, _env(assign, stub))
        return Verdict(c.returncode == 0, c.stderr)
    options = {t.split("=")[0] for t in tokens[2:] if t.startswith("--")}
    unknown = sorted(o for o in options if o not in r.stdout)
    if unknown:
        return Verdict(False, f"{tokens[1]} --help does not know {unknown}")
    return Verdict(True)


COMMANDS = all_commands()


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    """Every command's verdict, two commands at a time."""
    tmp = tmp_path_factory.mktemp("docs")
    stub = tmp / "stub"
    stub.mkdir()
    (stub / "scontrol").write_text("#!/bin/sh\nexit 1\n")
    (stub / "scontrol").chmod(0o755)
    venv = _venv()

    # the same command part on several pages is checked once
    parts = list(dict.fromkeys(tuple(p) for c in COMMANDS for p in c.parts))
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        done = pool.map(lambda p: check_part(list(p), tmp, venv, stub), parts)
        return dict(zip(parts, done))


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: c.id)
def test_command_works_as_written(cmd, verdicts):
    results = [verdicts[tuple(p)] for p in cmd.parts]
    failed = [v.message for v in results if not v.ok]
    assert not failed, f"{cmd.id}\n" + "\n".join(failed)
    skipped = [v.skipped for v in results if v.skipped]
    if skipped and all(v.skipped for v in results):
        pytest.skip("parsed only: " + "; ".join(skipped))


# ---------------------------------------------------------------------------------------------------- the rest


def test_readme_is_a_landing_page():
    n = len((ROOT / "README.md").read_text().splitlines())
    assert n <= 150, f"README.md has {n} lines; move detail to docs/"


def test_citation_names_the_paper():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    paper = cff["preferred-citation"]
    assert paper["title"] == "Test-Time Training on Nearest Neighbors for Large Language Models"
    assert [a["family-names"] for a in paper["authors"]] == ["Hardt", "Sun"]
    assert paper["year"] == 2024
    assert cff["license"] in (ROOT / "LICENSE").read_text().splitlines()[0]


def test_layout_names_every_module():
    text = (ROOT / "docs/outputs.md").read_text()
    layout = text[text.index("## Repository layout") :]
    src = ROOT / "src/tttnn"
    names = [p.stem for p in src.rglob("*.py") if p.stem != "__init__"]
    names += [p.name for p in src.rglob("*") if p.is_dir() and (p / "__init__.py").exists() and p != src]
    missing = sorted(n for n in set(names) if not re.search(rf"\b{re.escape(n)}\b", layout))
    assert not missing, f"docs/outputs.md's layout does not name: {missing}"
