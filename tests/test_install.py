"""The built wheel, installed into a fresh virtualenv, separates with the bundled model.

What this proves: the wheel alone carries everything omnisep needs at run
time besides its declared pip dependencies (default model, encoder heads, the
shipped aisfx sound CNN, the BPE vocabulary), the ``omnisep`` entry point
works, no ``aisfx`` package and no setup step (``scripts/setup.sh``,
``omnisep encoders convert``) are needed, and the first run
converts EfficientNet-Lite0 into a fresh ``$OMNISEP_CACHE`` by itself.

The venv is made without the system site-packages. Of the packages installed
here, exactly the wheel's declared core dependencies and theirs (extras left
out: no museval or FluidSynth) are made visible, through one ``.pth``
line pointing at a folder of links to them; omnisep's editable install and
``aisfx`` are not among them. So an import the wheel does not declare fails.

What it does not prove: that pip resolves the dependencies from an index
(the test machine is offline), nor the versions pip would choose.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "dog_and_violin.wav"
HIDDEN = ("omnisep", "__editable__", "aisfx", "_omnisep")


def _declared_dependency_closure(wheel: Path) -> list[Path]:
    """The installed files (top-level packages, modules, .dist-info) of the wheel's core dependencies, recursively.

    Extras are left out, so the venv sees exactly what ``pip install omnisep`` would pull.
    """
    import zipfile
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        wanted = [line.split(":", 1)[1].strip() for line in archive.read(name).decode().splitlines()
                  if line.startswith("Requires-Dist:")]
    todo = [(Requirement(text), "") for text in wanted]
    seen: set[tuple[str, str]] = set()
    paths: list[Path] = []
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        for wanted_extra in [""] + sorted(requirement.extras):
            key = (canonicalize_name(requirement.name), wanted_extra)
            if key in seen:
                continue
            seen.add(key)
            try:
                dist = metadata.distribution(requirement.name)
            except metadata.PackageNotFoundError:
                pytest.skip(f"the declared dependency {requirement.name} is not installed here")
            if wanted_extra == "":
                root = Path(dist.locate_file(""))
                tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
                paths += [root / top for top in tops if top != "__pycache__" and (root / top).exists()]
            todo += [(Requirement(text), wanted_extra) for text in dist.requires or []]
    return paths


def _run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_separates_with_the_bundled_model(tmp_path):
    # Build from a copy, so the checkout gets no build/ or egg-info folders.
    source = tmp_path / "source"
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(source)])
    (wheel,) = wheels.glob("omnisep-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)])

    deps = tmp_path / "deps"
    deps.mkdir()
    for folder in _declared_dependency_closure(wheel):
        if not (deps / folder.name).exists():
            (deps / folder.name).symlink_to(folder)
    assert not any(entry.name.startswith(HIDDEN) for entry in deps.iterdir())
    assert not {"museval", "fluidsynth.py"} & {entry.name for entry in deps.iterdir()}  # extras only
    venv_site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (venv_site / "_installed_dependencies.pth").write_text(f"{deps}\n")

    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(OMNISEP_CACHE=str(tmp_path / "cache"), HOME=str(tmp_path / "home"))
    work = tmp_path / "work"
    work.mkdir()
    probe = _run([str(python), "-c", "import importlib.util, omnisep; print(omnisep.__file__); "
                  "print(importlib.util.find_spec('aisfx'))"], env=env, cwd=work).stdout.split()
    assert probe[0].startswith(str(venv)) and probe[1] == "None"

    omnisep = venv / "bin" / "omnisep"
    _run([str(omnisep), "separate", str(EXAMPLE), "--text", "dog barking", "--audio", str(EXAMPLE), "-o", "out"],
         env=env, cwd=work)
    (folder,) = (work / "out" / "dog_and_violin").iterdir()
    mixture, _ = sf.read(EXAMPLE, dtype="float32")
    target, _ = sf.read(folder / "target.wav", dtype="float32")
    residual, _ = sf.read(folder / "residual.wav", dtype="float32")
    assert np.abs(target + residual - mixture).max() <= 2 / 32768
    assert (tmp_path / "cache" / "backbones" / "efficientnet-lite0.safetensors").is_file()
    scan = _run([str(omnisep), "scan", str(EXAMPLE), "--json"], env=env, cwd=work)
    assert "dog barking" in scan.stdout
    api = _run([str(python), "-c", "from omnisep import Separator; from omnisep.audio import load_audio; "
                f"a, r = load_audio({str(EXAMPLE)!r}); x = Separator().separate(a, r, text='playing violin'); "
                "print(abs(x.target + x.residual - a).max())"], env=env, cwd=work)
    assert float(api.stdout) < 1e-5
    # The web demo comes with a plain install: its page builds with the declared dependencies alone.
    demo = _run([str(python), "-c", "from omnisep import Separator; from omnisep.demo.app import build_app; "
                "print(type(build_app(Separator())).__name__)"],
                env=env, cwd=work)
    assert "Blocks" in demo.stdout
