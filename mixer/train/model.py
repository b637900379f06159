"""A small decoder-only transformer in the OLMo 2 style, in one file.

What makes it OLMo 2 (the OLMo 2 report, "2 OLMo 2 Furious", Team OLMo 2024):
- RMSNorm everywhere, no biases anywhere.
- QK-norm: RMSNorm on the query and key projections (over the full width, before the split
  into heads), which keeps attention logits from growing.
- Reordered norm: the block normalises the *output* of attention and of the MLP before adding
  it to the residual stream, `h = x + norm(attn(x)); out = h + norm(mlp(h))`, instead of the
  usual pre-norm `x + attn(norm(x))`.
- Rotary position embeddings (RoPE, base 500,000) and a SwiGLU MLP.
- z-loss: a small penalty on (log Z)^2, the squared log-partition of the output softmax.
- Untied input/output embeddings by default, as in OLMo 2 (`tie_embeddings: true` shares them,
  which halves the embedding parameters of a tiny CPU model).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in float32 even under bf16 autocast: the mean of squares is precision-hungry.
        return F.rms_norm(x.float(), (x.shape[-1],), self.weight.float(), self.eps).to(x.dtype)


def rope_tables(head_dim: int, seq_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float64), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)  # (seq, head_dim), "rotate half" layout
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (batch, heads, seq, head_dim). Rotates pairs (i, i + head_dim/2)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, eps: float):
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.wq = nn.Linear(d_model, d_model, bias=False)
        self.wk = nn.Linear(d_model, d_model, bias=False)
        self.wv = nn.Linear(d_model, d_model, bias=False)
        self.wo = nn.Linear(d_model, d_model, bias=False)
        self.q_norm = RMSNorm(d_model, eps)
        self.k_norm = RMSNorm(d_model, eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q = self.q_norm(self.wq(x))
        k = self.k_norm(self.wk(x))
        v = self.wv(x)
        q, k, v = (z.view(b, t, self.n_heads, self.head_dim).transpose(1, 2) for z in (q, k, v))
        q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.wo(y.transpose(1, 2).reshape(b, t, d))


class SwiGLU(nn.Module):
    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.w_gate = nn.Linear(d_model, hidden, bias=False)
        self.w_up = nn.Linear(d_model, hidden, bias=False)
        self.w_down = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, hidden: int, eps: float):
        super().__init__()
        self.attn = Attention(d_model, n_heads, eps)
        self.attn_norm = RMSNorm(d_model, eps)
        self.mlp = SwiGLU(d_model, hidden)
        self.mlp_norm = RMSNorm(d_model, eps)

    def forward(self, x, cos, sin):
        # OLMo 2's reordered norm: normalise each sublayer's output, then add it.
        h = x + self.attn_norm(self.attn(x, cos, sin))
        return h + self.mlp_norm(self.mlp(h))


class Transformer(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        n_layers: int,
        n_heads: int,
        mlp_hidden: int,
        seq_len: int,
        tie_embeddings: bool = False,
        rope_theta: float = 500_000.0,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        self.vocab_size = vocab_size
        self.seq_len = seq_len
        self.embed = nn.Embedding(vocab_size, d_model)
        self.blocks = nn.ModuleList(
            Block(d_model, n_heads, mlp_hidden, norm_eps) for _ in range(n_layers)
        )
        self.final_norm = RMSNorm(d_model, norm_eps)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        if tie_embeddings:
            self.lm_head.weight = self.embed.weight
        cos, sin = rope_tables(d_model // n_heads, seq_len, rope_theta)
        # Not in the state dict: derived from the config, so checkpoints hold only weights.
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    @classmethod
    def from_config(cls, model_cfg: dict) -> Transformer:
        return cls(**model_cfg)

    def init_weights(self, std: float, generator: torch.Generator) -> None:
        """OLMo 2's init: every weight matrix N(0, std) truncated at 3 std; norms at 1."""
        for p_name, p in self.named_parameters():
            if p_name.endswith("norm.weight"):
                nn.init.ones_(p)
            else:
                with torch.no_grad():
                    nn.init.trunc_normal_(p, 0.0, std, -3 * std, 3 * std, generator=generator)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        cos, sin = self.rope_cos[:t], self.rope_sin[:t]
        x = self.embed(idx)
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.lm_head(self.final_norm(x))

    def matmul_params(self) -> int:
        """Weights used in a matrix multiply per token (all but the embedding lookup)."""
        n = sum(p.numel() for name, p in self.named_parameters() if not name.startswith("embed."))
        if self.lm_head.weight is self.embed.weight:
            n += self.lm_head.weight.numel()  # shared, but still multiplied by every token
        return n

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6 N for the matmuls plus the attention scores (PaLM, app. B)."""
        n_layers = len(self.blocks)
        d_model = self.embed.embedding_dim
        return 6.0 * self.matmul_params() + 12.0 * n_layers * d_model * self.seq_len


def loss_terms(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy, z-loss) means over every position, computed in float32.

    One log-sum-exp serves both terms: ce = logZ - logit[label], z = logZ^2 (a second softmax
    pass over the (tokens x vocab) logits would cost as much as the output layer's matmul).
    """
    logits = logits.float().view(-1, logits.shape[-1])
    labels = labels.reshape(-1, 1)
    log_z = torch.logsumexp(logits, dim=-1)
    ce = (log_z - logits.gather(1, labels).squeeze(1)).mean()
    return ce, log_z.pow(2).mean()


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def uniform_loss(vocab_size: int) -> float:
    return math.log(vocab_size)
