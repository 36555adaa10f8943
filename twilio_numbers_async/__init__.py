"""An asyncio client for buying Twilio phone numbers that never buys one twice.

::

    async with TwilioNumbersClient() as client:  # TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN...
        number = await client.create_incoming_phone_number(area_code="415")

Everything public is importable from here. Each name is written once, in the ``__all__`` of the
module it lives in; the modules behind it are private but for ``sandbox`` (a fake Twilio on
loopback), ``ratelimit``, ``retry``, ``models``, ``errors`` and ``bulk``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import VERSION

if TYPE_CHECKING:  # what type checkers see: the modules of _PUBLIC_MODULES
    from .bulk import *  # noqa: F403
    from .client import *  # noqa: F403
    from .errors import *  # noqa: F403
    from .models import *  # noqa: F403
    from .ratelimit import *  # noqa: F403
    from .retry import *  # noqa: F403

__version__ = VERSION

# The modules whose __all__ make up the package's, cheapest to import first. Names are imported
# on first use (PEP 562), so that importing a submodule alone, such as the pytest plugin that
# every test run of a project with this library installed loads, does not pay for aiohttp.
_PUBLIC_MODULES = ("errors", "models", "ratelimit", "retry", "client", "bulk")


def __getattr__(name: str) -> Any:
    if name == "__all__":
        value: Any = sorted({*_names_of(*_PUBLIC_MODULES), "__version__"})
    else:
        value = _find(name)
    globals()[name] = value  # once: later look-ups find it directly
    return value


def _find(name: str) -> Any:
    for home in _PUBLIC_MODULES:
        module = importlib.import_module(f".{home}", __name__)
        if name in module.__all__:
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _names_of(*homes: str) -> list[str]:
    return [
        name for home in homes for name in importlib.import_module(f".{home}", __name__).__all__
    ]


def __dir__() -> list[str]:
    return sorted({*globals(), *__getattr__("__all__")})
