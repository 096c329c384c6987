"""Caption backends: a local/hub `AutoModelForCausalLM` ("hf") and any OpenAI-compatible server
("openai": vLLM, TGI, ollama, ...). Both take prompts plus one seed per prompt and return one
raw completion per prompt; `generators.cleaning.clean` turns a completion into a caption or a drop reason.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from dataclasses import dataclass
from urllib.parse import urlsplit

import torch

from generators.cleaning import CleaningRules, clean

log = logging.getLogger(__name__)


class CaptionBackendError(RuntimeError):
    """The backend cannot work at all (model missing, server unreachable): the job must stop."""


@dataclass
class Completion:
    text: str
    finished: bool  # False when generation hit the token limit before the end of the caption
    error: str | None = None  # a drop reason when the request itself failed


def clean_caption(c: Completion, min_words: int, max_words: int) -> tuple[str | None, str | None]:
    """(caption, None) or (None, drop reason) with the default cleaning rules (generators/cleaning.py)."""
    r = clean(c.text, c.finished, CleaningRules(min_words=min_words, max_words=max_words), error=c.error)
    return r.caption, r.drop


class SeededSampler:
    """A logits processor that samples every row from its own generator (temperature, top-k,
    top-p applied first) and leaves only the chosen token: with greedy decoding around it, a
    row's caption depends on its seed, not on the batch it landed in."""

    def __init__(self, seeds: list[int], temperature: float, top_k: int, top_p: float) -> None:
        self.gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        logits = scores.float() / self.temperature
        if self.top_k > 0:
            kth = torch.topk(logits, min(self.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = logits.softmax(-1)
        if self.top_p < 1.0:
            sorted_p, order = probs.sort(dim=-1, descending=True)
            drop = sorted_p.cumsum(-1) - sorted_p > self.top_p
            probs = probs.scatter(1, order, sorted_p.masked_fill(drop, 0.0))
        choice = torch.stack([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, self.gens, strict=False)])
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, choice, 0.0)


class HFCaptioner:
    """Batched generation with left padding; the tokenizer's chat template when it has one."""

    def __init__(self, model: str, *, gguf_file: str | None = None, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0, max_new_tokens: int = 48, device: str | None = None) -> None:
        from generators.pretrained import load_causal_lm

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.model, self.tok = load_causal_lm(model, gguf_file, device=self.device, padding_side="left")
        except (OSError, ValueError, ImportError) as e:
            raise CaptionBackendError(f"cannot load caption model {model!r}: {e}") from e
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.chat = bool(getattr(self.tok, "chat_template", None))
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.max_new_tokens = max_new_tokens

    def _format(self, prompt: str) -> str:
        if self.chat:
            return self.tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                add_generation_prompt=True)
        return prompt

    @torch.inference_mode()
    def complete(self, prompts: list[str], seeds: list[int]) -> list[Completion]:
        from transformers import LogitsProcessorList

        batch = self.tok([self._format(p) for p in prompts], return_tensors="pt", padding=True,
                         add_special_tokens=not self.chat).to(self.device)
        kwargs = {}
        if self.temperature > 0:
            kwargs["logits_processor"] = LogitsProcessorList(
                [SeededSampler(seeds, self.temperature, self.top_k, self.top_p)])
        # A plain LM writes one caption per line; a chat model answers in a turn that may span lines
        # ("Here is a caption:\n\n...") and ends with its end-of-turn token: the cleaner reads the whole turn.
        out = self.model.generate(**batch, do_sample=False, max_new_tokens=self.max_new_tokens,
                                  stop_strings=None if self.chat else ["\n"], tokenizer=self.tok,
                                  pad_token_id=self.tok.pad_token_id,
                                  num_beams=1, temperature=None, top_p=None, top_k=None, **kwargs)
        new = out[:, batch.input_ids.shape[1]:]
        results = []
        for row in new:
            ids = row.tolist()
            text = self.tok.decode(ids, skip_special_tokens=True)
            ended = self.tok.eos_token_id in ids or (not self.chat and "\n" in text)
            real = [i for i in ids if i != self.tok.pad_token_id]
            results.append(Completion(text, finished=ended or len(real) < self.max_new_tokens))
        return results


class OpenAICaptioner:
    """Completions or chat requests to an OpenAI-compatible server, `concurrency` in flight,
    with timeouts and retries (exponential backoff with jitter)."""

    def __init__(self, endpoint: str, model: str, *, api: str = "completions", api_key_env: str | None = None,
                 temperature: float = 1.0, top_p: float = 1.0, max_new_tokens: int = 48, concurrency: int = 8,
                 timeout_s: float = 60.0, max_retries: int = 3, backoff_s: float = 0.5) -> None:
        self.endpoint, self.model, self.api = endpoint.rstrip("/"), model, api
        self._host = urlsplit(self.endpoint).netloc.rpartition("@")[2]  # what errors name (never userinfo or a body)
        key = os.environ.get(api_key_env, "") if api_key_env else ""
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.temperature, self.top_p, self.max_new_tokens = temperature, top_p, max_new_tokens
        self.concurrency, self.timeout_s, self.max_retries, self.backoff_s = concurrency, timeout_s, max_retries, backoff_s

    def _body(self, prompt: str, seed: int) -> dict:
        body = {"model": self.model, "max_tokens": self.max_new_tokens, "temperature": self.temperature,
                "top_p": self.top_p, "seed": seed, "n": 1}
        if self.api == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
            body["stop"] = ["\n"]
        return body

    def _parse(self, data) -> Completion:
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] if self.api == "chat" else choice["text"]
            if not isinstance(text, str):
                raise TypeError(type(text))
        except (KeyError, IndexError, TypeError):
            return Completion("", False, error="bad_response")
        return Completion(text, finished=choice.get("finish_reason") != "length")

    async def _one(self, client, sem: asyncio.Semaphore, prompt: str, seed: int) -> Completion:
        import httpx

        url = f"{self.endpoint}/{'chat/completions' if self.api == 'chat' else 'completions'}"
        async with sem:
            for attempt in range(self.max_retries + 1):
                try:
                    r = await client.post(url, json=self._body(prompt, seed), headers=self.headers)
                    if r.status_code < 500 and r.status_code != 429:
                        if r.status_code >= 400:  # status and host only: the job's error is shown to every key
                            raise CaptionBackendError(f"the caption server at {self._host} refused the request: "
                                                      f"HTTP {r.status_code}")
                        try:
                            return self._parse(r.json())
                        except ValueError:
                            return Completion("", False, error="bad_response")
                    last = f"HTTP {r.status_code}"
                except httpx.ConnectError:
                    raise CaptionBackendError(f"cannot reach the caption server at {self._host}") from None
                except httpx.TimeoutException:
                    last = "timeout"
                if attempt < self.max_retries:
                    await asyncio.sleep(self.backoff_s * 2 ** attempt * (0.5 + random.random()))
            log.warning("request failed after %d retries (%s)", self.max_retries, last)
            return Completion("", False, error="request_failed")

    async def _all(self, prompts: list[str], seeds: list[int]) -> list[Completion]:
        import httpx

        sem = asyncio.Semaphore(self.concurrency)
        timeout = httpx.Timeout(self.timeout_s, connect=min(10.0, self.timeout_s))
        async with httpx.AsyncClient(timeout=timeout) as client:
            return await asyncio.gather(*(self._one(client, sem, p, s) for p, s in zip(prompts, seeds, strict=False)))

    def complete(self, prompts: list[str], seeds: list[int]) -> list[Completion]:
        return asyncio.run(self._all(prompts, seeds))


def make_captioner(captions) -> HFCaptioner | OpenAICaptioner:
    """The backend a spec's `captions` section asks for."""
    s = captions.sampling
    if captions.backend == "hf":
        return HFCaptioner(captions.model, gguf_file=getattr(captions, "gguf_file", None), temperature=s.temperature,
                           top_k=s.top_k, top_p=s.top_p, max_new_tokens=s.max_new_tokens)
    if captions.backend == "openai":
        return OpenAICaptioner(captions.endpoint, captions.model, api=captions.api, api_key_env=captions.api_key_env,
                               temperature=s.temperature, top_p=s.top_p, max_new_tokens=s.max_new_tokens,
                               concurrency=captions.concurrency, timeout_s=captions.timeout_s,
                               max_retries=captions.max_retries)
    raise ValueError(f"unknown caption backend {captions.backend!r}; expected hf or openai")
