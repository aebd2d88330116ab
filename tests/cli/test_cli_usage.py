"""Usage mistakes are one line on stderr and exit 1, before anything talks to a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from meshpilot.cli.main import cli


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["frob"], "error: No such command 'frob'. See 'meshpilot --help'."),
        (["--bogus"], "error: No such option '--bogus'. See 'meshpilot --help'."),
        (["get"], "error: Missing argument 'KIND'. See 'meshpilot get --help'."),
        (["get", "pods", "--bogus"], "error: No such option '--bogus'. See 'meshpilot get --help'."),
        (["rollout", "frob"], "error: No such command 'frob'. See 'meshpilot rollout --help'."),
        (["rollout", "status"], "error: Missing argument 'ARGS...'. See 'meshpilot rollout status --help'."),
        (["scale", "deploy/x"], "error: Missing option '--replicas'. See 'meshpilot scale --help'."),
        (["apply"], "error: Missing option '-f' / '--filename'. See 'meshpilot apply --help'."),
    ],
)
def test_usage_errors_are_one_line(args: list[str], expected: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, args, env={"MESHPILOT_HOME": str(tmp_path)})
    assert result.exit_code == 1
    assert result.stderr == expected + "\n"
    assert result.stdout == ""


def test_no_cluster_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["get", "pods"], env={"MESHPILOT_HOME": str(tmp_path)})
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "meshpilot cluster up" in result.stderr


def test_invalid_file_fails_before_connecting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata: [1\n")
    result = CliRunner().invoke(cli, ["apply", "-f", str(bad)], env={"MESHPILOT_HOME": str(tmp_path)})
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{bad}:")
    assert result.stderr.count("\n") == 1


def test_bare_group_shows_help() -> None:
    result = CliRunner().invoke(cli, ["rollout"])
    assert "restart" in result.output and "undo" in result.output
