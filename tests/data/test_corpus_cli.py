import pytest

from omnisep.cli import main
from omnisep.data.corpus import VOCABULARY
from omnisep.data.corpus.packages import SourceCache
from omnisep.errors import OmniSepError


def test_sources_lists_every_class_and_licence(capsys):
    assert main(["corpus", "sources"]) == 0
    out = capsys.readouterr().out
    for spec in VOCABULARY:
        assert f"  {spec.label}: " in out
    assert "debian:fluid-soundfont-gm: MIT" in out
    assert "CC0-1.0" in out


def test_build_refuses_a_folder_that_is_not_a_corpus(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["corpus", "build", str(tmp_path), "--only", "speech", "--offline"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "not empty" in err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_build_rejects_unknown_class(tmp_path, capsys):
    assert main(["corpus", "build", str(tmp_path / "out"), "--only", "unicorn singing"]) == 2
    assert "unknown class 'unicorn singing'" in capsys.readouterr().err


def test_examples_need_a_built_corpus(tmp_path, capsys):
    assert main(["corpus", "examples", str(tmp_path), str(tmp_path / "ex")]) == 2
    assert "manifest.jsonl" in capsys.readouterr().err


def test_reserved_packages_are_refused(tmp_path):
    cache = SourceCache(tmp_path, offline=True)
    for name in ("timgm6mb-soundfont", "0ad-data", "musescore-general-soundfont-small"):
        with pytest.raises(OmniSepError, match="reserved"):
            cache.get("debian", name)


def test_offline_cache_miss_names_the_package(tmp_path):
    with pytest.raises(OmniSepError, match="gcompris-qt-data"):
        SourceCache(tmp_path, offline=True).get("debian", "gcompris-qt-data")


def test_cached_downloads_of_each_registry_are_unpacked_offline(tmp_path):
    import shutil
    import subprocess
    import tarfile
    import zipfile

    cache = SourceCache(tmp_path, offline=True)
    downloads = cache.root / "downloads"
    downloads.mkdir(parents=True)
    with zipfile.ZipFile(downloads / "some_sounds-1.2-py3-none-any.whl", "w") as wheel:
        wheel.writestr("some_sounds/a.wav", b"RIFF")
    (tmp_path / "package").mkdir()
    (tmp_path / "package" / "b.ogg").write_bytes(b"OggS")
    with tarfile.open(downloads / "more-sounds-3.4.5.tgz", "w:gz") as tgz:
        tgz.add(tmp_path / "package", arcname="package")
    pypi, npm = cache.get("pypi", "some-sounds"), cache.get("npm", "more-sounds")
    assert (pypi.version, (pypi.root / "some_sounds" / "a.wav").read_bytes()) == ("1.2", b"RIFF")
    assert (npm.version, (npm.root / "package" / "b.ogg").read_bytes()) == ("3.4.5", b"OggS")
    if shutil.which("dpkg-deb"):
        tree = tmp_path / "deb"
        (tree / "DEBIAN").mkdir(parents=True)
        (tree / "DEBIAN" / "control").write_text(
            "Package: tiny-sounds\nVersion: 1:0.9-2\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n"
        )
        (tree / "usr" / "share").mkdir(parents=True)
        (tree / "usr" / "share" / "c.wav").write_bytes(b"RIFF")
        subprocess.run(["dpkg-deb", "--build", str(tree), str(downloads / "tiny-sounds_1%3a0.9-2_all.deb")],
                       check=True, capture_output=True)
        debian = cache.get("debian", "tiny-sounds")
        assert (debian.version, (debian.root / "usr" / "share" / "c.wav").read_bytes()) == ("1:0.9-2", b"RIFF")
    with pytest.raises(OmniSepError, match="npm package 'absent' is not in the cache"):
        cache.get("npm", "absent")


def test_shift_needs_a_built_corpus(tmp_path, capsys):
    assert main(["corpus", "shift", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert "holds no corpus" in err and str(tmp_path.name) in err and "Traceback" not in err
