"""Baseline for the GPU check's step time: the same model, LoRA and batch in a bare PyTorch loop
(no Trainer, no callbacks, no data pipeline). python tests/gpu/bare_loop.py MODEL_FOLDER"""

from __future__ import annotations

import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

STEPS, WARMUP, BATCH, LENGTH = 30, 5, 8, 512


def main(model_folder: str) -> None:
    model = AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.bfloat16).to("cuda")
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    tokens = torch.randint(0, 1000, (BATCH, LENGTH), device="cuda")
    for step in range(STEPS):
        if step == WARMUP:
            torch.cuda.synchronize()
            started = time.perf_counter()
        loss = model(input_ids=tokens, labels=tokens).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    torch.cuda.synchronize()
    step_s = (time.perf_counter() - started) / (STEPS - WARMUP)
    print(f"bare loop: {step_s:.3f} s/step, {BATCH * LENGTH / step_s:,.0f} tokens/s, "
          f"peak {torch.cuda.max_memory_allocated() / 1e9:.1f} GB")


if __name__ == "__main__":
    main(sys.argv[1])
