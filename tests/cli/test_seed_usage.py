"""Rough edges found by typing the reference text's kubectl commands (docs/seed-coverage.md)."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from meshpilot.cli.main import cli
from meshpilot.cli.printers import to_yaml

ISTIO_CM = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "istio", "namespace": "istio-system"},
    "data": {"mesh": "accessLogFile: /dev/stdout\naccessLogFormat: |\n  [%START_TIME%] %RESPONSE_CODE%\n"},
}


def test_yaml_prints_multi_line_strings_as_blocks_as_kubectl_does() -> None:
    # 5.2: `get cm istio -n istio-system -o yaml` shows the mesh config as the reader wrote it
    out = to_yaml(ISTIO_CM)
    assert "  mesh: |\n    accessLogFile: /dev/stdout\n    accessLogFormat: |\n" in out, out
    assert yaml.safe_load(out) == ISTIO_CM


# PyYAML itself mangles the Unicode line breaks NEL, LS and PS under allow_unicode, block or not
TEXT = st.text(alphabet=st.characters(blacklist_characters="\x85\u2028\u2029"), max_size=40)


@given(st.dictionaries(TEXT.filter(bool), TEXT, max_size=4))
def test_yaml_output_reads_back_to_the_same_strings(data: dict[str, str]) -> None:
    out = to_yaml(data)
    assert yaml.safe_load(out) == data
    assert not out.rstrip().endswith("...")


def test_click_suggestion_is_not_double_punctuated(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["top", "nodes"], env={"MESHPILOT_HOME": str(tmp_path)})
    assert result.exit_code == 1
    assert (
        result.stderr == "error: No such command 'nodes'. Did you mean 'pods'? See 'meshpilot top --help'.\n"
    )


def test_top_pod_and_po_mean_top_pods(tmp_path: Path) -> None:
    # 7.3/8.4: `kubectl top pods -n istio-system`; kubectl takes `top pod` and `top po` as well.
    # Without a cluster each spelling reaches the same command (and its one-line "no cluster" error).
    outs = []
    for word in ("pods", "pod", "po"):
        result = CliRunner().invoke(
            cli, ["top", word, "-n", "istio-system"], env={"MESHPILOT_HOME": str(tmp_path)}
        )
        assert result.exit_code == 1 and "No such command" not in result.stderr, result.stderr
        outs.append(result.stderr)
    assert outs[0] == outs[1] == outs[2]
    assert "meshpilot cluster up" in outs[0]
