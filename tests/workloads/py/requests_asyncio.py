"""N requests served by an asyncio event loop, CONCURRENT at a time, each
marked on the loop's thread (their windows overlap): every EVERY-th one awaits
asyncio.sleep(SLEEP_MS), the others compute WORK_MS. Prints the ground truth."""
import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "python"))
import contactmap_mark  # noqa: E402


def spin(ms):
    end = time.thread_time() + ms / 1000
    x = 0
    while time.thread_time() < end:
        for i in range(2000):
            x += i * i
    return x


async def serve(i, every, sleep_ms, work_ms):
    contactmap_mark.begin(i)
    if i % every == 0:
        await asyncio.sleep(sleep_ms / 1000)
    else:
        spin(work_ms)
    contactmap_mark.end(i)


async def main():
    n, conc, every, sleep_ms, work_ms = (int(a) for a in (sys.argv[1:] + ["40", "4", "10", "20", "2"])[:5])
    sem = asyncio.Semaphore(conc)

    async def one(i):
        async with sem:
            await serve(i, every, sleep_ms, work_ms)

    await asyncio.gather(*(one(i) for i in range(n)))
    print(json.dumps({"workload": "requests_asyncio", "pid": os.getpid(), "requests": n,
                      "library": contactmap_mark.library}))


asyncio.run(main())
