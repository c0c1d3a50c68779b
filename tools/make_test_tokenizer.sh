#!/usr/bin/env bash
# tools/make_test_tokenizer.sh [OUTDIR]: trains the small SentencePiece model the tokenizer tests use and
# writes it with Hugging Face-style side files that mimic ERNIE-4.5's release (default OUTDIR:
# tests/fixtures/tok). Its output is committed; run it again only to change the fixture.
#
# The model copies the traits of ERNIE's tokenizer.model that matter to our front end (spec §4, §4a):
# BPE with byte fallback, add_dummy_prefix=false, remove_extra_whitespaces=false, no normalization (so a
# newline reaches the model and becomes the <0x0A> byte piece), <unk>=0 <s>=1 </s>=2, the ten digits as
# single user-defined pieces, and ERNIE's chat tokens as user-defined pieces, which SentencePiece itself
# matches inside text (the reason plain user text needs protecting). Ids differ from ERNIE's on purpose:
# nothing may assume them.
#
# Corpus: public-domain English fortunes (fortunes-min) and Tang poems (fortunes-zh), installed here.
set -euo pipefail
out=${1:-tests/fixtures/tok}
mkdir -p "$out"

need=()
for p in sentencepiece fortunes-min fortunes-zh; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then echo "make_test_tokenizer: need root to install: ${need[*]}" >&2; exit 1; fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fdir=/usr/share/games/fortunes
# Fortune files: '%' separates entries; some use ANSI colours and backspace overstriking. Strip both so
# the model learns plain text; drop the separators; keep tabs and runs of spaces (the model must see them).
# Only the first poems: every distinct Chinese character costs a piece, and the vocabulary is small.
clean() { sed -e 's/\x1b\[[0-9;]*[a-zA-Z]//g' -e 's/.\x08//g' -e '/^%$/d' "$fdir/$1"; }
{ clean fortunes; clean literature; clean riddles; clean tang300 | sed -n 1,300p; } > "$tmp/corpus.txt"

specials='<|end_of_sentence|>,<|begin_of_sentence|>,<mask:1>,<mask:2>,<mask:3>,<mask:4>,<mask:5>,<mask:6>,<mask:7>'
# Relative names: the trainer records them in the model, and a temporary path would make every run differ.
(cd "$tmp" && spm_train --input=corpus.txt --model_prefix=m --model_type=bpe --vocab_size=2000 \
    --character_coverage=0.98 --byte_fallback=true --add_dummy_prefix=false \
    --remove_extra_whitespaces=false --normalization_rule_name=identity --allow_whitespace_only_pieces=true \
    --split_digits=true --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1 --num_threads=1 \
    --user_defined_symbols="0,1,2,3,4,5,6,7,8,9,$specials" >train.log 2>&1) \
    || { tail -20 "$tmp/train.log" >&2; exit 1; }
cp "$tmp/m.model" "$out/test.model"

# Ids come from the trained vocabulary (line number = id), never typed in by hand.
spm_export_vocab --model="$out/test.model" > "$tmp/vocab.tsv"
id_of() { awk -F'\t' -v p="$1" '$1 == p { print NR - 1; exit }' "$tmp/vocab.tsv"; }
nvocab=$(wc -l < "$tmp/vocab.tsv")

# added_tokens.json: like ERNIE's, tokens past the SentencePiece vocabulary (VL placeholders, locations).
{
    printf '{\n'
    printf '  "<|IMAGE_PLACEHOLDER|>": %d,\n' "$nvocab"
    printf '  "<|AUDIO_PLACEHOLDER|>": %d,\n' $((nvocab + 1))
    for i in 0 1 2; do printf '  "<|LOC_%d|>": %d,\n' "$i" $((nvocab + 2 + i)); done
    printf '  "<|LOC_BEGIN|>": %d,\n' $((nvocab + 5))
    printf '  "<|LOC_END|>": %d\n' $((nvocab + 6))
    printf '}\n'
} > "$out/added_tokens.json"

# tokenizer_config.json: the release's named tokens and chat template, plus added_tokens_decoder as
# transformers writes it (the <mask:4..7> tokens added as special, spec §4).
tmpl='{%- if not add_generation_prompt is defined -%}\n    {%- set add_generation_prompt = true -%}\n{%- endif -%}\n{%- if not cls_token is defined -%}\n    {%- set cls_token = \"<|begin_of_sentence|>\" -%}\n{%- endif -%}\n{%- if not sep_token is defined -%}\n    {%- set sep_token = \"<|end_of_sentence|>\" -%}\n{%- endif -%}\n{{- cls_token -}}\n{%- for message in messages -%}\n    {%- if message[\"role\"] == \"user\" -%}\n        {{- \"User: \" + message[\"content\"] + \"\\n\" -}}\n    {%- elif message[\"role\"] == \"assistant\" -%}\n        {{- \"Assistant: \" + message[\"content\"] + sep_token -}}\n    {%- elif message[\"role\"] == \"system\" -%}\n        {{- message[\"content\"] + \"\\n\" -}}\n    {%- endif -%}\n{%- endfor -%}\n{%- if add_generation_prompt -%}\n    {{- \"Assistant: \" -}}\n{%- endif -%}'
entry() { printf '    "%d": {"content": "%s", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": true}' "$(id_of "$1")" "$1"; }
{
    printf '{\n  "add_bos_token": false,\n  "add_eos_token": false,\n  "add_prefix_space": false,\n'
    printf '  "added_tokens_decoder": {\n'
    first=1
    for t in '<unk>' '<s>' '</s>' '<|end_of_sentence|>' '<|begin_of_sentence|>' '<mask:1>' \
             '<mask:4>' '<mask:5>' '<mask:6>' '<mask:7>'; do
        [ $first = 1 ] || printf ',\n'
        first=0
        entry "$t"
    done
    printf '\n  },\n'
    printf '  "additional_special_tokens": ["<mask:4>", "<mask:5>", "<mask:6>", "<mask:7>"],\n'
    printf '  "bos_token": "<s>",\n  "eos_token": "</s>",\n  "pad_token": "<unk>",\n  "unk_token": "<unk>",\n'
    printf '  "cls_token": "<|begin_of_sentence|>",\n  "sep_token": "<|end_of_sentence|>",\n'
    printf '  "mask_token": "<mask:1>",\n'
    printf '  "chat_template": "%s",\n' "$tmpl"
    printf '  "clean_up_tokenization_spaces": false,\n  "legacy": true,\n  "model_max_length": 131072,\n'
    printf '  "padding_side": "left",\n  "spaces_between_special_tokens": false,\n'
    printf '  "tokenizer_class": "Ernie4_5Tokenizer"\n}\n'
} > "$out/tokenizer_config.json"

# special_tokens_map.json: the AddedToken object form some exports use.
obj() { printf '{"content": "%s", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false}' "$1"; }
{
    printf '{\n'
    printf '  "bos_token": %s,\n' "$(obj '<s>')"
    printf '  "eos_token": %s,\n' "$(obj '</s>')"
    printf '  "unk_token": %s,\n' "$(obj '<unk>')"
    printf '  "pad_token": %s,\n' "$(obj '<unk>')"
    printf '  "cls_token": %s,\n' "$(obj '<|begin_of_sentence|>')"
    printf '  "sep_token": %s,\n' "$(obj '<|end_of_sentence|>')"
    printf '  "mask_token": %s,\n' "$(obj '<mask:1>')"
    printf '  "additional_special_tokens": [%s, %s, %s, %s]\n' "$(obj '<mask:4>')" "$(obj '<mask:5>')" \
        "$(obj '<mask:6>')" "$(obj '<mask:7>')"
    printf '}\n'
} > "$out/special_tokens_map.json"

echo "make_test_tokenizer: wrote $out/test.model ($nvocab pieces, $(stat -c %s "$out/test.model") bytes)" >&2
