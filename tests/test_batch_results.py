"""batch_results(): a succeeded Gemini API batch's results as a typed DataFrame, from inlined
responses or from a streamed JSON-lines responses file (Google's GenerateContentBatchOutput
shapes), against the emulator in-process on a virtual clock; the pure line parser on odd input."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pandas as pd
import pytest

import ops_widgets as ow
from ops_widgets._batch import COLUMNS, ResultRows
from ops_widgets.emulator import Emulator

DTYPES = {"key": "string", "text": "string", "finish_reason": "string", "prompt_tokens": "Int64",
          "output_tokens": "Int64", "total_tokens": "Int64", "error_code": "Int64", "error_message": "string"}

Body = Callable[[Emulator, ow.AsyncOperations, httpx.AsyncClient], Awaitable[None]]


def run(body: Body, seed: int = 4) -> None:
    clock = ow.VirtualClock()
    emu = Emulator.in_process(clock, random_seed=seed)

    async def main() -> None:
        app: Any = emu.app
        async with emu.aclient() as ops, httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=emu.base_url,
            headers={"x-goog-api-key": emu.api_key}) as http:
            await body(emu, ops, http)

    clock.run(main())


def assert_typed(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(COLUMNS)
    assert {c: str(t) for c, t in frame.dtypes.items()} == DTYPES


def inline_request(n: int, *, keys: bool = True) -> dict[str, Any]:
    return {"batch": {"displayName": "inline", "inputConfig": {"requests": {"requests": [
        {"request": {"contents": [{"parts": [{"text": f"question {i}"}]}]},
         **({"metadata": {"key": f"q{i}"}} if keys else {})} for i in range(n)]}}}}


def test_an_inline_batch_answers_inline_and_reads_as_rows() -> None:
    async def body(emu: Emulator, ops: ow.AsyncOperations, http: httpx.AsyncClient) -> None:
        r = await http.post("/v1beta/models/gemini-2.5-flash:batchGenerateContent", json=inline_request(120))
        name = r.json()["name"]
        emu.complete(name)
        done = (await http.get(f"/v1beta/{name}")).json()
        output = done["response"]
        assert output["@type"].endswith("v1main.GenerateContentBatchOutput") and "responsesFile" not in output
        items = output["inlinedResponses"]["inlinedResponses"]
        assert [i["metadata"] for i in items] == [{"key": f"q{i}"} for i in range(120)]
        errors = [i for i in items if "error" in i]
        assert len(errors) == int(done["metadata"]["batchStats"]["failedRequestCount"]) == 120 // 50
        ok = next(i["response"] for i in items if "response" in i)
        assert ok["candidates"][0]["finishReason"] == "STOP" and ok["candidates"][0]["content"]["parts"][0]["text"]
        usage = ok["usageMetadata"]
        assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]

        frame = await ops.batch_results(name)
        assert_typed(frame)
        assert list(frame["key"]) == [f"q{i}" for i in range(120)]
        failed = frame[frame["error_code"].notna()]
        assert len(failed) == 2 and failed["text"].isna().all() and failed["error_message"].notna().all()
        good = frame[frame["error_code"].isna()]
        assert good["text"].str.startswith("Answer ").all() and (good["finish_reason"] == "STOP").all()
        assert (good["total_tokens"] == good["prompt_tokens"] + good["output_tokens"]).all()
        first = items[0]["response"]
        assert frame.loc[0, "text"] == first["candidates"][0]["content"]["parts"][0]["text"]
        # Deterministic from the seed: the same batch answers the same again.
        assert (await ops.batch_results(name)).equals(frame)

    run(body)


def test_inline_requests_without_keys_read_as_na_keys_in_order() -> None:
    async def body(emu: Emulator, ops: ow.AsyncOperations, http: httpx.AsyncClient) -> None:
        r = await http.post("/v1beta/models/gemini-2.5-flash:batchGenerateContent",
                            json=inline_request(3, keys=False))
        emu.complete(r.json()["name"])
        frame = await ops.batch_results(r.json()["name"])
        assert len(frame) == 3 and frame["key"].isna().all() and frame["text"].str.startswith("Answer ").all()

    run(body)


def test_a_file_batch_streams_its_responses_file() -> None:
    async def body(emu: Emulator, ops: ow.AsyncOperations, http: httpx.AsyncClient) -> None:
        r = await http.post("/v1beta/models/gemini-2.5-flash:batchGenerateContent",
                            json={"batch": {"displayName": "f", "inputConfig": {"fileName": "files/input-1"}}})
        name = r.json()["name"]
        emu.complete(name)
        done = (await http.get(f"/v1beta/{name}")).json()
        file_name = done["response"]["responsesFile"]
        assert file_name == f"files/batch-{name.removeprefix('batches/')}"
        count = int(done["metadata"]["batchStats"]["requestCount"])
        media = await http.get(f"/download/v1beta/{file_name}:download", params={"alt": "media"})
        assert media.status_code == 200 and media.headers["content-type"].startswith("application/jsonl")
        lines = [json.loads(line) for line in media.text.splitlines()]
        assert len(lines) == count and all(set(x) in ({"key", "response"}, {"key", "error"}) for x in lines)

        frame = await ops.batch_results(name)
        assert_typed(frame)
        assert len(frame) == count and list(frame["key"]) == [x["key"] for x in lines]
        assert frame["error_code"].notna().sum() == int(done["metadata"]["batchStats"].get("failedRequestCount", 0))

    run(body)


def test_a_file_batch_of_100000_requests_reads_completely() -> None:
    async def body(emu: Emulator, ops: ow.AsyncOperations, http: httpx.AsyncClient) -> None:
        name = emu.create("batch", duration=60, requests=100_000)
        emu.complete(name)
        frame = await ops.batch_results(name)  # its speed and memory: bench/batch_results.py
        assert len(frame) == 100_000 and frame["key"].is_unique and frame["key"].notna().all()
        assert_typed(frame)
        assert frame["error_code"].notna().sum() == 100_000 // 50
        assert frame["text"].notna().sum() == 100_000 - 100_000 // 50

    run(body)


def test_running_failed_and_cancelled_batches_have_no_results() -> None:
    async def body(emu: Emulator, ops: ow.AsyncOperations, http: httpx.AsyncClient) -> None:
        running = emu.create("batch", duration=3600)
        with pytest.raises(ow.UnsupportedError, match=r"is running \(BATCH_STATE_(PENDING|RUNNING)\).*wait"):
            await ops.batch_results(running)
        failed = emu.create("batch", duration=10, outcome="failure", error_message="quota gone")
        emu.complete(failed)
        with pytest.raises(ow.UnsupportedError, match=r"is failed \(BATCH_STATE_FAILED\): 13 quota gone"):
            await ops.batch_results(failed)
        cancelled = emu.create("batch", duration=3600)
        await ops.cancel(cancelled)
        with pytest.raises(ow.UnsupportedError, match="BATCH_STATE_CANCELLED"):
            await ops.batch_results(cancelled)
        # Not a batch: refused before anything is sent.
        emu.reset_stats()
        with pytest.raises(ow.InvalidNameError, match="not a batch"):
            await ops.batch_results("models/veo-3.0-generate-001/operations/abc")
        assert emu.stats()["total"] == 0
        # Its file is not served while it runs, or after it failed.
        for name in (running, failed):
            r = await http.get(f"/download/v1beta/files/batch-{name.removeprefix('batches/')}:download",
                               params={"alt": "media"})
            assert r.status_code == 404

    run(body)


def test_the_download_path_wants_a_key_and_media_and_maps_errors() -> None:
    async def body(emu: Emulator, ops: ow.AsyncOperations, http: httpx.AsyncClient) -> None:
        name = emu.create("batch", duration=10, requests=5)
        emu.complete(name)
        path = f"/download/v1beta/files/batch-{name.removeprefix('batches/')}:download"
        assert (await http.get(path, params={"alt": "media"})).status_code == 200
        # Google's Files service (DownloadFile) is bound in v1beta only.
        assert (await http.get(path.replace("v1beta", "v1"), params={"alt": "media"})).status_code == 404
        assert (await http.get(path, params={"alt": "media"}, headers={"x-goog-api-key": ""})).status_code == 403
        assert (await http.get(path)).status_code == 400  # media only
        assert (await http.post(path, params={"alt": "media"})).status_code == 404
        assert (await http.get("/download/v1beta/batches")).status_code == 404
        assert (await http.get("/download/v2/files/x:download", params={"alt": "media"})).status_code == 404
        assert "GET /download/{v}/files/{file}:download" not in emu.stats()["by_route"]
        assert emu.stats()["by_route"]["GET /download/v1beta/files/{file}:download"] >= 2
        # A 503 before the body is retried; a 404 is typed; a v1 client reads the file from v1beta.
        emu.fail_next(2, status=503, path="/download/")
        assert len(await ops.batch_results(name)) == 5
        emu.fail_next(1, status=404, path="/download/")
        with pytest.raises(ow.NotFoundError):
            await ops.batch_results(name)
        async with emu.aclient(api_version="v1") as v1:
            assert len(await v1.batch_results(name)) == 5

    run(body)


def test_the_responses_file_is_sent_in_chunks_as_it_is_made() -> None:
    """The app streams (more_body), a bounded chunk at a time: never the whole file at once."""
    clock = ow.VirtualClock()
    emu = Emulator.in_process(clock, random_seed=1)
    name = emu.create("batch", duration=1, requests=20_000)
    emu.complete(name)
    sizes: list[int] = []
    more: list[bool] = []

    async def main() -> None:
        scope = {"type": "http", "method": "GET", "query_string": b"alt=media",
                 "path": f"/download/v1beta/files/batch-{name.removeprefix('batches/')}:download",
                 "headers": [(b"x-goog-api-key", emu.api_key.encode())]}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                sizes.append(len(message["body"]))
                more.append(bool(message.get("more_body")))

        await emu.app(scope, receive, send)

    clock.run(main())
    assert len(sizes) > 10 and max(sizes) < 512 * 1024 and more[-1] is False and all(more[:-1])


def test_the_blocking_client_reads_results_over_real_http(emu: Any) -> None:
    name = emu.create("batch", duration=3600, requests=2_500)
    emu.complete(name)  # done now: no waiting on the loopback emulator's real clock
    with emu.client() as ops:
        frame = ops.batch_results(name)
    assert len(frame) == 2_500 and frame["key"].is_unique
    assert_typed(frame)


def test_the_genai_sdk_reads_the_emulators_inlined_responses() -> None:
    genai = pytest.importorskip("google.genai")
    with Emulator.start(random_seed=3) as emu:
        sdk = genai.Client(api_key=emu.api_key,
                           http_options=genai.types.HttpOptions(base_url=emu.base_url, api_version="v1beta"))
        job = sdk.batches.create(model="gemini-2.5-flash", src=[
            {"contents": [{"parts": [{"text": "hi"}]}]}, {"contents": [{"parts": [{"text": "ho"}]}]}])
        assert job.name is not None
        emu.complete(job.name)
        done = sdk.batches.get(name=job.name)
        assert done.dest is not None and done.dest.inlined_responses is not None
        responses = done.dest.inlined_responses
        assert len(responses) == 2 and responses[0].response is not None
        assert responses[0].response.text and responses[0].response.text.startswith("Answer 1")
        file_batch = emu.create("batch", duration=0, requests=3)
        done = sdk.batches.get(name=file_batch)
        assert done.dest is not None and done.dest.file_name == f"files/batch-{file_batch.removeprefix('batches/')}"
        sdk.close()


# -- the pure parser ---------------------------------------------------------------------------

def parse(*chunks: bytes, **kw: Any) -> pd.DataFrame:
    rows = ResultRows(**kw)
    for chunk in chunks:
        rows.feed(chunk)
    rows.finish()
    frame = rows.build()
    assert_typed(frame)
    return frame


def line(obj: Any) -> bytes:
    return json.dumps(obj).encode() + b"\n"


OK = {"key": "a", "response": {"candidates": [{"content": {"parts": [{"text": "he"}, {"text": "llo"}]},
                                                "finishReason": "STOP"}],
                               "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": "2",
                                                 "totalTokenCount": 5}}}


def test_lines_split_anywhere_read_the_same() -> None:
    data = line(OK) + line({"key": "b", "error": {"code": 3, "message": "bad"}}) + json.dumps(OK).encode()
    whole = parse(data)
    assert list(whole["key"]) == ["a", "b", "a"] and whole.loc[0, "text"] == "hello"
    assert whole.loc[0, "output_tokens"] == 2 and whole.loc[1, "error_code"] == 3  # "2": int64 as a string
    for cut in range(1, len(data), 7):
        assert parse(data[:cut], data[cut:]).equals(whole)
    assert parse(*(data[i:i + 1] for i in range(len(data)))).equals(whole)
    assert parse(data.replace(b"\n", b"\r\n")).equals(whole)  # CRLF: json ignores the \r


def test_odd_lines_never_stop_the_read() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    frame = parse(
        b"not json\n", b"[1, 2]\n", b"\n", b"   \n", b"\xff\xfe{}\n", deep + b"\n",
        line({"key": 7}),  # neither response nor error
        line({"key": "big", "response": {"usageMetadata": {"promptTokenCount": 10**30, "totalTokenCount": 1e400,
                                                           "candidatesTokenCount": "99999999999999999999999"}}}),
        b'{"key": "nan", "response": {"usageMetadata": {"promptTokenCount": NaN}}}\n',
        line({"key": "weird", "response": {"candidates": [{"content": {"parts": [{"inlineData": {}}]}}]}}),
        line({"key": "thought", "response": {"candidates": [{"content": {"parts": [
            {"text": "thinking", "thought": True}, {"text": "said"}]}}]}}),
        line({"key": "e", "error": {}}), line({"key": "s", "response": "text"}),
        line({"key": ["x"], "error": {"code": "13", "message": "m" * 5000}}),
        line(OK),
    )
    msgs = list(frame["error_message"])
    assert msgs[0] == "line 1 could not be read: not JSON"
    assert msgs[1] == "line 2 could not be read: not a JSON object"
    assert msgs[2] == "line 5 could not be read: not UTF-8"  # blank lines 3 and 4 hold nothing
    assert msgs[3] == "line 6 could not be read: not JSON"  # too deep for json
    assert frame.loc[4, "key"] == "7" and "neither" in msgs[4]
    assert frame.loc[5, ["prompt_tokens", "output_tokens", "total_tokens"]].isna().all()  # beyond int64
    assert pd.isna(frame.loc[6, "prompt_tokens"])
    assert pd.isna(frame.loc[7, "text"]) and pd.isna(frame.loc[7, "error_message"])
    assert frame.loc[8, "text"] == "said"
    assert "no code and no message" in msgs[9] and "not an object" in msgs[10]
    assert pd.isna(frame.loc[11, "key"]) and frame.loc[11, "error_code"] == 13 and len(msgs[11]) == 2003
    assert frame.loc[12, "text"] == "hello" and len(frame) == 13


def test_a_line_longer_than_the_limit_is_a_row_and_the_next_one_reads() -> None:
    frame = parse(b'{"key": "' + b"x" * 500, b"y" * 600, b'"}\n' + line(OK), max_line=1000)
    assert len(frame) == 2 and "longer than 1,000 bytes" in frame.loc[0, "error_message"]
    assert frame.loc[1, "text"] == "hello"
    assert len(parse(b"z" * 2000, max_line=1000)) == 1  # unfinished at the end too


def test_rows_become_typed_chunk_by_chunk() -> None:
    rows = ResultRows(chunk_rows=3)
    rows.feed(line(OK) * 7)
    rows.add_items([{"response": OK["response"], "metadata": {"key": "i"}}, "junk"])
    rows.finish()
    frame = rows.build()
    assert len(frame) == 9 and frame.loc[7, "key"] == "i" and pd.isna(frame.loc[8, "key"])
    assert frame.loc[8, "error_message"] == "inlined response 9 is not an object"
    empty = ResultRows().build()  # no rows: the same columns, empty
    assert_typed(empty)
    assert len(empty) == 0
