#!/usr/bin/env python3
"""The MR-Pretrain step of MODEL_SPEC.md in PyTorch, for a same-machine speed comparison
with `umd-mpirun bench step` (dev-only: nothing in the build or the tests needs Python).

Same shapes as umd's presets (vision pre-LN + QuickGELU, text post-LN + GELU, co-attention
fusion, MAE decoder, MLM head at the selected tokens, feature projections, ITM), dropout
0.1 in the text encoder and fusion, an EMA teacher forward without gradients, fused AdamW,
synthetic inputs, vocabulary 1000 — what `bench step` runs. Attention uses
scaled_dot_product_attention. Prints ms/step and samples/s after one warm-up step.

  python scripts/bench/pytorch_step.py --preset small --batch 16 --threads 1 [--bf16]
"""
import argparse, copy, math, time
import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {  # H, P, D, vision, text, fusion layers, heads, Dd, dec layers, dec heads, Dp, L
    "tiny": (32, 8, 64, 2, 2, 2, 4, 32, 1, 2, 32, 16),
    "small": (64, 8, 256, 4, 4, 2, 8, 128, 2, 4, 128, 32),
    "base": (288, 16, 768, 11, 12, 6, 12, 384, 4, 6, 384, 64),
}


class Attention(nn.Module):
    def __init__(self, d, heads, dropout=0.0):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.heads, self.p = heads, dropout
        self.out_drop = nn.Dropout(dropout)

    def forward(self, x, kv, mask=None):
        B, Lq, D = x.shape
        Lk = kv.shape[1]
        h = self.heads
        q = self.q(x).view(B, Lq, h, D // h).transpose(1, 2)
        k = self.k(kv).view(B, Lk, h, D // h).transpose(1, 2)
        v = self.v(kv).view(B, Lk, h, D // h).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.p if self.training else 0.0)
        return self.out_drop(self.o(y.transpose(1, 2).reshape(B, Lq, D)))


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class PreLNBlock(nn.Module):  # CLIP / MAE decoder
    def __init__(self, d, heads):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = Attention(d, heads)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), QuickGELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        y = self.ln1(x)
        x = x + self.attn(y, y)
        return x + self.mlp(self.ln2(x))


class PostLNLayer(nn.Module):  # RoBERTa
    def __init__(self, d, heads, p):
        super().__init__()
        self.attn = Attention(d, heads, p)
        self.ln_attn, self.ln_ffn = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(p))

    def forward(self, x, mask):
        x = self.ln_attn(x + self.attn(x, x, mask))
        return self.ln_ffn(x + self.ffn(x))


class CoLayer(nn.Module):  # one stream of a co-attention fusion layer
    def __init__(self, d, heads, p):
        super().__init__()
        self.self_attn, self.cross_attn = Attention(d, heads, p), Attention(d, heads, p)
        self.ln_self, self.ln_cross, self.ln_ffn = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(p))

    def forward(self, x, y, self_mask, cross_mask):
        x = self.ln_self(x + self.self_attn(x, x, self_mask))
        x = self.ln_cross(x + self.cross_attn(x, y, cross_mask))
        return self.ln_ffn(x + self.ffn(x))


class Encoders(nn.Module):
    """Vision encoder, text encoder and fusion (what the teacher copies)."""

    def __init__(self, H, P, D, nv, nt, nf, heads, V, Lmax, p):
        super().__init__()
        self.P, self.N = P, (H // P) ** 2
        self.patch = nn.Linear(3 * P * P, D, bias=False)
        self.cls = nn.Parameter(torch.randn(D) * 0.02)
        self.pos = nn.Parameter(torch.randn(1 + self.N, D) * 0.02)
        self.ln_pre, self.ln_post = nn.LayerNorm(D), nn.LayerNorm(D)
        self.vblocks = nn.ModuleList(PreLNBlock(D, heads) for _ in range(nv))
        self.word = nn.Embedding(V, D)
        self.tpos = nn.Parameter(torch.randn(Lmax + 2, D) * 0.02)
        self.ttype = nn.Parameter(torch.randn(1, D) * 0.02)
        self.ln_embed = nn.LayerNorm(D)
        self.emb_drop = nn.Dropout(p)
        self.tlayers = nn.ModuleList(PostLNLayer(D, heads, p) for _ in range(nt))
        self.text_proj, self.image_proj = nn.Linear(D, D), nn.Linear(D, D)
        self.ftype = nn.Parameter(torch.randn(2, D) * 0.02)
        self.ft = nn.ModuleList(CoLayer(D, heads, p) for _ in range(nf))
        self.fi = nn.ModuleList(CoLayer(D, heads, p) for _ in range(nf))

    def patches(self, px):  # [B, 3, H, H] -> [B, N, 3PP] in (channel, row, col) order
        B, C, H, _ = px.shape
        P = self.P
        return px.view(B, C, H // P, P, H // P, P).permute(0, 2, 4, 1, 3, 5).reshape(B, -1, C * P * P)

    def vision(self, px, keep=None):
        x = self.patch(self.patches(px)) + self.pos[1:]
        if keep is not None:
            x = torch.gather(x, 1, keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        cls = (self.cls + self.pos[0]).expand(x.shape[0], 1, -1)
        x = self.ln_pre(torch.cat([cls, x], 1))
        for b in self.vblocks:
            x = b(x)
        return self.ln_post(x)

    def text(self, ids, mask):
        L = ids.shape[1]
        x = self.emb_drop(self.ln_embed(self.word(ids) + self.tpos[2:L + 2] + self.ttype[0]))
        for layer in self.tlayers:
            x = layer(x, mask)
        return x

    def fuse(self, t, v, tmask):
        t = self.text_proj(t) + self.ftype[0]
        v = self.image_proj(v) + self.ftype[1]
        for lt, li in zip(self.ft, self.fi):
            t, v = lt(t, v, tmask, None), li(v, t, None, tmask)
        return t, v

    def forward(self, px, ids, mask, keep=None):
        return self.fuse(self.text(ids, mask), self.vision(px, keep), mask)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small", choices=PRESETS)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bf16", action="store_true",
                    help="bf16 autocast on the CPU (matrix products in bf16, fp32 master weights and optimizer), "
                         "what umd's --matmul bf16 is compared with")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    H, P, D, nv, nt, nf, heads, Dd, nd, hd, Dp, L = PRESETS[a.preset]
    V, B, p = 1000, a.batch, 0.1
    N, K, CPP = (H // P) ** 2, (H // P) ** 2 // 4, 3 * P * P
    enc = Encoders(H, P, D, nv, nt, nf, heads, V, 512 if a.preset == "base" else 128, p)
    heads_ = nn.ModuleDict(dict(
        mim_embed=nn.Linear(D, Dd), mim_blocks=nn.ModuleList(PreLNBlock(Dd, hd) for _ in range(nd)),
        mim_ln=nn.LayerNorm(Dd), mim_out=nn.Linear(Dd, CPP),
        mlm=nn.Sequential(nn.Linear(D, D), nn.GELU(), nn.LayerNorm(D), nn.Linear(D, V)),
        fea_text=nn.Linear(D, Dp), fea_image=nn.Linear(D, Dp), itm=nn.Linear(2 * D, 2),
        tpool=nn.Linear(D, D), ipool=nn.Linear(D, D)))
    mask_token = nn.Parameter(torch.zeros(Dd))
    sincos = torch.randn(1 + N, Dd)  # fixed table (its values do not change the work)
    teacher = copy.deepcopy(enc).eval().requires_grad_(False)
    tfea_t, tfea_i = copy.deepcopy(heads_["fea_text"]), copy.deepcopy(heads_["fea_image"])
    params = list(enc.parameters()) + list(heads_.parameters()) + [mask_token]
    opt = torch.optim.AdamW(params, lr=1e-5, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.01, fused=True)
    tparams = list(teacher.parameters()) + list(tfea_t.parameters()) + list(tfea_i.parameters())
    sparams = list(enc.parameters()) + list(heads_["fea_text"].parameters()) + list(heads_["fea_image"].parameters())

    px = torch.randn(B, 3, H, H)
    ids = torch.randint(4, V - 1, (B, L))
    lengths = torch.randint(3, L + 1, (B,))
    attn = torch.arange(L)[None] < lengths[:, None]
    ids = torch.where(attn, ids, torch.ones_like(ids))
    key_mask = torch.zeros(B, 1, 1, L).masked_fill(~attn[:, None, None, :], float("-inf"))
    selected = (torch.rand(B, L) < 0.15) & attn
    masked_ids = torch.where(selected, torch.full_like(ids, V - 1), ids)
    keep = torch.argsort(torch.rand(B, N), 1)[:, :K]
    itm_px = px[torch.randperm(B)]
    itm_labels = torch.randint(0, 2, (B,))

    def step():
        # Autocast covers the forward pass only (PyTorch's advice); backward follows its dtypes.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            loss = forward()
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()
        with torch.no_grad():
            torch._foreach_mul_(tparams, 0.995)
            torch._foreach_add_(tparams, sparams, alpha=0.005)
        return loss.item()

    def forward():
        enc.train()
        t1, v1 = enc(px, masked_ids, key_mask, keep)                       # student, masked
        with torch.no_grad():
            t2, v2 = teacher(px, ids, key_mask)                              # teacher, unmasked
            tt = tfea_t(t2)
            ti = tfea_i(torch.cat([v2[:, :1], torch.gather(v2[:, 1:], 1, keep.unsqueeze(-1).expand(-1, -1, D))], 1))
        t3, v3 = enc(itm_px, ids, key_mask)                                  # student, ITM pass
        cls = torch.cat([torch.tanh(heads_["tpool"](t3[:, 0])), torch.tanh(heads_["ipool"](v3[:, 0]))], 1)
        # MIM decoder over 1+N tokens
        e = heads_["mim_embed"](v1)
        full = mask_token.expand(B, N, Dd).to(e.dtype).clone()   # e is bf16 under autocast
        full.scatter_(1, keep.unsqueeze(-1).expand(-1, -1, Dd), e[:, 1:])
        x = torch.cat([e[:, :1], full], 1) + sincos
        for blk in heads_["mim_blocks"]:
            x = blk(x)
        pred = heads_["mim_out"](heads_["mim_ln"](x))[:, 1:]
        target = enc.patches(px)
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        masked = torch.ones(B, N, dtype=torch.bool)
        masked.scatter_(1, keep, False)
        l_mim = ((pred - target) ** 2).mean(-1)[masked].mean()
        l_mlm = F.cross_entropy(heads_["mlm"](t1[selected]), ids[selected])
        l_fmlm = ((heads_["fea_text"](t1) - tt) ** 2).mean(-1)[attn].mean()
        l_fmim = ((heads_["fea_image"](v1) - ti) ** 2).mean()
        l_itm = F.cross_entropy(heads_["itm"](cls), itm_labels)
        return 0.5 * (l_mim + l_mlm) + 0.5 * (l_fmim + l_fmlm) + l_itm

    step()
    start = time.perf_counter()
    for _ in range(a.steps):
        step()
    seconds = (time.perf_counter() - start) / a.steps
    print(f"pytorch {torch.__version__} MR-Pretrain step{' (bf16 autocast)' if a.bf16 else ''}, preset {a.preset}, "
          f"batch {B}, threads {a.threads}: "
          f"{seconds * 1000:.1f} ms/step, {B / seconds:.2f} samples/s")


if __name__ == "__main__":
    main()
