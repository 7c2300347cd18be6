"""Where simulated events go: Kafka (producer library), the HTTP ingest API, or a file.

Every sink counts what it did: events handed over, events acknowledged, and events
rejected or lost by reason, so the run summary never hides a loss.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Protocol, Self

import httpx
import msgspec
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_delay,
    wait_exponential,
)

from producers.errors import DeliveryError, InvalidEventError, SinkError
from producers.producer import EventProducer
from producers.signing import BatchSigner

logger = logging.getLogger(__name__)

MAX_BATCH: Final = 1000
_json: Final = msgspec.json.Encoder()


@dataclass(slots=True)
class SinkStats:
    """What a sink did with the events it was given."""

    sent: int = 0
    delivered: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


class Sink(Protocol):
    """A target for simulated events."""

    name: str
    stats: SinkStats

    def send(self, event: dict[str, Any]) -> None:
        """Take one event (may buffer)."""

    def idle(self) -> None:
        """Called when the run waits for the clock: push out partial batches."""

    def close(self) -> None:
        """Flush everything and release resources; counts final results."""


class _Closing:
    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class FileSink(_Closing):
    """NDJSON to a file (``-``: standard output), one event per line."""

    def __init__(self, path: str | Path) -> None:
        self.name = "file" if str(path) == "-" else f"file {path}"
        self.stats = SinkStats()
        self._path = str(path)
        self._stream: IO[bytes] | None = None

    def _open(self) -> IO[bytes]:
        if self._stream is None:
            if self._path == "-":
                self._stream = sys.stdout.buffer
            else:
                try:
                    self._stream = Path(self._path).open("wb")  # noqa: SIM115 - closed in close()
                except OSError as exc:
                    raise SinkError(f"cannot write {self._path!r}: {exc.strerror}") from exc
        return self._stream

    def send(self, event: dict[str, Any]) -> None:
        """Write one line."""
        stream = self._open()
        stream.write(_json.encode(event) + b"\n")
        self.stats.sent += 1
        self.stats.delivered += 1

    def idle(self) -> None:
        """Flush the OS buffer so a reader sees the lines."""
        if self._stream is not None:
            self._stream.flush()

    def close(self) -> None:
        """Flush and close (standard output is only flushed); a run that sent nothing
        (a quiet night hour) leaves an empty file, not none."""
        if self._stream is None and self._path != "-":
            self._open()
        if self._stream is not None:
            self._stream.flush()
            if self._path != "-":
                self._stream.close()
            self._stream = None


class KafkaSink(_Closing):
    """Through the producer library (validated, keyed, idempotent, ``acks=all``).

    Waits for Kafka's acknowledgements every ``flush_every`` events and when idle, so
    lost events are counted as ``not_delivered`` soon after they are lost.
    """

    def __init__(self, producer: EventProducer, *, flush_every: int = 20_000) -> None:
        self.name = f"kafka {producer.topic}"
        self.stats = SinkStats()
        self._producer = producer
        self._flush_every = flush_every
        self._last_flush = time.monotonic()

    def send(self, event: dict[str, Any]) -> None:
        """Validate and send one event."""
        try:
            self._producer.send(event)
        except InvalidEventError as exc:
            self.stats.rejected[exc.rejected.reason.value] += 1
            return
        except DeliveryError as exc:
            self.stats.rejected["not_delivered"] += exc.failed
            logger.error("kafka sink: %s", exc)
            return
        self.stats.sent += 1
        if self._producer.pending >= self._flush_every:
            self._flush()

    def _flush(self) -> None:
        self._last_flush = time.monotonic()
        report = self._producer.flush(raise_on_failure=False)
        self.stats.delivered += report.delivered
        if report.failed:
            self.stats.rejected["not_delivered"] += len(report.failed)
            logger.error(
                "kafka sink: %d events not delivered; first error: %s",
                len(report.failed),
                report.failed[0].error,
            )

    def idle(self) -> None:
        """Collect acknowledgements at most once a second while waiting."""
        if self._producer.pending and time.monotonic() - self._last_flush >= 1.0:
            self._flush()

    def close(self) -> None:
        """Wait for every acknowledgement, then close the producer."""
        try:
            if self._producer.pending:
                self._flush()
        finally:
            self._producer.close()


class HttpSink(_Closing):
    """Batched ``POST /v1/events`` (JSON array, at most 1,000 events, bearer token).

    An agency token may send only its own agency's events, so events are batched per
    agency and sent with that agency's token (``tokens``), else with ``default_token``.
    Events of an agency with no token are counted as rejected ``no_token``. 429 and 503
    answers are retried after their ``Retry-After``; per-event rejections in the answer
    are counted by reason. With a signer for the agency (``signers``,
    :class:`producers.signing.BatchSigner`) every request is signed, each attempt anew.
    """

    def __init__(
        self,
        url: str,
        *,
        tokens: Mapping[str, str] | None = None,
        default_token: str | None = None,
        batch_size: int = MAX_BATCH,
        max_wait_s: float = 0.5,
        retry_for_s: float = 60.0,
        client: httpx.Client | None = None,
        signers: Mapping[str, BatchSigner] | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH}, got {batch_size}")
        base = url.rstrip("/")
        self.url = base if base.endswith("/v1/events") else f"{base}/v1/events"
        self.name = f"http {self.url}"
        self.stats = SinkStats()
        self._tokens = dict(tokens or {})
        self._signers = dict(signers or {})
        self._default = default_token
        self._batch_size = batch_size
        self._max_wait_s = max_wait_s
        self._retry_for_s = retry_for_s
        self._client = client or httpx.Client(timeout=30.0)
        self._own_client = client is None
        self._buffers: dict[str, list[bytes]] = {}
        self._since: dict[str, float] = {}
        self._warned: set[str] = set()

    def send(self, event: dict[str, Any]) -> None:
        """Buffer one event; post its agency's batch when full."""
        agency = str(event.get("agency", ""))
        if agency not in self._tokens and self._default is None:
            self.stats.rejected["no_token"] += 1
            if agency not in self._warned:
                self._warned.add(agency)
                logger.warning("http sink: no token for agency=%s; its events are skipped", agency)
            return
        buf = self._buffers.setdefault(agency, [])
        if not buf:
            self._since[agency] = time.monotonic()
        buf.append(_json.encode(event))
        self.stats.sent += 1
        if len(buf) >= self._batch_size:
            self._post(agency)

    def idle(self) -> None:
        """Post batches that waited longer than ``max_wait_s``."""
        now = time.monotonic()
        for agency, buf in list(self._buffers.items()):
            if buf and now - self._since.get(agency, now) >= self._max_wait_s:
                self._post(agency)

    def close(self) -> None:
        """Post every partial batch and close the HTTP client."""
        try:
            for agency, buf in list(self._buffers.items()):
                if buf:
                    self._post(agency)
        finally:
            if self._own_client:
                self._client.close()

    def _post(self, agency: str) -> None:
        batch = self._buffers.pop(agency, [])
        if not batch:
            return
        token = self._tokens.get(agency, self._default)
        body = b"[" + b",".join(batch) + b"]"
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        signer = self._signers.get(agency)

        def post() -> httpx.Response:
            if signer is not None:  # each attempt signed anew (the signature has a time)
                headers.update(signer.headers(body, "application/json"))
            return self._client.post(self.url, content=body, headers=headers)

        retrying = Retrying(
            stop=stop_after_delay(self._retry_for_s),
            wait=_wait,
            retry=retry_if_exception_type(httpx.HTTPError) | retry_if_result(_busy),
            # out of time on 429/503: the last answer is counted like any other
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
            reraise=True,
        )
        try:
            resp = retrying(post)
        except httpx.HTTPError as exc:
            self.stats.rejected["not_delivered"] += len(batch)
            attempts = retrying.statistics.get("attempt_number", 1)
            raise SinkError(
                f"POST {self.url} failed for {len(batch)} events of agency "
                f"{agency!r} after {attempts} attempts: {exc}"
            ) from exc
        self._count(resp, len(batch), agency)

    def _count(self, resp: httpx.Response, n: int, agency: str) -> None:
        if resp.status_code >= 300:
            self.stats.rejected[f"http_{resp.status_code}"] += n
            logger.error(
                "http sink: POST %s answered %d for %d events of agency=%s: %s",
                self.url,
                resp.status_code,
                n,
                agency,
                resp.text[:300],
            )
            return
        try:
            answer = resp.json()
        except ValueError:
            self.stats.delivered += n
            return
        rejected = 0
        for result in answer.get("results", []) if isinstance(answer, dict) else []:
            if isinstance(result, dict) and result.get("status") == "rejected":
                rejected += 1
                problems = result.get("problems") or [{}]
                self.stats.rejected[str(problems[0].get("reason", "rejected"))] += 1
        self.stats.delivered += n - rejected


def _busy(resp: httpx.Response) -> bool:
    return resp.status_code in (429, 503)


#: after a transport error: 0.4 s, 0.8 s, ... at most 5 s between attempts
_backoff: Final = wait_exponential(multiplier=0.4, max=5.0)


def _wait(state: RetryCallState) -> float:
    """The server's Retry-After after a 429/503 answer, else the exponential backoff."""
    outcome = state.outcome
    if outcome is not None and not outcome.failed:
        return _retry_after(outcome.result().headers.get("Retry-After"))
    return float(_backoff(state))


def _retry_after(value: str | None) -> float:
    try:
        return min(30.0, max(0.1, float(value))) if value else 1.0
    except ValueError:
        return 1.0


def load_tokens(path: str | Path) -> dict[str, str]:
    """Read an agency -> token mapping from a YAML or JSON file.

    Raises:
        SinkError: the file cannot be read or is not a mapping of strings.
    """
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SinkError(f"cannot read tokens file {str(path)!r}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise SinkError(f"tokens file {str(path)!r} is not valid YAML/JSON: {exc}") from exc
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise SinkError(
            f"tokens file {str(path)!r} must map agency codes to tokens (agency: token)"
        )
    return dict(data)


def load_signers(path: str | Path) -> dict[str, BatchSigner]:
    """Read an agency -> private key file mapping (YAML or JSON) and load the keys.

    Raises:
        SinkError: the file is not such a mapping, or a key file cannot be loaded.
    """
    from contract.errors import ConfigError
    from contract.keyfiles import load_private_key

    mapping = load_tokens(path)  # the same shape: agency code -> string
    base = Path(path).parent
    out: dict[str, BatchSigner] = {}
    for agency, key_file in mapping.items():
        try:
            out[agency] = BatchSigner(load_private_key(base / key_file))
        except ConfigError as exc:
            raise SinkError(f"signing key of agency {agency!r}: {exc}") from exc
    return out
