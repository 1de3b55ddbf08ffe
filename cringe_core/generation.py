"""Generate completions for chat prompts: batched, with a KV cache, greedy or sampled.

Prompts go through the tokenizer's chat template with the generation prompt and are left
padded, so every row's next token comes right after its own prompt. `model.generate`
runs the loop with its KV cache.

Sampling is reproducible per completion, not only per batch: every (prompt, sample) row
draws its tokens from its own generator, seeded with a seed that the completion records.
Generating that prompt again alone with the recorded seed gives the same tokens, whatever
the batch it first ran in (up to float rounding, which can flip a draw that lands within
about 1e-6 of a boundary). To do this, sampling happens in a logits processor that draws
each row's token and leaves only that token possible, and `generate` then runs greedy.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from cringe_core.data.records import Message
from cringe_core.data.tokenize import end_of_turn_tokens, require_chat_template
from cringe_core.spec import GenerationSpec
from cringe_core.training.step import autocast_for

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Completion:
    prompt_index: int
    sample_index: int
    text: str
    token_ids: list[int]  # generated tokens, without the stop token and padding
    finished: bool  # stopped at an end-of-turn token rather than at max_new_tokens
    seed: int | None  # None for greedy decoding, which needs no seed

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


def sample_seed(seed: int, prompt_index: int, sample_index: int) -> int:
    """Derive the seed of one (prompt, sample) row from the job seed, as a 63-bit integer."""
    digest = hashlib.sha256(f"{seed}:{prompt_index}:{sample_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class SeededSampler(LogitsProcessor):
    """Draw each row's next token with its own generator; leave only that token finite.

    Applies temperature, then top-p (nucleus) filtering: the smallest set of tokens whose
    probabilities add up to at least `top_p` stays, the most likely token always. Each row
    draws one uniform number per step and inverts the cumulative distribution, so its
    tokens depend only on its own seed and logits.
    """

    def __init__(
        self, seeds: Sequence[int], temperature: float, top_p: float, device: torch.device
    ) -> None:
        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        logits = scores.float() / self.temperature  # (B, V)
        order: torch.Tensor | None = None
        if self.top_p < 1.0:
            logits, order = logits.sort(dim=-1, descending=True)  # (B, V), most likely first
            probs = logits.softmax(dim=-1)
            # A token is dropped when the tokens ranked above it already reach top_p.
            probs = probs * (probs.cumsum(dim=-1) - probs < self.top_p)
        else:
            probs = logits.softmax(dim=-1)

        cdf = probs.cumsum(dim=-1)  # (B, V)
        uniform = torch.cat(
            [torch.rand(1, generator=g, device=cdf.device) for g in self.generators]
        )  # (B,)
        targets = (uniform * cdf[:, -1]).unsqueeze(1)  # (B, 1)
        # Take the first position whose cumulative probability passes the target. A token
        # of zero probability adds nothing to the sum, so it is never the one found.
        drawn = torch.searchsorted(cdf, targets, right=True).clamp(max=cdf.shape[1] - 1)
        tokens = order.gather(1, drawn) if order is not None else drawn  # (B, 1)
        only_drawn = torch.full_like(scores, float("-inf"))
        return only_drawn.scatter(1, tokens, 0.0)  # type: ignore[return-value]


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Token ids that end a completion: the model's EOS ids and the chat end-of-turn token."""
    ids: set[int] = set()
    configured = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    for token in end_of_turn_tokens(tokenizer):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
            ids.add(token_id)
    return sorted(ids)


def encode_prompts(
    tokenizer: Any, prompts: Sequence[Sequence[Message]], max_prompt_length: int
) -> list[list[int]]:
    """Apply the chat template with the generation prompt; keep the last tokens of long ones."""
    require_chat_template(tokenizer)
    encoded = []
    cut = 0
    for prompt in prompts:
        ids = list(
            tokenizer.apply_chat_template(
                list(prompt), add_generation_prompt=True, tokenize=True, return_dict=False
            )
        )
        if len(ids) > max_prompt_length:
            ids = ids[-max_prompt_length:]
            cut += 1
        encoded.append(ids)
    if cut:
        logger.warning(
            "%d of %d prompts are longer than max_prompt_length = %d tokens; only their last "
            "tokens were kept",
            cut,
            len(prompts),
            max_prompt_length,
        )
    return encoded


def _left_pad(
    rows: Sequence[list[int]], pad_token_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
    for index, row in enumerate(rows):
        input_ids[index, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        attention_mask[index, width - len(row) :] = 1
    return input_ids.to(device), attention_mask.to(device)


def _generation_config(
    settings: GenerationSpec, pad_token_id: int, stop_ids: list[int]
) -> GenerationConfig:
    # Neutral values for every setting that also acts under greedy decoding, so that
    # penalties from the model's own generation_config do not leak into the completions.
    return GenerationConfig(
        max_new_tokens=settings.max_new_tokens,
        do_sample=False,
        num_beams=1,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        pad_token_id=pad_token_id,
        eos_token_id=stop_ids,
        use_cache=True,
    )


@torch.no_grad()
def generate_completions(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[Message]],
    settings: GenerationSpec,
    samples_per_prompt: int = 1,
    seed: int = 0,
    seeds: Sequence[int] | None = None,
    precision: str = "auto",
) -> list[Completion]:
    """Generate `samples_per_prompt` completions for every prompt.

    Returns them prompt by prompt, samples in order. Sampled rows use
    `sample_seed(seed, prompt, sample)`, or the given `seeds` (one per row, in the same
    order) to regenerate recorded completions.
    Raises ValueError for greedy decoding with several samples, which would repeat one
    completion, for a `seeds` list of the wrong length, and for a tokenizer without a pad
    token.
    """
    rows = [(p, s) for p in range(len(prompts)) for s in range(samples_per_prompt)]
    _check_request(tokenizer, settings, samples_per_prompt, len(rows), seeds)
    if not rows:
        return []

    row_seeds = list(seeds) if seeds is not None else [sample_seed(seed, p, s) for p, s in rows]
    prompt_ids = encode_prompts(tokenizer, prompts, settings.max_prompt_length)
    stop_ids = stop_token_ids(model, tokenizer)
    config = _generation_config(settings, tokenizer.pad_token_id, stop_ids)

    was_training = model.training
    model.eval()
    # Rows of similar prompt length share a batch, so little of each batch is padding.
    order = sorted(range(len(rows)), key=lambda i: len(prompt_ids[rows[i][0]]))
    completions: list[Completion | None] = [None] * len(rows)
    for start in range(0, len(order), settings.batch_size):
        batch_rows = order[start : start + settings.batch_size]
        batch_seeds = [row_seeds[i] for i in batch_rows] if settings.do_sample else None
        generated = _generate_batch(
            model,
            [prompt_ids[rows[i][0]] for i in batch_rows],
            batch_seeds,
            settings,
            config,
            precision,
        )
        for position, (index, tokens) in enumerate(zip(batch_rows, generated, strict=True)):
            row_seed = batch_seeds[position] if batch_seeds is not None else None
            completions[index] = _completion(tokenizer, rows[index], tokens, stop_ids, row_seed)
    model.train(was_training)
    return [completion for completion in completions if completion is not None]


def _check_request(
    tokenizer: Any,
    settings: GenerationSpec,
    samples_per_prompt: int,
    row_count: int,
    seeds: Sequence[int] | None,
) -> None:
    if samples_per_prompt < 1:
        raise ValueError(f"samples_per_prompt must be at least 1, got {samples_per_prompt}")
    if samples_per_prompt > 1 and not settings.do_sample:
        raise ValueError(
            f"samples_per_prompt = {samples_per_prompt} with greedy decoding would repeat the "
            "same completion; set do_sample: true, or samples_per_prompt to 1"
        )
    if seeds is not None and len(seeds) != row_count:
        raise ValueError(
            f"seeds has {len(seeds)} entries but there are {row_count} (prompt, sample) rows; "
            "pass one seed per row, prompt by prompt"
        )
    if tokenizer.pad_token_id is None:
        raise ValueError(
            "the tokenizer has no pad token, so prompts cannot be batched; set "
            "tokenizer.pad_token (load_tokenizer sets it to the EOS token)"
        )


def _generate_batch(
    model: Any,
    prompt_ids: Sequence[list[int]],
    seeds: list[int] | None,
    settings: GenerationSpec,
    config: GenerationConfig,
    precision: str,
) -> list[list[int]]:
    """Run `generate` on one left-padded batch; return each row's new tokens."""
    device = next(model.parameters()).device
    input_ids, attention_mask = _left_pad(prompt_ids, config.pad_token_id, device)
    processors = LogitsProcessorList()
    if seeds is not None:
        processors.append(SeededSampler(seeds, settings.temperature, settings.top_p, device))
    with autocast_for(precision, device):
        output = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            generation_config=config,
            logits_processor=processors,
        )
    return output[:, input_ids.shape[1] :].tolist()  # (B, new tokens)


def _completion(
    tokenizer: Any, row: tuple[int, int], tokens: list[int], stop_ids: list[int], seed: int | None
) -> Completion:
    stops = set(stop_ids)
    end = next((i for i, token in enumerate(tokens) if token in stops), None)
    kept = tokens if end is None else tokens[:end]
    return Completion(
        prompt_index=row[0],
        sample_index=row[1],
        text=tokenizer.decode(kept, skip_special_tokens=True),
        token_ids=kept,
        finished=end is not None,
        seed=seed,
    )
