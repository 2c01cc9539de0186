#!/usr/bin/env bash
# Makes the fuzzers' seed corpora from real files: data files in every format, texts in English
# and Chinese, small model files of every family (and fuzz/seeds/model.fw, the model the HTTP
# target serves). Run from the repository root after `cargo build --release`.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=target/release/flywheel
out=fuzz/corpus
mkdir -p "$out"/{read_data,tokenize,artifact,http_bodies}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
data=crates/flywheel-model/tests/fixtures/v1-lstm-before-families.csv
head -c 4000 "$data" > "$tmp/small.csv"
# read_data: the first byte selects the format (0 csv, 1 tsv, 2 jsonl, 3 fastText).
{ printf '\x00'; cat "$tmp/small.csv"; } > "$out/read_data/csv"
{ printf '\x01'; tr ',' '\t' < "$tmp/small.csv"; } > "$out/read_data/tsv"
{ printf '\x02'; printf '{"text": "good film", "label": "pos"}\n{"text": "bad", "label": ["neg", "x"]}\n'; } > "$out/read_data/jsonl"
{ printf '\x03'; printf '__label__pos good film\n__label__neg __label__x bad film\n'; } > "$out/read_data/fasttext"
# tokenize: the first byte selects the mode and options.
i=0
for text in "Hello, World! It's 5 o'clock." "我爱北京天安门，今天天气很好。" "İstanbul café naïve ﬁ ① 😀👍🏽" \
            "mail jane.doe@example.com or call +1 415 555 0132, card 4111 1111 1111 1111" \
            "身份证 11010519491231002X 手机 13812345678 http://user:pw@host/x 10.0.0.1 ::1"; do
  for sel in 0 1 2 3 4 20 37 66; do
    { printf "\\x$(printf %02x $sel)"; printf '%s' "$text"; } > "$out/tokenize/t$i-$sel"
  done
  i=$((i + 1))
done
# artifact: one small model per family.
$bin train "$tmp/small.csv" -o "$tmp/lstm.fw" --epochs 1 --num-words 50 --max-len 10 --threads 1 >/dev/null 2>&1
$bin train "$tmp/small.csv" -o "$tmp/fasttext.fw" --model fasttext --dim 4 --buckets 1000 --epochs 1 --threads 1 >/dev/null 2>&1
$bin train "$tmp/small.csv" -o "$tmp/linear.fw" --model linear --threads 1 >/dev/null 2>&1
for f in lstm fasttext linear; do cp "$tmp/$f.fw" "$out/artifact/$f.fw"; done
cp "$tmp/lstm.fw" fuzz/seeds/model.fw
# http_bodies: the first byte selects the endpoint (0 classify, 1 explain, 2 feedback,
# 3 review, 4 review-queue query, 5 usage query, 6 reload, 7 models).
printf '\x00{"model":"m","inputs":["good film","bad"],"top_k":1,"explain":true,"log":true}' > "$out/http_bodies/classify"
printf '\x01{"model":"m","input":"good film","label":"pos"}' > "$out/http_bodies/explain"
printf '\x02{"model":"m","text":"bad film","label":"neg"}' > "$out/http_bodies/feedback-text"
printf '\x02{"request_id":"r1","index":0,"label":"neg"}' > "$out/http_bodies/feedback-id"
printf '\x03{"label":"pos"}' > "$out/http_bodies/review"
printf '\x04model=m&limit=5&strategy=random' > "$out/http_bodies/queue"
printf '\x05from=2026-01-01&to=2026-12-31&tenant=t' > "$out/http_bodies/usage"
echo "seeds written under $out and fuzz/seeds/model.fw"
