"""Names inside an archive → a path under a root directory, or a refusal.

Must NOT: touch the filesystem beyond resolving paths (no creating, no opening).
"""

import os
import posixpath

from botpod.errors import BotpodError


def member_path(root: str, name: str, *, what: str) -> str | None:
    """Normalized relative path of archive member `name`, or None for the root itself.

    Refuses absolute names, `..` components, NUL bytes and anything whose resolved path
    leaves `root` (the realpath check also covers a symlink that is already on disk).
    """
    if not name or "\0" in name or name.startswith("/"):
        raise BotpodError(f"{what}: an entry has an unsafe path")
    if ".." in name.split("/"):
        raise BotpodError(f"{what}: an entry has a '..' in its path")
    relative = posixpath.normpath(name)
    if relative == ".":
        return None
    real_root = os.path.realpath(root)
    target = os.path.realpath(os.path.join(real_root, relative))
    if not target.startswith(real_root + os.sep):
        raise BotpodError(f"{what}: an entry escapes its directory")
    return relative


def ensure_parent_dirs(root: str, relative: str, *, what: str) -> None:
    """Create the directories above `relative` (mode 0755), refusing a file in the way."""
    parent = posixpath.dirname(relative)
    if not parent:
        return
    try:
        os.makedirs(os.path.join(root, parent), mode=0o755, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise BotpodError(f"{what}: an entry's directory is also a file") from None
