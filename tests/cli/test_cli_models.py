import json
import shutil

import pytest

from omnisep import pretrained
from omnisep.cli import main
from omnisep.errors import OmniSepError


def test_models_lists_bundled_and_local(tmp_path, capsys, monkeypatch, tiny_checkpoint):
    monkeypatch.setattr(pretrained, "BUNDLED_DIR", tmp_path / "bundled")
    monkeypatch.setenv("OMNISEP_CACHE", str(tmp_path / "cache"))
    assert main(["models"]) == 0
    assert "No models found" in capsys.readouterr().out

    shutil.copytree(tiny_checkpoint, tmp_path / "bundled" / "default")
    shutil.copytree(tiny_checkpoint, tmp_path / "cache" / "models" / "mine")
    (tmp_path / "cache" / "models" / "junk").mkdir()
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["source"], r["encoder"], r["labels"], r["ngf"]) for r in rows] == [
        ("default", "bundled", "toy", 3, 4),
        ("junk", "local", None, None, None),
        ("mine", "local", "toy", 3, 4),
    ]
    assert rows[1]["error"].endswith("is not an omnisep checkpoint.")

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for word in ("default", "bundled", "mine", "local", "toy", "unreadable"):
        assert word in out


def test_default_names_the_default_model_and_v1_stays_by_name(tmp_path, monkeypatch, tiny_checkpoint):
    monkeypatch.setattr(pretrained, "BUNDLED_DIR", tmp_path / "bundled")
    monkeypatch.setenv("OMNISEP_CACHE", str(tmp_path / "cache"))
    for name in (pretrained.DEFAULT_MODEL, "v1"):
        shutil.copytree(tiny_checkpoint, tmp_path / "bundled" / name)
    assert pretrained.resolve_model("default") == tmp_path / "bundled" / pretrained.DEFAULT_MODEL
    assert pretrained.resolve_model("v1") == tmp_path / "bundled" / "v1"
    marked = {row["name"]: row["default"] for row in pretrained.list_models()}
    assert marked == {pretrained.DEFAULT_MODEL: True, "v1": False}


def test_the_shipped_default_is_v3_and_records_its_inference_defaults():
    from omnisep.states import contrast_strength, negative_defaults, read_config

    path = pretrained.resolve_model("default")
    assert path.name == "v3"
    config = read_config(path)
    # v3 is v2 and the long picture run answering together; v2 stays loadable by name
    assert config["model"]["kind"] == "ensemble"
    assert [member["kind"] for member in config["model"]["members"]] == ["film", "film"]
    assert read_config(pretrained.resolve_model("v2"))["model"]["kind"] == "film"
    defaults = negative_defaults(config, path)
    assert (defaults["mode"], defaults["alpha"]) == ("logit", 2.0)
    assert contrast_strength(config, path) == 0.5
    assert negative_defaults(read_config(pretrained.resolve_model("v1")), "v1")["mode"] == "proportional"
    # The automatic negative comes from the scan (the residual gains less for non-text queries: docs/query-tools.md).
    assert defaults["auto_source"] == "scan"
    bad = {**config, "inference": {**config["inference"], "negative": {**config["inference"]["negative"], "auto_source": "guess"}}}
    with pytest.raises(OmniSepError, match=r"auto_source must be one of scan, residual, scan\+residual, residual-tagger, scan\*residual-tagger, got 'guess'"):
        negative_defaults(bad, path)
