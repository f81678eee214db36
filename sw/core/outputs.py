"""Output files of the commands: checked before any work, written all or nothing.

Every command that writes files (``run --out``, ``export -o``, ``import -o``) names them here
first, so a wrong name (a folder, a missing folder, the wrong suffix, one of the command's own
inputs) is refused with one line before any work, and a write that fails part-way (a full
disk, a read-only folder, Ctrl-C) leaves none of them behind: each is written to a hidden
temporary file beside it and renamed into place only when all are written.
"""

import contextlib
import os
from pathlib import Path

from eventconv.core.ranges import ConfigError

__all__ = ["check_outputs", "staged_outputs"]


def check_outputs(option, paths, suffix=None, inputs=()):
    """Refuse ``paths`` (written for the command-line ``option``) that are folders, sit in a
    missing folder, lack ``suffix`` (for the first path, the one the user named), or are one of
    ``inputs``: ConfigError naming the option and the path."""
    paths = [Path(p) for p in paths]
    if suffix is not None and paths[0].suffix != suffix:
        raise ConfigError(f"{option}: {paths[0]} must end with {suffix}")
    named_inputs = {Path(p).resolve(): p for p in inputs if p is not None}
    for path in paths:
        if path.is_dir():
            raise ConfigError(f"{option}: {path} is a folder; give a file name")
        if not path.resolve().parent.is_dir():
            raise ConfigError(f"{option}: folder {path.resolve().parent} does not exist")
        if path.resolve() in named_inputs:
            raise ConfigError(f"{option}: {path} would overwrite the input "
                              f"{named_inputs[path.resolve()]}")
    return paths


def _temporary(path):
    # The suffix stays last: np.savez appends ".npz" to a name without it.
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


@contextlib.contextmanager
def staged_outputs(option, paths):
    """Yield temporary paths to write in place of ``paths``; on success rename each onto its
    path, else delete them. An OSError while writing becomes a ConfigError naming ``option``."""
    paths = [Path(p) for p in paths]
    temporaries = [_temporary(p) for p in paths]
    try:
        yield temporaries
        for temporary, path in zip(temporaries, paths, strict=True):
            os.replace(temporary, path)
    except OSError as e:
        named = dict(zip(map(str, temporaries), paths, strict=True))
        path = named.get(str(e.filename), e.filename or paths[0])
        raise ConfigError(f"{option}: cannot write {path}: {e.strerror or e}") from None
    finally:
        for temporary in temporaries:
            with contextlib.suppress(OSError):
                temporary.unlink()
