"""A secret passed in the wrong slot is described, never echoed (issue 12, item 3).

Each test puts a secret where a SID or a URL belongs (arguments swapped, environment variables
swapped, a password that breaks its URL) and looks for it everywhere an error can carry it:
``str``, ``repr``, ``args``, every attribute, every exception on the ``__cause__`` and
``__context__`` chain (crash reporters render them all), and the log.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from types import FunctionType, ModuleType, TracebackType

import pytest

from tests._redis import RedisServer, required_binary
from tests.conftest import ACCOUNT_SID
from twilio_numbers_async import NumberPurchase, RequestValidationError, TwilioNumbersClient
from twilio_numbers_async._checks import check_sid, redact_url
from twilio_numbers_async.sandbox import Sandbox

#: An auth token or API secret: 32 lowercase hexadecimal digits, as Twilio makes them.
TOKEN = "e3b0c44298fc1c149afbf4c8996fb924"
#: A secret of another shape (a password manager's, say), with characters a URL must encode.
PASSWORD = "Zq7/vault?pass#word"
API_KEY = "SK" + "0123456789abcdef" * 2
SECRETS = pytest.mark.parametrize("secret", [TOKEN, "Zq7!vault-pass-word"], ids=["hex", "other"])


def texts(error: BaseException) -> Iterator[str]:
    """Every text reachable from ``error``: its chain, reprs, args and attributes, deeply.

    Tracebacks are left out: their frames hold the caller's own variables.
    """
    seen: set[int] = set()
    stack: list[object] = [error]
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(
            item, type | ModuleType | FunctionType | TracebackType | int | float | None
        ):
            continue
        seen.add(id(item))
        if isinstance(item, str):
            yield item
            continue
        if isinstance(item, bytes):
            yield item.decode("latin-1")
            continue
        yield repr(item)
        if isinstance(item, BaseException):
            yield str(item)
            stack += [item.args, item.__cause__, item.__context__, getattr(item, "__notes__", None)]
        if isinstance(item, Mapping):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list | tuple | set | frozenset):
            stack += list(item)
        stack += list(getattr(item, "__dict__", {}).values())
        stack += [getattr(item, name, None) for name in getattr(type(item), "__slots__", ())]


def assert_hidden(secret: str, error: BaseException, log: str = "") -> None:
    """Neither ``secret`` nor more than its first two characters is reachable from ``error``
    or appears in ``log``."""
    pieces = {secret[:3], *(secret[i : i + 6] for i in range(len(secret) - 5))}
    for text in [*texts(error), log]:
        for piece in pieces:
            assert piece not in text, f"{piece!r} of the secret is in {text!r}"


def raised(call: Callable[[], object], caplog: pytest.LogCaptureFixture) -> BaseException:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(RequestValidationError) as caught:
        call()
    return caught.value


async def raised_async(
    call: Callable[[], Awaitable[object]],
    caplog: pytest.LogCaptureFixture,
    kind: type[ValueError] = RequestValidationError,
    match: str | None = None,
) -> BaseException:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(kind, match=match) as caught:
        await call()
    return caught.value


# --- the account SID and API key slots --------------------------------------------------------


@SECRETS
def test_a_token_passed_as_the_account_sid_is_described(
    secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    error = raised(lambda: TwilioNumbersClient(secret, ACCOUNT_SID), caplog)
    assert isinstance(error, RequestValidationError)
    assert error.field == "account_sid"
    assert f"a {len(secret)}-character value starting {secret[:2]!r}" in str(error)
    assert_hidden(secret, error, caplog.text)


def test_a_hex_token_in_a_sid_slot_is_named_for_what_it_looks_like() -> None:
    with pytest.raises(RequestValidationError, match="shape of an auth token or API secret"):
        TwilioNumbersClient(TOKEN, ACCOUNT_SID)


@SECRETS
def test_a_secret_passed_as_the_api_key_is_described(
    secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    error = raised(
        lambda: TwilioNumbersClient(ACCOUNT_SID, api_key=secret, api_secret=API_KEY), caplog
    )
    assert isinstance(error, RequestValidationError)
    assert error.field == "api_key"
    assert_hidden(secret, error, caplog.text)


@pytest.mark.parametrize(
    ("value", "described"),
    [("zq", "a 2-character value"), ("zqxwvutsr", "a 9-character value"), ("", "an empty value")],
)
def test_a_short_value_shows_none_of_itself(value: str, described: str) -> None:
    # Two characters of a short value would be much of it.
    with pytest.raises(RequestValidationError) as caught:
        check_sid("account_sid", value, "AC")
    assert f"account_sid: {described} is not the SID of an Account" in str(caught.value)
    assert "zq" not in str(caught.value)


def test_a_sid_of_another_kind_is_named() -> None:
    # Not a secret: a SID can be shown, and knowing its kind says which arguments were swapped.
    with pytest.raises(RequestValidationError, match="is the SID of an API key, in the wrong"):
        TwilioNumbersClient(API_KEY, TOKEN)


def test_other_sid_fields_still_show_their_value() -> None:
    with pytest.raises(RequestValidationError, match="'AD123' is not the SID of an Address"):
        NumberPurchase(area_code="415", address_sid="AD123")


def test_a_value_shaped_like_a_secret_is_described_in_any_sid_field() -> None:
    with pytest.raises(RequestValidationError) as caught:
        NumberPurchase(area_code="415", address_sid=TOKEN)
    assert "a 32-character value starting 'e3'" in str(caught.value)
    assert_hidden(TOKEN, caught.value)


@SECRETS
@pytest.mark.parametrize(
    "environ",
    [
        {"TWILIO_ACCOUNT_SID": "{secret}", "TWILIO_AUTH_TOKEN": ACCOUNT_SID},
        {
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_API_KEY": "{secret}",
            "TWILIO_API_SECRET": API_KEY,
        },
    ],
    ids=["account", "api-key"],
)
def test_swapped_environment_variables_are_named_not_echoed(
    secret: str, environ: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    env = {name: value.format(secret=secret) for name, value in environ.items()}
    error = raised(lambda: TwilioNumbersClient.from_env(env), caplog)
    wrong = next(name for name, value in env.items() if value == secret)
    assert str(error).startswith(f"{wrong}: ")
    assert_hidden(secret, error, caplog.text)


@SECRETS
async def test_a_token_passed_as_a_calls_account_sid_is_described(
    secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    request = NumberPurchase(phone_number="+15005550006")
    # Nothing listens on port 9: each call must fail before any I/O.
    async with TwilioNumbersClient(
        ACCOUNT_SID, TOKEN, base_url="http://127.0.0.1:9", rate_limit=None
    ) as client:
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: client.purchase(request, account_sid=secret),
            lambda: client.find_incoming_phone_number("+15005550006", account_sid=secret),
            lambda: client.create_incoming_phone_number(area_code="500", account_sid=secret),
            lambda: anext(client.purchase_many([request], account_sid=secret)),
        ]
        for call in calls:
            error = await raised_async(call, caplog)
            assert isinstance(error, RequestValidationError)
            assert error.field == "account_sid"
            assert_hidden(secret, error, caplog.text)


@SECRETS
def test_the_sandbox_describes_a_token_passed_as_its_account_sid(
    secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    error = raised(lambda: Sandbox(account_sid=secret, auth_token=ACCOUNT_SID), caplog)
    assert "account_sid" in str(error)
    assert_hidden(secret, error, caplog.text)


# --- passwords in URLs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://bob:hunter2@example.com/sms", "https://bob:***@example.com/sms"),
        # A lone user information is a token as often as a name.
        (f"https://{TOKEN}@example.com/sms", "https://***@example.com/sms"),
        # A password holding '/', '?' or '#' cuts the authority short where a parser looks.
        (f"https://bob:{PASSWORD}@example.com/sms", "https://***@example.com/sms"),
        (f"redis://:{PASSWORD}@127.0.0.1:6379/0", "redis://***@127.0.0.1:6379/0"),
        ("https://bob:pa@ss@example.com/", "https://bob:***@example.com/"),
        ("https://bob:hunter2@[::1/hook", "https://***@[::1/hook"),
        # An '@' after a plain host is in the path or the query: nothing to hide.
        (
            "https://example.com/hook?email=a@b.example",
            "https://example.com/hook?email=a@b.example",
        ),
        ("https://example.com/users/@me", "https://example.com/users/@me"),
        ("https://example.com/sms", "https://example.com/sms"),
    ],
)
def test_redact_url_hides_every_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize("field", ["sms_url", "voice_url", "status_callback"])
def test_a_webhook_password_that_breaks_its_url_is_never_echoed(field: str) -> None:
    with pytest.raises(RequestValidationError) as caught:
        NumberPurchase(area_code="415", **{field: f"https://bob:{PASSWORD}@example.com/x"})
    assert_hidden(PASSWORD, caught.value)


# --- the Redis limiter's URL ------------------------------------------------------------------


@pytest.fixture
def guarded_redis() -> Iterator[RedisServer]:
    """A server whose password is :data:`TOKEN`."""
    server = RedisServer(required_binary(), "--requirepass", TOKEN)
    server.start()
    yield server
    server.cleanup()


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{PASSWORD}@127.0.0.1:6379/0",
        "redis://:Zq7vault@127.0.0.1:6379/0?socket_timeout=Zq7vault",
        "http://:Zq7vault@127.0.0.1/",
    ],
    ids=["unencoded", "bad-option", "scheme"],
)
async def test_a_bad_redis_url_is_refused_without_its_password(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from twilio_numbers_async.redis_limiter import RedisSemaphore, RedisTokenBucket

    secret = PASSWORD if PASSWORD in url else "Zq7vault"
    for make in (
        lambda: RedisTokenBucket.from_url(url, name="AC1", rate=5),
        lambda: RedisSemaphore.from_url(url, name="AC1", limit=5),
    ):
        error = await raised_async(make, caplog, ValueError, match="Redis URL")
        assert_hidden(secret, error, caplog.text)


async def test_an_unencoded_password_is_refused_before_any_connection() -> None:
    # Read as written, "redis://:a/b@host" names the host "a": a piece of the password would be
    # looked up in DNS. It is refused, saying how to write it.
    from twilio_numbers_async.redis_limiter import RedisTokenBucket

    with pytest.raises(ValueError, match="percent-encode") as caught:
        await RedisTokenBucket.from_url(f"redis://:{PASSWORD}@127.0.0.1:1/0", name="AC1", rate=5)
    assert caught.value.__context__ is None


async def test_a_wrong_redis_password_is_not_reachable_from_the_error(
    guarded_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    from twilio_numbers_async.redis_limiter import RedisLimiterError, RedisTokenBucket

    wrong = "Zq7" + TOKEN[3:]
    caplog.set_level(logging.DEBUG)
    with pytest.raises(RedisLimiterError) as caught:
        await RedisTokenBucket.from_url(
            f"redis://:{wrong}@127.0.0.1:{guarded_redis.port}/0", name="AC1", rate=5
        )
    assert_hidden(wrong, caught.value, caplog.text)


@pytest.mark.parametrize(
    "base_url",
    [
        "https://bob:Zq7/secret@example.com",
        "https://token-Zq7secret@example.com",
        "https://example.com:Zq7secret/",
        "http://user:Zq7secret@evil.example",
    ],
)
def test_a_base_url_holding_a_secret_is_refused_without_it(base_url: str) -> None:
    with pytest.raises(RequestValidationError) as caught:
        TwilioNumbersClient(ACCOUNT_SID, "an auth token", base_url=base_url)
    assert_hidden("Zq7", caught.value)
