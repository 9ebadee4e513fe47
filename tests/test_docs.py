"""Documented commands cannot rot: every ``fashionbench ...`` line in a ```bash block
of README.md or docs/**/*.md runs here. Training commands (``train``, ``reproduce``,
``sweep``, ``speedrun``) run with ``--dry-run`` appended; the others run for real (``lr-find`` and
``specialists`` shortened to a few steps), in a folder of their own
where every ``runs/NAME`` they mention is a copy of a tiny finished run (an
interrupted one for ``--resume``), every study ``sweep --best`` names a copy of a
tiny finished study, and every image they mention exists."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from PIL import Image

from fashionbench.cli import main

from conftest import run_cli

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
TRAINING = {"train", "one-vs-all", "reproduce", "sweep", "speedrun"}
# Real runs made short: the command as written, with this appended (the last value wins).
SHORTENED = {"lr-find": ["--steps", "20"], "specialists": ["--epochs", "1"]}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def documented_commands() -> list[tuple[str, str]]:
    """(where, command) for every fashionbench line inside a ```bash block."""
    found = []
    for doc in DOCS:
        in_bash = False
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            if line.startswith("```"):
                in_bash = not in_bash and line.strip() in ("```bash", "```sh", "```console")
                continue
            if in_bash and line.strip().startswith("fashionbench "):
                # A command sent to the background (workers side by side) runs here in the foreground.
                found.append((f"{doc.relative_to(ROOT)}:{number}", line.strip().removesuffix("&").strip()))
    return found


COMMANDS = documented_commands()


def test_the_docs_document_commands():
    assert len(COMMANDS) >= 30  # the extraction itself works
    assert {shlex.split(c, comments=True)[1] for _, c in COMMANDS} >= {
        "train", "reproduce", "evaluate", "report", "predict", "export", "table", "ensemble", "lr-find",
        "models", "data", "audit", "specialists", "one-vs-all", "sweep"}


def anchor(title: str) -> str:
    """A Markdown heading's anchor, as GitHub makes it."""
    return "-".join("".join(c for c in title.lower() if c.isalnum() or c in " -").split())


def test_usage_md_contents_lists_every_section_and_every_command_has_one():
    """usage.md's Contents links every ## section (or its ### parts), and every command
    has a section, where its synopsis and options are."""
    from fashionbench.cli import build_parser

    text = (ROOT / "docs" / "usage.md").read_text()
    start = text.index("Contents:")
    linked = {part.split("(#", 1)[1].split(")", 1)[0]
              for part in text[start:text.index("\n\n", start)].split("·")}
    sections: dict[str, list[str]] = {}  # ## title -> its ### titles
    for line in text.splitlines():
        if line.startswith("## "):
            sections[line[3:].strip()] = []
        elif line.startswith("### ") and sections:
            sections[list(sections)[-1]].append(line[4:].strip())
    unlisted = [title for title, parts in sections.items()
                if anchor(title) not in linked and not {anchor(p) for p in parts} & linked]
    assert unlisted == []
    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    titles = " ".join(sections).lower()
    assert [c for c in commands if c not in titles] == []


def test_readme_starts_with_the_two_commands():
    first_block = ROOT.joinpath("README.md").read_text().split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ["make run", "make test"]


@pytest.fixture(scope="module")
def docs_run(data_dir, tmp_path_factory):
    """A finished run on small slices, its test split included: the documented commands
    evaluate, report and ensemble it many times over."""
    out = tmp_path_factory.mktemp("docs-runs")
    result = run_cli("train", "basic_cnn", "--out", str(out), "--name", "tiny", "--data-dir", str(data_dir),
                     "--epochs", "1", "--train-subset", "1000", "--set", "data.val_size=500",
                     "--set", "data.test_subset=500", "--set", "swa.start=1")
    assert result.returncode == 0, result.stderr
    return out / "tiny"


@pytest.fixture(scope="module")
def docs_study(data_dir, tmp_path_factory):
    """A finished study of two tiny trials, for ``sweep --best``."""
    out = tmp_path_factory.mktemp("docs-study")
    space = out / "space.yaml"
    space.write_text(yaml.safe_dump({
        "budget": {"epochs": 1, "data.train_subset": 500, "data.val_size": 500},
        "params": {"optim.lr": {"low": 1e-3, "high": 1e-2, "log": True}}}))
    result = run_cli("sweep", "basic_cnn", "--trials", "2", "--space", str(space), "--study", "tiny",
                     "--out", str(out), "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    return out / "tiny" / "study.db"


def stage_study(argv: list[str], folder: Path, study_db: Path) -> None:
    """The study ``sweep --best STUDY [--out DIR]`` reads: a copy of the tiny one, renamed."""
    name = argv[argv.index("--best") + 1]
    out = argv[argv.index("--out") + 1] if "--out" in argv else "runs/sweeps"
    target = folder / out / name / "study.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    optuna.copy_study(from_study_name="tiny", from_storage=f"sqlite:///{study_db}",
                      to_storage=f"sqlite:///{target}", to_study_name=name)


def write_image(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).convert("RGB").save(path)


# The folders whose children, in a documented command, are run folders to stage.
RUN_PARENTS = ("runs", "ensemble_members")


def stage(argv: list[str], folder: Path, run: Path, images: np.ndarray) -> None:
    """Put in ``folder`` every run, image and repository file that ``argv`` mentions."""
    resume = "--resume" in argv
    for arg in argv:
        path = Path(arg)
        parent = next((part for part in path.parts[:-1] if part in RUN_PARENTS), None)
        if parent and not path.is_absolute():  # runs/NAME, results/table/runs/NAME, results/ensemble_members/NAME
            copy = folder.joinpath(*path.parts[:path.parts.index(parent) + 2])
            if not copy.exists():
                shutil.copytree(run, copy)
                if resume:  # interrupted after its first epoch: no final model, no summary
                    (copy / "summary.json").unlink()
                    (copy / "model.pt").unlink()
        elif path.parts[:1] in (("docs",), ("recipes",)) and (ROOT / path).is_file():  # a space, a recipe
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / path, folder / path)
    if argv[0] == "predict":
        for arg in argv[2:]:
            if arg.startswith("-"):
                continue
            path = folder / arg
            if path.suffix.lower() in IMAGE_SUFFIXES:
                write_image(path, images[0])
            else:  # a folder of images
                for i in range(3):
                    write_image(path / f"image-{i}.png", images[i])
    if argv[:2] == ["table", "runs"] and not (folder / "runs").exists():
        shutil.copytree(run, folder / "runs" / "tiny")


@pytest.mark.parametrize("where, command", COMMANDS, ids=[where for where, _ in COMMANDS])
def test_documented_command_works(where, command, docs_run, data, data_dir, tmp_path, monkeypatch, capsys,
                                  request):
    argv = shlex.split(command, comments=True)[1:]
    best = argv[0] == "sweep" and "--best" in argv  # reads a finished study: runs for real
    dry = argv[0] in TRAINING and not best and "--print-space" not in argv  # that one only prints
    if dry:
        argv.append("--dry-run")
    argv += SHORTENED.get(argv[0], [])
    if argv[0] == "speedrun" and "--budget" in argv:
        # A budget's dry run measures this machine's steps: at 3 steps an epoch, any documented
        # budget fits an epoch on any machine (a full epoch, 214 steps, need not fit a slow one).
        argv += ["--train-subset", "1000"]
    stage(argv, tmp_path, docs_run, data.test_images[:3, 0].numpy())
    if best:
        stage_study(argv, tmp_path, request.getfixturevalue("docs_study"))
    staged = sorted(tmp_path.rglob("*"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FASHIONBENCH_DATA_DIR", str(data_dir))
    monkeypatch.setenv("FASHIONBENCH_CORRUPTIONS_DIR", str(tmp_path / "corruptions"))  # robustness: not ~/.cache
    try:
        status = main(argv)
    except SystemExit as e:  # argparse: a usage error, or --help
        status = e.code
    out, err = capsys.readouterr()
    assert status == 0, f"{where}: `{command}` exited {status}\n{err[-2000:]}"
    if dry:
        assert "nothing written" in out and sorted(tmp_path.rglob("*")) == staged, where


def test_reliability_md_cites_only_tests_that_exist():
    """Each promise in reliability.md names the tests that hold it: each name is a test."""
    import re

    cited = set(re.findall(r"`(test_[a-z0-9_]+)`", (ROOT / "docs" / "reliability.md").read_text()))
    defined = set(re.findall(r"^def (test_[a-z0-9_]+)\(", "\n".join(
        p.read_text() for p in (ROOT / "tests").glob("test_*.py")), re.MULTILINE))
    assert len(cited) > 50 and sorted(cited - defined) == []


def test_the_readme_s_links_and_pictures_point_at_files_that_exist():
    """Every relative link and image of README.md (records, docs, the report's picture)
    names a file or folder of the repository."""
    text = (ROOT / "README.md").read_text()
    targets = {target.split("#")[0] for target in re.findall(r"\]\(([^)\s]+)\)", text)
               if not target.startswith(("http://", "https://", "#", "mailto:"))}
    assert "docs/images/report.png" in targets
    missing = sorted(t for t in targets if not (ROOT / t).exists())
    assert not missing, f"README.md links to what does not exist: {missing}"


def test_development_md_names_every_variable_that_ci_requires():
    """The variables that turn a skip into a failure are the ones .ci/run sets: a new one
    set in CI and not documented fails here (the list has drifted before)."""
    set_in_ci = set(re.findall(r"^export (FASHIONBENCH_REQUIRE_[A-Z]+)=1$",
                               (ROOT / ".ci" / "run").read_text(), re.MULTILINE))
    documented = set(re.findall(r"`(FASHIONBENCH_REQUIRE_[A-Z]+)=1`",
                                (ROOT / "docs" / "development.md").read_text()))
    assert len(set_in_ci) >= 6 and sorted(set_in_ci ^ documented) == []
