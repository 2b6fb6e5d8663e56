"""The offline mini-Pile: real text shipped inside installed packages, grouped into Pile-like tasks.

- ``github``: Python source of the standard library and of the installed packages (site-packages).
- ``dm-math``: question/answer documents from DeepMind's ``mathematics_dataset`` generator (seeded),
  one generator module per document, as in the Pile's DM Mathematics.
- ``freelaw``: legal text: licence and copyright files (Debian's ``/usr/share/common-licenses`` and
  ``/usr/share/doc/*/copyright``, licence files of installed Python distributions).
- ``stackexchange``: technical prose: the long descriptions (README) of installed Python distributions
  and Debian's ``/usr/share/doc/*/README*`` files.
Built deterministically; test documents are held out and exact duplicates removed from the index.
"""

from __future__ import annotations

import contextlib
import email
import gzip
import hashlib
import importlib
import io
import json
import logging
import os
import random
import subprocess
import sys
import sysconfig
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pandas as pd

from tttnn.data.corpus import COLUMNS
from tttnn.data.tasks import MINIPILE_TASKS

log = logging.getLogger(__name__)


def _read(path: Path) -> str | None:
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError):
        return None


def _roots() -> dict[str, Path]:
    paths = sysconfig.get_paths()
    return {"stdlib": Path(paths["stdlib"]), "site": Path(paths["purelib"])}


def _files(root: Path, patterns: Sequence[str]) -> list[Path]:
    out: set[Path] = set()
    for pat in patterns:
        out.update(p for p in root.glob(pat) if p.is_file())
    return sorted(out)


Loader = Callable[[], "str | None"]


def _file_items(prefix: str, root: Path, patterns: Sequence[str], skip: str | None = None) -> list[tuple[str, Loader]]:
    if not root.is_dir():
        return []
    files = [p for p in _files(root, patterns) if not (skip and skip in p.relative_to(root).parts)]
    return [(f"{prefix}/{p.relative_to(root)}", lambda p=p: _read(p)) for p in files]


def github_sources() -> list[tuple[str, Loader]]:
    """Python files of the standard library and of the environment's site-packages."""
    roots = _roots()
    return _file_items("stdlib", roots["stdlib"], ["**/*.py"], skip="site-packages") + _file_items(
        "site", roots["site"], ["**/*.py"]
    )


def freelaw_sources(debian_docs: bool = False) -> list[tuple[str, Loader]]:
    """Licence and copyright files: Debian's common licences, those of installed Python distributions,
    and with ``debian_docs`` every installed Debian package's copyright file."""
    site = _roots()["site"]
    pats = ["*.dist-info/**/LICEN[CS]E*", "*.dist-info/**/COPYING*", "*.dist-info/**/NOTICE*"]
    items = _file_items("debian/common-licenses", Path("/usr/share/common-licenses"), ["*"])
    if debian_docs:
        items += _file_items("debian/doc", Path("/usr/share/doc"), ["*/copyright"])
    return items + _file_items("site", site, pats)


def _metadata_body(p: Path) -> str | None:
    text = _read(p)
    body = email.message_from_string(text).get_payload() if text else None
    return body if isinstance(body, str) else None


def stackexchange_sources(debian_docs: bool = False) -> list[tuple[str, Loader]]:
    """Technical prose: long descriptions (READMEs) of installed distributions, and with
    ``debian_docs`` the README files of installed Debian packages."""
    site = _roots()["site"]
    meta = [
        (f"site/{p.relative_to(site)}", lambda p=p: _metadata_body(p)) for p in _files(site, ["*.dist-info/METADATA"])
    ]
    return meta + (_file_items("debian/doc", Path("/usr/share/doc"), ["*/README*"]) if debian_docs else [])


def _load_math_modules():
    """``mathematics_dataset.modules.modules`` on current sympy (``base_solution_linear`` moved)."""
    dio = importlib.import_module("sympy.solvers.diophantine.diophantine")
    pkg = sys.modules["sympy.solvers.diophantine"]
    if not hasattr(pkg, "base_solution_linear"):
        pkg.base_solution_linear = dio.base_solution_linear
    from mathematics_dataset.modules import modules

    return modules


def math_sources(n_docs: int, problems_per_doc: int, seed: int) -> list[tuple[str, Loader]]:
    """Documents of generated Q/A pairs, each from one generator module, round-robin over modules."""
    # The generator picks variable letters by iterating sets of strings, whose order depends on the
    # process's hash seed: generate in a child process with PYTHONHASHSEED fixed, so runs are identical.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    cmd = [sys.executable, "-m", "tttnn.data.minipile", str(n_docs), str(problems_per_doc), str(seed)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"mathematics_dataset generator failed:\n{out.stderr[-2000:]}")
    docs = json.loads(out.stdout)
    return [(k, lambda t=t: t) for k, t in docs]


def _math_docs(n_docs: int, problems_per_doc: int, seed: int) -> Iterator[tuple[str, str]]:
    import numpy as np
    from sympy.core import random as sympy_random

    modules = _load_math_modules()

    def flat(d: dict, prefix: str = "") -> Iterator[tuple[str, Callable]]:
        for k in sorted(d):
            v = d[k]
            yield from flat(v, f"{prefix}{k}__") if isinstance(v, dict) else [(f"{prefix}{k}", v)]

    # "composed" generators order their statements by set iteration: not reproducible, so left out
    gens = [(n, g) for n, g in flat(modules.train(lambda r: r)) if "composed" not in n]
    made, broken = 0, set()
    while made < n_docs and len(broken) < len(gens):
        for name, gen in gens:
            if name in broken or made >= n_docs:
                continue
            lines = []
            doc_seed = int.from_bytes(hashlib.sha256(f"{seed}:{name}:{made}".encode()).digest()[:4], "little")
            random.seed(doc_seed)  # per document, so one generator cannot shift the others' draws
            np.random.seed(doc_seed)
            sympy_random.seed(doc_seed)  # sympy's own generator (randprime and friends)
            try:
                for _ in range(problems_per_doc):
                    p = gen()
                    lines.append(f"{p.question}\n{p.answer}\n")
            except Exception as err:  # a few generators fail on numpy 2 (ndarray.itemset)
                log.info("math generator %s skipped: %s", name, err)
                broken.add(name)
                continue
            yield f"{name}/{made}", "".join(lines)
            made += 1


def _clip(text: str, max_chars: int) -> str:
    """Strip, and cut at the last line break before ``max_chars`` (or hard at ``max_chars``)."""
    text = text.strip().replace("\r\n", "\n")
    if len(text) <= max_chars:
        return text
    cut = text.rfind("\n", 0, max_chars)
    return text[: cut if cut > max_chars // 2 else max_chars].rstrip()


def _hash_order(items: list[tuple[str, Loader]], seed: int, task: str) -> list[tuple[str, Loader]]:
    """Items in a deterministic pseudo-random order: a seeded hash of their keys."""
    return sorted(items, key=lambda kv: hashlib.sha256(f"{seed}:{task}:{kv[0]}".encode()).digest())


def build_minipile(
    tasks: Sequence[str] = MINIPILE_TASKS,
    n_test_docs: int = 4,
    max_train_docs: int = 500,
    min_chars: int = 500,
    max_chars: int = 4000,
    test_max_chars: int = 2000,
    math_problems_per_doc: int = 30,
    seed: int = 1216,
    debian_docs: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and test documents of the mini-Pile (``doc_id, task, text``), deterministic in ``seed``.

    By default only files that ``./setup.sh`` pins (Python's standard library, the pinned packages,
    Debian's common licences) are read, so every machine builds the same corpus; ``debian_docs`` adds
    the docs of whatever Debian packages happen to be installed.
    """
    unknown = set(tasks) - set(MINIPILE_TASKS)
    if unknown:
        raise ValueError(f"corpus.tasks: {sorted(unknown)} not in the minipile's tasks {MINIPILE_TASKS}")
    sources: dict[str, Callable[[], list[tuple[str, Loader]]]] = {
        "github": github_sources,
        "freelaw": lambda: freelaw_sources(debian_docs),
        "stackexchange": lambda: stackexchange_sources(debian_docs),
        "dm-math": lambda: math_sources(max_train_docs + n_test_docs, math_problems_per_doc, seed),
    }
    want = max_train_docs + n_test_docs
    seen: set[str] = set()
    train_rows, test_rows = [], []
    for task in tasks:
        candidates = _hash_order(sources[task](), seed, task)
        picked, n_dupes, n_short = [], 0, 0
        for key, load in candidates:  # read in hashed order until enough distinct documents
            if len(picked) >= want:
                break
            text = load()
            text = _clip(text, max_chars) if text else ""
            if len(text) < min_chars:  # the stored (cut) text: min_chars bounds what the index and tests hold
                n_short += 1
                continue
            digest = hashlib.sha256(text.encode()).hexdigest()
            if digest in seen:
                n_dupes += 1
                continue
            seen.add(digest)
            picked.append((key, text))
        if len(picked) < n_test_docs + 1:
            raise ValueError(
                f"minipile task {task}: only {len(picked)} documents found on this machine ({len(candidates)} "
                f"candidates, {n_short} shorter than corpus.minipile.min_chars = {min_chars} after cutting to "
                f"max_chars = {max_chars}, {n_dupes} duplicates); lower corpus.minipile.min_chars"
            )
        test, train = picked[:n_test_docs], picked[n_test_docs:]
        test_rows += [{"doc_id": f"{task}:{k}", "task": task, "text": _clip(t, test_max_chars)} for k, t in test]
        train_rows += [{"doc_id": f"{task}:{k}", "task": task, "text": t} for k, t in train]
        log.info(
            "minipile %s: %d candidates, %d exact duplicates skipped, %d train, %d test",
            task,
            len(candidates),
            n_dupes,
            len(train),
            len(test),
        )
    # a clipped test text may now equal some index document: drop those from the index
    test_texts = {r["text"] for r in test_rows}
    train_rows = [r for r in train_rows if r["text"] not in test_texts]
    return pd.DataFrame(train_rows, columns=COLUMNS), pd.DataFrame(test_rows, columns=COLUMNS)


if __name__ == "__main__":  # child process of math_sources: prints [[key, text], ...] as JSON
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):  # the generator prints numpy deprecation notices
            result = list(_math_docs(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
    print(json.dumps(result))
