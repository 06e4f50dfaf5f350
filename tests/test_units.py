"""Durations, retry formulas and serialization: pure functions, no database."""

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from durable_workflows import NonRetryableError, RetryPolicy, SerializationError
from durable_workflows.durations import parse_duration, spell_duration
from durable_workflows.serialization import JSONSerializer


@pytest.mark.parametrize(
    "value, seconds",
    [
        ("24 hours", 86400), ("1.5h", 5400), ("500ms", 0.5), ("2 days", 172800), ("30s", 30),
        ("5 minutes", 300), ("1 week", 604800), ("2w", 1209600), ("10 sec", 10), ("3 hr", 10800),
        ("1h 30m", 5400), ("45", 45), (12, 12), (0.25, 0.25), (dt.timedelta(minutes=2), 120),
        ("1 DAY", 86400), ("0s", 0),
    ],
)
def test_durations(value, seconds):
    assert parse_duration(value).total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["banana", "", "5 parsecs", "1h banana", "h", None, True, [1]])
def test_bad_durations_name_the_input(value):
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize("value", ["99999999999 weeks", "1000000d", 1e12, -1e12, dt.timedelta(days=999_999)])
def test_durations_too_long_for_a_date_are_refused_naming_the_input(value):
    with pytest.raises(ValueError, match="longer than a thousand years") as info:
        parse_duration(value, allow_negative=True)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize("seconds, text", [
    (30 * 86400, "30 days"), (86400, "1 day"), (7200, "2 hours"), (5400, "90 minutes"), (60, "1 minute"),
    (45, "45 seconds"), (1, "1 second"), (1.5, "1.5 seconds"), (0.5, "0.5 seconds"),
    (1036801, "1036801 seconds"),
])
def test_durations_spelled_in_the_largest_whole_unit(seconds, text):
    assert spell_duration(seconds) == text
    assert parse_duration(text).total_seconds() == seconds


def test_negative_duration_only_where_allowed():
    with pytest.raises(ValueError, match="negative"):
        parse_duration(-1)
    assert parse_duration("-5s", allow_negative=True).total_seconds() == -5


def test_exponential_backoff():
    policy = RetryPolicy(max_attempts=6, backoff="exponential", initial_delay="1s", jitter=False)
    assert policy.delays() == [1, 2, 4, 8, 16]
    triple = RetryPolicy(max_attempts=4, initial_delay=2, multiplier=3, jitter=False)
    assert triple.delays() == [2, 6, 18]


def test_linear_backoff_defaults_increment_to_initial_delay():
    assert RetryPolicy(max_attempts=5, backoff="linear", initial_delay="2s", jitter=False).delays() == [2, 4, 6, 8]
    stepped = RetryPolicy(max_attempts=4, backoff="linear", initial_delay="1s", increment="5s", jitter=False)
    assert stepped.delays() == [1, 6, 11]


def test_constant_backoff_and_cap():
    assert RetryPolicy(max_attempts=4, backoff="constant", initial_delay="3s", jitter=False).delays() == [3, 3, 3]
    capped = RetryPolicy(max_attempts=8, initial_delay="1s", max_delay="10s", jitter=False)
    assert capped.delays() == [1, 2, 4, 8, 10, 10, 10]


def test_a_backoff_function_gives_the_delays_under_the_cap_and_jitter():
    policy = RetryPolicy(max_attempts=5, backoff=lambda k: f"{k * 20}s", max_delay="1m", jitter=False)
    assert policy.delays() == [20, 40, 60, 60]
    jittered = RetryPolicy(max_attempts=2, backoff=lambda k: 10, jitter=0.1)
    assert all(9 <= jittered.delay(1) <= 11 for _ in range(50))
    with pytest.raises(ValueError, match=r"backoff must be one of exponential, linear, constant or a function"):
        RetryPolicy(backoff="fibonacci")


def test_jitter_stays_within_fraction():
    policy = RetryPolicy(max_attempts=3, initial_delay="10s", jitter=True)
    delays = [policy.delay(1) for _ in range(200)]
    assert all(9 <= d <= 11 for d in delays)
    assert len(set(delays)) > 1
    assert RetryPolicy(max_attempts=3, initial_delay="10s", jitter=0).delay(1) == 10


def test_presets():
    for preset in (RetryPolicy.standard(), RetryPolicy.aggressive(), RetryPolicy.patient()):
        assert preset.max_attempts > 1
        assert preset.delays() == sorted(preset.delays())


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"max_attempts": 0}, "max_attempts"), ({"max_attempts": "3"}, "max_attempts"),
        ({"backoff": "fibonacci"}, "backoff"), ({"initial_delay": "banana"}, "banana"),
        ({"jitter": 2}, "jitter"), ({"multiplier": 0}, "multiplier"),
        ({"retry_on": "ValueError"}, "retry_on"),
    ],
)
def test_bad_retry_policies(kwargs, word):
    with pytest.raises(ValueError, match=word):
        RetryPolicy(**{"max_attempts": 3, **kwargs})


def test_retry_filters():
    only_conn = RetryPolicy(max_attempts=3, retry_on=(ConnectionError,))
    assert only_conn.should_retry(ConnectionError())
    assert not only_conn.should_retry(ValueError())
    assert not only_conn.should_retry(NonRetryableError("no"))
    picky = RetryPolicy(max_attempts=3, is_retryable=lambda e: "again" in str(e))
    assert picky.should_retry(RuntimeError("try again")) and not picky.should_retry(RuntimeError("x"))


def test_serializer_round_trips_tagged_types():
    value = {
        "when": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), "day": dt.date(2026, 1, 2),
        "amount": Decimal("12.30"), "id": uuid.UUID(int=7), "pair": (1, "a"), "tags": {"x"},
        "gap": dt.timedelta(hours=1, microseconds=3), "raw": b"\x00\x01", "plain": [1, None, 2.5],
        "__dw__": "user data that looks like a tag",
    }
    serializer = JSONSerializer()
    assert serializer.loads(serializer.dumps(value)) == value


@pytest.mark.parametrize("value", [object(), {1: "a"}, float("nan"), {"f": lambda: 1}])
def test_unstorable_values(value):
    with pytest.raises(SerializationError):
        JSONSerializer().dumps(value)


@pytest.mark.parametrize("data", [
    {},
    {"name": "Charge", "attempt": 2, "branch": "3:1"},
    {"name": "ünïcode", "until": None, "delay": 2.5, "flags": [True, False]},
    {"at": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), "amount": Decimal("1.50"),
     "id": uuid.UUID(int=1), "nested": {"when": dt.date(2026, 1, 2)}},
])
def test_lifecycle_data_is_encoded_as_djangos_encoder_would(data):
    """The statements encode each event's data with one C encoder made once; the rows must
    hold what DjangoJSONEncoder writes."""
    from django.core.serializers.json import DjangoJSONEncoder

    from durable_workflows.engine.store import postgres as pg

    assert pg._encode_data(data) == DjangoJSONEncoder().encode(data)


class OnlyDispatch:
    """A project's dispatcher of the first protocol: `dispatch` and nothing else."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, int]] = []

    def dispatch(self, instance_id: str, mode: str, epoch: int) -> None:
        self.sent.append((instance_id, mode, epoch))


def test_a_dispatcher_with_only_dispatch_gets_the_defaults_of_the_port():
    from durable_workflows.engine.ports import adapt

    own = OnlyDispatch()
    dispatcher = adapt(own)
    assert (dispatcher.synchronous, dispatcher.transactional) == (False, False)
    assert dispatcher.task_row("a", "fresh", 0) is None and dispatcher.waiting() is None
    dispatcher.dispatch("a", "fresh", 1)
    assert own.sent == [("a", "fresh", 1)]
    assert dispatcher.sent is own.sent  # what the project reads of its own dispatcher still reads


def test_what_a_dispatcher_declares_itself_wins_over_the_defaults():
    from durable_workflows.engine.ports import adapt

    class Declares(OnlyDispatch):
        synchronous = True

        def waiting(self) -> int:
            return 3

    dispatcher = adapt(Declares())
    assert dispatcher.synchronous is True and dispatcher.waiting() == 3 and dispatcher.transactional is False


def test_a_base_dispatcher_is_taken_as_it_is():
    from durable_workflows.dispatch import BaseDispatcher, InlineDispatcher
    from durable_workflows.engine.ports import adapt

    inline = InlineDispatcher()
    assert adapt(inline) is inline and inline.synchronous and not inline.transactional
    with pytest.raises(NotImplementedError, match="BaseDispatcher does not implement dispatch"):
        BaseDispatcher().dispatch("a", "fresh", 0)
