"""Names for any id: valid for Kubernetes, stable, distinct, and readable when possible."""

import random
import re

import pytest

from worker.core.naming import (
    HASH_LENGTH,
    MAX_CRONJOB_NAME,
    MAX_LABEL_VALUE,
    MAX_POD_NAME,
    cronjob_name,
    label_value,
    pod_name,
    secret_name,
    stable_hash,
)

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
HASH = re.compile(r"[a-z2-7]{16}")


def assert_valid_names(bot_id: str) -> None:
    pod = pod_name(bot_id)
    assert len(pod) <= MAX_POD_NAME and DNS_LABEL.fullmatch(pod), (bot_id, pod)
    assert pod.startswith("bot-")
    cronjob = cronjob_name(bot_id)
    assert len(cronjob) <= MAX_CRONJOB_NAME and DNS_LABEL.fullmatch(cronjob), (bot_id, cronjob)
    assert cronjob.startswith("schedule-")
    value = label_value(bot_id)
    assert len(value) <= MAX_LABEL_VALUE and LABEL_VALUE.fullmatch(value), (bot_id, value)
    secret = secret_name(pod)
    assert len(secret) <= 253 and DNS_SUBDOMAIN.fullmatch(secret), (bot_id, secret)


@pytest.mark.parametrize("bot_id", ["clx0abc123def456ghi789jk", "a", "0", "a-b", "-lead", "x" * 59])
def test_valid_ids_keep_their_readable_pod_name(bot_id: str) -> None:
    assert pod_name(bot_id) == f"bot-{bot_id}"


@pytest.mark.parametrize("bot_id", ["clx0abc123def456ghi789jk", "a", "x" * 43])
def test_valid_ids_keep_their_readable_cronjob_name(bot_id: str) -> None:
    assert cronjob_name(bot_id) == f"schedule-{bot_id}"


@pytest.mark.parametrize(
    "bot_id", ["ABC", "Abc_Def.1", "x" * 63, "clx0abc123def456ghi789jk", "a", "a-b_c.d"]
)
def test_valid_label_values_are_kept(bot_id: str) -> None:
    assert label_value(bot_id) == bot_id


@pytest.mark.parametrize(
    ("bot_id", "readable_part"),
    [
        ("MyBot", "bot-mybot-"),
        ("my_bot.v2", "bot-my-bot-v2-"),
        ("has space", "bot-has-space-"),
        ("-Leading", "bot-leading-"),
        ("trailing-", "bot-trailing-"),
        ("a__--__b", "bot-a-b-"),
        ("x" * 60, "bot-" + "x" * 42 + "-"),
    ],
)
def test_other_ids_get_a_sanitised_prefix_and_a_hash(bot_id: str, readable_part: str) -> None:
    name = pod_name(bot_id)
    assert name.startswith(readable_part)
    assert HASH.fullmatch(name[len(readable_part) :])


@pytest.mark.parametrize("bot_id", ["", "!!!", "___", "üéö", "日本語", " "])
def test_ids_with_nothing_readable_get_the_hash_alone(bot_id: str) -> None:
    assert HASH.fullmatch(pod_name(bot_id).removeprefix("bot-"))
    assert HASH.fullmatch(cronjob_name(bot_id).removeprefix("schedule-"))
    assert HASH.fullmatch(label_value(bot_id))


def test_boundary_lengths() -> None:
    assert pod_name("x" * 59) == "bot-" + "x" * 59  # exactly 63
    assert pod_name("x" * 60) != "bot-" + "x" * 60
    assert cronjob_name("x" * 43) == "schedule-" + "x" * 43  # exactly 52
    assert cronjob_name("x" * 44) != "schedule-" + "x" * 44
    assert label_value("x" * 63) == "x" * 63
    assert label_value("x" * 64) != "x" * 64


def test_a_hashed_label_value_keeps_its_case_and_trims_bad_ends() -> None:
    assert label_value("My Bot!").startswith("My-Bot-")
    assert label_value("_x_ y").startswith("x_-y-")
    assert label_value("X y X").startswith("X-y-X-")  # only bad characters are trimmed


def test_a_long_id_uses_the_whole_label_value_length() -> None:
    # 46 readable characters, "-", 16 of hash: exactly 63.
    value = label_value("Y" + "x" * 99)
    assert value == "Y" + "x" * 45 + "-" + stable_hash("Y" + "x" * 99)
    assert len(value) == 63


def test_names_are_pinned_across_releases() -> None:
    # Changing these renames every such pod, i.e. a mass replace: change them deliberately only.
    assert stable_hash("") == "4oymiquy7qobjgx3"
    assert stable_hash("MyBot") == "khiio5moo3i5jcou"
    assert pod_name("MyBot") == "bot-mybot-khiio5moo3i5jcou"
    assert cronjob_name("MyBot") == "schedule-mybot-khiio5moo3i5jcou"
    assert label_value("My Bot!") == "My-Bot-" + stable_hash("My Bot!")


def test_the_hash_is_sixteen_dns_safe_characters() -> None:
    for bot_id in ["", "a", "A", "x" * 1000, "\x00", "\ud800"]:
        digest = stable_hash(bot_id)
        assert len(digest) == HASH_LENGTH and HASH.fullmatch(digest)


def test_ids_differing_only_in_case_or_punctuation_get_distinct_names() -> None:
    ids = ["mybot", "MyBot", "MYBOT", "my_bot", "my.bot", "my bot", "my-bot", "my--bot"]
    assert len({pod_name(i) for i in ids}) == len(ids)
    assert len({cronjob_name(i) for i in ids}) == len(ids)
    assert len({label_value(i) for i in ids}) == len(ids)


def _random_ids(count: int) -> list[str]:
    rng = random.Random(20240601)
    alphabets = [
        "abcdefghijklmnopqrstuvwxyz0123456789",
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_. ",
        "-_.",
        "aé日\u00a0\t/\\:@!#$%^&*()[]{}<>?,;'\"`~+=|0",
    ]
    ids: set[str] = set()
    while len(ids) < count:
        alphabet = rng.choice(alphabets)
        length = rng.choice([0, 1, 2, 24, 43, 44, 52, 59, 60, 63, 64, 100, 253])
        ids.add("".join(rng.choice(alphabet) for _ in range(length)))
    return sorted(ids)


def test_every_generated_id_gets_valid_names() -> None:
    for bot_id in _random_ids(5000):
        assert_valid_names(bot_id)


def test_names_are_stable() -> None:
    ids = _random_ids(2000)
    first = [(pod_name(i), cronjob_name(i), label_value(i)) for i in ids]
    second = [(pod_name(i), cronjob_name(i), label_value(i)) for i in ids]
    assert first == second


def test_distinct_ids_get_distinct_names() -> None:
    ids = _random_ids(5000)
    assert len({pod_name(i) for i in ids}) == len(ids)
    assert len({cronjob_name(i) for i in ids}) == len(ids)
    assert len({label_value(i) for i in ids}) == len(ids)


def test_secret_name_derives_from_the_pod_name() -> None:
    assert secret_name("bot-abc") == "bot-abc-config"
    assert secret_name(pod_name("x" * 200)).startswith(pod_name("x" * 200))


# --- injectivity: a chosen id can never name another bot's objects ------------------------------


def _attacks(victim: str) -> list[str]:
    """Ids an attacker could choose to land on the victim's names: each hashed name (and label)
    of the victim with its prefix removed, and variants of case and length."""
    names = [pod_name(victim).removeprefix("bot-"),
             cronjob_name(victim).removeprefix("schedule-"), label_value(victim)]
    return [*names, *(n.upper() for n in names), *(n + "-" for n in names)]


@pytest.mark.parametrize("victim", ["MyBot", "", "x" * 60, "my bot", "日本語", "a" * 44,
                                    "abcdefghijklmnop", "x-abcdefghijklmnop"])
def test_an_id_chosen_as_another_ids_hashed_name_gets_other_names(victim: str) -> None:
    for attacker in _attacks(victim):
        if attacker == victim:
            continue
        assert pod_name(attacker) != pod_name(victim), (attacker, victim)
        assert cronjob_name(attacker) != cronjob_name(victim), (attacker, victim)
        assert label_value(attacker) != label_value(victim), (attacker, victim)
        assert secret_name(pod_name(attacker)) != secret_name(pod_name(victim))


def test_names_are_injective_over_generated_ids_and_the_attacks_on_them() -> None:
    # Property: for every pair of distinct ids in a population that holds random ids AND, for
    # each, the ids that would collide under a scheme that let a readable name look hashed,
    # names differ. (A population of 30,000; a 50-bit collision is not what is tested: the
    # hash part is 80 bits, and the construction is what must not collide.)
    victims = _random_ids(6000)
    population = sorted(set(victims) | {a for v in victims for a in _attacks(v)})
    for name_of in (pod_name, cronjob_name, label_value):
        seen: dict[str, str] = {}
        for bot_id in population:
            name = name_of(bot_id)
            assert seen.setdefault(name, bot_id) == bot_id, (name_of.__name__, bot_id,
                                                              seen[name])


def test_a_readable_name_never_ends_like_a_hashed_one() -> None:
    # The reason for injectivity: hashed names end in "-" + 16 base32 characters, readable ones
    # never do (such an id is hashed too).
    for bot_id in ["abcdefghijklmnop", "a-abcdefghijklmnop", "x" * 16]:
        assert pod_name(bot_id) != f"bot-{bot_id}"
        assert label_value(bot_id) != bot_id
    for bot_id in ["abcdefghijklmno", "abcdefghijklmnop1", "a-bcdefghijklmnop0"]:
        assert pod_name(bot_id) == f"bot-{bot_id}"
