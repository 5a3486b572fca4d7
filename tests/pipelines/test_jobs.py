import threading
import time

import pytest

from pipelines.errors import JobStopped, RetryAfterOutOfMemory
from pipelines.jobs import QueuedJob, JobQueue, with_one_retry


def wait_until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_jobs_run_one_at_a_time_in_the_order_they_arrived():
    queue = JobQueue()
    log: list[tuple[str, int, float]] = []
    running = threading.Semaphore(1)  # held by the job that runs; a second holder means overlap
    overlaps = []

    def submit(index: int) -> None:
        with queue.run(f"owner-{index}", "Image", f"job {index}"):
            if not running.acquire(blocking=False):
                overlaps.append(index)
            log.append(("start", index, time.monotonic()))
            time.sleep(0.03)
            log.append(("end", index, time.monotonic()))
            running.release()

    threads = []
    for index in range(6):
        threads.append(threading.Thread(target=submit, args=(index,)))
        threads[-1].start()
        wait_until(lambda n=index + 1: len(queue.current()) + len(queue.history()) >= n)
    for thread in threads:
        thread.join()
    assert not overlaps
    assert [index for kind, index, _ in log if kind == "start"] == list(range(6))
    history = queue.history()
    assert [view.summary for view in history] == [f"job {i}" for i in range(6)]
    for earlier, later in zip(history, history[1:]):
        assert earlier.finished_at <= later.started_at


def test_a_waiting_job_is_told_its_place_and_can_be_stopped_before_it_starts():
    queue = JobQueue()
    release_first = threading.Event()
    first_running = threading.Event()
    reports: list[str] = []
    outcome: list[str] = []

    def first():
        with queue.run("alice", "Image", "first"):
            first_running.set()
            release_first.wait(10)

    def second():
        try:
            with queue.run("bob", "Image", "second", on_progress=lambda fraction, text: reports.append(text)):
                outcome.append("ran")
        except JobStopped:
            outcome.append("stopped")

    threads = [threading.Thread(target=first)]
    threads[0].start()
    first_running.wait(10)
    threads.append(threading.Thread(target=second))
    threads[1].start()
    wait_until(lambda: len(queue.current()) == 2)
    current = queue.current()
    assert [(v.summary, v.state, v.position) for v in current] == [("first", "running", 0), ("second", "waiting", 1)]
    assert reports == ["Waiting: 1 job ahead"]

    assert queue.stop("bob") == 1
    threads[1].join(10)
    assert outcome == ["stopped"]
    assert [v.summary for v in queue.current()] == ["first"]  # the running job of someone else goes on
    release_first.set()
    threads[0].join(10)
    assert [(v.summary, v.state) for v in queue.history()] == [("second", "stopped"), ("first", "done")]


def test_the_history_records_how_each_job_ended():
    queue = JobQueue()
    with queue.run("a", "Image", "ok"):
        pass
    with pytest.raises(RuntimeError):
        with queue.run("a", "Image", "broken"):
            raise RuntimeError("boom")
    with pytest.raises(JobStopped):
        with queue.run("a", "Image", "stopped mid-way") as job:
            job.stop()
            job.check_stop()
    assert [(v.summary, v.state) for v in queue.history()] == [("ok", "done"), ("broken", "failed"), ("stopped mid-way", "stopped")]
    assert queue.current() == []
    # After a failure the queue is free: the next job runs at once.
    with queue.run("a", "Image", "after"):
        assert [v.state for v in queue.current()] == ["running"]


def test_stop_reaches_only_the_jobs_of_its_owner():
    queue = JobQueue()
    with queue.run("alice", "Image", "mine") as job:
        assert queue.stop("bob") == 0 and not job.stopped
        assert queue.stop("alice") == 1 and job.stopped


def test_a_job_runs_once_more_after_one_out_of_memory_and_says_so():
    said, attempts = [], []

    def attempt():
        attempts.append(1)
        if len(attempts) == 1:
            raise RetryAfterOutOfMemory("out of memory once")
        return "made"

    job = QueuedJob(on_progress=lambda fraction, text: said.append(text))
    assert with_one_retry(job, attempt) == "made" and len(attempts) == 2
    assert any("retrying with a leaner memory plan" in text for text in said)


def test_a_second_out_of_memory_reaches_the_caller():
    def attempt():
        raise RetryAfterOutOfMemory("out of memory again")

    with pytest.raises(RetryAfterOutOfMemory):
        with_one_retry(QueuedJob(), attempt)


def test_a_cancelled_request_stops_its_running_job_and_its_waiting_one_never_runs():
    queue = JobQueue()
    ran: list[str] = []
    outcome: dict[str, str] = {}

    def submit(name: str, event: str, steps: int) -> None:
        try:
            with queue.run("client-1", "Video", name, event=event) as job:
                for _ in range(steps):
                    job.check_stop()
                    ran.append(name)
                    time.sleep(0.01)
            outcome[name] = "done"
        except JobStopped:
            outcome[name] = "stopped"

    running = threading.Thread(target=submit, args=("long", "event-1", 100_000))
    running.start()
    wait_until(lambda: "long" in ran)
    waiting = threading.Thread(target=submit, args=("queued", "event-2", 1))
    waiting.start()
    wait_until(lambda: len(queue.current()) == 2)

    assert not queue.cancel("client-2", "event-2"), "only the client that sent a request cancels it"
    assert queue.cancel("client-1", "event-2") and queue.cancel("client-1", "event-1")
    running.join(10)
    waiting.join(10)
    assert outcome == {"long": "stopped", "queued": "stopped"} and "queued" not in ran
    assert queue.current() == []


def test_a_request_cancelled_before_its_job_reaches_the_queue_never_runs():
    queue = JobQueue()
    queue.cancel("client-1", "event-9")
    with pytest.raises(JobStopped):
        with queue.run("client-1", "Image", "too late", event="event-9"):
            pytest.fail("a cancelled request ran")
    with queue.run("client-1", "Image", "another request", event="event-10"):
        pass
    assert [v.state for v in queue.history()] == ["stopped", "done"]


def test_with_logins_another_persons_job_shows_only_as_another_job():
    queue = JobQueue()
    with queue.run("session-a", "Image", "alice's secret prompt", user="alice"):
        mine, = [view.seen_by("alice") for view in queue.current()]
        theirs, = [view.seen_by("bob") for view in queue.current()]
        everyone, = [view.seen_by(None) for view in queue.current()]
    assert mine.summary == everyone.summary == "alice's secret prompt" and mine.tab == "Image"
    assert (theirs.summary, theirs.tab, theirs.text, theirs.state) == ("another job", "", "", "running")
    assert "alice" not in str(theirs.as_dict()) and "user" not in mine.as_dict()
