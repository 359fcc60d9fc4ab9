"""Who is acting: identities come from credentials, never from a name someone types."""

from __future__ import annotations

import os
import pwd


def os_user() -> str:
    """The operating-system account of this process, looked up by uid (``$USER`` and
    ``$LOGNAME``, which anyone can set, are not consulted); ``uid:<n>`` when it has no name."""
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid:{uid}"
