"""`emotion-serve` for real: the console script started as a process on a free port, serving
the tiny model's ONNX runtime folder, spoken to over HTTP (and by Chromium, for the page)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from email.message import Message
from pathlib import Path

import numpy as np
import pytest
from conftest import HARD_TEXTS, LABELS, require
from seaweedfs import free_ports

BIN = Path(sys.executable).parent
PREDICT_VENV = Path(__file__).resolve().parents[1] / ".venv-predict"
TEXTS = [text for text in HARD_TEXTS if text.strip()]


def call(url: str, body: bytes | dict | None = None, timeout: float = 60
         ) -> tuple[int, dict, Message]:
    """(status, JSON body, headers: any case) of a GET (body None) or POST."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(url, data=data,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), error.headers


class Server:
    """An emotion-serve process; stopped (SIGTERM) when the test ends."""

    def __init__(self, folder: Path, *options: str, command: Path = BIN / "emotion-serve",
                 env: dict[str, str] | None = None):
        self.port = free_ports(1)[0]  # outside the ephemeral range (tests/seaweedfs.py)
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [command, "--model", str(folder), "--port", str(self.port), *options],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, **(env or {})})
        # Its output is read as it comes: a full pipe (an access-log line a request) would
        # block the server on its next log line.
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.process.stdout),
                                       daemon=True)
        self.reader.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.output()
            try:
                if call(f"{self.url}/v2/health/ready", timeout=5)[0] == 200:
                    return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.05)
        raise AssertionError("the server did not get ready in 60 s")

    def infer(self, texts: list[str], **parameters) -> tuple[int, dict, Message]:
        body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)],
                            "data": texts}]}
        return call(f"{self.url}/v2/models/emotion/infer",
                    {**body, "parameters": parameters} if parameters else body)

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        return self.output()

    def output(self) -> str:
        """Everything the server printed (once it has exited)."""
        if self.process.poll() is not None:
            self.reader.join(timeout=10)
        return "".join(self.lines)


@pytest.fixture
def serve(runtime_folders):
    servers = []

    def start(*options: str, **kwargs) -> Server:
        servers.append(Server(runtime_folders["onnx"], *options, **kwargs))
        return servers[-1]
    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def limited_server(runtime_folders):
    """One server for the bad-request cases, with small limits."""
    server = Server(runtime_folders["onnx"], "--max-texts", "8", "--max-text-bytes", "1000")
    yield server
    server.stop()


def outputs(answer: dict) -> dict:
    return {output["name"]: output for output in answer["outputs"]}


def expected_runtime(folder: Path) -> str:
    from emotion.predict import TextClassifier

    return TextClassifier(folder).runtime


def test_both_protocols_answer_as_text_classifier_does(serve, runtime_folders):
    from emotion.predict import TextClassifier

    server = serve()
    expected = TextClassifier(runtime_folders["onnx"]).predict(TEXTS)
    assert call(f"{server.url}/v2/health/live")[:2] == (200, {"live": True})
    status, metadata, _ = call(f"{server.url}/v2/models/emotion")
    assert status == 200 and metadata["parameters"]["labels"] == LABELS
    # What runs is the classifier's choice, stated in the metadata and the start-up line.
    assert metadata["parameters"]["runtime"] == expected_runtime(runtime_folders["onnx"])
    deadline = time.monotonic() + 10  # printed before ready; read by a thread meanwhile
    while f"on {metadata['parameters']['runtime']} (" not in server.output():
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.05)
    assert metadata["outputs"][1] == {"name": "probabilities", "datatype": "FP32",
                                      "shape": [-1, len(LABELS)]}
    status, answer, _ = server.infer(TEXTS)
    assert status == 200, answer
    label, probabilities = outputs(answer)["label"], outputs(answer)["probabilities"]
    assert label["shape"] == [len(TEXTS)] and label["data"] == expected.top()
    assert probabilities["shape"] == [len(TEXTS), len(LABELS)]
    got = np.array(probabilities["data"], np.float32).reshape(probabilities["shape"])
    assert np.abs(got - expected.probabilities).max() <= 1e-6
    # TF Serving's row format: texts, or objects with a text; what the SavedModel returns.
    status, answer, _ = call(f"{server.url}/v1/models/emotion:predict",
                             {"instances": [TEXTS[0], {"text": TEXTS[1]}]})
    assert status == 200
    assert [row["label"] for row in answer["predictions"]] == expected.top()[:2]
    assert np.abs(np.array([row["probabilities"] for row in answer["predictions"]])
                  - expected.probabilities[:2]).max() <= 1e-6
    # min_prob per request: below it, no label (empty in OIP, null in TF Serving's format).
    threshold = float(np.median(expected.probabilities.max(axis=1)))
    status, answer, _ = server.infer(TEXTS, min_prob=threshold)
    assert outputs(answer)["label"]["data"] == [label or "" for label in
                                                expected.top(threshold)]
    status, answer, _ = call(f"{server.url}/v1/models/emotion:predict",
                             {"instances": TEXTS, "parameters": {"min_prob": threshold}})
    assert [row["label"] for row in answer["predictions"]] == expected.top(threshold)
    assert "" in outputs(server.infer(TEXTS, min_prob=threshold)[1])["label"]["data"]


def test_concurrent_requests_are_batched_and_each_answered_as_alone(serve, runtime_folders):
    from emotion.predict import TextClassifier

    server = serve("--max-wait-ms", "200")
    alone = TextClassifier(runtime_folders["onnx"], batch_size=1).predict(TEXTS)
    with ThreadPoolExecutor(len(TEXTS)) as pool:
        answers = list(pool.map(lambda text: server.infer([text]), TEXTS))
    assert [status for status, _, _ in answers] == [200] * len(TEXTS)
    for row, (_, answer, _) in enumerate(answers):
        assert outputs(answer)["label"]["data"] == [alone.top()[row]]
        assert np.abs(np.array(outputs(answer)["probabilities"]["data"])
                      - alone.probabilities[row]).max() <= 1e-6
    metrics = urllib.request.urlopen(f"{server.url}/metrics").read().decode()
    batches = float(next(line.split()[-1] for line in metrics.splitlines()
                         if line.startswith("emotion_batch_texts_count")))
    assert 1 <= batches < len(TEXTS)  # fewer model runs than requests (+1 warm-up outside)
    assert f'emotion_requests_total{{route="v2_infer",status="200"}} {len(TEXTS)}.0' in metrics
    assert "emotion_request_seconds_bucket" in metrics and "emotion_queue_texts" in metrics


INFER = "/v2/models/emotion/infer"
TEXT_INPUT = {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["i am glad"]}


@pytest.mark.parametrize(("path", "body", "status", "names"), [
    (INFER, b"{not json", 400, "body: not JSON"),
    (INFER, b'{"inputs": [{"name": "text", "data": ["\xff\xfe"]}]}', 400, "body: not UTF-8"),
    (INFER, {"inputs": [{**TEXT_INPUT, "datatype": "FP32"}]}, 400, "inputs[0].datatype"),
    (INFER, {"inputs": [{**TEXT_INPUT, "shape": [2]}]}, 400, "inputs[0].shape"),
    (INFER, {"inputs": [{**TEXT_INPUT, "name": "words"}]}, 400, "inputs[0].name"),
    (INFER, {"inputs": [{**TEXT_INPUT, "data": [], "shape": [0]}]}, 400, "inputs[0].data"),
    (INFER, {"inputs": [{**TEXT_INPUT, "data": ["  "]}]}, 400, "inputs[0].data[0]: empty"),
    (INFER, {"inputs": [{**TEXT_INPUT, "data": [3]}]}, 400, "inputs[0].data[0]"),
    (INFER, {"inputs": [{**TEXT_INPUT, "data": ["\ud800"]}]}, 400, "inputs[0].data[0]"),
    (INFER, {"inputs": []}, 400, "inputs"),
    (INFER, {"inputs": [TEXT_INPUT], "parameters": {"min_prob": 2}}, 400,
     "parameters.min_prob"),
    (INFER, {"inputs": [{**TEXT_INPUT, "shape": [9], "data": ["a text"] * 9}]}, 413,
     "inputs[0].data: 9 texts"),
    (INFER, {"inputs": [{**TEXT_INPUT, "data": ["é" * 600]}]}, 413, "inputs[0].data[0]"),
    ("/v2/models/other/infer", {"inputs": [TEXT_INPUT]}, 404, "model 'other'"),
    ("/v1/models/emotion:predict", {"rows": ["i am glad"]}, 400, "instances"),
    # Found by trying what clients and attackers send (#43): each was a plain-text 500 or 404,
    # or accepted.
    pytest.param(INFER, b"[" * 50_000, 400, "body: JSON nested too deeply", id="deep-json"),
    (INFER, {"inputs": [{**TEXT_INPUT, "shape": [1.0]}]}, 400, "inputs[0].shape"),
    (INFER, {"inputs": [{**TEXT_INPUT, "shape": [True]}]}, 400, "inputs[0].shape"),
    (INFER, None, 405, "GET /v2/models/emotion/infer: method not allowed"),
    ("/v2/nothing/here", None, 404, "GET /v2/nothing/here: no such route"),
    ("/v2/models/emotion/versions/2/infer", {"inputs": [TEXT_INPUT]}, 404, "version '2'"),
    ("/v2/models/emotion/versions/2", None, 404, "version '2'"),
])
def test_a_bad_request_gets_a_one_line_error_naming_the_field(limited_server, path, body,
                                                               status, names):
    server = limited_server
    got, answer, _ = call(server.url + path, body)  # a dict goes as ASCII JSON (\ud800 too)
    assert got == status and names in answer["error"], answer
    assert "\n" not in answer["error"]
    assert server.infer(["i am glad"])[0] == 200  # and the server goes on


def test_a_full_queue_answers_503_at_once_and_the_server_recovers(serve):
    server = serve("--max-queue", "2", "--max-batch", "1", "--max-wait-ms", "0")
    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(lambda _: server.infer(["i am glad", "i am sad"]), range(48)))
    statuses = [status for status, _, _ in answers]
    assert set(statuses) == {200, 503} and statuses.count(200) >= 1, statuses
    refused = next(answer for answer in answers if answer[0] == 503)
    assert refused[2]["Retry-After"] == "1" and "busy" in refused[1]["error"]
    assert server.infer(["i am glad"])[0] == 200


def test_sigterm_finishes_the_requests_in_flight_and_exits_0(serve):
    server = serve("--max-wait-ms", "4000")  # the request waits 4 s for its batch
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(server.infer, ["i am glad"])
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        # Draining: readiness is not 200 once the signal is handled (the listener is closed,
        # so a probe is refused; one that gets through is answered 503), while the request
        # in flight still waits for its batch.
        while True:
            try:
                if call(f"{server.url}/v2/health/ready", timeout=5)[0] == 503:
                    break
            except (urllib.error.URLError, ConnectionError):
                break
            assert not pending.done(), "readiness was still 200 after the request finished"
            time.sleep(0.02)
        assert not pending.done()
        status, answer, _ = pending.result(timeout=60)
    assert status == 200 and outputs(answer)["label"]["data"][0] in LABELS
    log = server.stop()
    assert server.process.returncode == 0, log
    # one access-log line per request
    assert '"POST /v2/models/emotion/infer HTTP/1.1" 200' in log, log


def metric(server: Server, name: str) -> float:
    text = urllib.request.urlopen(f"{server.url}/metrics").read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def test_a_client_that_goes_away_costs_no_model_run(serve):
    server = serve("--max-wait-ms", "1000")  # the request waits a second for its batch
    body = json.dumps({"inputs": [TEXT_INPUT]}).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as client:
        client.sendall(b"POST /v2/models/emotion/infer HTTP/1.1\r\nHost: x\r\n"
                       b"Content-Type: application/json\r\nContent-Length: "
                       + str(len(body)).encode() + b"\r\n\r\n" + body)
        time.sleep(0.3)
    time.sleep(1.5)  # past the batch's deadline
    assert metric(server, 'emotion_requests_total{route="v2_infer",status="499"}') == 1
    assert metric(server, "emotion_batch_texts_count") == 0  # its text never ran
    assert server.infer(["i am glad"])[0] == 200
    assert metric(server, "emotion_batch_texts_count") == 1


def test_a_folder_that_is_not_a_model_fails_with_one_line(tmp_path):
    result = subprocess.run([BIN / "emotion-serve", "--model", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path}: no ONNX runtime there (no runtime.json): run `dvc repro publish` (or "
        "`dvc pull`), or pass --backend tensorflow to use the trained model folder"]


def test_the_prediction_only_install_serves_without_the_training_stack(serve, runtime_folders):
    command = PREDICT_VENV / "bin/emotion-serve"
    require(command.exists(), "the prediction-only install (make setup-predict)")
    server = serve(command=command)
    status, answer, _ = server.infer(["i am glad"])
    assert status == 200 and outputs(answer)["label"]["data"][0] in LABELS
    # Without the openvino extra, asking for it is one line and exit 2, before serving.
    refused = subprocess.run([command, "--model", str(runtime_folders["onnx"]), "--runtime",
                              "openvino-bf16"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "OpenVINO is not installed" in refused.stderr


CHROMEDRIVER = shutil.which("chromedriver")


def test_the_page_labels_a_typed_text_in_chromium(serve):
    require(CHROMEDRIVER is not None, "chromedriver (Debian's chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server = serve()
    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options,
                               service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        browser.get(server.url + "/")
        assert "http" not in "".join(  # self-contained: no external script, style or image
            element.get_attribute("src") or element.get_attribute("href") or ""
            for element in browser.find_elements(By.CSS_SELECTOR, "script, link, img"))
        browser.find_element(By.ID, "text").send_keys("i feel so happy and glad today")
        browser.find_element(By.ID, "submit").click()
        label = WebDriverWait(browser, 30).until(
            lambda page: page.find_element(By.ID, "label").text)
        assert label in LABELS
        assert len(browser.find_elements(By.CSS_SELECTOR, "#bars .row")) == len(LABELS)
        assert browser.find_element(By.ID, "error").text == ""
        # The OpenAPI document's page: Swagger UI from the package's files, no CDN.
        browser.get(server.url + "/v2/docs")
        operations = WebDriverWait(browser, 30).until(
            lambda page: page.find_elements(By.CSS_SELECTOR, ".opblock"))
        paths = call(server.url + "/v2/openapi.json")[1]["paths"]
        assert len(operations) == sum(len(methods) for methods in paths.values())
        assert all((element.get_attribute("src") or element.get_attribute("href") or
                    server.url).startswith(server.url) for element in
                   browser.find_elements(By.CSS_SELECTOR, "script, link[rel=stylesheet]"))
    finally:
        browser.quit()


def test_triton_shapes_and_versioned_routes_answer_as_the_plain_ones(limited_server):
    server = limited_server
    texts = ["i am glad", "i am so scared"]
    plain = server.infer(texts)
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2, 1], "data": texts}]}
    for path in (INFER, "/v2/models/emotion/versions/1/infer"):
        status, answer, _ = call(server.url + path, body)
        assert status == 200 and answer["outputs"] == plain[1]["outputs"]
    assert call(f"{server.url}/v2/models/emotion/versions/1")[1]["versions"] == ["1"]
    assert call(f"{server.url}/v2/models/emotion/versions/1/ready")[0] == 200


def test_slow_and_idle_clients_are_closed_and_never_hold_the_server(serve):
    """50 connections that send nothing, half their headers or half their body: a normal
    client is still answered at once, every slow one is closed within its deadline (the
    half bodies with a 408 in JSON), and a connection over the cap is closed at once."""
    server = serve("--header-timeout", "1.5", "--body-timeout", "1.5",
                   "--keep-alive-timeout", "1", "--max-connections", "56")
    head = (b"POST /v2/models/emotion/infer HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n")
    sends = [b""] * 20 + [head[:30]] * 15 + [head + b'{"inputs": '] * 15
    slow = []
    for data in sends:
        client = socket.create_connection(("127.0.0.1", server.port))
        client.sendall(data)
        slow.append(client)
    assert server.infer(["i am glad"])[0] == 200
    for client in slow:  # answered while every slow connection was still held open
        client.setblocking(False)
        with pytest.raises(BlockingIOError):
            client.recv(1)
    over = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(10)]
    answers = []
    for client in slow + over:
        client.settimeout(20)  # the server closes each long before (1.5 s deadlines):
        received = b""         # a socket.timeout here fails the test
        while chunk := client.recv(65536):
            received += chunk
        answers.append(received)
        client.close()
    assert answers[:35] == [b""] * 35  # closed with nothing said: no request came
    for answer in answers[35:50]:
        assert answer.startswith(b"HTTP/1.1 408 ") and b'"error":"body: not received' in answer
    assert answers[50:].count(b"") >= 5  # the connections past the cap of 56
    assert server.infer(["i am glad"])[0] == 200
    assert metric(server, 'emotion_requests_total{route="v2_infer",status="408"}') == 15


def http_answer(client: socket.socket) -> bytes:
    """One HTTP answer read from a raw socket: its head, then Content-Length bytes."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += client.recv(65536) or b"\r\n\r\n"
    head, _, body = answer.partition(b"\r\n\r\n")
    length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), b"0"))
    while len(body) < length and (chunk := client.recv(65536)):
        body += chunk
    return head + b"\r\n\r\n" + body


def test_bodies_in_flight_are_capped_together(serve):
    """Two slow bodies of 600 bytes each against a cap of 1,000 bytes in flight: the second
    is refused (503, JSON) as soon as it passes the cap; once the first is done, the server
    takes bodies again."""
    server = serve("--max-body-bytes", "1000")
    head = (b"POST /v2/models/emotion/infer HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1200\r\n\r\n")
    first, second = (socket.create_connection(("127.0.0.1", server.port)) for _ in range(2))
    first.sendall(head + b" " * 600)
    time.sleep(0.3)
    second.sendall(head + b" " * 600)
    second.settimeout(10)
    answer = http_answer(second)
    assert answer.startswith(b"HTTP/1.1 503 ") and b"body bytes in flight" in answer, answer
    first.close()
    second.close()
    time.sleep(0.3)
    assert server.infer(["i am glad"])[0] == 200


def test_a_failing_model_run_is_a_json_500_for_its_batch_only(serve):
    server = serve(env={"EMOTION_SERVE_FAULT": "this text breaks the model"})
    status, answer, _ = server.infer(["this text breaks the model"])
    assert status == 500 and answer["error"].startswith("server: failed (RuntimeError: ")
    assert server.infer(["i am glad"])[0] == 200
    assert metric(server, 'emotion_requests_total{route="v2_infer",status="500"}') == 1
    assert "error: v2_infer: RuntimeError" in server.stop()


@pytest.mark.parametrize("damage", ["max_length not a number", "graph truncated"])
def test_a_model_that_fails_to_load_ends_the_server_with_one_line(runtime_folders, tmp_path,
                                                                  damage):
    folder = tmp_path / "onnx"
    shutil.copytree(runtime_folders["onnx"], folder)
    if damage == "max_length not a number":
        settings = json.loads((folder / "runtime.json").read_text())
        (folder / "runtime.json").write_text(json.dumps({**settings, "max_length": "long"}))
    else:
        for graph in folder.glob("*.onnx"):
            graph.write_bytes(graph.read_bytes()[:2000])
    port = free_ports(1)[0]
    result = subprocess.run([BIN / "emotion-serve", "--model", str(folder), "--port",
                             str(port)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and str(folder) in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_tritonclient_default_calls_work_in_binary_and_json(limited_server):
    """The real tritonclient, as a Triton user calls it: binary tensors by default (and
    JSON), shape [N, 1], all outputs or one, a version, a parameter."""
    import tritonclient.http as triton

    server = limited_server
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("emotion") and client.is_model_ready("emotion", "1")
    texts = ["i am glad", "so scared of the dark 😀", "Café naïve"]
    plain = outputs(server.infer(texts)[1])
    expected = np.array(plain["probabilities"]["data"], np.float32).reshape(len(texts), -1)
    for binary in (True, False):
        tensor = triton.InferInput("text", [len(texts), 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[text] for text in texts], dtype=object),
                                   binary_data=binary)
        result = client.infer("emotion", [tensor])
        assert [label.decode() for label in result.as_numpy("label")] == plain["label"]["data"]
        assert np.array_equal(result.as_numpy("probabilities"), expected)
        result = client.infer("emotion", [tensor], model_version="1", parameters={
            "min_prob": 1.0}, outputs=[triton.InferRequestedOutput("label", binary_data=binary)])
        assert [output["name"] for output in result.get_response()["outputs"]] == ["label"]
        labels = [label.decode() if binary else label for label in result.as_numpy("label")]
        assert labels == [""] * len(texts)  # all below min_prob 1


def test_the_open_inference_client_reads_models_and_versions(limited_server):
    from open_inference.openapi.client import InferenceRequest, OpenInferenceClient
    from open_inference.openapi.core.api_error import ApiError

    server = limited_server
    client = OpenInferenceClient(base_url=server.url)
    client.check_server_liveness()
    client.check_model_version_readiness("emotion", "1")
    assert client.read_model_version_metadata("emotion", "1").versions == ["1"]
    answer = client.model_version_infer("emotion", "1", request=InferenceRequest(inputs=[
        {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["i am glad", "sad"]}]))
    assert answer.outputs[0].data.__root__ == outputs(server.infer(["i am glad", "sad"])[1])[
        "label"]["data"]
    with pytest.raises(ApiError) as refused:
        client.read_model_version_metadata("emotion", "7")
    assert refused.value.status_code == 404 and "version '7'" in refused.value.body["error"]


def test_schemathesis_finds_no_answer_outside_the_openapi_document(limited_server, tmp_path):
    """Schemathesis drives every route of the served OpenAPI document (its examples, the
    coverage of each schema's edges, then fuzzing and stateful sequences; deterministic,
    bounded): every answer has a documented status, content type, headers and a body that
    matches its schema, and none is a 5xx. (Its checks that any schema-valid request is
    accepted, and any invalid one refused, cannot hold: the shape must count the texts.)"""
    result = subprocess.run(
        [BIN / "st", "run", f"{limited_server.url}/v2/openapi.json", "--checks",
         "not_a_server_error,status_code_conformance,content_type_conformance,"
         "response_headers_conformance,response_schema_conformance,unsupported_method,"
         "allow_header_conformance", "--max-examples", "30", "--generation-deterministic",
         "--no-color", "--workers", "1", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:]
    assert "No issues found" in result.stdout
    assert limited_server.infer(["i am glad"])[0] == 200
