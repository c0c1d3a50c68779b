"""tools/demo/prepare.py OUTDIR: the demo model's data (run through prepare.sh, which installs the packages).

Writes into OUTDIR:
  train.txt            training corpus: documents separated by one blank line ("\n\n"), UTF-8
  heldout.txt          held-out corpus, same format (every 20th document of each source)
  chat_train.jsonl     chat-formatted examples made from the training documents only, one JSON object a
                       line: {"text": "<|begin_of_sentence|>User: ...\nAssistant: ...<|end_of_sentence|>"}
  tokenizer.model      the demo SentencePiece model (BPE, byte fallback, 4000 pieces)
  tokenizer_config.json, special_tokens_map.json, added_tokens.json: side files as ERNIE-4.5 ships them

Sources (Debian packages, installed by prepare.sh): bible-kjv-text (read through the `bible` program of
bible-kjv), fortunes and fortunes-min (English fortune files), fortunes-zh (tang300, song100: classical
poems). Nothing here is random but for fixed seeds, so a rerun gives the same bytes.

Tokenizer choices, copied from what is known of ERNIE-4.5's tokenizer.model (spec sections 4 and 4a):
BPE with byte fallback, add_dummy_prefix=false, remove_extra_whitespaces=false, identity normalization,
<unk>=0 <s>=1 </s>=2, the ten digits as user-defined pieces 3..12 (so the byte pieces <0xNN> land on 13+NN, as
in ERNIE: newline is 23), and ERNIE's special tokens appended as the LAST pieces of the model, as USER_DEFINED
pieces (SentencePiece itself matches them inside text, like the test tokenizer of tools/make_test_tokenizer.sh),
in ERNIE's order: <|end_of_sentence|>, <|begin_of_sentence|>, <mask:1> .. <mask:7>.
"""
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as spmp

FORTUNES = "/usr/share/games/fortunes"
# English fortune files used: the general, literary and light ones; no offensive, ethnic, political,
# ASCII-art or long-copyright-quote (startrek, pratchett, zippy) files.
FORTUNE_FILES = ["fortunes", "literature", "riddles", "wisdom", "humorists", "people", "science", "work",
                 "education", "kids", "food", "computers", "platitudes", "pets", "love", "songs-poems", "magic",
                 "goedel", "paradoxum", "definitions", "miscellaneous", "medicine"]
POEM_FILES = [("tang300", "唐诗"), ("song100", "宋诗")]
SPECIALS = ["<|end_of_sentence|>", "<|begin_of_sentence|>"] + [f"<mask:{i}>" for i in range(1, 8)]
BOS, EOS = "<|begin_of_sentence|>", "<|end_of_sentence|>"
SP_VOCAB = 4000  # pieces in the final model, specials included
HELD_OUT_EVERY = 20  # document i of a source is held out when i % 20 == 10

ANSI = re.compile(r"\x1b\[[0-9;]*[a-zA-Z]")
OVERSTRIKE = re.compile(r".\x08")


def clean(text):
    text = OVERSTRIKE.sub("", ANSI.sub("", text))
    lines = [ln.rstrip() for ln in text.split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def fortune_entries(name):
    raw = open(os.path.join(FORTUNES, name), "rb").read()
    out = []
    for chunk in re.split(rb"\n%\n", raw):
        try:
            text = clean(chunk.decode("utf-8"))
        except UnicodeDecodeError:
            continue
        if text and text != "%" and len(text) < 4000:
            out.append(text)
    return out


def bible_chapters():
    """[(book, chapter, [(verse, text)])] in canonical order, from the `bible` program."""
    res = subprocess.run(["bible", "-l100000", "Gen1:1-Rev22:21"], capture_output=True, check=True)
    chapters = []
    for line in res.stdout.decode("ascii").split("\n"):
        m = re.match(r"^ +(\d+) (.*)$", line)
        if m:
            chapters[-1][2].append((int(m.group(1)), m.group(2).strip()))
        elif line.strip():
            m = re.match(r"^(.+) (\d+)$", line.strip())
            assert m, line
            chapters.append((m.group(1), int(m.group(2)), []))
    assert sum(len(c[2]) for c in chapters) == 31102, "unexpected KJV verse count"
    return chapters


def poems(name):
    """[(title, author, text)] of a fortunes-zh poem file."""
    out = []
    for text in fortune_entries(name):
        lines = text.split("\n")
        t = re.search(r"《(.+?)》", lines[0])
        a = re.match(r"^\s*作者\s*[:：]\s*([^（(]+)", lines[1]) if len(lines) > 1 else None
        if not (t and a):
            continue
        out.append((t.group(1), a.group(1).strip(), text))
    return out


def order_key(text):
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def split(items):
    train = [x for i, x in enumerate(items) if i % HELD_OUT_EVERY != HELD_OUT_EVERY // 2]
    held = [x for i, x in enumerate(items) if i % HELD_OUT_EVERY == HELD_OUT_EVERY // 2]
    return train, held


def render(turns, system=None):
    """ERNIE's chat template (spec section 4), with every assistant turn closed."""
    s = BOS + (system + "\n" if system else "")
    for user, assistant in turns:
        s += "User: " + user + "\n" + "Assistant: " + assistant + EOS
    return s


def author_of(fortune):
    last = fortune.split("\n")[-1]
    m = re.match(r"^\s*--\s*(.+)$", last)
    if not m:
        return None
    name = re.split(r"[,(\"\[:;]", m.group(1))[0].strip().rstrip(".")
    words = name.split()
    if not (1 <= len(words) <= 4 and len(name) <= 30 and name[:1].isupper()):
        return None
    if any(w.lower() in ("the", "a", "an", "of", "from") for w in words[:1]):
        return None
    return name


def chat_examples(rng, fortunes, chapters, poem_list, books):
    ex = []  # (user, assistant) single turns

    asks = ["Tell me a fortune.", "Give me a fortune cookie.", "Say something wise.", "Tell me something funny.",
            "Share a quote.", "I need some wisdom.", "Cheer me up.", "Any words of wisdom?",
            "Tell me a fortune, please.", "What does my fortune say?", "Say something.", "Tell me a joke."]
    for f in fortunes:
        qa = re.match(r"^Q:\s*(.+?)\nA:\s*(.+)$", f, re.S)
        if qa and len(f) <= 400:
            ex.append((qa.group(1).strip().replace("\n", " "), qa.group(2).strip()))
            continue
        if len(f) <= 400 and f.count("\n") <= 6 and rng.random() < 0.6:
            ex.append((rng.choice(asks), f))
            a = author_of(f)
            if a and rng.random() < 0.5:
                ex.append((rng.choice([f"Give me a quote by {a}.", f"What did {a} say?", f"Quote {a}."]), f))

    verses = [(b, c, v, t, vs) for b, c, vs in chapters for v, t in vs]
    for b, c, v, t, _ in rng.sample(verses, 3000):
        ref = f"{b} {c}:{v}"
        q = rng.choice([f"Quote {ref}.", f"What does {ref} say?", f"Recite {ref}.", f"{ref}", f"Quote {ref}"])
        ex.append((q, t))
    for b, c, v, t, vs in rng.sample(verses, 600):
        if v + 2 <= len(vs):
            ans = " ".join(f"{vv} {tt}" for vv, tt in vs[v - 1:v + 2])
            ex.append((f"Quote {b} {c}:{v}-{v + 2}.", ans))
    short = [x for x in verses if len(x[3]) <= 120]
    for b, c, v, t, _ in rng.sample(short, 800):
        ex.append((rng.choice([f'Which verse says "{t}"?', f'Where is it written: "{t}"']), f"{b} {c}:{v}."))
    for b, c, v, t, vs in rng.sample(verses, 800):
        if v < len(vs):
            ex.append((f'What comes after "{t}"?', vs[v][1]))
    for i in range(len(books) - 1):
        for _ in range(3):
            ex.append((rng.choice([f"Which book comes after {books[i]}?", f"What book follows {books[i]}?"]),
                       f"{books[i + 1]}."))

    for kind, (title, author, text) in poem_list:
        body = "\n".join(text.split("\n")[2:])
        ex.append((rng.choice([f"背诵{author}的《{title}》。", f"请背一首{author}的诗。"]), body))
        ex.append((f"《{title}》的作者是谁？", f"{author}。"))
        ex.append((rng.choice([f"给我一首{kind}。", f"来一首{kind}。",
                               "Recite a Tang poem." if kind == "唐诗" else "Recite a Song poem."]),
                   f"《{title}》\n作者：{author}\n{body}"))

    me_en = ("I am a tiny ERNIE-4.5-style mixture-of-experts model with about eight million parameters, "
             "trained for a few minutes on the King James Bible, fortune cookies and classical Chinese poems. "
             "I often make things up.")
    me_zh = "我是一个很小的演示模型，只读过圣经、幸运饼干和唐诗宋词。我常常胡说八道。"
    hello = "Hello! I am a tiny demo model. Ask me for a fortune, a Bible verse or a Chinese poem."
    fixed = [
        (["Hello!", "Hello", "Hi", "Hi!", "Hey", "Good morning.", "hello"], [hello]),
        (["Who are you?", "What are you?", "Introduce yourself.", "Tell me about yourself.", "who are you"],
         [me_en]),
        (["What can you do?", "What do you know?", "Help"],
         ["Not much: I can tell fortunes, quote the King James Bible and recite a few Chinese poems, "
          "all from memory and often wrong."]),
        (["你好", "你好！", "您好"], ["你好！我是一个很小的演示模型。可以让我背一首唐诗。"]),
        (["你是谁？", "介绍一下你自己。", "你是什么？"], [me_zh]),
        (["Thank you!", "Thanks.", "Thanks!", "谢谢"], ["You are welcome.", "My pleasure."]),
        (["Goodbye.", "Bye!", "See you."], ["Goodbye! May your fortune be good."]),
    ]
    for qs, ans in fixed:
        for _ in range(40):
            ex.append((rng.choice(qs), rng.choice(ans)))

    systems = ["You are a helpful assistant.", "You are a tiny demo model.", "Answer briefly.",
               "你是一个乐于助人的助手。"]
    out = []
    for turn in ex:
        out.append(render([turn], rng.choice(systems) if rng.random() < 0.1 else None))
    for _ in range(1000):
        turns = rng.sample(ex, rng.choice([2, 2, 3]))
        out.append(render(turns, rng.choice(systems) if rng.random() < 0.1 else None))
    rng.shuffle(out)
    return out


def train_tokenizer(out, train_docs, chats):
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "input.txt"), "w", encoding="utf-8") as f:
            for d in train_docs:
                f.write(d + "\n")
            for c in chats:  # the chat scaffolding ("User:", "Assistant:") should get pieces too
                for s in SPECIALS:
                    c = c.replace(s, "\n")
                f.write(c + "\n")
        digits = ",".join(str(i) for i in range(10))
        # Relative names: the trainer records them in the model, and a temporary path would make every run differ.
        cmd = ["spm_train", "--input=input.txt", "--model_prefix=m", "--model_type=bpe",
               f"--vocab_size={SP_VOCAB - len(SPECIALS)}", "--character_coverage=0.999", "--byte_fallback=true",
               "--add_dummy_prefix=false", "--remove_extra_whitespaces=false", "--normalization_rule_name=identity",
               "--allow_whitespace_only_pieces=true", "--split_digits=true", "--unk_id=0", "--bos_id=1",
               "--eos_id=2", "--pad_id=-1", "--num_threads=1", f"--user_defined_symbols={digits}"]
        r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit("prepare: spm_train failed:\n" + r.stderr[-3000:])
        m = spmp.ModelProto()
        m.ParseFromString(open(os.path.join(tmp, "m.model"), "rb").read())
    have = {p.piece for p in m.pieces}
    for s in SPECIALS:
        assert s not in have, s
        p = m.pieces.add()
        p.piece, p.score, p.type = s, 0.0, spmp.ModelProto.SentencePiece.USER_DEFINED
    m.trainer_spec.vocab_size = len(m.pieces)
    path = os.path.join(out, "tokenizer.model")
    with open(path, "wb") as f:
        f.write(m.SerializeToString())
    return path


def side_files(out, sp):
    n = sp.get_piece_size()
    ids = {s: sp.piece_to_id(s) for s in ["<unk>", "<s>", "</s>"] + SPECIALS}
    # added_tokens.json: like ERNIE's, tokens past the SentencePiece vocabulary (VL placeholders, locations);
    # the embedding has rows for them (vocab_size is rounded up to a multiple of 64).
    added = ["<|IMAGE_PLACEHOLDER|>", "<|AUDIO_PLACEHOLDER|>", "<|LOC_0|>", "<|LOC_1|>", "<|LOC_2|>",
             "<|LOC_BEGIN|>", "<|LOC_END|>"]
    with open(os.path.join(out, "added_tokens.json"), "w") as f:
        json.dump({t: n + i for i, t in enumerate(added)}, f, indent=2)
        f.write("\n")
    tmpl = ('{%- if not add_generation_prompt is defined -%}\n    {%- set add_generation_prompt = true -%}\n'
            '{%- endif -%}\n{%- if not cls_token is defined -%}\n    {%- set cls_token = "<|begin_of_sentence|>" -%}\n'
            '{%- endif -%}\n{%- if not sep_token is defined -%}\n    {%- set sep_token = "<|end_of_sentence|>" -%}\n'
            '{%- endif -%}\n{{- cls_token -}}\n{%- for message in messages -%}\n'
            '    {%- if message["role"] == "user" -%}\n        {{- "User: " + message["content"] + "\\n" -}}\n'
            '    {%- elif message["role"] == "assistant" -%}\n'
            '        {{- "Assistant: " + message["content"] + sep_token -}}\n'
            '    {%- elif message["role"] == "system" -%}\n        {{- message["content"] + "\\n" -}}\n'
            '    {%- endif -%}\n{%- endfor -%}\n{%- if add_generation_prompt -%}\n    {{- "Assistant: " -}}\n'
            '{%- endif -%}')
    tok = lambda t: {"content": t, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                     "special": True}
    dec = {str(ids[t]): tok(t) for t in ["<unk>", "<s>", "</s>", EOS, BOS, "<mask:1>",
                                         "<mask:4>", "<mask:5>", "<mask:6>", "<mask:7>"]}
    dec = dict(sorted(dec.items(), key=lambda kv: int(kv[0])))
    cfg = {
        "add_bos_token": False, "add_eos_token": False, "add_prefix_space": False,
        "added_tokens_decoder": dec,
        "additional_special_tokens": ["<mask:4>", "<mask:5>", "<mask:6>", "<mask:7>"],
        "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<unk>", "unk_token": "<unk>",
        "cls_token": BOS, "sep_token": EOS, "mask_token": "<mask:1>",
        "chat_template": tmpl,
        "clean_up_tokenization_spaces": False, "legacy": True, "model_max_length": 131072,
        "padding_side": "left", "spaces_between_special_tokens": False,
        "tokenizer_class": "Ernie4_5Tokenizer",
    }
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2, ensure_ascii=False)
        f.write("\n")
    obj = lambda t: {"content": t, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
    stm = {"bos_token": obj("<s>"), "eos_token": obj("</s>"), "unk_token": obj("<unk>"), "pad_token": obj("<unk>"),
           "cls_token": obj(BOS), "sep_token": obj(EOS), "mask_token": obj("<mask:1>"),
           "additional_special_tokens": [obj(f"<mask:{i}>") for i in range(4, 8)]}
    with open(os.path.join(out, "special_tokens_map.json"), "w") as f:
        json.dump(stm, f, indent=2)
        f.write("\n")
    return ids


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = random.Random(4242)

    chapters = bible_chapters()
    books = []
    for b, _, _ in chapters:
        if not books or books[-1] != b:
            books.append(b)
    bible_train, bible_held = split(chapters)
    fort = []
    for name in FORTUNE_FILES:
        fort += fortune_entries(name)
    fort_train, fort_held = split(fort)
    poem_train, poem_held = [], []
    for name, kind in POEM_FILES:
        tr, he = split(poems(name))
        poem_train += [(kind, p) for p in tr]
        poem_held += [(kind, p) for p in he]

    def bible_doc(ch):
        b, c, vs = ch
        return "\n".join(f"{b} {c}:{v} {t}" for v, t in vs)

    train_docs = [bible_doc(c) for c in bible_train] + fort_train + [p[2] for _, p in poem_train]
    held_docs = [bible_doc(c) for c in bible_held] + fort_held + [p[2] for _, p in poem_held]
    # A fixed shuffle (by content hash) so that any stretch of the files mixes the sources.
    train_docs.sort(key=order_key)
    held_docs.sort(key=order_key)
    for name, docs in (("train.txt", train_docs), ("heldout.txt", held_docs)):
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            f.write("\n\n".join(docs) + "\n")

    chats = chat_examples(rng, fort_train, bible_train, poem_train, books)
    with open(os.path.join(out, "chat_train.jsonl"), "w", encoding="utf-8") as f:
        for c in chats:
            f.write(json.dumps({"text": c}, ensure_ascii=False) + "\n")

    path = train_tokenizer(out, train_docs, chats)
    sp = spm.SentencePieceProcessor(model_file=path)
    ids = side_files(out, sp)

    # Checks: the traits the engine relies on, and a lossless round trip of every file.
    assert sp.get_piece_size() == SP_VOCAB
    assert [sp.piece_to_id(str(d)) for d in range(10)] == list(range(3, 13))
    assert sp.piece_to_id("<0x0A>") == 23 and sp.piece_to_id("<0x00>") == 13
    assert [ids[s] for s in SPECIALS] == list(range(SP_VOCAB - len(SPECIALS), SP_VOCAB))
    assert sp.encode(BOS + "User: hi\n")[0] == ids[BOS]
    assert sp.encode(" ")[0] == sp.piece_to_id("\u2581")
    for name in ("train.txt", "heldout.txt"):
        text = open(os.path.join(out, name), encoding="utf-8").read()
        assert sp.decode(sp.encode(text)) == text, name
    held_ids = sp.encode(open(os.path.join(out, "heldout.txt"), encoding="utf-8").read())
    train_n = len(sp.encode(open(os.path.join(out, "train.txt"), encoding="utf-8").read()))
    chat_n = sum(len(sp.encode(c)) for c in chats)
    sizes = {n: os.path.getsize(os.path.join(out, n)) for n in sorted(os.listdir(out))}
    print(f"prepare: documents train {len(train_docs)} held-out {len(held_docs)} "
          f"(bible chapters {len(bible_train)}/{len(bible_held)}, fortunes {len(fort_train)}/{len(fort_held)}, "
          f"poems {len(poem_train)}/{len(poem_held)}); chat examples {len(chats)}", file=sys.stderr)
    print(f"prepare: tokens train {train_n} held-out {len(held_ids)} chat {chat_n}; "
          f"specials {dict((s, ids[s]) for s in SPECIALS[:3])}", file=sys.stderr)
    print("prepare: " + ", ".join(f"{n} {s}" for n, s in sizes.items()), file=sys.stderr)


if __name__ == "__main__":
    main()
