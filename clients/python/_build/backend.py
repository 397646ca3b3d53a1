"""A PEP 517 build backend for this one pure-Python package, with no dependency.

It writes the wheel (PEP 427) by hand: the package's files, then METADATA, WHEEL and RECORD
in `swarmvm_client-VERSION.dist-info/`. Name, version and dependencies come from
pyproject.toml's [project] table.
"""

import base64
import hashlib
import os
import tomllib
import zipfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "swarmvm_client"


def _project():
    with open(os.path.join(HERE, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def _metadata(project):
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {project['version']}",
        f"Summary: {project['description']}",
        f"License: {project['license']['text']}",
        f"Requires-Python: {project['requires-python']}",
    ]
    lines += [f"Requires-Dist: {d}" for d in project["dependencies"]]
    return "\n".join(lines) + "\n"


def _dist_info(project):
    return f"{PACKAGE}-{project['version']}.dist-info"


def get_requires_for_build_wheel(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    project = _project()
    path = os.path.join(metadata_directory, _dist_info(project))
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "METADATA"), "w", encoding="utf-8") as f:
        f.write(_metadata(project))
    return _dist_info(project)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    project = _project()
    name = f"{PACKAGE}-{project['version']}-py3-none-any.whl"
    files = []
    source = os.path.join(HERE, PACKAGE)
    for entry in sorted(os.listdir(source)):
        if entry.endswith((".py", ".pyi")) or entry == "py.typed":
            with open(os.path.join(source, entry), "rb") as f:
                files.append((f"{PACKAGE}/{entry}", f.read()))
    info = _dist_info(project)
    files.append((f"{info}/METADATA", _metadata(project).encode()))
    wheel = "Wheel-Version: 1.0\nGenerator: swarmvm-backend\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files.append((f"{info}/WHEEL", wheel.encode()))
    record = []
    for path, data in files:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode()))
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files:
            z.writestr(zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return name
