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

With `moe_experts > 0` every block's MLP is a mixture of SwiGLU experts in the OLMoE style
(OLMoE, Muennighoff et al. 2024): a linear router, softmax over all experts, the top-k experts
per token weighted by their (unrenormalised) router probabilities, dropless (every token is
processed by all k of its experts, no capacity limit), a load-balancing loss and a router
z-loss. With the default expert width (dense hidden / k) it has the dense model's active
parameters per token.
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


class MoE(nn.Module):
    """Dropless top-k mixture of SwiGLU experts (OLMoE).

    After each forward, `lb_loss` holds the load-balancing loss E * sum_i f_i * P_i (f_i: the
    fraction of routed slots that went to expert i, P_i: its mean router probability; 1.0 when
    perfectly balanced) and `z_loss` the router z-loss mean(logsumexp(router logits)^2).
    `load` holds f (detached), for tests and logs.
    """

    def __init__(self, d_model: int, hidden: int, n_experts: int, top_k: int):
        super().__init__()
        self.n_experts = n_experts
        self.top_k = top_k
        self.router = nn.Linear(d_model, n_experts, bias=False)
        self.w_gate = nn.Parameter(torch.empty(n_experts, d_model, hidden))
        self.w_up = nn.Parameter(torch.empty(n_experts, d_model, hidden))
        self.w_down = nn.Parameter(torch.empty(n_experts, hidden, d_model))
        for w in (self.w_gate, self.w_up, self.w_down):
            nn.init.normal_(w, 0.0, 0.02)
        self.lb_loss: torch.Tensor | None = None
        self.z_loss: torch.Tensor | None = None
        self.load: torch.Tensor | None = None

    def expert_params(self) -> int:
        return self.w_gate.numel() + self.w_up.numel() + self.w_down.numel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        n_tok, k, n_exp = x.shape[0], self.top_k, self.n_experts
        logits = self.router(x).float()  # routing decisions in float32, also under bf16
        probs = logits.softmax(dim=-1)
        weights, experts = probs.topk(k, dim=-1)  # (tokens, k)
        flat = experts.reshape(-1)
        counts = torch.bincount(flat, minlength=n_exp)
        load = counts.float() / max(n_tok * k, 1)
        self.load = load.detach()
        self.lb_loss = n_exp * (load * probs.mean(dim=0)).sum()
        self.z_loss = torch.logsumexp(logits, dim=-1).pow(2).mean()
        # Dropless dispatch: sort the (token, slot) assignments by expert, run each expert on
        # its contiguous group, scatter the weighted outputs back to their tokens.
        order = torch.argsort(flat, stable=True)
        token_of = order // k
        xs = x[token_of]
        outs = []
        start = 0
        for e, c in enumerate(counts.tolist()):
            if c:
                xe = xs[start : start + c]
                h = F.silu(xe @ self.w_gate[e]) * (xe @ self.w_up[e])
                outs.append(h @ self.w_down[e])
                start += c
        y = torch.cat(outs).float() * weights.reshape(-1)[order].unsqueeze(-1)
        out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
        out.index_add_(0, token_of, y)
        return out.reshape(shape).to(x.dtype)


class Block(nn.Module):
    def __init__(
        self,
        d_model: int,
        n_heads: int,
        hidden: int,
        eps: float,
        moe_experts: int = 0,
        moe_top_k: int = 2,
        moe_hidden: int = 0,
    ):
        super().__init__()
        self.attn = Attention(d_model, n_heads, eps)
        self.attn_norm = RMSNorm(d_model, eps)
        if moe_experts:
            self.mlp = MoE(d_model, moe_hidden or hidden // moe_top_k, moe_experts, moe_top_k)
        else:
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
        moe_experts: int = 0,
        moe_top_k: int = 2,
        moe_hidden: int = 0,
    ):
        super().__init__()
        self.vocab_size = vocab_size
        self.seq_len = seq_len
        self.embed = nn.Embedding(vocab_size, d_model)
        self.blocks = nn.ModuleList(
            Block(d_model, n_heads, mlp_hidden, norm_eps, moe_experts, moe_top_k, moe_hidden)
            for _ in range(n_layers)
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

    def moe_layers(self) -> list[MoE]:
        return [b.mlp for b in self.blocks if isinstance(b.mlp, MoE)]

    def moe_losses(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(load-balancing loss, router z-loss) of the last forward, summed over layers."""
        layers = self.moe_layers()
        if not layers:
            return None
        return sum(m.lb_loss for m in layers), sum(m.z_loss for m in layers)

    def matmul_params(self) -> int:
        """Weights used in a matrix multiply per token (all but the embedding lookup); for a
        mixture of experts, only the k experts a token is routed to count (active parameters)."""
        n = sum(p.numel() for name, p in self.named_parameters() if not name.startswith("embed."))
        if self.lm_head.weight is self.embed.weight:
            n += self.lm_head.weight.numel()  # shared, but still multiplied by every token
        for m in self.moe_layers():
            n -= m.expert_params() * (m.n_experts - m.top_k) // m.n_experts
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
