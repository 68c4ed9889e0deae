import json
import shutil

from omnisep import pretrained
from omnisep.cli import main


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
