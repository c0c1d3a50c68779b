"""tools/demo/train.py: trains the demo ERNIE-4.5 MoE from scratch (runs on the GPU machine).

    PYTHONUNBUFFERED=1 python3 tools/demo/train.py --out /tmp/ckpt            # the committed checkpoint's recipe
    PYTHONUNBUFFERED=1 python3 tools/demo/train.py --steps 0 --minutes 5 ...   # schedule fitted to a time limit

Reads tools/demo/data (made by prepare.sh), trains Hugging Face transformers' Ernie4_5_MoeForCausalLM for a fixed
number of steps (or time), and writes a checkpoint in the hub -PT layout (spec section 3): config.json,
generation_config.json, model.safetensors (bf16; router weight and correction bias fp32), the tokenizer files,
ppl_ref.json (a perplexity reference computed by transformers in fp32, see write_ppl_ref) and
train_summary.json. Then it reloads the checkpoint, checks that no key is missing or unexpected, and prints
greedy samples.

Model: hidden 256, 4 layers (layer 0 dense, 768 wide; layers 1-3 MoE: 8 experts of 256, top-2, one shared
expert), 4 query heads and 2 KV heads of 64, tied embeddings, vocabulary = tokenizer size rounded up to 64.
Every matrix input dimension is a multiple of 64. About 7.7 M parameters, 15.5 MB in bf16.

The aux-free correction bias (moe_statics.e_score_correction_bias) is no gradient parameter in transformers; it
is trained here the way aux-loss-free balancing does it: after each step every expert's bias moves by
--bias-rate times its relative load error (bias down when the expert got more than an even share of the
tokens, up when fewer), and the biases are kept centred on zero. Selection uses softmax(logits) + bias, as in
transformers' forward.
"""
import argparse
import json
import math
import os
import random
import re
import shutil
import sys
import time

import numpy as np
import sentencepiece as spm
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
BOS, EOS = "<|begin_of_sentence|>", "<|end_of_sentence|>"
TOKENIZER_FILES = ["tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"]
# ERNIE-4.5's generation_config.json (spec section 5).
GENERATION_CONFIG = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "do_sample": True,
                     "temperature": 0.8, "top_p": 0.8, "repetition_penalty": 1.0, "frequency_penalty": 0.0,
                     "presence_penalty": 0.0}


def log(*a):
    print(*a, flush=True)


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=os.path.join(HERE, "data"))
    p.add_argument("--out", default=os.path.join(HERE, "checkpoint"))
    p.add_argument("--minutes", type=float, default=5.0,
                   help="with --steps 0: training time, the cosine schedule is fitted to it; otherwise a safety cap")
    # 505 steps of 128 x 256 tokens (about 6 passes over the data) made the committed checkpoint; 3649 steps
    # (4.5 minutes on an H100) overfit badly: train NLL 0.24, held-out 6.89 (tools/demo/logs/).
    p.add_argument("--steps", type=int, default=505, help="fixed number of steps (0: fit to --minutes)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--min-lr-frac", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--chat-frac", type=float, default=0.35, help="share of each batch's rows from chat examples")
    p.add_argument("--bias-rate", type=float, default=1e-3, help="correction-bias update per step")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--ppl-windows", type=int, default=20)
    p.add_argument("--log-every", type=int, default=100)
    return p.parse_args()


# ---------------------------------------------------------------------------------------------------- data

def encode_chat(sp, text, split):
    """Token ids of one rendered chat. With split, each 'Assistant: ' prompt is encoded apart from the answer
    that follows, as at inference (the prompt then ends in a lone '▁' piece and the answer starts without one)."""
    if not split:
        return sp.encode(text)
    parts = text.split("Assistant: ")
    ids = []
    for i, part in enumerate(parts):
        ids += sp.encode(part + ("Assistant: " if i < len(parts) - 1 else ""))
    return ids


def load_data(args, sp, rng):
    t0 = time.time()
    train = sp.encode(open(os.path.join(args.data, "train.txt"), encoding="utf-8").read())
    held = sp.encode(open(os.path.join(args.data, "heldout.txt"), encoding="utf-8").read())
    chats = [json.loads(l)["text"] for l in open(os.path.join(args.data, "chat_train.jsonl"), encoding="utf-8")]
    chat_ids = []
    for c in chats:
        chat_ids += encode_chat(sp, c, rng.random() < 0.5)
    log(f"data: train {len(train)} tokens, held-out {len(held)}, chat {len(chats)} examples {len(chat_ids)} "
        f"tokens ({time.time() - t0:.1f}s)")
    return (torch.tensor(train, dtype=torch.long), torch.tensor(held, dtype=torch.long),
            torch.tensor(chat_ids, dtype=torch.long))


def sample_rows(stream, n, length, gen):
    off = torch.randint(0, len(stream) - length, (n,), generator=gen)
    return stream[off[:, None] + torch.arange(length)[None, :]]


# ---------------------------------------------------------------------------------------------------- model

def make_config(vocab):
    from transformers import Ernie4_5_MoeConfig
    cfg = Ernie4_5_MoeConfig(
        vocab_size=vocab, hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=64, max_position_embeddings=4096, rope_theta=500000.0, rms_norm_eps=1e-5,
        use_bias=False, tie_word_embeddings=True, hidden_act="silu", moe_num_experts=8, moe_k=2,
        moe_intermediate_size=256, moe_num_shared_experts=1, moe_layer_start_index=1, moe_layer_end_index=3,
        moe_layer_interval=1, moe_norm_min=1e-12, moe_use_aux_free=True, router_aux_loss_coef=0.0,
        output_router_logits=False, pad_token_id=0, bos_token_id=1, eos_token_id=2, use_cache=True)
    return cfg


def rope_theta_of(cfg):
    t = getattr(cfg, "rope_theta", None)
    rp = getattr(cfg, "rope_parameters", None) or {}
    return t if t is not None else rp.get("rope_theta")


class Balancer:
    """Aux-loss-free load balancing: counts each MoE layer's expert choices (softmax + bias, top-k, as the
    model routes) from the block's input, and after each step moves the correction bias against the load
    error. The extra router product is tiny next to the layer."""

    def __init__(self, model, k, rate):
        self.k, self.rate, self.layers = k, rate, []
        for i, layer in enumerate(model.model.layers):
            named = dict(layer.mlp.named_parameters())
            bias = [p for n, p in named.items() if n.endswith("e_score_correction_bias")]
            if not bias:
                continue
            rec = {"layer": i, "wg": named["gate.weight"], "bias": bias[0],
                   "counts": torch.zeros(bias[0].numel(), device=bias[0].device),
                   "total": torch.zeros(bias[0].numel(), device=bias[0].device)}
            layer.mlp.register_forward_pre_hook(self._hook(rec), with_kwargs=True)
            self.layers.append(rec)

    def _hook(self, rec):
        def hook(mod, args, kwargs):
            if not mod.training:
                return
            x = args[0] if args else kwargs["hidden_states"]
            with torch.no_grad(), torch.autocast("cuda", enabled=False):
                p = F.linear(x.detach().reshape(-1, x.shape[-1]).float(), rec["wg"].float()).softmax(-1)
                sel = torch.topk(p + rec["bias"].view(1, -1), self.k, dim=-1).indices
                rec["counts"] += torch.bincount(sel.flatten(), minlength=rec["counts"].numel()).float()
        return hook

    @torch.no_grad()
    def step(self):
        for rec in self.layers:
            c = rec["counts"]
            err = c / c.sum().clamp(min=1) * c.numel() - 1  # load relative to an even share
            b = rec["bias"].view(-1)
            b.sub_(self.rate * err)
            b.sub_(b.mean())  # only differences between experts matter to top-k; keep the values centred
            rec["total"] += c
            c.zero_()

    def report(self, reset=True):
        out = []
        for rec in self.layers:
            t = rec["total"]
            share = (t / t.sum().clamp(min=1)).tolist()
            out.append(f"L{rec['layer']} load " + " ".join(f"{s:.3f}" for s in share) +
                       " | bias " + " ".join(f"{b:+.4f}" for b in rec["bias"].flatten().tolist()))
            if reset:
                t.zero_()
        return out


@torch.no_grad()
def eval_windows(model, stream, window, batch, autocast=True, limit=None):
    """Mean next-token NLL over non-overlapping windows of `window` tokens (window-1 predictions each)."""
    n = len(stream) // window if limit is None else min(limit, len(stream) // window)
    rows = stream[: n * window].view(n, window)
    tot, cnt = 0.0, 0
    for i in range(0, n, batch):
        x = rows[i:i + batch].cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            logits = model(input_ids=x).logits
        nll = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1),
                              reduction="sum")
        tot += nll.item()
        cnt += x[:, 1:].numel()
    return tot / cnt


# ---------------------------------------------------------------------------------------------------- saving

def hub_layout(sd, cfg):
    """State dict as transformers saved it -> hub -PT names (spec section 3). transformers 5 keeps the experts
    of a layer fused ([E, 2I, H] gate rows first, and [E, H, I]) and the bias under the router; the hub files
    have one tensor per expert and `mlp.moe_statics.e_score_correction_bias`."""
    I, H = cfg.moe_intermediate_size, cfg.hidden_size
    out = {}
    for name, t in sd.items():
        m = re.match(r"^(model\.layers\.\d+\.mlp)\.experts\.(gate_up_proj|down_proj)$", name)
        if m:
            pre, kind = m.groups()
            for e in range(t.shape[0]):
                w = t[e]
                if kind == "gate_up_proj":
                    if w.shape == (H, 2 * I):
                        w = w.t()
                    assert w.shape == (2 * I, H), (name, tuple(t.shape))
                    out[f"{pre}.experts.{e}.gate_proj.weight"] = w[:I].contiguous().clone()
                    out[f"{pre}.experts.{e}.up_proj.weight"] = w[I:].contiguous().clone()
                else:
                    if w.shape == (I, H) and I != H:
                        w = w.t()
                    assert w.shape == (H, I), (name, tuple(t.shape))
                    out[f"{pre}.experts.{e}.down_proj.weight"] = w.contiguous().clone()
            continue
        name = name.replace(".mlp.gate.moe_statics.", ".mlp.moe_statics.")
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        out[name] = t.contiguous()
    return out


def expected_tensors(cfg):
    H, V, I, MI = cfg.hidden_size, cfg.vocab_size, cfg.intermediate_size, cfg.moe_intermediate_size
    nq, nkv, d, E = cfg.num_attention_heads, cfg.num_key_value_heads, 64, cfg.moe_num_experts
    bf, f32 = torch.bfloat16, torch.float32
    ex = {"model.embed_tokens.weight": ((V, H), bf), "model.norm.weight": ((H,), bf)}
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}"
        ex[f"{p}.input_layernorm.weight"] = ((H,), bf)
        ex[f"{p}.post_attention_layernorm.weight"] = ((H,), bf)
        ex[f"{p}.self_attn.q_proj.weight"] = ((nq * d, H), bf)
        ex[f"{p}.self_attn.k_proj.weight"] = ((nkv * d, H), bf)
        ex[f"{p}.self_attn.v_proj.weight"] = ((nkv * d, H), bf)
        ex[f"{p}.self_attn.o_proj.weight"] = ((H, nq * d), bf)
        moe = (i + 1) % cfg.moe_layer_interval == 0 and cfg.moe_layer_start_index <= i <= cfg.moe_layer_end_index
        if not moe:
            ex[f"{p}.mlp.gate_proj.weight"] = ((I, H), bf)
            ex[f"{p}.mlp.up_proj.weight"] = ((I, H), bf)
            ex[f"{p}.mlp.down_proj.weight"] = ((H, I), bf)
            continue
        ex[f"{p}.mlp.gate.weight"] = ((E, H), f32)
        ex[f"{p}.mlp.moe_statics.e_score_correction_bias"] = ((1, E), f32)
        for e in range(E):
            ex[f"{p}.mlp.experts.{e}.gate_proj.weight"] = ((MI, H), bf)
            ex[f"{p}.mlp.experts.{e}.up_proj.weight"] = ((MI, H), bf)
            ex[f"{p}.mlp.experts.{e}.down_proj.weight"] = ((H, MI), bf)
        S = MI * cfg.moe_num_shared_experts
        ex[f"{p}.mlp.shared_experts.gate_proj.weight"] = ((S, H), bf)
        ex[f"{p}.mlp.shared_experts.up_proj.weight"] = ((S, H), bf)
        ex[f"{p}.mlp.shared_experts.down_proj.weight"] = ((H, S), bf)
    return ex


def save_checkpoint(model, cfg, args):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    out = args.out
    os.makedirs(out, exist_ok=True)
    model.eval()
    keep = {n: p.detach().clone() for n, p in model.named_parameters()
            if n.endswith("mlp.gate.weight") or "moe_statics" in n}
    model.to(torch.bfloat16)
    params = dict(model.named_parameters())
    for n, t in keep.items():  # router and bias stay fp32, with their fp32 values
        params[n].data = t
    model.save_pretrained(out)
    path = os.path.join(out, "model.safetensors")
    with safe_open(path, "pt") as f:
        saved = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
    expect = expected_tensors(cfg)
    log(f"save: save_pretrained wrote {len(saved)} tensors, files {sorted(os.listdir(out))}")
    if set(saved) != set(expect):
        odd = sorted(set(saved) - set(expect))
        log(f"save: names differ from the hub layout (e.g. {odd[:4]}): rewriting model.safetensors in hub layout")
        sd = hub_layout(load_file(path), cfg)
        os.remove(path)
        for extra in os.listdir(out):  # a sharded save leaves an index
            if extra.startswith("model.safetensors.index"):
                os.remove(os.path.join(out, extra))
        save_file(sd, path, metadata={"format": "pt"})
    else:
        log("save: save_pretrained already wrote the hub layout")
    with safe_open(path, "pt") as f:
        final = {k: f.get_tensor(k) for k in f.keys()}
    bad = [k for k in expect if k not in final or tuple(final[k].shape) != expect[k][0] or final[k].dtype != expect[k][1]]
    extra = [k for k in final if k not in expect]
    assert not bad and not extra, f"layout check failed: wrong {bad[:5]} extra {extra[:5]}"
    log(f"save: model.safetensors {os.path.getsize(path)} bytes, {len(final)} tensors, "
        f"{sum(t.numel() for t in final.values())} parameters; layout matches spec section 3")
    for k in sorted(final):
        if re.match(r"^model\.layers\.[01]\.|^model\.(embed|norm)", k) and ".experts." not in k or \
                re.match(r"^model\.layers\.1\.mlp\.experts\.0\.", k):
            log(f"  {k} {list(final[k].shape)} {str(final[k].dtype).replace('torch.', '')}")

    # config.json: make sure the keys of spec section 1 are there as the hub writes them.
    cpath = os.path.join(out, "config.json")
    c = json.load(open(cpath))
    c["architectures"] = ["Ernie4_5_MoeForCausalLM"]
    c["rope_theta"] = 500000.0
    c["moe_use_aux_free"] = True
    c["head_dim"] = 64
    c["torch_dtype"] = "bfloat16"
    if "dtype" in c:
        c["dtype"] = "bfloat16"
    json.dump(c, open(cpath, "w"), indent=2, sort_keys=True)
    json.dump(GENERATION_CONFIG, open(os.path.join(out, "generation_config.json"), "w"), indent=2)
    for f in TOKENIZER_FILES:
        shutil.copy(os.path.join(args.data, f), os.path.join(out, f))
    log("config.json: " + json.dumps(c, sort_keys=True))
    return final


# ---------------------------------------------------------------------------------------------------- checks

def write_ppl_ref(args, held, sp):
    """ppl_ref.json: windows i = 0..N-1 are held-out ids [256 i, 256 i + 256) of SentencePiece's encoding of the
    whole heldout.txt as plain text (no special-token parsing, nothing prepended); each window is run on its own
    from position 0 by transformers in fp32 (eager attention, TF32 off), and its NLL is the mean over its 255
    next-token predictions. mean_nll is the mean over all N*255 predictions; perplexity = exp(mean_nll)."""
    from transformers import Ernie4_5_MoeForCausalLM
    import transformers
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    m = Ernie4_5_MoeForCausalLM.from_pretrained(args.out, dtype=torch.float32, attn_implementation="eager").cuda()
    m.eval()
    W, N = args.seq, args.ppl_windows
    wins, nlls = [], []
    with torch.no_grad():
        for i in range(N):
            x = held[i * W:(i + 1) * W].cuda()[None]
            logits = m(input_ids=x).logits.float()
            nll = F.cross_entropy(logits[0, :-1], x[0, 1:], reduction="none")
            wins.append(x[0].tolist())
            nlls.append(nll.mean().item())
            if i == 0:
                first = {"positions": [0, 1, W - 1],
                         "logits": [[round(v, 6) for v in logits[0, p].tolist()] for p in (0, 1, W - 1)]}
    mean = float(np.mean(nlls))
    ref = {"what": write_ppl_ref.__doc__.strip(), "text_file": "tools/demo/data/heldout.txt",
           "tokenizer": "tokenizer.model", "window": W, "n_windows": N, "mean_nll": mean,
           "perplexity": math.exp(mean), "window_mean_nll": nlls, "windows": wins, "window0_logits": first,
           "dtype": "float32", "attn_implementation": "eager", "transformers": transformers.__version__,
           "torch": torch.__version__, "device": torch.cuda.get_device_name()}
    json.dump(ref, open(os.path.join(args.out, "ppl_ref.json"), "w"))
    log(f"ppl_ref: fp32 transformers over {N} held-out windows of {W}: mean NLL {mean:.4f}, "
        f"perplexity {math.exp(mean):.3f}")
    del m


def check_tokenizer(args, sp):
    try:
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(args.out)
        tests = ["This is a test", "  two  spaces\tand 12345\n", "床前明月光，疑是地上霜。", "Hello <mask:1> x",
                 BOS + "User: Hi\nAssistant: Hello" + EOS]
        for s in tests:
            a, b = tok.encode(s, add_special_tokens=False), sp.encode(s)
            log(f"tokenizer: {'same' if a == b else 'DIFFERENT'} ids for {s!r}" + ("" if a == b else f": hf {a} spm {b}"))
        msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}]
        r = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        log(f"tokenizer: {type(tok).__name__}, len {len(tok)}, chat template renders {r!r} "
            f"({'as spec section 4' if r == BOS + 'S' + chr(10) + 'User: Hi' + chr(10) + 'Assistant: ' else 'UNEXPECTED'})")
    except Exception as e:  # report, never fail the run over the HF tokenizer
        log(f"tokenizer: AutoTokenizer failed: {type(e).__name__}: {e}")


def reload_and_sample(args, sp, held, trained_eval):
    from transformers import Ernie4_5_MoeForCausalLM
    m, info = Ernie4_5_MoeForCausalLM.from_pretrained(args.out, dtype=torch.bfloat16, output_loading_info=True)
    m = m.cuda().eval()
    info = {k: (sorted(v) if isinstance(v, (set, list)) else v) for k, v in info.items()}
    log(f"reload: loading info {info}")
    assert not info.get("missing_keys") and not info.get("unexpected_keys") and not info.get("mismatched_keys"), info
    r = m.model.layers[1].mlp
    named = dict(r.named_parameters())
    log(f"reload: router dtype {named['gate.weight'].dtype}, bias dtype "
        f"{[p.dtype for n, p in named.items() if 'e_score_correction_bias' in n]}")
    nll = eval_windows(m, held, args.seq, 64, autocast=False)
    log(f"reload: held-out NLL of the reloaded bf16 model {nll:.4f} (trained model under autocast {trained_eval:.4f})")
    eog = [2, sp.piece_to_id(EOS), sp.piece_to_id(BOS)]
    prompts = [("chat", BOS + "User: Tell me a fortune.\nAssistant: "),
               ("chat", BOS + "User: Quote Genesis 1:3\nAssistant: "),
               ("chat", BOS + "User: 背诵李白的《静夜思》。\nAssistant: "),
               ("chat", BOS + "User: Who are you?\nAssistant: "),
               ("plain", "In the beginning"), ("plain", "The meaning of life is"), ("plain", "床前明月光，")]
    samples = []
    for kind, p in prompts:
        ids = sp.encode(p)
        out = m.generate(torch.tensor([ids]).cuda(), max_new_tokens=60, do_sample=False, eos_token_id=eog,
                         pad_token_id=0)
        text = sp.decode(out[0, len(ids):].tolist())
        samples.append({"kind": kind, "prompt": p, "greedy": text})
        log(f"sample ({kind}) {p!r} -> {text!r}")
    return samples


# ---------------------------------------------------------------------------------------------------- main

def main():
    args = parse_args()
    import transformers
    from transformers import Ernie4_5_MoeForCausalLM
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    log(f"train: transformers {transformers.__version__}, torch {torch.__version__}, "
        f"{torch.cuda.get_device_name()}; args {vars(args)}")

    sp = spm.SentencePieceProcessor(model_file=os.path.join(args.data, "tokenizer.model"))
    n_added = len(json.load(open(os.path.join(args.data, "added_tokens.json"))))
    vocab = (sp.get_piece_size() + n_added + 63) // 64 * 64
    train, held, chat = load_data(args, sp, rng)

    cfg = make_config(vocab)
    assert rope_theta_of(cfg) == 500000.0, rope_theta_of(cfg)
    model = Ernie4_5_MoeForCausalLM(cfg)
    for n, p in model.named_parameters():  # the router starts at zero in some versions: give it a start
        if n.endswith("mlp.gate.weight") and p.abs().max() == 0:
            torch.nn.init.normal_(p, std=cfg.initializer_range)
    model = model.cuda().train()
    nparams = sum(p.numel() for p in model.parameters())
    log(f"model: {nparams} parameters, vocab {vocab} (tokenizer {sp.get_piece_size()} pieces + {n_added} added), "
        f"attn {model.config._attn_implementation}, rope_theta {rope_theta_of(cfg)}")
    log("model: " + " ".join(f"L{i}:{type(l.mlp).__name__}" for i, l in enumerate(model.model.layers)))
    balancer = Balancer(model, cfg.moe_k, args.bias_rate)
    assert len(balancer.layers) == 3, "expected three MoE layers with a correction bias"

    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() >= 2 and "embed" not in n]
    other = [p for n, p in model.named_parameters() if p.requires_grad and not (p.dim() >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": other, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95), fused=True)

    B, T = args.batch, args.seq
    n_chat = int(round(B * args.chat_frac))
    total = args.steps or None
    budget = args.minutes * 60
    t_start = time.time()
    step, run_loss, run_n = 0, 0.0, 0
    history = []
    while True:
        if total is not None and step >= total:
            break
        if total is None and step == args.warmup + 20:
            # fit the schedule to the time limit from the measured speed
            per = (time.time() - t_calib) / 20
            total = max(step + 1, int(step + (budget - (time.time() - t_start)) / per))
            log(f"schedule: {per * 1000:.1f} ms/step -> {total} steps in {args.minutes} min")
        if step == args.warmup:
            t_calib = time.time()
        if time.time() - t_start > budget * 1.1:
            log("time limit reached before the planned steps")
            break
        sched_total = total or 10 ** 9
        if step < args.warmup:
            lr = args.lr * (step + 1) / args.warmup
        else:
            prog = min(1.0, (step - args.warmup) / max(1, sched_total - args.warmup))
            lr = args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * prog)))
        for g in opt.param_groups:
            g["lr"] = lr
        rows = torch.cat([sample_rows(train, B - n_chat, T + 1, gen), sample_rows(chat, n_chat, T + 1, gen)]).cuda()
        x, y = rows[:, :-1], rows[:, 1:]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(input_ids=x).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        balancer.step()
        step += 1
        run_loss += loss.item() if step % 10 == 0 else 0.0
        run_n += 1 if step % 10 == 0 else 0
        if step % args.log_every == 0:
            el = time.time() - t_start
            log(f"step {step}/{total or '?'} loss {run_loss / max(1, run_n):.4f} lr {lr:.2e} "
                f"{step * B * T / el / 1000:.0f}k tok/s {el:.0f}s")
            history.append((step, run_loss / max(1, run_n)))
            run_loss, run_n = 0.0, 0
        if total and step in (total // 4, total // 2, 3 * total // 4):
            model.eval()
            h = eval_windows(model, held, T, 64, limit=64)
            model.train()
            log(f"eval step {step}: held-out NLL (64 windows) {h:.4f} ppl {math.exp(h):.2f}")
            for line in balancer.report():
                log("  " + line)
    train_s = time.time() - t_start
    log(f"train: {step} steps, {step * B * T} tokens, {train_s:.0f}s")
    for line in balancer.report():
        log("  " + line)

    model.eval()
    tr_plain = eval_windows(model, train, T, 64, limit=256)
    tr_chat = eval_windows(model, chat, T, 64, limit=128)
    he = eval_windows(model, held, T, 64)
    log(f"final (bf16 autocast, windows of {T}): train NLL {tr_plain:.4f} ppl {math.exp(tr_plain):.2f} | "
        f"chat NLL {tr_chat:.4f} ppl {math.exp(tr_chat):.2f} | held-out NLL {he:.4f} ppl {math.exp(he):.2f} "
        f"({len(held) // T} windows)")

    save_checkpoint(model, cfg, args)
    check_tokenizer(args, sp)
    samples = reload_and_sample(args, sp, held, he)
    write_ppl_ref(args, held, sp)
    summary = {"steps": step, "tokens": step * B * T, "train_seconds": round(train_s), "batch": B, "seq": T,
               "lr": args.lr, "seed": args.seed, "parameters": nparams, "train_nll": tr_plain, "chat_nll": tr_chat,
               "heldout_nll": he, "heldout_ppl": math.exp(he), "train_ppl": math.exp(tr_plain),
               "loss_history": history, "samples": samples, "device": torch.cuda.get_device_name(),
               "transformers": transformers.__version__, "torch": torch.__version__}
    json.dump(summary, open(os.path.join(args.out, "train_summary.json"), "w"), indent=1, ensure_ascii=False)
    log("done")


if __name__ == "__main__":
    main()
