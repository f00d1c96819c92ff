"""The presigned URLs, read from the files of the pod's mounted Secret at the moment of use.

The controller re-signs the URLs while the pod runs and the kubelet swaps the mounted files in
place, so a URL is read again before every request and never kept.

Must NOT: cache a URL; put a URL (or any part of it) in an error message.
"""

import os

from botpod.errors import BotpodError

CODE_URL = "code-url"
STATE_GET_URL = "state-get-url"
STATE_PUT_URL = "state-put-url"


class UrlReader:
    """`reader()` → the URL in `<directory>/<name>` right now; BotpodError if unusable."""

    def __init__(self, directory: str, name: str) -> None:
        self.name = name
        self._path = os.path.join(directory, name)

    def __call__(self) -> str:
        try:
            with open(self._path, encoding="utf-8") as f:
                url = f.read(64 * 1024).strip()
        except FileNotFoundError:
            raise BotpodError(f"the presigned URL file {self.name} is missing") from None
        except (OSError, UnicodeDecodeError) as error:
            raise BotpodError(
                f"the presigned URL file {self.name} cannot be read: {type(error).__name__}"
            ) from None
        if not url.startswith(("http://", "https://")) or any(c.isspace() for c in url):
            raise BotpodError(f"the presigned URL file {self.name} does not hold an http(s) URL")
        if not url.isprintable():
            raise BotpodError(f"the presigned URL file {self.name} holds control characters")
        return url
