"""Issue 15, part 2: what the CLI shows (a live display per phase and a compact summary; the engine's full lines
only with --verbose), its help text, its global flags, and a parser that imports no torch."""

from __future__ import annotations

import argparse
import io
import logging
import subprocess
import sys

import pytest

from reference import cli
from reference.engine.metric_logger import Progress

from spec_tests.conftest import FIXTURES, ROOT


def test_building_the_parser_imports_no_torch():
    """``tvref --help`` stays fast: torch (3 s to import) is loaded only by the commands that need it."""
    code = "import sys; from reference.cli import build_parser; build_parser(); print(sorted(m for m in sys.modules " \
           "if m.split('.')[0] in ('torch', 'torchvision')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_parsers_names_are_the_registries():
    from reference.engine import metric_logger
    from reference.data import FORMATS
    from reference.models import BUILDERS
    from reference.app.snapshot import Tolerances
    from reference.training.fit import RECIPES
    from reference.transforms import PRESETS

    assert cli.FORMATS == FORMATS and cli.MODELS == tuple(BUILDERS) and cli.RECIPES == tuple(RECIPES)
    assert cli.PRESETS == tuple(PRESETS)
    assert cli.RECIPE_EPOCHS == {"ci": RECIPES["ci"].epochs}
    assert all(getattr(Tolerances(), k) == v for k, v in cli.TOLERANCES.items())
    assert (cli.ENGINE_LINES, cli.COCO_LINES, cli.PROGRESS) == (metric_logger.LINES, metric_logger.COCO_LINES,
                                                                metric_logger.PROGRESS)


def _parsers(parser: argparse.ArgumentParser, path: str = "tvref"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, f"{path} {name}")


def test_every_option_has_help_text_naming_its_default():
    missing = []
    for path, parser in _parsers(cli.build_parser()):
        text = parser.format_help()
        for action in parser._actions:
            if not action.option_strings or action.dest == "help":
                continue
            flag = action.option_strings[-1]
            helped = parser._get_formatter()._expand_help(action) if action.help else ""
            if not helped or (not action.required and "default" not in helped.lower()):
                missing.append(f"{path} {flag}: {helped!r}")
        assert "--quiet" in text
    assert missing == []


@pytest.mark.parametrize("argv, quiet, verbose", [
    (["env"], False, False), (["--quiet", "env"], True, False), (["env", "--quiet"], True, False),
    (["env", "--verbose"], False, True), (["snapshot", "check", "s.json", "--checkpoint", "c", "--data", "d",
                                           "--verbose"], False, True)])
def test_quiet_and_verbose_work_before_or_after_the_subcommand(argv, quiet, verbose):
    a = cli.build_parser().parse_args(argv)
    assert (a.quiet, a.verbose) == (quiet, verbose)


def _fit_config_of(monkeypatch, tmp_path, *options: str):
    """The FitConfig ``tvref train`` builds from ``options``, caught just before training starts."""
    from reference.app import train as train_command
    from reference.errors import JobError

    seen = {}

    def stop(model, train, val, cfg, out, **kwargs):
        seen["cfg"] = cfg
        raise JobError("stopped before training")

    monkeypatch.setattr(train_command, "fit", stop)
    code = cli.main(["--quiet", "train", "--data", str(FIXTURES / "pennfudan"), "--out", str(tmp_path / "run"),
                     *options])
    assert code == 2
    return seen["cfg"]


def test_train_takes_batch_size_and_lr_into_the_recipe(tmp_path, monkeypatch):
    cfg = _fit_config_of(monkeypatch, tmp_path, "--batch-size", "3", "--lr", "0.02")
    assert (cfg.recipe.batch_size, cfg.recipe.lr) == (3, 0.02)


def test_train_takes_workers_into_the_fit_config(tmp_path, monkeypatch):
    assert _fit_config_of(monkeypatch, tmp_path, "--workers", "2").workers == 2


def test_train_refuses_a_negative_worker_count(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.build_parser().parse_args(["train", "--data", "d", "--out", "o", "--workers", "-1"])
    assert stop.value.code == 2 and "must be at least 0" in capsys.readouterr().err


def test_a_command_leaves_the_loggers_as_it_found_them():
    root = logging.getLogger()
    before = (list(root.handlers), root.level, logging.getLogger(cli.ENGINE_LINES).level)
    cli.main(["--verbose", "env"])
    assert (list(root.handlers), root.level, logging.getLogger(cli.ENGINE_LINES).level) == before


def _console_output(monkeypatch, **flags) -> str:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    with cli._console(**flags):
        logging.getLogger(cli.ENGINE_LINES).info("Epoch: [0]  [0/3]  eta: 0:00:01")
        logging.getLogger(cli.COCO_LINES).info("IoU metric: bbox")
        logging.getLogger("reference.app.train").info("a job's message")
    return err.getvalue()


def test_without_verbose_the_engines_lines_and_tables_are_hidden(monkeypatch):
    assert _console_output(monkeypatch, quiet=False, verbose=False).splitlines() == ["a job's message"]


def test_verbose_shows_the_engines_lines_and_tables(monkeypatch):
    shown = _console_output(monkeypatch, quiet=False, verbose=True).splitlines()
    assert shown == ["Epoch: [0]  [0/3]  eta: 0:00:01", "IoU metric: bbox", "a job's message"]


def test_evaluate_keeps_the_table_out_of_the_verbose_log_as_it_prints_it(monkeypatch):
    shown = _console_output(monkeypatch, quiet=False, verbose=True, tables=False).splitlines()
    assert "IoU metric: bbox" not in shown and "Epoch: [0]  [0/3]  eta: 0:00:01" in shown


class _Epoch:
    def __init__(self, epoch, loss, ap):
        self.epoch, self.train_loss, self.val_loss, self.bbox_ap = epoch, loss, None, ap


def test_the_live_bar_shows_epoch_iteration_loss_lr_and_last_ap(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    display = cli._Display(4, bars=True, lines=False)
    display(_Epoch(0, 1.0, 0.25))
    record = logging.LogRecord("p", logging.DEBUG, "", 0, "", None, None)
    record.progress = Progress("Epoch: [1]", 4, 10, {"lr": 0.005, "loss": 0.75})
    display.emit(record)
    bar = display.bar
    assert (bar.desc, bar.n, bar.total) == ("epoch 2/4", 5, 10)
    assert bar.postfix == "loss=0.7500, lr=5.00e-03, last bbox AP=0.250"
    display.close()


def test_off_a_terminal_each_epoch_is_one_line(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    display = cli._Display(4, bars=False, lines=True)
    display(_Epoch(0, 1.23456, None))
    display(_Epoch(1, 0.5, 0.3))
    assert err.getvalue().splitlines() == ["epoch 1/4  loss 1.2346", "epoch 2/4  loss 0.5000  bbox AP 0.300"]
