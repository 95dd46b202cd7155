"""A client of the OpenAI-compatible chat completions API (OpenAI, vLLM, llama.cpp's server, Ollama, most gateways),
with what a judge needs around it: timeouts, retries with backoff, a request rate and a daily token budget.

- ``POST {base_url}/chat/completions`` with ``{"model", "messages": [{"role": "user", "content": prompt}],
  "temperature": 0}`` and ``Authorization: Bearer <key>`` when a key is set; the reply's
  ``choices[0].message.content`` and ``usage`` (prompt and completion tokens).
- 429 and 5xx answers, timeouts and connection errors are retried (``retries`` times, exponential backoff from
  ``backoff_s``, or the ``Retry-After`` the server gives); other 4xx are not (:class:`JudgeCallError`).
- :class:`RateLimit`: at most ``per_minute`` requests in any minute (a token bucket; callers wait).
- :class:`DailyBudget`: tokens used per UTC day; once spent, :meth:`DailyBudget.allows` is false until the next day.

Example (a rate limit of 120 a minute lets two calls through at once, then spaces them by half a second)::

    >>> clock = iter([0.0] * 4).__next__  # a clock that stands still
    >>> limit = RateLimit(120, burst=2, clock=clock)
    >>> limit.wait_s(), limit.wait_s(), limit.wait_s()
    (0.0, 0.0, 0.5)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

RETRYABLE = frozenset({408, 409, 429, 500, 502, 503, 504})


class JudgeCallError(RuntimeError):
    """The provider refused the request, or kept failing after the retries."""


@dataclass(frozen=True)
class Completion:
    text: str
    tokens_in: int | None
    tokens_out: int | None
    attempts: int


class RateLimit:
    """A token bucket: ``per_minute`` requests a minute, ``burst`` at once."""

    def __init__(self, per_minute: float, burst: int = 1, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(max(1, burst))
        self.tokens = self.burst
        self.clock = clock
        self.last = clock()
        self._lock = threading.Lock()

    def wait_s(self) -> float:
        """Take a request's token; how long the caller must wait before sending it."""
        with self._lock:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
            self.tokens -= 1.0
            return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def acquire(self) -> None:
        delay = self.wait_s()
        if delay > 0:
            time.sleep(delay)


class DailyBudget:
    """Tokens per UTC day."""

    def __init__(self, tokens_per_day: int, today: Callable[[], str] | None = None) -> None:
        self.limit = tokens_per_day
        self.today = today or (lambda: datetime.now(UTC).date().isoformat())
        self.day = self.today()
        self.used = 0

    def _roll(self) -> None:
        day = self.today()
        if day != self.day:
            self.day, self.used = day, 0

    def allows(self) -> bool:
        self._roll()
        return self.used < self.limit

    def spend(self, tokens: int) -> None:
        self._roll()
        self.used += tokens


class ChatClient:
    def __init__(
        self, base_url: str, model: str, api_key: str | None = None, timeout_s: float = 30.0, retries: int = 4,
        backoff_s: float = 0.5, transport: httpx.BaseTransport | None = None,
    ) -> None:  # fmt: skip
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s, transport=transport)
        self.model, self.retries, self.backoff_s = model, retries, backoff_s

    def complete(self, prompt: str, model: str | None = None) -> Completion:
        body = {"model": model or self.model, "messages": [{"role": "user", "content": prompt}], "temperature": 0}
        problem = ""
        for attempt in range(1, self.retries + 2):
            delay = self.backoff_s * 2 ** (attempt - 1)
            try:
                response = self.http.post("/chat/completions", json=body)
            except httpx.TransportError as exc:  # timeouts, refused connections: retried
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return self._completion(response, attempt)
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code not in RETRYABLE:
                    raise JudgeCallError(problem)
                retry_after = response.headers.get("retry-after")
                if retry_after and retry_after.replace(".", "", 1).isdigit():
                    delay = min(float(retry_after), 60.0)
            if attempt <= self.retries:
                time.sleep(delay)
        raise JudgeCallError(f"gave up after {self.retries + 1} attempts: {problem}")

    @staticmethod
    def _completion(response: httpx.Response, attempts: int) -> Completion:
        try:
            data = response.json()
            text = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise JudgeCallError(f"not a chat completion: {response.text[:200]}") from exc
        usage = data.get("usage") or {}
        return Completion(str(text or ""), usage.get("prompt_tokens"), usage.get("completion_tokens"), attempts)

    def close(self) -> None:
        self.http.close()
