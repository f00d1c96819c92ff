"""Stable, DNS-safe Kubernetes names and label values for any bot id, plus our label keys.

Pure: no I/O. Names must be a function of the id alone (never of time or order), so a repeated
create hits the same name and cannot duplicate a pod.

An id that is already a valid name keeps its readable form ("bot-<id>"). Any other id becomes a
sanitised prefix plus "-" and a 16-character (80-bit) hash of the raw id, and the real id travels
in the `ANNOTATION_BOT_ID` annotation. Names are injective over all ids, so a bot author who
chooses an id cannot name another bot's objects: a readable name never ends like a hashed one
(an id whose readable name would is hashed too), two readable names differ where their ids do,
and two hashed names are equal only for a SHA-256 collision in 80 bits.
"""

import base64
import hashlib
import re

LABEL_APP = "app"
APP_BOT = "the0-bot"
LABEL_BOT_ID = "bot-id"
LABEL_MANAGED_BY = "managed-by"
MANAGED_BY_BOT = "the0-bot-controller"
MANAGED_BY_SCHEDULE = "the0-schedule-controller"
ANNOTATION_BOT_ID = "the0.dev/bot-id"
ANNOTATION_CONFIG_HASH = "the0.dev/config-hash"

POD_PREFIX = "bot-"
CRONJOB_PREFIX = "schedule-"
MAX_POD_NAME = 63  # pod hostnames are DNS labels
MAX_CRONJOB_NAME = 52  # the CronJob controller appends an 11-character job suffix
MAX_LABEL_VALUE = 63
HASH_LENGTH = 16  # base32: 80 bits

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_NOT_DNS = re.compile(r"[^a-z0-9]+")
_NOT_LABEL = re.compile(r"[^-A-Za-z0-9_.]+")
_SECRET_SUFFIX = "-config"
# How every hashed name ends; a readable name that ends so is hashed instead (injectivity).
_HASHED_END = re.compile(rf"(?:^|-)[a-z2-7]{{{HASH_LENGTH}}}$")


def pod_name(bot_id: str) -> str:
    """Name of the live bot's pod: "bot-<id>" when valid, else "bot-<sanitised>-<hash>"."""
    return _dns_name(POD_PREFIX, bot_id, MAX_POD_NAME)


def cronjob_name(bot_id: str) -> str:
    """Name of the scheduled bot's CronJob: "schedule-<id>" when valid, else with a hash."""
    return _dns_name(CRONJOB_PREFIX, bot_id, MAX_CRONJOB_NAME)


def label_value(bot_id: str) -> str:
    """The id as a label value when valid, else "<sanitised>-<hash>" (or the hash alone)."""
    if (len(bot_id) <= MAX_LABEL_VALUE and _LABEL_VALUE.fullmatch(bot_id)
            and not _HASHED_END.search(bot_id)):
        return bot_id
    budget = MAX_LABEL_VALUE - HASH_LENGTH - 1
    # Label values must start and end alphanumeric.
    prefix = _NOT_LABEL.sub("-", bot_id)[:budget].strip("-_.")
    digest = stable_hash(bot_id)
    return f"{prefix}-{digest}" if prefix else digest


def ends_like_a_hash(text: str) -> bool:
    """True when `text` ends as every hashed name does ("-" or start, then 16 base32
    characters): such a text used as a readable name could equal another id's hashed one."""
    return _HASHED_END.search(text) is not None


def secret_name(pod: str) -> str:
    """Name of the Secret holding one pod's config and code URL (≤ 70 chars for pod names ≤ 63)."""
    return pod + _SECRET_SUFFIX


def stable_hash(bot_id: str) -> str:
    """16 lowercase base32 characters (80 bits) of SHA-256(id): DNS-safe, and stable across
    processes."""
    digest = hashlib.sha256(bot_id.encode("utf-8", "surrogatepass")).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:HASH_LENGTH]


def _dns_name(prefix: str, bot_id: str, max_length: int) -> str:
    readable = prefix + bot_id
    if (len(readable) <= max_length and _DNS_LABEL.fullmatch(readable)
            and not _HASHED_END.search(readable)):
        return readable
    budget = max_length - len(prefix) - HASH_LENGTH - 1
    sanitised = _NOT_DNS.sub("-", bot_id.lower())[:budget].strip("-")
    digest = stable_hash(bot_id)
    return f"{prefix}{sanitised}-{digest}" if sanitised else prefix + digest
