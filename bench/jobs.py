"""REST jobs benchmark: upload throughput (streamed to disk, probed) and end-to-end conversion of a real clip.

Starts the service in a child process on loopback, uploads the clip --uploads times with --concurrency
parallel clients, and reports upload MB/s (time to 202, which includes the probe), then waits for every job
and reports conversion fps. Writes bench/results/jobs.json.

    .venv/bin/python -m bench.jobs [--clip bigbuckbunny.mp4] [--uploads 4] [--concurrency 2]
                                   [--operator bt2408]
"""

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench._report import line, write
from bench._server import Server

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "video"


def upload(url: str, clip: Path, operator: str) -> tuple[str, float]:
    with httpx.Client(base_url=url, timeout=300) as client, clip.open("rb") as body:
        start = time.perf_counter()
        response = client.post(
            "/v1/jobs",
            params={"operator": operator, "preset": "ultrafast"},
            content=body,
            headers={"X-Filename": clip.name},
        )
        elapsed = time.perf_counter() - start
    response.raise_for_status()
    return str(response.headers["location"]), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clip", default="bigbuckbunny.mp4")
    parser.add_argument("--uploads", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--operator", default="bt2408")
    args = parser.parse_args()
    clip = DATA / args.clip
    if not clip.is_file():
        print(f"skipped: clip {clip} not found")
        return
    size_mb = clip.stat().st_size / 1e6
    server = Server(ITM_DEFAULT_OPERATOR=args.operator, ITM_JOB_QUEUE_SIZE=str(args.uploads + 1))
    cases: list[dict[str, Any]] = []
    try:
        server.wait_ready()
        start = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            results = list(pool.map(lambda _: upload(server.url, clip, args.operator), range(args.uploads)))
        wall = time.perf_counter() - start
        times = [t for _, t in results]
        total_mb = size_mb * args.uploads
        print(
            f"'upload {args.clip} x{args.uploads} (c={args.concurrency})': {total_mb:.1f} MB in "
            f"{wall:.2f} s => {size_mb * args.uploads / wall:.1f} MB/s; time to 202 "
            f"min {min(times):.2f} s, max {max(times):.2f} s"
        )
        cases.append(
            {
                "name": "upload",
                "clip": args.clip,
                "mb": size_mb,
                "uploads": args.uploads,
                "concurrency": args.concurrency,
                "seconds": wall,
                "time_to_202_s": times,
            }
        )
        frames = 0
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for location, _ in results:
                while (job := client.get(location).json())["state"] in ("queued", "running"):
                    time.sleep(0.2)
                if job["state"] != "succeeded":
                    print(f"    job {job['id']} {job['state']}: {job['error']}")
                frames += job["progress"]["frames_done"]
        total = time.perf_counter() - start
        print(line(f"convert {args.clip} x{args.uploads} with {args.operator}", max(frames, 1), total))
        cases.append({"name": "convert", "operator": args.operator, "frames": frames, "seconds": total})
    finally:
        server.stop()
    print(f"wrote {write('jobs', cases)}")


if __name__ == "__main__":
    main()
