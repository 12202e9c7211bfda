"""The replay's pure parts: a batch split into its calls by id, calls keyed without their ids,
answers given back under the asking request's id, and a call never recorded named in an error."""

from __future__ import annotations

import orjson

from devnet.replay import NOT_RECORDED, STATS_METHOD, Recorder, Recording, call_key, split_exchange

FILTER = {"fromBlock": "0x1", "toBlock": "0x5", "address": ["0xaa"]}


def test_a_batch_splits_into_its_calls_by_id_whatever_the_answer_order() -> None:
    request = [
        {"jsonrpc": "2.0", "id": 10, "method": "eth_blockNumber", "params": []},
        {"jsonrpc": "2.0", "id": 11, "method": "eth_call", "params": [{"to": "0xbb"}, "0x5"]},
        {"jsonrpc": "2.0", "id": 12, "method": "eth_chainId"},
    ]
    response = [
        {"jsonrpc": "2.0", "id": 11, "error": {"code": 3, "message": "execution reverted"}},
        {"jsonrpc": "2.0", "id": 10, "result": "0x9"},
    ]  # id 12 unanswered: left out, so a replay misses it rather than invent it
    assert split_exchange(request, response) == [
        ("eth_blockNumber", [], {"result": "0x9"}),
        (
            "eth_call",
            [{"to": "0xbb"}, "0x5"],
            {"error": {"code": 3, "message": "execution reverted"}},
        ),
    ]


def test_keys_ignore_ids_and_key_order() -> None:
    same = {"toBlock": "0x5", "address": ["0xaa"], "fromBlock": "0x1"}
    assert call_key("eth_getLogs", [FILTER]) == call_key("eth_getLogs", [same])
    assert call_key("eth_getLogs", [FILTER]) != call_key(
        "eth_getLogs", [{**FILTER, "toBlock": "0x6"}]
    )
    assert call_key("eth_chainId", None) == call_key("eth_chainId", [])


def _recording() -> Recording:
    recorder = Recorder()
    logs = [{"blockNumber": "0x2", "logIndex": "0x0"}]
    recorder.add(
        {"jsonrpc": "2.0", "id": 1, "method": "eth_getLogs", "params": [FILTER]},
        {"jsonrpc": "2.0", "id": 1, "result": logs},
    )
    recorder.add(
        [{"jsonrpc": "2.0", "id": 2, "method": "eth_blockNumber", "params": []}],
        [{"jsonrpc": "2.0", "id": 2, "result": "0x5"}],
    )
    # Asked again later: the newest answer is kept (the head at the end of the run).
    recorder.add(
        {"jsonrpc": "2.0", "id": 3, "method": "eth_blockNumber", "params": []},
        {"jsonrpc": "2.0", "id": 3, "result": "0x6"},
    )
    assert len(recorder) == 2
    return Recording.from_lines(recorder.lines())


def test_answers_come_back_under_the_asking_id_single_and_batched() -> None:
    recording = _recording()
    one = orjson.loads(
        recording.answer(b'{"jsonrpc":"2.0","id":"x","method":"eth_blockNumber","params":[]}')
    )
    assert one == {"jsonrpc": "2.0", "id": "x", "result": "0x6"}
    batch = orjson.dumps(
        [
            {"jsonrpc": "2.0", "id": 40, "method": "eth_getLogs", "params": [FILTER]},
            {"jsonrpc": "2.0", "id": 41, "method": "eth_blockNumber", "params": []},
        ]
    )
    answers = orjson.loads(recording.answer(batch))
    assert [a["id"] for a in answers] == [40, 41]
    assert answers[0]["result"] == [{"blockNumber": "0x2", "logIndex": "0x0"}]
    assert answers[1]["result"] == "0x6"
    assert recording.answered == 3 and recording.missed == 0


def test_a_call_never_recorded_is_an_error_naming_it_and_is_counted() -> None:
    recording = _recording()
    asked = {
        "jsonrpc": "2.0",
        "id": 5,
        "method": "eth_getLogs",
        "params": [{**FILTER, "toBlock": "0x7"}],
    }
    answer = orjson.loads(recording.answer(orjson.dumps(asked)))
    assert answer["id"] == 5 and "result" not in answer
    assert answer["error"]["code"] == NOT_RECORDED
    assert '"toBlock":"0x7"' in answer["error"]["message"]
    stats = orjson.loads(
        recording.answer(orjson.dumps({"jsonrpc": "2.0", "id": 6, "method": STATS_METHOD}))
    )["result"]
    assert stats["missed"] == 1 and stats["answered"] == 0 and stats["calls"] == 2
    assert "eth_getLogs" in stats["missed_calls"][0]
