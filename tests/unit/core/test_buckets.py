"""The bucket check's sentences: each names the bucket, its setting, and (code) the0's bucket."""

from worker.core.buckets import BucketCheck, bucket_problem, problems


def test_an_existing_bucket_has_no_problem() -> None:
    assert bucket_problem("code", BucketCheck(name="custom-bots", exists=True)) is None
    assert bucket_problem("state", BucketCheck(name="bot-state", exists=True)) is None


def test_a_bucket_that_could_not_be_checked_says_why() -> None:
    check = BucketCheck(name="bot-state", exists=None, error="AccessDenied")
    assert bucket_problem("state", check) == (
        "state bucket 'bot-state' could not be checked: AccessDenied")


def test_a_missing_state_bucket_says_it_is_created_on_first_use() -> None:
    assert bucket_problem("state", BucketCheck(name="bot-state", exists=False)) == (
        "state bucket 'bot-state' does not exist (STATE_BUCKET); it is created on the first "
        "pod's signing, which needs the right to create buckets")


def test_a_missing_code_bucket_points_at_the0s_own_bucket_unless_it_is_that_one() -> None:
    assert bucket_problem("code", BucketCheck(name="the0-custom-bots", exists=False)) == (
        "code bucket 'the0-custom-bots' does not exist (MINIO_BUCKET); the0's API stores bot "
        "code in 'custom-bots': set MINIO_BUCKET=custom-bots")
    assert bucket_problem("code", BucketCheck(name="custom-bots", exists=False)) == (
        "code bucket 'custom-bots' does not exist (MINIO_BUCKET)")


def test_problems_lists_only_the_roles_that_have_one() -> None:
    checks = {"code": BucketCheck(name="custom-bots", exists=True),
              "state": BucketCheck(name="bot-state", exists=False),
              "logs": BucketCheck(name="bot-logs", exists=None, error="timed out")}
    assert problems(checks) == {
        "state": bucket_problem("state", checks["state"]),
        "logs": "logs bucket 'bot-logs' could not be checked: timed out"}
    assert problems({}) == {}


def test_a_check_as_json_has_its_three_fields() -> None:
    check = BucketCheck(name="bot-logs", exists=None, error="timed out")
    assert check.as_json() == {"name": "bot-logs", "exists": None, "error": "timed out"}
    assert BucketCheck(name="b", exists=True).as_json() == {"name": "b", "exists": True,
                                                            "error": ""}
