"""gradio_client's `job.cancel()` means what Stop means: a running job ends at its next step, a waiting one never runs,
and neither saves a file."""

import time
from pathlib import Path

from gradio_client import Client

RESULT_SUFFIXES = {".png", ".mp4", ".webm", ".gif", ".wav"}


def saved_results(outputs: Path) -> list[Path]:
    return sorted(path for path in outputs.rglob("*") if path.suffix in RESULT_SUFFIXES and "partial" not in path.parts)


def wait_for(condition, what: str, timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what} within {timeout_s} s"
        time.sleep(0.2)
    return value


def test_cancelling_through_the_client_stops_a_running_video_and_a_waiting_job_and_saves_nothing(app):
    client = Client(app.url, verbose=False)
    before = saved_results(app.outputs)
    # 200 steps: left alone, this video keeps the CPU busy for a minute or more and then saves an MP4.
    video = client.submit(
        prompt="a long fox video", model="demo-wan", width=128, height=96, frames=33, steps=200, seed=4,
        api_name="/generate_video",
    )

    def queue():
        return client.predict(api_name="/queue")

    def denoising() -> bool:
        if video.done():
            video.result()  # its error, if it failed
            raise AssertionError("the video finished before it could be cancelled")
        return any(job["state"] == "running" and "step" in job["text"].lower() for job in queue()["jobs"])

    wait_for(denoising, "the video is denoising")
    waiting = client.submit(prompt="a fox that never runs", model="demo-sd3", steps=2, seed=9, api_name="/generate_image")
    wait_for(lambda: len(queue()["jobs"]) == 2, "the image job waits behind the video")

    assert waiting.cancel() and video.cancel()

    wait_for(lambda: not queue()["jobs"], "the queue is idle after both cancels")
    ended = {job["tab"]: job["state"] for job in queue()["recent"][-2:]}
    assert ended == {"Video": "stopped", "Image": "stopped"}, queue()["recent"][-2:]
    assert saved_results(app.outputs) == before, "a cancelled job saved a file"
    # The queue takes the next job as usual.
    _, used, _ = client.predict(prompt="after the cancels", model="demo-sd3", steps=2, seed=3, api_name="/generate_image")
    assert len(used["images"]) == 1 and not used["stopped"]
